package analysis

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestClampWindowStaysInsideTheRollout(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }
	for _, c := range []struct {
		name    string
		window  time.Duration
		started *metav1.Time
		want    time.Duration
	}{
		{"no rollout start recorded", time.Minute, nil, time.Minute},
		{"rollout older than the window", time.Minute, at(5 * time.Minute), time.Minute},
		{"rollout younger: range since its start, rounded down", time.Minute, at(12300 * time.Millisecond), 12 * time.Second},
		{"just started: one second", time.Minute, at(0), time.Second},
		{"never longer than asked", 10 * time.Second, at(9500 * time.Millisecond), 9 * time.Second},
	} {
		if got := clampWindow(c.window, c.started, now); got != c.want {
			t.Errorf("%s: clampWindow = %s, want %s", c.name, got, c.want)
		}
	}
}

// The canary workload keeps its name across rollouts: a round right after a new rollout starts
// must not query back into the previous revision's traffic.
func TestRoundQueriesOnlySinceTheRolloutStarted(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	started := metav1.NewTime(now.Add(-20 * time.Second))
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Analysis: &rampv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: time.Minute},
				Prometheus: rampv1.PrometheusSpec{Address: "http://prometheus:9090"},
				Metrics:    []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate}},
			},
		},
		Status: rampv1.RolloutStatus{RolloutStartedAt: &started},
	}
	plans := planRound(ro, mustResolve(ro), now)
	if plans[0].err != nil {
		t.Fatal(plans[0].err)
	}
	for _, q := range []string{plans[0].canary, plans[0].canaryReq} {
		if !strings.Contains(q, "[20s]") || strings.Contains(q, "[1m]") {
			t.Errorf("query must range over the 20s since the rollout started: %s", q)
		}
	}
}

// At a mirror step the canary's requests are copies no caller sees, which only its own proxy
// reports: the built-ins read reporter="destination" there (and charge it no host-less
// failures of the callers'), and reporter="source" at every other step.
func TestMirrorStepsReadTheWorkloadsOwnProxies(t *testing.T) {
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{
				{Mirror: &rampv1.TrafficMirror{Percentage: 50}}, {SetWeight: 10}, {SetWeight: 100}}}},
			Analysis: &rampv1.AnalysisSpec{
				Prometheus: rampv1.PrometheusSpec{Address: "http://prometheus:9090"},
				Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate,
					CompareToStable: &rampv1.Comparison{Tolerance: 10}}},
			},
		},
	}
	for step, want := range map[int32]string{1: `reporter="destination"`, 2: `reporter="source"`} {
		ro.Status.CurrentStep = step
		p := planRound(ro, mustResolve(ro), time.Now())[0]
		if p.err != nil {
			t.Fatal(p.err)
		}
		for _, q := range []string{p.canary, p.canaryReq, p.stable, p.stableReq} {
			if !strings.Contains(q, want) || (step == 1 && strings.Contains(q, "unknown")) {
				t.Errorf("step %d: %s, want %s only", step, q, want)
			}
		}
	}
}
