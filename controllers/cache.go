package controllers

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// TrimManagedFields is the manager's cache transform (cache.Options.DefaultTransform): it
// drops an object's managedFields, a third of a cached Deployment's memory, unless they hold
// what ramp still reads from the cache.
//
// The reconciler reads managedFields for these. ownCreatedFields hands the fields ramp wrote
// with a create or a merge patch (manager "ramp", operation Update) to its apply manager:
// such objects keep all their managedFields until that hand-over has happened, so it sees
// exactly what it would without the transform (with no such entry it has nothing to do
// either way). A foreign object's message names its field managers: those are read live,
// metadata only, on that rare path (fieldManagers). A Rollout's say who wrote its pause
// annotation, and a VirtualService's and an HTTPRoute's whether ramp owns its routes (a referenced one): those
// kinds keep them (one object per Rollout, not the Deployments and ReplicaSets that make
// up most of the cache). kubectl-ramp reads them through its own client.
func TrimManagedFields(in any) (any, error) {
	switch in.(type) {
	case *rampv1.Rollout, *networkingv1.VirtualService, *gwapiv1.HTTPRoute:
		return in, nil
	}
	o, err := meta.Accessor(in)
	if err != nil || o.GetManagedFields() == nil || createdFieldsToHandOver(o.GetManagedFields()) {
		return in, nil
	}
	o.SetManagedFields(nil)
	return in, nil
}

// createdFieldsToHandOver reports whether mf has an entry ownCreatedFields would move under
// ramp's apply manager (csaupgrade's criterion: ramp's Update of the main resource).
func createdFieldsToHandOver(mf []metav1.ManagedFieldsEntry) bool {
	for _, e := range mf {
		if e.Manager == FieldManager && e.Operation == metav1.ManagedFieldsOperationUpdate && e.Subresource == "" {
			return true
		}
	}
	return false
}
