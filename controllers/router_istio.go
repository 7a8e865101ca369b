package controllers

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/fieldowners"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
)

// istioRouter routes with Istio: a DestinationRule ramp generates (the stable and canary
// subsets) and either a VirtualService ramp generates, both named after the Rollout, or the
// VirtualService spec.service.virtualServiceRef names, whose named routes ramp weights.
type istioRouter struct{ r *RolloutReconciler }

// Reasons of the Stalled condition for a referenced VirtualService ramp cannot route with.
const (
	ReasonVirtualServiceNotFound = "VirtualServiceNotFound"
	ReasonVirtualServiceInvalid  = "VirtualServiceRouteInvalid"
)

func (ir istioRouter) observe(ctx context.Context, ro *rampv1.Rollout, w *world) ([]string, error) {
	r := ir.r
	var foreign []string
	key := client.ObjectKeyFromObject(ro)
	if ro.Spec.Service.VirtualServiceRef != nil {
		if err := ir.observeReferenced(ctx, ro, w); err != nil {
			return nil, err
		}
	} else {
		vs := &networkingv1.VirtualService{}
		if found, err := r.getIfExists(ctx, key, vs); err != nil {
			return nil, err
		} else if !found {
			vs = nil
		}
		if vs != nil && !metav1.IsControlledBy(vs, ro) {
			msg, err := r.foreignObject(ctx, istio.KindVirtualService, vs)
			if err != nil {
				return nil, err
			}
			foreign = append(foreign, msg+": delete or rename that VirtualService, or give this Rollout another name")
		} else if w.vs = vs; vs != nil {
			if rt, err := istio.ObservedRouting(vs); err == nil {
				w.obs.Routing = observedRouting(rt)
			} else {
				w.obs.RoutingUnreadable = true
			}
		}
	}
	dr := &networkingv1.DestinationRule{}
	if found, err := r.getIfExists(ctx, key, dr); err != nil {
		return nil, err
	} else if !found {
		dr = nil
	}
	if dr != nil && !metav1.IsControlledBy(dr, ro) && !releasedFrom(dr, ro) {
		msg, err := r.foreignObject(ctx, istio.KindDestinationRule, dr)
		if err != nil {
			return nil, err
		}
		foreign = append(foreign, msg+": delete or rename that DestinationRule, or give this Rollout another name")
	} else if w.dr = dr; dr != nil {
		w.obs.StableSubset = istio.ObservedStableSubset(dr)
	}
	return foreign, nil
}

// observeReferenced reads the VirtualService spec.service.virtualServiceRef names. One that
// is missing, or whose named routes ramp cannot weight, blocks the Rollout with a message
// naming the field; ramp changes nothing until it is fixed (the VirtualService is watched).
func (ir istioRouter) observeReferenced(ctx context.Context, ro *rampv1.Rollout, w *world) error {
	ref := ro.Spec.Service.VirtualServiceRef
	vs := &networkingv1.VirtualService{}
	found, err := ir.r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, vs)
	if err != nil {
		return err
	}
	block := func(reason, msg string) {
		if w.obs.Blocked == nil { // what blocked first says more
			w.obs.Blocked = &plan.Blocker{Reason: reason, Message: msg}
		}
	}
	if !found {
		block(ReasonVirtualServiceNotFound, fmt.Sprintf(
			"spec.service.virtualServiceRef.name: VirtualService %q not found in namespace %q: create it (ramp routes through it and never creates it), or remove virtualServiceRef to have ramp generate one",
			ref.Name, ro.Namespace))
		return nil
	}
	w.refVS = vs
	rt, err := istio.ObservedReferencedRouting(ro, vs)
	var refErr *istio.RefError
	switch {
	case errors.As(err, &refErr):
		block(ReasonVirtualServiceInvalid, refErr.Error()+"; ramp changes nothing until then")
	case err != nil:
		w.obs.RoutingUnreadable = true
	default:
		w.obs.Routing = observedRouting(rt)
	}
	return nil
}

// releasedFrom reports whether dr is the DestinationRule a Rollout of ro's name left behind
// for a VirtualService (releaseDestinationRule): ro adopts it.
func releasedFrom(dr *networkingv1.DestinationRule, ro *rampv1.Rollout) bool {
	return metav1.GetControllerOf(dr) == nil && dr.Annotations[istio.ReleasedFromAnnotation] == ro.Name
}

func observedRouting(rt istio.Routing) *plan.ObservedRouting {
	return &plan.ObservedRouting{CanaryWeight: rt.CanaryWeight, HeaderRoute: rt.HeaderRoute, Mirror: rt.Mirror, Sticky: rt.Sticky != ""}
}

// routing is the istio.Routing of a desired state; the sticky cookie's value is the canary's
// revision, so a cookie from an earlier rollout reaches no canary.
func routing(d *plan.Desired) istio.Routing {
	rt := istio.Routing{CanaryWeight: d.CanaryWeight, HeaderRoute: d.HeaderRoute, Fault: d.Fault, Mirror: d.Mirror}
	if d.Sticky {
		rt.Sticky = d.CanaryRevision
	}
	return rt
}

func (ir istioRouter) route(ctx context.Context, ro *rampv1.Rollout, w *world, d *plan.Desired) error {
	r := ir.r
	dr, err := istio.DestinationRule(ro, d.StablePodTemplateHash)
	if err != nil {
		return err
	}
	if err := r.applyDestinationRule(ctx, w.dr, dr); err != nil {
		return fmt.Errorf("applying DestinationRule: %w", err)
	}
	if ro.Spec.Service.VirtualServiceRef != nil {
		if err := r.applyReferenced(ctx, ro, w.refVS, routing(d)); err != nil {
			return fmt.Errorf("applying VirtualService %q (spec.service.virtualServiceRef): %w", ro.Spec.Service.VirtualServiceRef.Name, err)
		}
		// A VirtualService ramp generated before the Rollout referenced one would bind the
		// same hosts beside it, which Istio does not merge: it goes once the referenced one
		// routes.
		if ro.Spec.Service.VirtualServiceRef.Name != ro.Name {
			if err := r.deleteOwned(ctx, ro, &networkingv1.VirtualService{}, ro.Name); err != nil {
				return err
			}
		}
		return ir.leaveGatewayAPI(ctx, ro)
	}
	if err := r.applyVirtualService(ctx, w.vs, istio.VirtualService(ro, routing(d))); err != nil {
		return fmt.Errorf("applying VirtualService: %w", err)
	}
	return ir.leaveGatewayAPI(ctx, ro)
}

// leaveGatewayAPI deletes, once the VirtualService routes, the objects the Gateway API
// router created for a Rollout that routed with it before (spec.service.gatewayAPI removed):
// the HTTPRoute first, which would route the Service's traffic beside the VirtualService,
// then its backend Services. A referenced HTTPRoute is Git's: its rules are Git's to change.
func (ir istioRouter) leaveGatewayAPI(ctx context.Context, ro *rampv1.Rollout) error {
	if !ir.r.gatewayAPI {
		return nil
	}
	if err := ir.r.deleteOwned(ctx, ro, &gwapiv1.HTTPRoute{}, ro.Name); err != nil {
		return err
	}
	return gatewayRouter(ir).cleanup(ctx, ro)
}

// applyReferenced edits the named routes of live, the VirtualService ro references, to route
// as rt says, and applies spec.http alone as ramp's field manager, based on the version read
// (istio.ReferencedApplyPatch): spec.http is an atomic list in Istio's CRD, so ramp cannot own
// single routes, and a write in between fails with a conflict instead of being overwritten.
// Forcing takes spec.http from the manager that applied it before (Git's, on creation); every
// field outside it stays that manager's. Nothing is written when live already routes as
// wanted and ramp already co-owns spec.http (an apply of an unchanged list only records
// ramp's ownership, so that a GitOps tool told to leave spec.http alone does not remove it).
func (r *RolloutReconciler) applyReferenced(ctx context.Context, ro *rampv1.Rollout, live *networkingv1.VirtualService, rt istio.Routing) error {
	if live == nil {
		return nil // observe blocked the Rollout
	}
	want, err := istio.EditVirtualService(ro, live, rt)
	if err != nil {
		return err
	}
	if proto.Equal(&live.Spec, &want.Spec) && ownsSpecField(live.ManagedFields, "http") {
		return nil
	}
	body, err := istio.ReferencedApplyPatch(want)
	if err != nil {
		return err
	}
	err = r.Patch(ctx, want, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership)
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%w: %v", errWriteRace, err)
	}
	return err
}

// errWriteRace is a write based on a version someone changed since it was read: no failure,
// the next pass reads the new version and edits that.
var errWriteRace = errors.New("changed since read")

// ownsSpecField reports whether ramp's apply manager owns the spec field (e.g. "http") in
// the managedFields mf.
func ownsSpecField(mf []metav1.ManagedFieldsEntry, field string) bool {
	for _, e := range fieldowners.Entries(mf, "spec", field) {
		if e.Manager == FieldManager && e.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

func (ir istioRouter) unroute(ctx context.Context, ro *rampv1.Rollout) error {
	r := ir.r
	ref := ro.Spec.Service.VirtualServiceRef
	if ref == nil {
		return r.deleteOwned(ctx, ro, &networkingv1.VirtualService{}, ro.Name)
	}
	// Git's VirtualService stays; its named routes go back to all traffic on stable, without
	// ramp's routes, mirror or cookie. One ramp cannot read is left as it is.
	vs := &networkingv1.VirtualService{}
	if found, err := r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, vs); err != nil || !found {
		return err
	}
	var refErr *istio.RefError
	if err := r.applyReferenced(ctx, ro, vs, istio.Routing{}); err != nil && !errors.As(err, &refErr) {
		return fmt.Errorf("routing VirtualService %q back to stable: %w", ref.Name, err)
	}
	return nil
}

// cleanup deletes ramp's DestinationRule, unless the referenced VirtualService (Git's) still
// routes to its subsets: deleting it would fail those requests (no such subset), so it is left
// to Git, selecting every pod of the Service (see releaseDestinationRule).
func (ir istioRouter) cleanup(ctx context.Context, ro *rampv1.Rollout) error {
	r := ir.r
	if ref := ro.Spec.Service.VirtualServiceRef; ref != nil {
		vs := &networkingv1.VirtualService{}
		found, err := r.getIfExists(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, vs)
		if err != nil {
			return err
		}
		if found && vs.DeletionTimestamp == nil && istio.UsesSubsets(ro, vs) {
			return ir.releaseDestinationRule(ctx, ro, ref.Name)
		}
	}
	return r.deleteOwned(ctx, ro, &networkingv1.DestinationRule{}, ro.Name)
}

// ReasonDestinationRuleKept is the event of a DestinationRule left behind on deletion.
const ReasonDestinationRuleKept = "DestinationRuleKept"

// releaseDestinationRule applies istio.ReleasedDestinationRule over ramp's DestinationRule:
// no owner (the garbage collector leaves it), both subsets selecting every pod of the Service
// (a pod-template-hash would select nothing after the next release), and an annotation naming
// the Rollout, which adopts it again if it comes back.
func (ir istioRouter) releaseDestinationRule(ctx context.Context, ro *rampv1.Rollout, vsName string) error {
	r := ir.r
	live := &networkingv1.DestinationRule{}
	if found, err := r.getIfExists(ctx, client.ObjectKeyFromObject(ro), live); err != nil || !found || !metav1.IsControlledBy(live, ro) {
		return err
	}
	if err := r.ownCreatedFields(ctx, live); err != nil {
		return err
	}
	want := istio.ReleasedDestinationRule(ro)
	want.UID = live.UID // a replacement made since the read is not ours to change
	body, err := istio.ApplyPatch(want)
	if err != nil {
		return err
	}
	if err := r.Patch(ctx, want, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		return fmt.Errorf("releasing DestinationRule %q: %w", ro.Name, err)
	}
	r.Events.Eventf(ro, nil, corev1.EventTypeNormal, ReasonDestinationRuleKept, "Finalize",
		"kept DestinationRule %q: VirtualService %q routes to its subsets, which now both select every pod of Service %q; delete it once those routes name the Service without a subset",
		ro.Name, vsName, istio.ServiceHost(ro))
	return nil
}
