package plan

import (
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Status that tells the truth: what the rollout reports matches the traffic the live objects
// route, and traffic never waits on pods that are gone.
func TestDecideTellsTheTruth(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "idle: not Ready while the VirtualService is missing",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), noRouting()),
			want: want{phase: idle, desired: dSteady(stableHash), summary: notRoutedYet(idle),
				check: func(t *testing.T, d Decision) {
					if !strings.Contains(d.Summary.Message, "waiting for the VirtualService and DestinationRule") {
						t.Errorf("summary message %q", d.Summary.Message)
					}
				}},
		},
		{
			name: "idle: not Ready while the DestinationRule selects other pods",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), stableSubset("h0")),
			want: want{phase: idle, desired: dSteady(stableHash), summary: notRoutedYet(idle)},
		},
		{
			name: "idle: not Ready while the VirtualService sends traffic to the canary",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), routing(5)),
			want: want{phase: idle, desired: dSteady(stableHash), summary: notRoutedYet(idle)},
		},
		{
			name: "holding: the canary lost its pods: traffic back to stable, the step starts over",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(0), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 2, events: []string{"CanaryLost"},
				desired: dRun(3, 0, true), requeue: 10 * time.Minute,
				check: checks(warnings(true), stageStarted(t0), messageHas("ready replicas; all traffic on stable meanwhile"))},
		},
		{
			name: "holding: the canary Deployment was deleted: traffic back to stable, ramp recreates it",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryAbsent(), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 2, events: []string{"CanaryLost"},
				desired: dRun(3, 0, true), requeue: 10 * time.Minute},
		},
		{
			name: "holding: a canary its controller has not observed yet is not lost",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs: observe(t0, routing(25), func(o *Observation) {
				o.Canary = Canary{Exists: true, Revision: newRev, Unobserved: true}
			}),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), requeue: 4 * time.Minute},
		},
		{
			name: "scaling to the next step: the canary lost its pods: the previous step's traffic goes back to stable",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(0), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, events: []string{"CanaryLost"},
				desired: dRun(3, 0, true), requeue: 10 * time.Minute},
		},
		{
			name: "holding: every step waits for its weight in the VirtualService, even without pause or analysis",
			ro:   newRollout(inRollout(progressing, holding, 1, 5, ago(time.Second))),
			obs:  observe(t0, canaryReady(1), routing(0)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: DefaultConfig().RoutingGrace - time.Second, check: messageIs("step 1/3: 5% to canary")},
		},
		{
			name: "holding: a route still missing after the routing grace is named in the message",
			ro:   newRollout(inRollout(progressing, holding, 1, 5, ago(DefaultConfig().RoutingGrace))),
			obs:  observe(t0, canaryReady(1), routing(0)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				check: messageIs("step 1/3: 5% to canary; waiting for the VirtualService to route 5% to the canary")},
		},
		{
			name: "holding: a promote request waits for the step's weight to be routed",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Second))),
			obs:  observe(t0, canaryReady(1), routing(0), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: DefaultConfig().RoutingGrace - time.Second, check: handled(rampv1.HandledRequests{})},
		},
		{
			// Git shrank the steps from [20 40 100] to [20] at 40%: the message says what is routed.
			name: "holding: steps shrunk mid-rollout: the message matches the traffic",
			ro: newRollout(withSteps(cstep(20, untilPromoted())),
				inRollout(progressing, holding, 2, 40, ago(time.Minute))),
			obs: observe(t0, canaryReady(4), routing(40)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 40, desired: dRun(4, 40, true),
				check: messageHas("step 1/1: 40% to canary (the step now says 20%; traffic does not move back mid-rollout); waiting for kubectl ramp promote")},
		},
		{
			name: "blocked: stalls with its own reason and touches nothing",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs: observe(t0, canaryReady(3), routing(25), func(o *Observation) {
				o.Blocked = &Blocker{Reason: "ServiceNotFound", Message: `Service "web" not found`}
			}),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, summary: stalled("ServiceNotFound"),
				check: messageHas(`Service "web" not found`)},
		},
		{
			// A Secret's label is not watched (ramp may not list Secrets): it looks again.
			name: "blocked by what is not watched: comes back after RetryAfter",
			ro:   newRollout(),
			obs: observe(t0, stableTarget(), func(o *Observation) {
				o.Blocked = &Blocker{Reason: "SecretNotMarked", Message: "not marked", RetryAfter: time.Minute}
			}),
			want: want{phase: idle, summary: stalled("SecretNotMarked"), requeue: time.Minute},
		},
		{
			name: "target deleted mid-rollout, no canary pod ready: says what ramp left, touches nothing",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, targetMissing(), canaryReady(0), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, summary: stalled("TargetNotFound"),
				check: messageHas(`Deployment "web" was deleted: no pods serve the stable subset and no canary is ready to take its traffic; ramp keeps VirtualService "web" and DestinationRule "web" and canary Deployment "web-canary"`)},
		},
		{
			name: "target deleted mid-rollout: all traffic to the ready canary, the only pods left",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, targetMissing(), canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, summary: stalled("TargetNotFound"),
				desired: &Desired{TargetPaused: true, TargetUntouched: true, CanaryRevision: newRev, CanaryReplicas: 3, StablePodTemplateHash: stableHash, CanaryWeight: 100},
				check:   messageHas("its pods are gone, so all traffic goes to the canary, the only pods left (3 ready, revision r2, not fully analysed)")},
		},
	})
}

func TestWithApplyFailure(t *testing.T) {
	progressingSummary := Summary{Reconciling: true, Reason: progressing, Message: "step 1/3"}
	for _, c := range []struct {
		name      string
		in        Summary
		msg       string
		permanent bool
		want      Summary
	}{
		{"no failure", progressingSummary, "", false, progressingSummary},
		{"rejected: stalled, not ready", Summary{Ready: true, Reason: idle}, "applying VirtualService \"web\": invalid", true,
			Summary{Stalled: true, Reason: ReasonApplyFailed, Message: "applying VirtualService \"web\": invalid"}},
		{"transient: still reconciling", progressingSummary, "conflict", false,
			Summary{Reconciling: true, Reason: ReasonApplyFailed, Message: "conflict"}},
		{"a stall says more than the failure", Summary{Stalled: true, Reason: "InvalidSpec", Message: "bad"}, "x", true,
			Summary{Stalled: true, Reason: "InvalidSpec", Message: "bad"}},
	} {
		if got := WithApplyFailure(c.in, c.msg, c.permanent); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
