package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/csaupgrade"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
)

// apply makes the cluster match the desired state in the order the state machine chose
// (Desired.RouteFirst): pause the target, size the canary, subsets before routes, and
// un-pause the target last; or, when traffic leaves the canary, the routes before the canary.
// Objects already as desired are not written.
func (r *RolloutReconciler) apply(ctx context.Context, ro *rampv1.Rollout, w *world, d *plan.Desired) error {
	if d.TargetPaused && !d.TargetUntouched {
		if err := r.setTargetPaused(ctx, w.target, true, d.TargetAsObserved); err != nil {
			return err
		}
	}
	if d.PauseOnly {
		return nil // adoption: nothing else until the pause is seen
	}
	if !d.RouteFirst {
		if err := r.applyCanary(ctx, ro, w, d); err != nil {
			return err
		}
	}
	if err := r.routerFor(ro).route(ctx, ro, w, d); err != nil {
		return err
	}
	if d.RouteFirst {
		if err := r.applyCanary(ctx, ro, w, d); err != nil {
			return err
		}
	}
	if !d.TargetPaused && !d.TargetUntouched {
		return r.setTargetPaused(ctx, w.target, false, d.TargetAsObserved)
	}
	return nil
}

// setTargetPaused owns spec.paused of the target with server-side apply: Git manifests leave
// the field unset, so Flux and Argo CD never fight over it. asObserved (Desired.TargetAsObserved)
// makes the apply carry the resourceVersion observed, which the API server takes as a
// precondition: ramp decided on that version's pod template, so if Git changed it since, the
// write fails (a conflict, and the next pass sees the new template) rather than pause a
// Deployment already rolling it out, or un-pause one onto a revision that was never analysed.
func (r *RolloutReconciler) setTargetPaused(ctx context.Context, target *appsv1.Deployment, paused, asObserved bool) error {
	if target == nil || target.Spec.Paused == paused {
		return nil
	}
	meta := map[string]any{"name": target.Name, "namespace": target.Namespace}
	if asObserved {
		meta["resourceVersion"] = target.ResourceVersion
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": meta,
		"spec":     map[string]any{"paused": paused},
	}}
	if err := r.Patch(ctx, u, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("setting paused=%t on Deployment %q: %w", paused, target.Name, err)
	}
	target.Spec.Paused = paused
	return nil
}

// applyCanary renders the canary Deployment from the target's template when the canary
// must run the target's revision, and otherwise only scales it.
func (r *RolloutReconciler) applyCanary(ctx context.Context, ro *rampv1.Rollout, w *world, d *plan.Desired) error {
	if d.RenderCanary && w.target != nil {
		want, tmpl, err := renderCanary(ro, w.target, d.CanaryReplicas)
		if err != nil {
			return err
		}
		templateRev := revision.Of(tmpl)
		if d.RecreateCanary && w.canary != nil {
			if err := r.deleteCanary(ctx, w.canary); err != nil {
				return err
			}
			w.canary = nil
		}
		if w.canary == nil {
			if err := r.create(ctx, want); err != nil {
				return fmt.Errorf("creating canary Deployment: %w", err)
			}
			return nil
		}
		// A conflict here is the Deployment controller writing the canary since ramp read it
		// (a watch event brings the next pass, which finishes the move): not a failed pass.
		if err := r.ownCreatedFields(ctx, w.canary); err != nil && !apierrors.IsConflict(err) {
			return err
		}
		if canaryUpToDate(w.canary, want, templateRev) {
			return nil
		}
		// w.canary is this Rollout's (observe leaves others out): forcing takes back only
		// fields someone changed on ramp's own object.
		if err := r.Patch(ctx, want, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying canary Deployment: %w", err)
		}
		return r.replaceCanaryTemplate(ctx, want, tmpl, templateRev)
	}
	if w.canary == nil || ptr.Deref(w.canary.Spec.Replicas, 1) == d.CanaryReplicas {
		return nil
	}
	p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, d.CanaryReplicas)))
	if err := r.Patch(ctx, w.canary, p, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("scaling canary Deployment: %w", err)
	}
	return nil
}

// replaceCanaryTemplate puts the rendered pod template back on a canary whose template, as
// ramp's apply left it (applied: the API server's answer), is still not that one. Forcing an
// apply takes back the fields ramp writes, never a field only another manager wrote (an added
// env var, container or annotation): the canary would run, and analysis judge, what no
// revision of the target names. A JSON patch replacing the whole template removes them.
func (r *RolloutReconciler) replaceCanaryTemplate(ctx context.Context, applied *unstructured.Unstructured, tmpl *corev1.PodTemplateSpec, templateRev string) error {
	stored := &corev1.PodTemplateSpec{}
	if raw, ok, _ := unstructured.NestedMap(applied.Object, "spec", "template"); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, stored); err != nil {
			return err
		}
	}
	if revision.Of(stored) == templateRev {
		return nil
	}
	body, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/template", "value": tmpl}})
	if err != nil {
		return err
	}
	if err := r.Patch(ctx, applied, client.RawPatch(types.JSONPatchType, body), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("replacing the pod template of canary Deployment %q, changed by another field manager: %w", applied.GetName(), err)
	}
	return nil
}

// deleteCanary deletes the canary Deployment observed, and only that one: the request is
// conditional on its UID (never an object someone created since under that name) and its
// resourceVersion (never one changed since ramp decided). Its ReplicaSets and pods go in the
// background; the new canary's pods do not match their labels.
func (r *RolloutReconciler) deleteCanary(ctx context.Context, canary *appsv1.Deployment) error {
	err := r.Delete(ctx, canary, client.Preconditions{UID: &canary.UID, ResourceVersion: &canary.ResourceVersion},
		client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting canary Deployment %q to recreate it with the target's new selector: %w", canary.Name, err)
	}
	return nil
}

// canarySelector is the canary Deployment's selector: the target's labels plus the track
// label, so it selects only the canary's pods.
func canarySelector(target *appsv1.Deployment) *metav1.LabelSelector {
	sel := map[string]string{istio.TrackLabel: istio.TrackCanary}
	if target.Spec.Selector != nil {
		for k, v := range target.Spec.Selector.MatchLabels {
			sel[k] = v
		}
	}
	return &metav1.LabelSelector{MatchLabels: sel}
}

// renderCanary builds <target>-canary: the target's pod template plus the track label, so
// the DestinationRule's canary subset selects exactly its pods. It also returns that
// template, which the canary stores as is when nobody edited it (the target's comes
// defaulted from the API server, so defaulting changes neither).
func renderCanary(ro *rampv1.Rollout, target *appsv1.Deployment, replicas int32) (*unstructured.Unstructured, *corev1.PodTemplateSpec, error) {
	tmpl := target.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[istio.TrackLabel] = istio.TrackCanary
	dep := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ro.CanaryName(),
			Namespace: ro.Namespace,
			Labels: map[string]string{
				istio.ManagedByLabel: istio.ManagedByValue,
				istio.RolloutLabel:   ro.Name,
				istio.TrackLabel:     istio.TrackCanary,
			},
			Annotations: map[string]string{revision.Annotation: revision.Of(&target.Spec.Template)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: rampv1.GroupVersion.String(), Kind: "Rollout", Name: ro.Name, UID: ro.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:        ptr.To(replicas),
			Selector:        canarySelector(target),
			Template:        *tmpl,
			MinReadySeconds: target.Spec.MinReadySeconds,
		},
	}
	// Through JSON so only set fields are applied (no zero-valued status or strategy).
	b, err := json.Marshal(dep)
	if err != nil {
		return nil, nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, nil, err
	}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "strategy")
	return u, tmpl, nil
}

// canaryUpToDate compares what ramp decides (revision, replicas) and the revision of the pod
// template it renders (templateRev) rather than whole objects, which the API server defaults:
// a hand edit of the canary's template (an image, an env var) makes the canary run something
// other than the revision its annotation names, and analysis would judge that.
func canaryUpToDate(live *appsv1.Deployment, want *unstructured.Unstructured, templateRev string) bool {
	rev, _, _ := unstructured.NestedString(want.Object, "metadata", "annotations", revision.Annotation)
	replicas, _, _ := unstructured.NestedInt64(want.Object, "spec", "replicas")
	return live.Annotations[revision.Annotation] == rev && int64(ptr.Deref(live.Spec.Replicas, 1)) == replicas &&
		templateRevision(live.Annotations, &live.Spec.Template) == templateRev
}

// applyVirtualService and applyDestinationRule create the object when it does not exist, and
// server-side apply one this Rollout controls (observe leaves out any other: live is nil or
// ramp's) unless it already has the rendered spec, labels and owner.
func (r *RolloutReconciler) applyVirtualService(ctx context.Context, live, want *networkingv1.VirtualService) error {
	if live == nil {
		return r.create(ctx, want)
	}
	return r.applyIstio(ctx, live, want, proto.Equal(&live.Spec, &want.Spec))
}

func (r *RolloutReconciler) applyDestinationRule(ctx context.Context, live, want *networkingv1.DestinationRule) error {
	if live == nil {
		return r.create(ctx, want)
	}
	return r.applyIstio(ctx, live, want, proto.Equal(&live.Spec, &want.Spec))
}

// applyIstio applies want over live, an object this Rollout created, with Istio's apply
// configuration (istio.ApplyPatch). Forcing takes back only fields someone changed on ramp's
// own object.
func (r *RolloutReconciler) applyIstio(ctx context.Context, live, want client.Object, sameSpec bool) error {
	if err := r.ownCreatedFields(ctx, live); err != nil {
		return err
	}
	if sameSpec && sameOwners(live, want) && labelsContain(live.GetLabels(), want.GetLabels()) {
		return nil
	}
	body, err := istio.ApplyPatch(want)
	if err != nil {
		return err
	}
	return r.Patch(ctx, want, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership)
}

// create makes an object ramp needs that did not exist when observed. A Create, never an
// apply: if someone else created that name meanwhile it fails with AlreadyExists instead of
// taking their object over, and the next pass reports the object as foreign.
func (r *RolloutReconciler) create(ctx context.Context, obj client.Object) error {
	if err := r.Create(ctx, obj, client.FieldOwner(FieldManager)); err != nil {
		return err
	}
	// Another writer may come first (the Deployment controller writes a new Deployment at
	// once): then the next pass, which reads the object as it is, finishes the move.
	if err := r.ownCreatedFields(ctx, obj); err != nil && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// ownCreatedFields hands the fields ramp's Create wrote (manager "ramp", operation Update) to
// ramp's apply manager, so later applies own them alone and a field ramp stops writing (a
// gateway, a traffic policy) is removed rather than kept by the creation's manager.
func (r *RolloutReconciler) ownCreatedFields(ctx context.Context, obj client.Object) error {
	p, err := csaupgrade.UpgradeManagedFieldsPatch(obj, sets.New(FieldManager), FieldManager)
	if err != nil || p == nil {
		return err
	}
	// The patch carries obj's resourceVersion: it fails rather than overwrite newer managedFields.
	if err := r.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, p)); err != nil {
		return fmt.Errorf("taking the fields of %s %q under ramp's apply manager: %w", kindOf(r.Client.Scheme(), obj), obj.GetName(), err)
	}
	return nil
}

// kindOf names obj's kind for messages.
func kindOf(s *runtime.Scheme, obj client.Object) string {
	if gvk, err := apiutil.GVKForObject(obj, s); err == nil {
		return gvk.Kind
	}
	return fmt.Sprintf("%T", obj)
}

func sameOwners(a, b metav1.Object) bool {
	for _, want := range b.GetOwnerReferences() {
		found := false
		for _, have := range a.GetOwnerReferences() {
			if have.UID == want.UID {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func labelsContain(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
