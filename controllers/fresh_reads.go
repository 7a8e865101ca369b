package controllers

import (
	"context"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// freshReads is the reconciler's client: the manager's client, which reads from the manager's
// cache (Rollouts, Deployments, Services, VirtualServices, DestinationRules: all typed), with
// one guarantee added: a read never returns an object older than ramp's own last write of it.
//
// The cache follows the API server through a watch and can lag behind it: the pass after a
// write may begin before the cache has seen that write (another object's event woke it).
// Deciding on the older copy would undo what ramp just did — take a transition twice from a
// stale status, or see the VirtualService still at the weight ramp has just replaced and, say,
// un-pause the target for a routing that no longer exists. So every write records the
// resourceVersion the API server answered with; a read of that object is served from the cache
// once the cache holds that version or a later one, and from the API server until then. A
// write whose resulting version ramp does not know (it failed, possibly after taking effect;
// a delete) makes the next read live, and the version that read returns is the floor.
//
// Someone else's change reaches ramp as a watch event, which starts the pass that reads it;
// the cache is what that pass sees, as for any controller. Lists (Rollouts by target,
// ReplicaSets by owner) are served by the cache alone: ramp does not write what it lists for
// its decisions. Status writes carry an optimistic lock besides, so a pass that did read an
// old Rollout cannot record a decision over a newer one.
type freshReads struct {
	client.Client
	// live reads from the API server.
	live client.Reader

	mu sync.Mutex
	// floor is, per object ramp wrote, the resourceVersion a read must reach; "" when that
	// version is unknown and the next read must be live. Entries go once the cache catches up.
	floor map[objectKey]string
}

type objectKey struct {
	gvk schema.GroupVersionKind
	types.NamespacedName
}

func newFreshReads(c client.Client, live client.Reader) *freshReads {
	return &freshReads{Client: c, live: live, floor: map[objectKey]string{}}
}

func (c *freshReads) key(obj client.Object, name types.NamespacedName) (objectKey, bool) {
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	return objectKey{gvk, name}, err == nil
}

// Get reads obj from the cache, or from the API server when the cache is older than ramp's
// last write of it.
func (c *freshReads) Get(ctx context.Context, name client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	k, ok := c.key(obj, name)
	if !ok {
		return c.Client.Get(ctx, name, obj, opts...)
	}
	c.mu.Lock()
	floor, wrote := c.floor[k]
	c.mu.Unlock()
	if !wrote {
		return c.Client.Get(ctx, name, obj, opts...)
	}
	if floor != "" {
		err := c.Client.Get(ctx, name, obj, opts...)
		if err == nil && atLeast(obj.GetResourceVersion(), floor) {
			c.settle(k, floor)
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		// Not in the cache yet, or an older version: the API server has ramp's write.
	}
	err := c.live.Get(ctx, name, obj, opts...)
	switch {
	case err == nil && floor == "":
		c.raise(k, floor, obj.GetResourceVersion())
	case err == nil && atLeast(obj.GetResourceVersion(), floor):
		// Recorded until the cache holds it too.
	case apierrors.IsNotFound(err):
		c.settle(k, floor) // deleted since: nothing for the cache to catch up with
	}
	return err
}

// atLeast reports whether resourceVersion rv is floor or later. Versions the API server does
// not let compare are equal only when identical.
func atLeast(rv, floor string) bool {
	cmp, err := resourceversion.CompareResourceVersion(rv, floor)
	if err != nil {
		return rv == floor
	}
	return cmp >= 0
}

// settle forgets k's floor if it is still floor: the cache has caught up.
func (c *freshReads) settle(k objectKey, floor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floor[k] == floor {
		delete(c.floor, k)
	}
}

// raise sets k's unknown floor to the version a live read returned.
func (c *freshReads) raise(k objectKey, from, to string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.floor[k]; ok && cur == from {
		c.floor[k] = to
	}
}

// wrote records the outcome of a write of obj: the version the API server answered with; or,
// when the write failed in a way that may still have changed the object (a timeout, a lost
// connection, a server error), an unknown version. A refusal changed nothing.
func (c *freshReads) wrote(obj client.Object, err error) {
	if err != nil && (rejected(err) || apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) ||
		apierrors.IsUnauthorized(err)) {
		return
	}
	k, ok := c.key(obj, client.ObjectKeyFromObject(obj))
	if !ok {
		return
	}
	rv := ""
	if err == nil {
		rv = obj.GetResourceVersion()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.floor[k]; ok && rv != "" && cur != "" && atLeast(cur, rv) {
		return // a later write already set a higher floor
	}
	c.floor[k] = rv
}

func (c *freshReads) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	c.wrote(obj, err)
	return err
}

func (c *freshReads) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	err := c.Client.Update(ctx, obj, opts...)
	c.wrote(obj, err)
	return err
}

func (c *freshReads) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	c.wrote(obj, err)
	return err
}

// Deletes are not recorded: ramp deletes only while finalizing, and a pass that still finds a
// deleted object in the cache deletes it again, which the API server answers NotFound.

func (c *freshReads) Status() client.SubResourceWriter { return c.SubResource("status") }

func (c *freshReads) SubResource(name string) client.SubResourceClient {
	return &freshSubResource{SubResourceClient: c.Client.SubResource(name), c: c}
}

// freshSubResource records the writes of a subresource (the Rollout's status): their answer
// is the whole object at its new version.
type freshSubResource struct {
	client.SubResourceClient
	c *freshReads
}

func (s *freshSubResource) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	err := s.SubResourceClient.Update(ctx, obj, opts...)
	s.c.wrote(obj, err)
	return err
}

func (s *freshSubResource) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	err := s.SubResourceClient.Patch(ctx, obj, patch, opts...)
	s.c.wrote(obj, err)
	return err
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
	if r.indexed {
		opts = append(opts, client.MatchingFields{replicaSetOwnerIndex: string(d.UID)})
	}
	return r.List(ctx, list, opts...)
}
