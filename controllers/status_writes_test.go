package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// A status write is a request on every pass that makes one, and at 1,000 rollouts the largest
// share of ramp's API requests. A release whose routes land promptly writes each transition
// once: no write changes only the message, except to name a VirtualService that has not
// routed a step within the routing grace.
func TestReleaseWritesNoMessageOnlyStatus(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5},
		rampv1.CanaryStep{SetWeight: 25, Pause: pauseFor(time.Second)},
		rampv1.CanaryStep{SetWeight: 100})
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	must(t, tl.Sync(ctx))

	versions := tl.Rollouts(ro.Name)
	writes := 0
	for i := 1; i < len(versions); i++ {
		before, after := versions[i-1].Status, versions[i].Status
		if equality.Semantic.DeepEqual(before, after) {
			continue // a spec or metadata change
		}
		writes++
		if !equality.Semantic.DeepEqual(withoutMessages(before), withoutMessages(after)) {
			continue
		}
		if strings.Contains(after.Message, "waiting for the VirtualService") {
			continue // the route was late: saying so is the point of the write
		}
		t.Errorf("status write %d changed only the message: %q -> %q", i, before.Message, after.Message)
	}
	t.Logf("%d status writes from creation to promotion", writes)
}

// withoutMessages is st with its message and its conditions' messages cleared.
func withoutMessages(st rampv1.RolloutStatus) *rampv1.RolloutStatus {
	out := st.DeepCopy()
	out.Message = ""
	for i := range out.Conditions {
		out.Conditions[i].Message = ""
	}
	return out
}
