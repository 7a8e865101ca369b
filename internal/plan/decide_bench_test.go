package plan

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// The passes a reconciler makes most often, besides the held analysed step BenchmarkDecide
// covers: an idle rollout whose target did not change (every Deployment status event), a
// release, a canary that became ready, promotion's VirtualService check, a failed round.
// The fixtures are built here, independent of the table tests' helpers.

func benchRollout(st rampv1.RolloutStatus) *rampv1.Rollout {
	f := func(v float64) *float64 { return &v }
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 3},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 8080},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps: []rampv1.CanaryStep{{SetWeight: 5, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: time.Minute}}}, {SetWeight: 25}, {SetWeight: 100}},
			}},
			Analysis: &rampv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: time.Minute},
				Prometheus: rampv1.PrometheusSpec{Address: "http://prometheus:9090"},
				Metrics: []rampv1.Metric{
					{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: f(1)}},
					{Name: "latency", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: &rampv1.ThresholdRange{Max: f(500)}},
				},
			},
		},
		Status: st,
	}
}

func BenchmarkDecidePasses(b *testing.B) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.MicroTime { t := metav1.NewMicroTime(now.Add(-d)); return &t }
	started := &metav1.Time{Time: now.Add(-10 * time.Minute)}
	target := func(rev string, rolledOut bool) Target {
		return Target{Exists: true, Revision: rev, Replicas: 4, Paused: true, RolledOut: rolledOut, PodTemplateHash: "hash-" + rev}
	}
	idle := rampv1.RolloutStatus{Phase: rampv1.PhaseIdle, StableRevision: "v1", StablePodTemplateHash: "hash-v1", ObservedGeneration: 3}
	inRollout := func(phase, stage string, step, weight int32) rampv1.RolloutStatus {
		st := idle
		st.Phase, st.Stage, st.CurrentStep, st.Steps, st.CanaryWeight = phase, stage, step, 3, weight
		st.CanaryRevision, st.RolloutStartedAt, st.StageStartedAt = "v2", started, at(30*time.Second)
		return st
	}
	failedRound := &AnalysisResult{Verdict: rampv1.VerdictFailed, Reason: "error-rate 8.3 > 1", Metrics: []rampv1.MetricResult{
		{Name: "error-rate", Verdict: rampv1.VerdictFailed, Value: "8.3", Threshold: "<= 1"},
		{Name: "latency", Verdict: rampv1.VerdictPassed, Value: "120", Threshold: "<= 500"},
	}}
	holding := inRollout(rampv1.PhaseProgressing, StageHolding, 2, 25)
	holding.StageStartedAt = at(2 * time.Minute)
	cases := []struct {
		name  string
		ro    *rampv1.Rollout
		obs   Observation
		phase string
	}{
		{"idle-unchanged", benchRollout(idle),
			Observation{Now: now, Target: target("v1", true), Routing: &ObservedRouting{}, WindowOpen: true}, rampv1.PhaseIdle},
		{"release", benchRollout(idle),
			Observation{Now: now, Target: target("v2", false), Routing: &ObservedRouting{}, WindowOpen: true}, rampv1.PhaseProgressing},
		{"canary-ready", benchRollout(inRollout(rampv1.PhaseProgressing, StageScalingCanary, 1, 0)),
			Observation{Now: now, Target: target("v2", false), Canary: Canary{Exists: true, Revision: "v2", ReadyReplicas: 1}, Routing: &ObservedRouting{}, WindowOpen: true}, rampv1.PhaseProgressing},
		{"promotion-routed", benchRollout(inRollout(rampv1.PhasePromoting, StageRoutingToCanary, 3, 100)),
			Observation{Now: now, Target: target("v2", false), Canary: Canary{Exists: true, Revision: "v2", ReadyReplicas: 4}, Routing: &ObservedRouting{CanaryWeight: 100}, WindowOpen: true}, rampv1.PhasePromoting},
		{"failed-round", func() *rampv1.Rollout {
			ro := benchRollout(holding)
			ro.Status.FailedChecks = 1
			return ro
		}(),
			Observation{Now: now, Target: target("v2", false), Canary: Canary{Exists: true, Revision: "v2", ReadyReplicas: 1}, Routing: &ObservedRouting{CanaryWeight: 25}, Analysis: failedRound, WindowOpen: true}, rampv1.PhaseRollingBack},
	}
	cfg := DefaultConfig()
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if got := Decide(cfg, c.ro, c.obs).Status.Phase; got != c.phase {
				b.Fatalf("phase %s, want %s", got, c.phase)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = Decide(cfg, c.ro, c.obs)
			}
		})
	}
}

func BenchmarkAnalysisDue(b *testing.B) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	started := metav1.NewMicroTime(now.Add(-90 * time.Second))
	last := metav1.NewMicroTime(now.Add(-30 * time.Second))
	ro := benchRollout(rampv1.RolloutStatus{Phase: rampv1.PhaseProgressing, Stage: StageHolding, CurrentStep: 2, Steps: 3,
		CanaryWeight: 25, StageStartedAt: &started, LastAnalysisTime: &last})
	b.ReportAllocs()
	for b.Loop() {
		if AnalysisDue(ro, false, now) {
			b.Fatal("due 30s after the last round of a 1m interval")
		}
	}
}
