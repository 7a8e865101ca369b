package controllers

import (
	"context"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// router moves a Rollout's traffic with one mesh's routing objects. The reconciler reads and
// writes routing only through it, so another mesh (the Gateway API's HTTPRoute) is another
// router in a file of its own, chosen by routerFor, not a branch in the reconciler.
type router interface {
	// observe reads the live routing objects into w: w.obs.Routing (or RoutingUnreadable when
	// ramp cannot read them), w.obs.StableSubset, and a Blocker when a referenced object is
	// missing or unusable. It returns the objects of the names ramp needs that this Rollout
	// did not create (see foreignObject).
	observe(ctx context.Context, ro *rampv1.Rollout, w *world) (foreign []string, err error)
	// route makes the routing objects route as d says: the subsets, then the routes. Objects
	// already as desired are not written.
	route(ctx context.Context, ro *rampv1.Rollout, w *world, d *plan.Desired) error
	// unroute, first on deletion, sends the traffic back as it went before ramp.
	unroute(ctx context.Context, ro *rampv1.Rollout) error
	// cleanup, last on deletion, deletes the routing objects ramp created that remain.
	cleanup(ctx context.Context, ro *rampv1.Rollout) error
}

// routerFor is the router of ro: the Gateway API's (an HTTPRoute and two backend Services)
// when spec.service.gatewayAPI is set, otherwise Istio's (a generated or a referenced
// VirtualService, and a generated DestinationRule).
func (r *RolloutReconciler) routerFor(ro *rampv1.Rollout) router {
	if ro.Spec.Service.GatewayAPI != nil {
		return gatewayRouter{r}
	}
	return istioRouter{r}
}
