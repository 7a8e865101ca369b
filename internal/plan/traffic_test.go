package plan

import (
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func mstep(percent float64, p *rampv1.Pause) rampv1.CanaryStep {
	return rampv1.CanaryStep{Mirror: &rampv1.TrafficMirror{Percentage: percent}, Pause: p}
}

// mirrorSteps: mirror 20% (5m), 10%, mirror 50% (5m), 100%.
var mirrorSteps = withSteps(mstep(20, pauseFor(5*time.Minute)), cstep(10, nil), mstep(50, pauseFor(5*time.Minute)), cstep(100, nil))

func routingMirror(w int32, mirror float64) obsOpt {
	return func(o *Observation) { o.Routing = &ObservedRouting{CanaryWeight: w, Mirror: mirror} }
}

func mirroring(m float64) func(*Desired) { return func(d *Desired) { d.Mirror = m } }

func withSticky() roOpt {
	return func(ro *rampv1.Rollout) { ro.Spec.Strategy.Canary.StickySessions = &rampv1.StickySessions{} }
}

func TestStepsOfMirror(t *testing.T) {
	ro := newRollout(mirrorSteps)
	var got []step
	for _, s := range stepsOf(&ro.Spec) {
		got = append(got, step{weight: s.weight, mirror: s.mirror})
	}
	want := []step{{weight: 0, mirror: 20}, {weight: 10}, {weight: 10, mirror: 50}, {weight: 100}}
	equalSteps(t, got, want)
	d := &decider{spec: &ro.Spec, steps: stepsOf(&ro.Spec)}
	if got, want := d.planText(), "canary mirror 20% → 10% → mirror 50% → 100%"; got != want {
		t.Errorf("planText %q, want %q", got, want)
	}
	for _, tc := range []struct {
		s    step
		want int32
	}{{step{weight: 0, mirror: 20}, 20}, {step{weight: 10, mirror: 0.5}, 10}, {step{weight: 0, mirror: 0.5}, 1}, {step{weight: 30, mirror: 50}, 50}} {
		if got := tc.s.share(); got != tc.want {
			t.Errorf("share of %+v = %d, want %d", tc.s, got, tc.want)
		}
	}
}

func equalSteps(t *testing.T, got, want []step) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("steps %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
}

func TestDecideMirror(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "mirror step: the canary is sized for the mirrored share before anything is mirrored",
			ro:   newRollout(mirrorSteps, inRollout(progressing, scaling, 1, 0, ago(time.Second))),
			obs:  observe(t0, canaryReady(1)),
			want: want{phase: progressing, stage: scaling, step: 1, weight: 0, desired: dRun(2, 0, false),
				requeue: 10*time.Minute - time.Second},
		},
		{
			name: "mirror step: canary ready: the step holds, mirroring 20% with no weight",
			ro:   newRollout(mirrorSteps, inRollout(progressing, scaling, 1, 0, ago(time.Second))),
			obs:  observe(t0, canaryReady(2)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 0, events: []string{"StepStarted"},
				desired: with(dRun(2, 0, true), mirroring(20)), order: &applyOrder{render: true},
				// The pause counts from when the mirror is routed, not from now.
				requeue: DefaultConfig().RoutingGrace, check: messageHas("step 1/4: 0% to canary, 20% mirrored to canary")},
		},
		{
			name: "mirror step: the pause does not start before the mirror is routed",
			ro:   newRollout(mirrorSteps, inRollout(progressing, holding, 1, 0, ago(time.Hour))),
			obs:  observe(t0, canaryReady(2), routing(0)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 0, desired: with(dRun(2, 0, true), mirroring(20)),
				check: messageHas("waiting for the VirtualService to route 0% to the canary and mirror 20% to it")},
		},
		{
			name: "mirror step routed, pause over: the next step; the mirror goes before the canary shrinks",
			ro:   newRollout(mirrorSteps, inRollout(progressing, holding, 1, 0, ago(5*time.Minute))),
			obs:  observe(t0, canaryReady(2), routingMirror(0, 20)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 10, events: []string{"StepStarted"},
				desired: dRun(1, 10, true), order: &applyOrder{render: true, routeFirst: true}, requeue: DefaultConfig().RoutingGrace},
		},
		{
			name: "mirror step after a weight: the weight stays, 50% mirrored",
			ro:   newRollout(mirrorSteps, inRollout(progressing, scaling, 3, 10, ago(time.Second))),
			obs:  observe(t0, canaryReady(5), routing(10)),
			want: want{phase: progressing, stage: holding, step: 3, weight: 10, events: []string{"StepStarted"},
				desired: with(dRun(5, 10, true), mirroring(50)), requeue: DefaultConfig().RoutingGrace},
		},
		{
			name: "mirror step paused by a request: still mirrored",
			ro:   newRollout(mirrorSteps, inRollout(progressing, holding, 3, 10, ago(time.Minute))),
			obs:  observe(t0, canaryReady(5), routingMirror(10, 50), requests(Requests{Paused: true})),
			want: want{phase: rampv1.PhasePaused, stage: holding, step: 3, weight: 10, events: []string{"Paused"},
				desired: with(dRun(5, 10, true), mirroring(50))},
		},
		{
			name: "mirror step fails its analysis: rolled back, the mirror removed before the canary is scaled to zero",
			ro:   newRollout(mirrorSteps, withAnalysis(time.Minute, 1, 0), inRollout(progressing, holding, 1, 0, ago(5*time.Minute))),
			obs:  observe(t0, canaryReady(2), routingMirror(0, 20), verdict(rampv1.VerdictFailed)),
			want: want{phase: rampv1.PhaseFailed, stage: holding, step: 1, weight: 0, events: []string{"AnalysisFailed", "AnalysisFailed", "RolledBack"},
				desired: &Desired{TargetPaused: true, StablePodTemplateHash: stableHash}, order: &applyOrder{routeFirst: true},
				check: counters(1, 0)},
		},
	})
}

func TestDecideSticky(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "sticky: on while a step holds",
			ro:   newRollout(pausedSteps, withSticky(), inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, requeue: 4 * time.Minute,
				desired: with(dRun(1, 5, true), func(d *Desired) { d.Sticky = true })},
		},
		{
			name: "sticky: not before the canary has pods of the revision",
			ro:   newRollout(pausedSteps, withSticky(), inRollout(progressing, scaling, 1, 0, ago(time.Second))),
			obs:  observe(t0),
			want: want{phase: progressing, stage: scaling, step: 1, weight: 0, desired: dRun(1, 0, false), requeue: 10*time.Minute - time.Second},
		},
		{
			name: "sticky: off when routing back to stable, the sticky route removed before the canary shrinks",
			ro:   newRollout(pausedSteps, withSticky(), inRollout(promoting, toStable, 3, 0, ago(time.Second)), withStatus(func(st *rampv1.RolloutStatus) { st.StablePodTemplateHash = newHash })),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), stableSubset(newHash), func(o *Observation) { o.Routing = &ObservedRouting{CanaryWeight: 100, HeaderRoute: true, Sticky: true} }),
			want: want{phase: promoting, stage: toStable, step: 3, weight: 0,
				desired: with(dRun(10, 0, false), func(d *Desired) { d.StablePodTemplateHash = newHash }), order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "sticky: off on rollback",
			ro: newRollout(pausedSteps, withSticky(), inRollout(rollingBack, holding, 1, 0, ago(time.Second)),
				withStatus(func(st *rampv1.RolloutStatus) { st.Message = "rolling back: aborted" })),
			obs:  observe(t0, canaryReady(1), func(o *Observation) { o.Routing = &ObservedRouting{CanaryWeight: 5, Sticky: true} }),
			want: want{phase: rollingBack, stage: holding, step: 1, weight: 0, desired: dRun(1, 0, false), order: &applyOrder{render: true, routeFirst: true}},
		},
	})
}

// Blue/green with a mirror: the preview mirrors while it holds; the canary is at full size
// anyway.
func TestDecideBlueGreenMirror(t *testing.T) {
	bgMirror := func(ro *rampv1.Rollout) {
		withBlueGreen(pauseFor(5 * time.Minute))(ro)
		ro.Spec.Strategy.BlueGreen.Mirror = &rampv1.TrafficMirror{Percentage: 100}
	}
	runCases(t, []tcase{
		{
			name: "blue/green mirror: the preview holds, mirroring all traffic",
			ro:   newRollout(bgMirror, inRollout(progressing, holding, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10), routingMirror(0, 100)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 0, requeue: 4 * time.Minute,
				desired: with(dRun(10, 0, true), mirroring(100))},
		},
		{
			name: "blue/green mirror: the pause waits for the mirror",
			ro:   newRollout(bgMirror, inRollout(progressing, holding, 1, 0, ago(time.Hour))),
			obs:  observe(t0, canaryReady(10), routing(0)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 0,
				desired: with(dRun(10, 0, true), mirroring(100)), check: messageHas("100% of live traffic mirrored to it; waiting for the VirtualService to route 0% to the canary and mirror 100% to it")},
		},
	})
}
