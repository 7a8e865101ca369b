package controllers

import (
	"context"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// cacheReads is the client SetupWithManager gives the reconciler: the manager's client, with
// two kinds of reads moved onto the manager's cache.
//
// ReplicaSets: observeTarget looks for the target's ReplicaSets through an index on their
// controlling owner (listReplicaSets), instead of matching the labels of every ReplicaSet in
// the namespace on every pass.
//
// VirtualServices and DestinationRules: cacheReads serves ramp's reads of its VirtualServices and DestinationRules from the
// manager's cache (the informers Owns already runs) when the cached object is the very
// version ramp last saw from the API server — the answer to its own last write, or its last
// live read — and reads live otherwise. The manager's client reads unstructured objects live,
// which cost two GETs per pass; the cache alone could be older than ramp's own last write
// (e.g. still show the canary weight ramp has just changed), and decisions such as
// "the VirtualService holds 100% canary, un-pause the target" must not rest on that. A version
// that matches is the same object a live read returned then, so the decisions see at least
// ramp's own writes; someone else's later edit arrives as a watch event, which triggers a pass
// that finds the cache at an unknown version and reads live.
type cacheReads struct {
	client.Client
	cache client.Reader
	known sync.Map // istioKey → resourceVersion last returned by the API server
}

type istioKey struct{ kind, namespace, name string }

func (c *cacheReads) key(obj client.Object, namespace, name string) (istioKey, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetAPIVersion() != istio.APIVersion || (u.GetKind() != istio.KindVirtualService && u.GetKind() != istio.KindDestinationRule) {
		return istioKey{}, false
	}
	return istioKey{u.GetKind(), namespace, name}, true
}

func (c *cacheReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	k, ok := c.key(obj, key.Namespace, key.Name)
	if !ok {
		return c.Client.Get(ctx, key, obj, opts...)
	}
	if rv, known := c.known.Load(k); known && len(opts) == 0 {
		cached := &unstructured.Unstructured{}
		cached.SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
		if err := c.cache.Get(ctx, key, cached); err == nil && cached.GetResourceVersion() == rv.(string) {
			obj.(*unstructured.Unstructured).Object = cached.Object // the cache returns a copy
			return nil
		}
	}
	err := c.Client.Get(ctx, key, obj, opts...)
	switch {
	case err == nil:
		c.known.Store(k, obj.GetResourceVersion())
	case apierrors.IsNotFound(err):
		c.known.Delete(k)
	}
	return err
}

func (c *cacheReads) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if k, ok := c.key(obj, obj.GetNamespace(), obj.GetName()); ok {
		if err == nil && obj.GetResourceVersion() != "" {
			c.known.Store(k, obj.GetResourceVersion()) // the response: the object as written
		} else {
			c.known.Delete(k)
		}
	}
	return err
}

func (c *cacheReads) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if k, ok := c.key(obj, obj.GetNamespace(), obj.GetName()); ok {
		c.known.Delete(k)
	}
	return c.Client.Delete(ctx, obj, opts...)
}

// replicaSetOwnerIndex indexes ReplicaSets by the UID of their controlling owner.
const replicaSetOwnerIndex = "ramp.metadata.controllerUID"

func indexReplicaSetOwner(o client.Object) []string {
	if ref := metav1.GetControllerOf(o); ref != nil {
		return []string{string(ref.UID)}
	}
	return nil
}

// listReplicaSets lists the ReplicaSets of namespace matching sel that d may control: through
// the owner index when the reconciler reads from the manager's cache (SetupWithManager), by
// the selector alone otherwise (a plain client, as some tests give it).
func (r *RolloutReconciler) listReplicaSets(ctx context.Context, list *appsv1.ReplicaSetList, d *appsv1.Deployment, sel labels.Selector) error {
	opts := []client.ListOption{client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}}
	if _, ok := r.Client.(*cacheReads); ok {
		opts = append(opts, client.MatchingFields{replicaSetOwnerIndex: string(d.UID)})
	}
	return r.List(ctx, list, opts...)
}
