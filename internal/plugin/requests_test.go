package plugin

import (
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Two requests ignored close together: each gets the reason of the event naming its own
// token, whichever event is newer.
func TestIgnoredReasonIsTheRequestsOwn(t *testing.T) {
	const (
		abortTok   = "2026-03-14T15:09:26.100Z"
		promoteTok = "2026-03-14T15:09:26.2Z"
	)
	evs := []Event{
		{Reason: "RequestIgnored", Time: now, Message: "too late to abort: the target is already being updated to the new revision [ramp.dev/abort=" + abortTok + "]"},
		{Reason: "RequestIgnored", Time: now, Message: "already promoting revision bbbb2222 [ramp.dev/promote=" + promoteTok + "]"},
		// From a controller that did not name requests yet: nobody's outcome.
		{Reason: "RequestIgnored", Time: now.Add(time.Second), Message: "no rollout in progress: nothing to promote or abort"},
		{Reason: "PromoteRequested", Time: now.Add(time.Second), Message: "kubectl ramp promote: step 1/3 done [ramp.dev/promote=" + promoteTok + "]"},
	}
	cases := []struct {
		name, annotation, token string
		why                     string
		ok                      bool
	}{
		{"abort, the older event", rampv1.AnnotationAbort, abortTok, "too late to abort: the target is already being updated to the new revision", true},
		{"promote, the newer event", rampv1.AnnotationPromote, promoteTok, "already promoting revision bbbb2222", true},
		{"promote --full with promote's token", rampv1.AnnotationPromoteFull, promoteTok, "", false},
		{"abort with promote's token", rampv1.AnnotationAbort, promoteTok, "", false},
		{"retry, no event of its own", rampv1.AnnotationRetry, "2026-03-14T15:09:26.3Z", "", false},
		{"a token that prefixes another", rampv1.AnnotationAbort, "2026-03-14T15:09:26.1", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			why, ok := ignoredReason(evs, tc.annotation, tc.token)
			if ok != tc.ok || why != tc.why {
				t.Errorf("got %q, %v; want %q, %v", why, ok, tc.why, tc.ok)
			}
		})
	}
}

// The status message usually starts with the position already.
func TestAtTextSaysThePositionOnce(t *testing.T) {
	cases := []struct {
		name    string
		phase   string
		step    int32
		message string
		want    string
	}{
		{"message starts with the position", rampv1.PhaseProgressing, 3, "step 3/3: 100% to canary; waiting for the pause to end", "step 3/3: 100% to canary; waiting for the pause to end"},
		{"message with another position", rampv1.PhaseProgressing, 3, "step 2/3: 25% to canary", "step 3/3: step 2/3: 25% to canary"},
		{"message without position", rampv1.PhaseProgressing, 2, "waiting for kubectl ramp promote", "step 2/3: waiting for kubectl ramp promote"},
		{"message is the position", rampv1.PhaseProgressing, 1, "step 1/3", "step 1/3"},
		{"no message", rampv1.PhaseProgressing, 1, "", "step 1/3"},
		{"promotion", rampv1.PhasePromoting, 3, "promoting revision bbbb2222: routing all traffic to the canary", "promotion: promoting revision bbbb2222: routing all traffic to the canary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ro := canaryRollout()
			ro.Status = rampv1.RolloutStatus{Phase: tc.phase, CurrentStep: tc.step, Steps: 3, Message: tc.message}
			if got := atText(ro); got != tc.want {
				t.Errorf("atText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStrategyTextPlurals(t *testing.T) {
	cases := []struct {
		steps, windows int
		want           string
	}{
		{1, 0, "canary, 1 step"},
		{2, 1, "canary, 2 steps, 1 promotion window"},
		{4, 2, "canary, 4 steps, 2 promotion windows"},
	}
	for _, tc := range cases {
		spec := rampv1.RolloutSpec{Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{}}}
		for i := range tc.steps {
			spec.Strategy.Canary.Steps = append(spec.Strategy.Canary.Steps, rampv1.CanaryStep{SetWeight: int32(100 * (i + 1) / tc.steps)})
		}
		for range tc.windows {
			spec.PromotionWindows = append(spec.PromotionWindows, rampv1.PromotionWindow{Schedule: "0 9 * * 1-5"})
		}
		if got := strategyText(&spec); got != tc.want {
			t.Errorf("%d steps, %d windows: %q, want %q", tc.steps, tc.windows, got, tc.want)
		}
	}
}
