package controllers

import (
	"context"
	"errors"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/gatewayapi"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
)

// gatewayRouter routes with the Gateway API (spec.service.gatewayAPI): an HTTPRoute named
// after the Rollout, or the named rules of the one httpRouteRef names (Git's), whose
// backendRefs weigh the Services <service>-stable and <service>-canary, created by ramp. The
// stable Service's selector plays the DestinationRule's stable subset: its pod-template-hash
// is the stable ReplicaSet's.
type gatewayRouter struct{ r *RolloutReconciler }

// Reasons of the Stalled condition for a cluster the Gateway API router cannot route in.
const (
	ReasonGatewayAPINotInstalled = "GatewayAPINotInstalled"
	ReasonServiceWithoutSelector = "ServiceWithoutSelector"
	ReasonHTTPRouteNotFound      = "HTTPRouteNotFound"
	ReasonHTTPRouteInvalid       = "HTTPRouteRuleInvalid"
)

func (gr gatewayRouter) observe(ctx context.Context, ro *rampv1.Rollout, w *world) ([]string, error) {
	r := gr.r
	block := func(reason, msg string) {
		if w.obs.Blocked == nil { // what blocked first says more
			w.obs.Blocked = &plan.Blocker{Reason: reason, Message: msg}
		}
	}
	var foreign []string
	ref := ro.Spec.Service.GatewayAPI.HTTPRouteRef
	key := client.ObjectKeyFromObject(ro)
	if ref != nil {
		key.Name = ref.Name
	}
	hr := &gwapiv1.HTTPRoute{}
	found, err := r.getIfExists(ctx, key, hr)
	switch {
	case apimeta.IsNoMatchError(err):
		block(ReasonGatewayAPINotInstalled, "spec.service.gatewayAPI: the cluster has no HTTPRoute (gateway.networking.k8s.io/v1): install the Gateway API CRDs (standard channel) and restart ramp, which watches HTTPRoutes only when they exist at its start, or remove gatewayAPI to route with Istio")
		return nil, nil
	case err != nil:
		return nil, err
	case ref != nil:
		gr.observeReferenced(ro, w, found, hr, block)
	case found && !metav1.IsControlledBy(hr, ro):
		msg, err := r.foreignObject(ctx, gatewayapi.KindHTTPRoute, hr)
		if err != nil {
			return nil, err
		}
		foreign = append(foreign, msg+": delete or rename that HTTPRoute, or give this Rollout another name")
	case found:
		w.hr = hr
		if rt, err := gatewayapi.ObservedRouting(ro, hr); err == nil {
			w.obs.Routing = &plan.ObservedRouting{CanaryWeight: rt.CanaryWeight, HeaderRoute: rt.HeaderRoute, Mirror: rt.Mirror}
		} else {
			w.obs.RoutingUnreadable = true
		}
	}

	for _, s := range []struct {
		name string
		live **corev1.Service
	}{{gatewayapi.StableServiceName(ro), &w.stableSvc}, {gatewayapi.CanaryServiceName(ro), &w.canarySvc}} {
		svc := &corev1.Service{}
		if found, err := r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: s.name}, svc); err != nil {
			return nil, err
		} else if !found {
			continue
		}
		if !metav1.IsControlledBy(svc, ro) {
			msg, err := r.foreignObject(ctx, "Service", svc)
			if err != nil {
				return nil, err
			}
			foreign = append(foreign, msg+": ramp needs that name for the Gateway API router's backends; delete or rename that Service")
			continue
		}
		*s.live = svc
	}
	if w.stableSvc != nil {
		w.obs.StableSubset = gatewayapi.ObservedStableHash(w.stableSvc)
	}

	// The Service in front of the target: the backends copy its selector and ports (observe
	// blocks the Rollout when it is missing).
	svc := &corev1.Service{}
	if found, err := r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.ServiceName()}, svc); err != nil {
		return nil, err
	} else if found {
		w.svc = svc
		if len(svc.Spec.Selector) == 0 {
			block(ReasonServiceWithoutSelector, fmt.Sprintf(
				"Service %q has no selector: ramp's Gateway API router (spec.service.gatewayAPI) creates %q and %q by adding a label to it; give it a selector",
				svc.Name, gatewayapi.StableServiceName(ro), gatewayapi.CanaryServiceName(ro)))
		}
	}
	return foreign, nil
}

// observeReferenced reads the HTTPRoute spec.service.gatewayAPI.httpRouteRef names. One that
// is missing, or whose named rules ramp cannot weight, blocks the Rollout with a message
// naming the field; ramp changes nothing until it is fixed (the HTTPRoute is watched).
func (gr gatewayRouter) observeReferenced(ro *rampv1.Rollout, w *world, found bool, hr *gwapiv1.HTTPRoute, block func(reason, msg string)) {
	ref := ro.Spec.Service.GatewayAPI.HTTPRouteRef
	if !found {
		block(ReasonHTTPRouteNotFound, fmt.Sprintf(
			"spec.service.gatewayAPI.httpRouteRef.name: HTTPRoute %q not found in namespace %q: create it (ramp routes through it and never creates it), or remove httpRouteRef to have ramp generate one",
			ref.Name, ro.Namespace))
		return
	}
	w.refHR = hr
	rt, err := gatewayapi.ObservedReferencedRouting(ro, hr)
	var refErr *istio.RefError
	switch {
	case errors.As(err, &refErr):
		block(ReasonHTTPRouteInvalid, refErr.Error()+"; ramp changes nothing until then")
	case err != nil:
		w.obs.RoutingUnreadable = true
	default:
		w.obs.Routing = &plan.ObservedRouting{CanaryWeight: rt.CanaryWeight, HeaderRoute: rt.HeaderRoute, Mirror: rt.Mirror}
	}
}

func (gr gatewayRouter) route(ctx context.Context, ro *rampv1.Rollout, w *world, d *plan.Desired) error {
	r := gr.r
	if w.svc == nil {
		return nil // observe blocked the Rollout
	}
	stable, canary, err := gatewayapi.Services(ro, w.svc, d.StablePodTemplateHash)
	if err != nil {
		return err
	}
	// The backends before the route, as subsets before routes.
	for _, s := range []struct{ live, want *corev1.Service }{{w.stableSvc, stable}, {w.canarySvc, canary}} {
		same := s.live != nil && equality.Semantic.DeepEqual(s.live.Spec.Selector, s.want.Spec.Selector) &&
			equality.Semantic.DeepEqual(s.live.Spec.Ports, s.want.Spec.Ports)
		var live client.Object // a nil *Service would be a non-nil client.Object
		if s.live != nil {
			live = s.live
		}
		if err := r.applyOwned(ctx, live, s.want, same); err != nil {
			return fmt.Errorf("applying Service %q: %w", s.want.Name, err)
		}
	}
	rt := gatewayapi.Routing{CanaryWeight: d.CanaryWeight, HeaderRoute: d.HeaderRoute, Mirror: d.Mirror}
	if ref := ro.Spec.Service.GatewayAPI.HTTPRouteRef; ref != nil {
		if err := r.applyReferencedHTTPRoute(ctx, ro, w.refHR, rt); err != nil {
			return fmt.Errorf("applying HTTPRoute %q (spec.service.gatewayAPI.httpRouteRef): %w", ref.Name, err)
		}
		// An HTTPRoute ramp generated before would route the Service beside Git's.
		if ref.Name != ro.Name {
			if err := r.deleteOwned(ctx, ro, &gwapiv1.HTTPRoute{}, ro.Name); err != nil {
				return err
			}
		}
		return gr.leaveIstio(ctx, ro)
	}
	want := gatewayapi.HTTPRoute(ro, rt)
	var live client.Object
	if w.hr != nil {
		live = w.hr
	}
	same := w.hr != nil && equality.Semantic.DeepEqual(w.hr.Spec, want.Spec)
	if err := r.applyOwned(ctx, live, want, same); err != nil {
		return fmt.Errorf("applying HTTPRoute: %w", err)
	}
	// A Rollout that routed with Istio before: its VirtualService would route the Service's
	// traffic beside the HTTPRoute, to subsets of a DestinationRule that no longer follows
	// the rollout. Both go once the HTTPRoute routes.
	return gr.leaveIstio(ctx, ro)
}

// leaveIstio deletes the VirtualService and DestinationRule Istio's router created for ro.
func (gr gatewayRouter) leaveIstio(ctx context.Context, ro *rampv1.Rollout) error {
	if err := gr.r.deleteOwned(ctx, ro, &networkingv1.VirtualService{}, ro.Name); err != nil {
		return err
	}
	return gr.r.deleteOwned(ctx, ro, &networkingv1.DestinationRule{}, ro.Name)
}

// applyOwned creates want when live is nil, and otherwise server-side applies it over live,
// an object this Rollout created (observe leaves out any other), unless same says its spec
// is as rendered and it has ramp's labels and owner. Forcing takes back only fields someone
// changed on ramp's own object.
func (r *RolloutReconciler) applyOwned(ctx context.Context, live, want client.Object, same bool) error {
	if live == nil {
		return r.create(ctx, want)
	}
	if err := r.ownCreatedFields(ctx, live); err != nil {
		return err
	}
	if same && sameOwners(live, want) && labelsContain(live.GetLabels(), want.GetLabels()) {
		return nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return err
	}
	// Only the fields ramp sets: not the typed object's empty status and creationTimestamp.
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return r.Patch(ctx, u, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership)
}

// applyReferencedHTTPRoute edits the named rules of live, the HTTPRoute ro references, to
// route as rt says, and applies spec.rules alone as ramp's field manager, based on the version
// read: spec.rules is an atomic list in the Gateway API's CRD, so a write in between fails
// with a conflict instead of being overwritten, and every field outside it stays its
// manager's. Nothing is written when live already routes as wanted and ramp co-owns
// spec.rules (see applyReferenced, the VirtualService's counterpart).
func (r *RolloutReconciler) applyReferencedHTTPRoute(ctx context.Context, ro *rampv1.Rollout, live *gwapiv1.HTTPRoute, rt gatewayapi.Routing) error {
	if live == nil {
		return nil // observe blocked the Rollout
	}
	want, err := gatewayapi.EditHTTPRoute(ro, live, rt)
	if err != nil {
		return err
	}
	if gatewayapi.SameRules(live, want) && ownsSpecField(live.ManagedFields, "rules") {
		return nil
	}
	u, err := gatewayapi.ReferencedApplyPatch(want)
	if err != nil {
		return err
	}
	err = r.Patch(ctx, u, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership)
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%w: %v", errWriteRace, err)
	}
	return err
}

// unroute deletes the HTTPRoute: the traffic to the Service goes to all its pods, as before
// ramp. A referenced HTTPRoute stays: its named rules go back to all traffic on
// <service>-stable, without ramp's rules or mirror; since those Services go too, point them at
// the Service in the commit that deletes the Rollout.
func (gr gatewayRouter) unroute(ctx context.Context, ro *rampv1.Rollout) error {
	if g := ro.Spec.Service.GatewayAPI; g != nil && g.HTTPRouteRef != nil {
		ref := g.HTTPRouteRef
		hr := &gwapiv1.HTTPRoute{}
		found, err := gr.r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, hr)
		if apimeta.IsNoMatchError(err) || !found {
			return nil
		} else if err != nil {
			return err
		}
		var refErr *istio.RefError
		if err := gr.r.applyReferencedHTTPRoute(ctx, ro, hr, gatewayapi.Routing{}); err != nil && !errors.As(err, &refErr) {
			return fmt.Errorf("routing HTTPRoute %q back to stable: %w", ref.Name, err)
		}
		return nil
	}
	err := gr.r.deleteOwned(ctx, ro, &gwapiv1.HTTPRoute{}, ro.Name)
	if apimeta.IsNoMatchError(err) {
		return nil // no Gateway API in the cluster: ramp created nothing
	}
	return err
}

// cleanup deletes the stable and canary Services ramp created.
func (gr gatewayRouter) cleanup(ctx context.Context, ro *rampv1.Rollout) error {
	for _, name := range []string{gatewayapi.StableServiceName(ro), gatewayapi.CanaryServiceName(ro)} {
		if err := gr.r.deleteOwned(ctx, ro, &corev1.Service{}, name); err != nil {
			return err
		}
	}
	return nil
}
