package plan

import (
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// pausedSince: the rollout was paused at.
func pausedSince(at time.Time) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) { st.PausedAt = mtime(at) })
}

func stageStartedAt(at time.Time) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if s := d.Status.StageStartedAt; s == nil || !s.Time.Equal(at) {
			t.Errorf("stageStartedAt = %v, want %v", s, at)
		}
	}
}

func pausedAt(at *time.Time) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		got := d.Status.PausedAt
		if (at == nil) != (got == nil) || (at != nil && !got.Time.Equal(*at)) {
			t.Errorf("pausedAt = %v, want %v", got, at)
		}
	}
}

// Time spent paused does not count towards the step's own pause (nor the progress deadline):
// resume continues the step where the pause found it.
func TestDecidePauseStopsTheStageClock(t *testing.T) {
	now := t0
	runCases(t, []tcase{
		{
			name: "kubectl ramp pause 2 minutes into a 5-minute step: paused, the time recorded",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(2*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Paused: true})),
			want: want{phase: pausedPhase, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), events: []string{"Paused"},
				check: checks(pausedAt(&now), stageStartedAt(ago(2*time.Minute)))},
		},
		{
			name: "still paused: the pause keeps its start",
			ro:   newRollout(pausedSteps, inRollout(pausedPhase, holding, 1, 5, ago(12*time.Minute)), pausedSince(ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Paused: true})),
			want: want{phase: pausedPhase, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				check: pausedAt(ptrTo(ago(10 * time.Minute)))},
		},
		{
			name: "resumed after 10 minutes: the step still holds its remaining 3 minutes",
			ro:   newRollout(pausedSteps, inRollout(pausedPhase, holding, 1, 5, ago(12*time.Minute)), pausedSince(ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), requeue: 3 * time.Minute,
				check: checks(pausedAt(nil), stageStartedAt(ago(2*time.Minute)), messageHas("waiting for pause until"))},
		},
		{
			name: "resumed while scaling: the progress deadline did not run while paused",
			ro:   newRollout(pausedSteps, inRollout(pausedPhase, scaling, 2, 5, ago(30*time.Minute)), pausedSince(ago(25*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 5 * time.Minute,
				check: stageStartedAt(ago(5 * time.Minute))},
		},
		{
			name: "paused with kubectl annotate: the message names the annotation and its writer",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs: observe(t0, canaryReady(1), routing(5),
				requests(Requests{Paused: true, PausedBy: "the annotation ramp.dev/paused (written by kubectl-annotate)"})),
			want: want{phase: pausedPhase, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), events: []string{"Paused"},
				check: messageHas("paused by the annotation ramp.dev/paused (written by kubectl-annotate) at step 1/3")},
		},
	})
}

func targetReplicas(n int32) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) { st.TargetReplicas = n })
}

func replicasNow(n int32) obsOpt { return func(o *Observation) { o.Target.Replicas = n } }

func statusTargetReplicas(n int32) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.TargetReplicas != n {
			t.Errorf("targetReplicas = %d, want %d", d.Status.TargetReplicas, n)
		}
	}
}

// A target that shrinks mid-rollout below what the traffic on stable needs (Git dropped
// spec.replicas and Flux reset it to 1) is warned about, once.
func TestDecideWarnsWhenTheTargetShrinks(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "10 → 1 replicas with 75% on stable: TargetShrunk",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute)), targetReplicas(10)),
			obs:  observe(t0, canaryReady(3), routing(25), replicasNow(1)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"TargetShrunk"},
				desired: dRun(1, 25, true), requeue: 4 * time.Minute,
				check: checks(statusTargetReplicas(1), warnings(true))},
		},
		{
			name: "warned already: no second event",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute)), targetReplicas(1)),
			obs:  observe(t0, canaryReady(3), routing(25), replicasNow(1)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(1, 25, true), requeue: 4 * time.Minute,
				check: statusTargetReplicas(1)},
		},
		{
			name: "an autoscaler's 10 → 8 leaves stable what 75% needs: no warning",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute)), targetReplicas(10)),
			obs:  observe(t0, canaryReady(3), routing(25), replicasNow(8)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(2, 25, true), requeue: 4 * time.Minute,
				check: statusTargetReplicas(10)},
		},
		{
			name: "the target grows: the rollout is sized with its new size",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute)), targetReplicas(10)),
			obs:  observe(t0, canaryReady(3), routing(25), replicasNow(12)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), requeue: 4 * time.Minute,
				check: statusTargetReplicas(12)},
		},
	})
}
