package controllers

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/revision"
)

// CacheTransform is the manager's cache transform (cache.Options.DefaultTransform): a
// ReplicaSet or canary Deployment keeps the revision of its pod template instead of the
// template (TrimReplicaSet, TrimCanary), Deployments and Services no client-side apply record
// (trimLastApplied), and every object its managedFields only where ramp reads them
// (TrimManagedFields).
func CacheTransform(in any) (any, error) {
	switch o := in.(type) {
	case *appsv1.ReplicaSet:
		TrimReplicaSet(o)
	case *appsv1.Deployment:
		trimLastApplied(o)
		if isRolloutsCanary(o) {
			TrimCanary(o)
		}
	case *corev1.Service:
		trimLastApplied(o)
	}
	return TrimManagedFields(in)
}

// trimLastApplied drops the annotation kubectl's and Argo CD's client-side apply keep the
// whole applied manifest in (a second copy of a target's pod template). ramp never reads it,
// and writes Deployments and Services only with patches and applies of its own objects, never
// an update of a cached copy, which would drop it on the server too. Rollouts keep theirs:
// ramp updates them to add and remove its finalizer.
func trimLastApplied(o metav1.Object) {
	if a := o.GetAnnotations(); a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			delete(a, corev1.LastAppliedConfigAnnotation)
			if len(a) == 0 {
				o.SetAnnotations(nil)
			}
		}
	}
}

// rolloutOf names the Rollout controlling o, if one does: o is then that Rollout's canary
// (a Deployment), VirtualService or DestinationRule.
func rolloutOf(o metav1.Object) (string, bool) {
	if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "Rollout" && ref.APIVersion == rampv1.GroupVersion.String() {
		return ref.Name, true
	}
	return "", false
}

// isRolloutsCanary reports whether d is a Rollout's canary Deployment (CacheTransform trims it).
func isRolloutsCanary(d *appsv1.Deployment) bool {
	_, ok := rolloutOf(d)
	return ok
}

// TrimCanary replaces a canary Deployment's pod template by its revision, as TrimReplicaSet
// does a ReplicaSet's: the template is a copy of its target's plus the track label, which
// ramp renders and compares by its revision alone (canaryUpToDate), so a hand edit of any of
// it is still seen. Which revision of the target the canary runs is its annotation
// ramp.dev/revision; its metadata, replicas, selector and status stay.
func TrimCanary(d *appsv1.Deployment) {
	d.Annotations = withTemplateRevision(d.Annotations, &d.Spec.Template)
	d.Spec.Template = corev1.PodTemplateSpec{}
}

// CachedReplicaSets selects the ReplicaSets the manager caches (cache.ByObject): not the
// canaries'. ramp reads a target's ReplicaSets (which runs its revision, their ready pods),
// never a canary's, whose ready pods its Deployment's status counts; the Deployment controller
// labels a ReplicaSet with its template's labels, so a canary's carry the track label. With
// a history of ReplicaSets kept per Deployment, they are up to half of a namespace's.
func CachedReplicaSets() labels.Selector {
	notCanary, err := labels.NewRequirement(istio.TrackLabel, selection.NotEquals, []string{istio.TrackCanary})
	if err != nil {
		panic(err) // constant, valid
	}
	return labels.NewSelector().Add(*notCanary)
}

// cachedRevision is the annotation TrimReplicaSet and TrimCanary record a pod template's
// revision in, on the cached copy only.
const cachedRevision = "cache.ramp.dev/template-revision"

// TrimReplicaSet replaces a ReplicaSet's pod template by its revision (revision.Of), which is
// all ramp reads of it (observeTarget: which ReplicaSet runs the target's template). The
// templates of a namespace's ReplicaSets, two to four per app, are the largest part of the
// cache after the Deployments'; the revision is also computed once per ReplicaSet version
// rather than on every pass. Its labels, owner and status stay.
func TrimReplicaSet(rs *appsv1.ReplicaSet) {
	rs.Annotations = withTemplateRevision(rs.Annotations, &rs.Spec.Template)
	rs.Spec.Template = corev1.PodTemplateSpec{}
}

// withTemplateRevision records t's revision in annotations, overwriting whatever the object
// says: only this transform's value is ever read (templateRevision).
func withTemplateRevision(annotations map[string]string, t *corev1.PodTemplateSpec) map[string]string {
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[cachedRevision] = revision.Of(t)
	return annotations
}

// templateRevision is the revision of a ReplicaSet's or canary's pod template t: the one the
// cache transform recorded on a cached copy (whose template it dropped; no valid template
// lacks containers), computed for one read whole (a write's answer, or a reconciler without
// the manager's cache).
func templateRevision(annotations map[string]string, t *corev1.PodTemplateSpec) string {
	if rev, ok := annotations[cachedRevision]; ok && len(t.Spec.Containers) == 0 {
		return rev
	}
	return revision.Of(t)
}

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
// annotation (pausedBy): a Rollout keeps them while it has that annotation, and only then
// (its creator's spec entry and ramp's status entry are a few KB a Rollout otherwise). A
// VirtualService's and an HTTPRoute's say whether ramp owns the routes of one a Rollout
// references (Git's, ownsSpecField): those keep them; ramp's own (controlled by a Rollout)
// are trimmed as any object. kubectl-ramp reads them through its own client.
//
// An object keeps all its entries or none: an update of a cached copy (the Rollout's
// finalizer) leaves the stored ones alone when it sends none, but would replace them by a
// partial list.
func TrimManagedFields(in any) (any, error) {
	switch o := in.(type) {
	case *rampv1.Rollout:
		if _, paused := o.Annotations[rampv1.AnnotationPaused]; !paused {
			o.ManagedFields = nil
		}
		return in, nil
	case *networkingv1.VirtualService:
		if _, ramps := rolloutOf(o); !ramps {
			return in, nil
		}
	case *gwapiv1.HTTPRoute:
		if _, ramps := rolloutOf(o); !ramps {
			return in, nil
		}
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
