package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// A header regex that is not RE2 passes admission (CEL cannot compile it) but Istio rejects
// the VirtualService: ramp stalls naming the field, writes no routing, and recovers when Git
// fixes it.
func TestInvalidHeaderRegexStallsNamingTheField(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Strategy.Canary.HeaderMatch = &rampv1.HeaderMatch{Name: "x-canary", Regex: ptr.To("(unclosed")}
	must(t, env.Client.Create(ctx, ro))

	waitFor(t, "Stalled condition", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return conditions.IsTrue(ro, meta.StalledCondition) && ro.Status.ObservedGeneration == ro.Generation, nil
	})
	c := conditions.Get(ro, meta.StalledCondition)
	if c.Reason != "InvalidSpec" || !strings.Contains(c.Message, `spec.strategy.canary.headerMatch.regex: Invalid value: "(unclosed"`) ||
		!strings.Contains(c.Message, "missing closing )") {
		t.Fatalf("Stalled condition must name the field, the value and the reason: %+v", c)
	}
	if conditions.IsTrue(ro, meta.ReadyCondition) {
		t.Errorf("a stalled rollout is not Ready: %+v", ro.Status.Conditions)
	}
	if vs, err := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name); err != nil || vs != nil {
		t.Errorf("VirtualService written for an invalid spec (err %v): %v", err, vs)
	}

	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		ro.Spec.Strategy.Canary.HeaderMatch.Regex = ptr.To("^(alice|bob)$")
		return env.Client.Update(ctx, ro)
	}))
	// Ready once the VirtualService and DestinationRule it now writes route all to stable.
	waitRollout(t, ro, "Ready after the fix", func(ro *rampv1.Rollout) bool {
		return ro.Status.Phase == rampv1.PhaseIdle && !conditions.Has(ro, meta.StalledCondition) && conditions.IsTrue(ro, meta.ReadyCondition)
	})
}
