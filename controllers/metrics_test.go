package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestMetricsFollowTheRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)

	waitFor(t, "metrics", func(context.Context) (bool, error) {
		return testutil.ToFloat64(phaseGauge.WithLabelValues(ns, "web", rampv1.PhaseSucceeded)) == 1, nil
	})
	// The phases it went through left no series behind.
	if n := seriesIn(ns, phaseGauge); n != 1 {
		t.Errorf("%d ramp_rollout_phase series, want the Succeeded one alone", n)
	}
	if got := testutil.ToFloat64(transitions.WithLabelValues(ns, "web", "StepStarted")); got != 3 {
		t.Errorf("StepStarted transitions = %v, want 3", got)
	}
	if got := testutil.ToFloat64(transitions.WithLabelValues(ns, "web", "Promoted")); got != 1 {
		t.Errorf("Promoted transitions = %v, want 1", got)
	}
	if got := testutil.ToFloat64(analysisResults.WithLabelValues(ns, "web", "error-rate", rampv1.VerdictPassed)); got < 3 {
		t.Errorf("passed analysis checks = %v, want at least one per step", got)
	}
	if n := testutil.CollectAndCount(durations); n == 0 {
		t.Error("no rollout duration observed")
	}
	if got := testutil.ToFloat64(weightGauge.WithLabelValues(ns, "web")); got != 0 {
		t.Errorf("weight after promotion = %v", got)
	}

	// Deleting the Rollout drops its series.
	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "series dropped", func(context.Context) (bool, error) {
		return seriesFor(ns) == 0, nil
	})
}

// seriesFor counts the series of a namespace across ramp's collectors, without creating any.
func seriesFor(ns string) int {
	return seriesIn(ns, phaseGauge, weightGauge, stepGauge, transitions, analysisResults, analysisValue)
}

// seriesIn counts the series of a namespace in collectors cs, without creating any.
func seriesIn(ns string, cs ...prometheus.Collector) int {
	n := 0
	for _, c := range cs {
		ch := make(chan prometheus.Metric, 1024)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if m.Write(&d) != nil {
				continue
			}
			for _, l := range d.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n
}

// A Rollout has one phase series, at 1, labelled with the phase it is in: going through every
// phase (Stalled too) leaves no series of a phase it left, and forget drops it.
func TestPhaseGaugeIsOneSeriesPerRollout(t *testing.T) {
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "metrics-unit", Name: "web"}}
	record(ro, nil, nil, time.Now())
	if n := seriesIn(ro.Namespace, phaseGauge); n != 0 {
		t.Errorf("no phase yet: %d phase series, want none", n)
	}
	all := []string{rampv1.PhaseInitializing, rampv1.PhaseStalled, rampv1.PhaseInitializing, rampv1.PhaseIdle,
		rampv1.PhaseProgressing, rampv1.PhasePaused, rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting,
		rampv1.PhaseSucceeded, rampv1.PhaseProgressing, rampv1.PhaseRollingBack, rampv1.PhaseFailed, rampv1.PhaseIdle}
	for _, p := range all {
		ro.Status.Phase = p
		record(ro, nil, nil, time.Now())
		if n := seriesIn(ro.Namespace, phaseGauge); n != 1 {
			t.Errorf("in %s: %d phase series, want 1", p, n)
		}
		if got := testutil.ToFloat64(phaseGauge.WithLabelValues(ro.Namespace, ro.Name, p)); got != 1 {
			t.Errorf("ramp_rollout_phase{phase=%q} = %v, want 1", p, got)
		}
	}
	forget(ro)
	if n := seriesFor(ro.Namespace); n != 0 {
		t.Errorf("%d series left after forget", n)
	}
}
