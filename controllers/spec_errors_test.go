package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// A cron schedule passes admission as a string; ramp parses it and stalls with a message
// naming the field, then recovers when Git fixes it.
func TestInvalidPromotionWindowStallsNamingTheField(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.PromotionWindows = []rampv1.PromotionWindow{
		{Schedule: "0 9 * * 1-5", Duration: metav1.Duration{Duration: 8 * time.Hour}},
		{Schedule: "0 25 * * *", Duration: metav1.Duration{Duration: time.Hour}},
	}
	must(t, env.Client.Create(ctx, ro))

	waitFor(t, "Stalled condition", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return conditions.IsTrue(ro, meta.StalledCondition) && ro.Status.ObservedGeneration == ro.Generation, nil
	})
	c := conditions.Get(ro, meta.StalledCondition)
	if c.Reason != "InvalidSpec" || !strings.Contains(c.Message, "spec.promotionWindows[1].schedule") || !strings.Contains(c.Message, "25") {
		t.Fatalf("Stalled condition must name the field and the bad value: %+v", c)
	}
	if conditions.IsTrue(ro, meta.ReadyCondition) || conditions.Has(ro, meta.ReconcilingCondition) {
		t.Errorf("a stalled rollout is neither Ready nor Reconciling: %+v", ro.Status.Conditions)
	}
	if ro.Status.Phase != rampv1.PhaseStalled {
		t.Errorf("phase %q, want %s (a blank PHASE column says nothing)", ro.Status.Phase, rampv1.PhaseStalled)
	}

	// Git fixes the schedule: ramp adopts the target and the stall clears.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		ro.Spec.PromotionWindows[1].Schedule = "0 22 * * *"
		return env.Client.Update(ctx, ro)
	}))
	waitRollout(t, ro, "Ready after the fix", func(ro *rampv1.Rollout) bool {
		return ro.Status.Phase == rampv1.PhaseIdle && !conditions.Has(ro, meta.StalledCondition) && conditions.IsTrue(ro, meta.ReadyCondition)
	})
}
