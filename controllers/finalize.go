package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// finalize hands the app back as it was before ramp: the routing goes first (ramp's
// VirtualService is deleted, and the Service spreads traffic over its pods as without ramp; a
// referenced VirtualService routes all traffic to stable again), then the canary and the
// DestinationRule, and last ramp releases spec.paused so the target follows Git again.
func (r *RolloutReconciler) finalize(ctx context.Context, ro *rampv1.Rollout) error {
	if !controllerutil.ContainsFinalizer(ro, Finalizer) {
		return nil
	}
	rt := r.routerFor(ro)
	if err := rt.unroute(ctx, ro); err != nil {
		return err
	}
	if err := r.deleteOwned(ctx, ro, &appsv1.Deployment{}, ro.CanaryName()); err != nil {
		return err
	}
	if err := rt.cleanup(ctx, ro); err != nil {
		return err
	}
	// A Rollout that never managed its target (another one did, first) leaves it alone.
	peers, err := r.peers(ctx, ro)
	if err != nil {
		return err
	}
	if plan.FirstPeer(ro.Name, ro.CreationTimestamp.Time, peers) == nil {
		if err := r.releaseTarget(ctx, ro); err != nil {
			return err
		}
	}
	forget(ro)
	controllerutil.RemoveFinalizer(ro, Finalizer)
	// NotFound: a pass on a stale cached copy finds the Rollout already gone; nothing to do.
	return client.IgnoreNotFound(r.Update(ctx, ro))
}

// deleteOwned deletes the object of obj's type and name if this Rollout controls it.
func (r *RolloutReconciler) deleteOwned(ctx context.Context, ro *rampv1.Rollout, obj client.Object, name string) error {
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	// Only what this Rollout created (and controls): an object of that name someone else made
	// is theirs and stays. The UID precondition keeps a replacement made since the read.
	if !metav1.IsControlledBy(obj, ro) {
		return nil
	}
	if err := r.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting %s %q: %w", kindOf(r.Client.Scheme(), obj), name, err)
	}
	return nil
}

// releaseTarget applies an empty configuration as ramp's field manager: ramp gives up
// spec.paused, which nobody else owns, so it is removed and the Deployment resumes.
func (r *RolloutReconciler) releaseTarget(ctx context.Context, ro *rampv1.Rollout) error {
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.TargetRef.Name}, d); err != nil {
		return client.IgnoreNotFound(err)
	}
	if d.DeletionTimestamp != nil {
		return nil // going away: nothing to hand back
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": d.Name, "namespace": d.Namespace},
	}}
	if err := r.Patch(ctx, u, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			// The namespace is being deleted (which rejects apply requests) and the target
			// with it: retrying would only hold the Rollout, and the namespace, until it is gone.
			return nil
		}
		return fmt.Errorf("releasing Deployment %q: %w", d.Name, err)
	}
	// Someone else may hold spec.paused (kubectl rollout pause): leave it to them.
	return nil
}
