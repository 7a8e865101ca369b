package analysis_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Every test runs in parallel with the others, in its own namespace with its own workloads in
// the exporter; the rollouts share one cluster, one Prometheus and one manager.

// expectRounds checks the verdict of every analysis round, and at which step it ran.
func expectRounds(t *testing.T, r *run, want ...string) {
	t.Helper()
	var got []string
	for _, rd := range r.rounds() {
		v := rampv1.VerdictPassed
		for _, m := range rd.metrics {
			if m.Verdict == rampv1.VerdictFailed || (m.Verdict == rampv1.VerdictInconclusive && v == rampv1.VerdictPassed) {
				v = m.Verdict
			}
		}
		got = append(got, fmt.Sprintf("%d:%s", rd.step, v))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: analysis rounds (step:verdict) %v, want %v", r.ns, got, want)
	}
}

// A healthy canary passes a round at each step and is promoted.
func TestHealthyCanaryIsPromoted(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	r := scenario{canary: healthy, stable: healthy, failureLimit: 1}.start(t)
	ro := r.finish(rampv1.PhaseSucceeded)

	r.expectWeights(0, 10, 50, 100, 0)
	expectRounds(t, r, "1:Passed", "2:Passed", "3:Passed")
	if ro.Status.FailedChecks != 0 || ro.Status.InconclusiveChecks != 0 {
		t.Errorf("failedChecks %d, inconclusiveChecks %d, want 0", ro.Status.FailedChecks, ro.Status.InconclusiveChecks)
	}
	// The last round (at 100%) stays in status after promotion.
	expectMetric(t, metric(t, ro, "error-rate"), rampv1.VerdictPassed, 0, 0.95, "<= 1")
	expectMetric(t, metric(t, ro, "latency-p99"), rampv1.VerdictPassed, 85, 115, "<= 500")
	if ro.Status.LastAnalysisTime == nil {
		t.Error("status.lastAnalysisTime not set")
	}
	r.expectEvent("Promoted")
}

// A canary answering 10% of requests with 5xx fails two rounds at its first step and is rolled
// back.
func TestErrorRateFailsAndRollsBack(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	r := scenario{canary: traffic{errorRatio: 0.10, p99: 100}, stable: healthy, failureLimit: 2}.start(t)
	ro := r.finish(rampv1.PhaseFailed)

	r.expectWeights(0, 10, 0)
	expectRounds(t, r, "1:Failed", "1:Failed")
	if ro.Status.FailedChecks != 2 {
		t.Errorf("failedChecks %d, want 2", ro.Status.FailedChecks)
	}
	er := metric(t, ro, "error-rate")
	expectMetric(t, er, rampv1.VerdictFailed, 8.5, 11.5, "<= 1")
	if !strings.HasSuffix(er.Message, " > 1") {
		t.Errorf("error-rate message %q, want \"<value> > 1\"", er.Message)
	}
	expectMetric(t, metric(t, ro, "latency-p99"), rampv1.VerdictPassed, 85, 115, "<= 500")
	if !strings.HasPrefix(ro.Status.Message, "analysis failed 2 times: error-rate ") {
		t.Errorf("status.message %q", ro.Status.Message)
	}
	if msg := r.expectEvent("AnalysisFailed"); !strings.Contains(msg, "error-rate") {
		t.Errorf("AnalysisFailed event %q does not name error-rate", msg)
	}
	r.expectEvent("RolledBack")
}

// A P99 regression (900 ms against a 500 ms bar) fails and rolls back; the error rate passes.
func TestLatencyRegressionRollsBack(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	r := scenario{canary: traffic{errorRatio: 0.005, p99: 900}, stable: healthy, failureLimit: 1}.start(t)
	ro := r.finish(rampv1.PhaseFailed)

	r.expectWeights(0, 10, 0)
	expectRounds(t, r, "1:Failed")
	lat := metric(t, ro, "latency-p99")
	expectMetric(t, lat, rampv1.VerdictFailed, 800, 1000, "<= 500")
	if !strings.HasSuffix(lat.Message, " > 500") {
		t.Errorf("latency-p99 message %q", lat.Message)
	}
	expectMetric(t, metric(t, ro, "error-rate"), rampv1.VerdictPassed, 0, 0.95, "<= 1")
	if !strings.Contains(ro.Status.Message, "latency-p99") {
		t.Errorf("status.message %q does not name latency-p99", ro.Status.Message)
	}
	r.expectEvent("AnalysisFailed")
}

// With Prometheus unreachable (a closed loopback port) every round is Inconclusive: the
// rollout never passes its first step, whatever the canary's real health, and rolls back
// after inconclusiveLimit rounds.
func TestPrometheusDownNeverPromotes(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	r := scenario{canary: healthy, stable: healthy, inconclusiveLimit: 2, address: "http://" + closedPort(t)}.start(t)
	ro := r.finish(rampv1.PhaseFailed)

	r.expectWeights(0, 10, 0)
	expectRounds(t, r, "1:Inconclusive", "1:Inconclusive")
	for _, v := range r.tl.Rollouts(target) {
		if s := v.Status; s.CurrentStep > 1 || s.StepAnalysisPassed || s.Phase == rampv1.PhasePromoting || s.Phase == rampv1.PhaseSucceeded {
			t.Errorf("the rollout got past step 1 (resourceVersion %s): %+v", v.ResourceVersion, s)
		}
	}
	if ro.Status.InconclusiveChecks != 2 || ro.Status.FailedChecks != 0 {
		t.Errorf("inconclusiveChecks %d, failedChecks %d; want 2, 0", ro.Status.InconclusiveChecks, ro.Status.FailedChecks)
	}
	for _, m := range ro.Status.LastAnalysis {
		if m.Verdict != rampv1.VerdictInconclusive || m.Value != "" || !strings.Contains(m.Message, "unreachable") {
			t.Errorf("%s: %+v, want Inconclusive, no value, a message saying unreachable", m.Name, m)
		}
	}
	if !strings.HasPrefix(ro.Status.Message, "analysis inconclusive 2 times: ") || !strings.Contains(ro.Status.Message, "prometheus unreachable") {
		t.Errorf("status.message %q, want it to say prometheus is unreachable", ro.Status.Message)
	}
	if msg := r.expectEvent("AnalysisInconclusive"); !strings.Contains(msg, "unreachable") {
		t.Errorf("AnalysisInconclusive event %q", msg)
	}
}

// compareToStable catches a canary twice as slow as stable even though it passes the
// absolute bar; the same config promotes a canary as fast as stable.
func TestCompareToStable(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	metrics := func() []rampv1.Metric {
		m := latencyP99(500)
		m.CompareToStable = &rampv1.Comparison{Tolerance: 20, Mode: analysis.ModeRelative}
		return []rampv1.Metric{errorRate(1), m}
	}
	stable := traffic{errorRatio: 0.005, p99: 150}

	t.Run("canary 2x slower fails", func(t *testing.T) {
		t.Parallel()
		r := scenario{canary: traffic{errorRatio: 0.005, p99: 300}, stable: stable, failureLimit: 1, metrics: metrics()}.start(t)
		ro := r.finish(rampv1.PhaseFailed)

		r.expectWeights(0, 10, 0)
		expectRounds(t, r, "1:Failed")
		lat := metric(t, ro, "latency-p99")
		if lat.Verdict != rampv1.VerdictFailed {
			t.Errorf("latency-p99 verdict %s, want Failed: %+v", lat.Verdict, lat)
		}
		within(t, "canary p99", lat.Value, 270, 330)
		within(t, "stable p99", lat.StableValue, 135, 165)
		// "<= 500, <= 180 (stable +20%)": the absolute bar passes, the comparison fails.
		if !strings.HasPrefix(lat.Threshold, "<= 500, <= ") || !strings.HasSuffix(lat.Threshold, " (stable +20%)") {
			t.Errorf("latency-p99 threshold %q", lat.Threshold)
		}
		if !strings.Contains(lat.Message, "> stable ") || strings.Contains(lat.Message, "> 500") {
			t.Errorf("latency-p99 message %q: want only the comparison to fail", lat.Message)
		}
		t.Logf("latency-p99: %s vs stable %s, threshold %q: %s", lat.Value, lat.StableValue, lat.Threshold, lat.Message)
	})
	t.Run("canary as fast as stable is promoted", func(t *testing.T) {
		t.Parallel()
		r := scenario{canary: stable, stable: stable, failureLimit: 1, metrics: metrics()}.start(t)
		ro := r.finish(rampv1.PhaseSucceeded)

		r.expectWeights(0, 10, 50, 100, 0)
		expectRounds(t, r, "1:Passed", "2:Passed", "3:Passed")
		lat := metric(t, ro, "latency-p99")
		if lat.Verdict != rampv1.VerdictPassed {
			t.Errorf("latency-p99 %+v", lat)
		}
		within(t, "canary p99", lat.Value, 135, 165)
		within(t, "stable p99", lat.StableValue, 135, 165)
	})
}

// The canary is healthy at 10%; as it enters 50% its error rate rises to 10%: the first
// round at 50% fails and the rollout rolls back from there.
func TestErrorRateRisesMidRollout(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	sc := scenario{canary: healthy, stable: healthy, failureLimit: 1,
		// The exporter switches as soon as the status says step 2 (the round at step 1 has
		// passed), before 50% is routed. Step 2's round is due an interval after that: with
		// 3s, at least ~2s of the 10s window carry the new error rate (≥ 2% against 1%).
		interval: 3 * time.Second}
	r := sc.start(t)
	rose := make(chan struct{})
	go func() {
		defer close(rose)
		ro, err := r.when(timeout, func(ro *rampv1.Rollout) bool { return ro.Status.CurrentStep >= 2 })
		if err != nil {
			return // the rollout never got there: the checks below say so
		}
		setTraffic(ro.Namespace, canary, traffic{errorRatio: 0.10, p99: 100})
		t.Logf("%s: step %d (%s): the canary now answers 10%% of requests with 503", ro.Namespace, ro.Status.CurrentStep, ro.Status.Stage)
	}()
	t.Cleanup(func() { <-rose })
	ro := r.finish(rampv1.PhaseFailed)

	r.expectWeights(0, 10, 50, 0)
	expectRounds(t, r, "1:Passed", "2:Failed")
	rounds := r.rounds()
	if len(rounds) == 2 {
		t.Logf("%s: step 1: %s; step 2: %s", r.ns, rounds[0].verdicts(), rounds[1].verdicts())
		if rounds[1].weight != 50 {
			t.Errorf("failing round ran at %d%%, want 50%%", rounds[1].weight)
		}
	}
	er := metric(t, ro, "error-rate")
	if er.Verdict != rampv1.VerdictFailed {
		t.Errorf("error-rate %+v, want Failed", er)
	}
	within(t, "error-rate after the rise", er.Value, 1.01, 11)
	if ro.Status.CurrentStep != 2 {
		t.Errorf("rolled back at step %d, want 2", ro.Status.CurrentStep)
	}
	r.expectEvent("AnalysisFailed")
}
