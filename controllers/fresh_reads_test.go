package controllers

import (
	"context"
	"reflect"
	"sync"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// laggingCache is the manager's client over a cache that sees the API server's objects only
// when the test says so (catchUp): reads come from its snapshots, writes go to the API server.
type laggingCache struct {
	client.Client // the API server
	mu            sync.Mutex
	snap          map[reflect.Type]map[types.NamespacedName]client.Object
}

func (l *laggingCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.snap[reflect.TypeOf(obj)][key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
	return nil
}

// catchUp makes the cache hold the API server's current version of obj.
func (l *laggingCache) catchUp(t *testing.T, obj client.Object) {
	t.Helper()
	cur := obj.DeepCopyObject().(client.Object)
	must(t, l.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), cur))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap[reflect.TypeOf(obj)] == nil {
		l.snap[reflect.TypeOf(obj)] = map[types.NamespacedName]client.Object{}
	}
	l.snap[reflect.TypeOf(obj)][client.ObjectKeyFromObject(obj)] = cur
}

// A read after ramp's write never returns the version from before it, whatever the cache
// holds: the VirtualService ramp has just moved to 0% is never seen at its old 100% (which
// would, say, un-pause the target for a routing that is gone), nor the Rollout at its status
// from before ramp's write. Reads are live only while the cache is behind ramp's writes.
func TestReadsNeverPrecedeRampsOwnWrites(t *testing.T) {
	ctx := context.Background()
	var failNext error // the next Patch fails with it, after taking effect
	apiServer := fake.NewClientBuilder().WithScheme(env.Scheme).WithStatusSubresource(&rampv1.Rollout{}).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			err := c.Patch(ctx, obj, p, opts...)
			if f := failNext; f != nil && err == nil {
				failNext, err = nil, f
			}
			return err
		},
	}).Build()
	liveGets := 0
	live := interceptor.NewClient(apiServer, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			liveGets++
			return c.Get(ctx, key, obj, opts...)
		},
	})
	cache := &laggingCache{Client: apiServer, snap: map[reflect.Type]map[types.NamespacedName]client.Object{}}
	c := newFreshReads(cache, live)

	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "ro-uid"},
		Spec: rampv1.RolloutSpec{TargetRef: rampv1.TargetReference{Name: "web"}}}
	weight := func(w int32) *networkingv1.VirtualService {
		return istio.VirtualService(ro, istio.Routing{CanaryWeight: w})
	}
	read := func(step string, wantWeight int32, wantLive int) {
		t.Helper()
		vs := &networkingv1.VirtualService{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(ro), vs))
		r, err := istio.ObservedRouting(vs)
		must(t, err)
		if r.CanaryWeight != wantWeight || liveGets != wantLive {
			t.Fatalf("%s: read weight %d with %d live reads so far, want %d with %d", step, r.CanaryWeight, liveGets, wantWeight, wantLive)
		}
	}
	setWeight := func(cl client.Client, w int32) {
		t.Helper()
		vs := &networkingv1.VirtualService{}
		must(t, apiServer.Get(ctx, client.ObjectKeyFromObject(ro), vs))
		before := vs.DeepCopy()
		weight(w).Spec.DeepCopyInto(&vs.Spec)
		must(t, cl.Patch(ctx, vs, client.MergeFrom(before)))
	}

	// Created by ramp, not yet in the cache: read from the API server.
	must(t, c.Create(ctx, weight(100)))
	read("created, not yet cached", 100, 1)
	cache.catchUp(t, weight(100))
	read("cache caught up", 100, 1)

	// Ramp moves the routing; the cache still shows the old one.
	setWeight(c, 0)
	read("after ramp's write, stale cache", 0, 2)
	read("still stale", 0, 3)
	cache.catchUp(t, weight(0))
	read("cache caught up with ramp's write", 0, 3)
	read("and stays the source", 0, 3)

	// Someone else's write is not ramp's: the cache is what the pass its event starts sees.
	setWeight(apiServer, 30)
	read("someone else's write, not yet cached", 0, 3)
	cache.catchUp(t, weight(30))
	read("someone else's write, cached", 30, 3)

	// A write that failed after taking effect: its version is unknown, so the next reads are
	// live until the cache holds what the API server had then.
	failNext = apierrors.NewTimeoutError("lost the answer", 1)
	vs := &networkingv1.VirtualService{}
	must(t, apiServer.Get(ctx, client.ObjectKeyFromObject(ro), vs))
	before := vs.DeepCopy()
	weight(50).Spec.DeepCopyInto(&vs.Spec)
	if err := c.Patch(ctx, vs, client.MergeFrom(before)); !apierrors.IsTimeout(err) {
		t.Fatalf("patch: %v, want the injected timeout", err)
	}
	read("after a write with no answer", 50, 4)
	read("cache still behind it", 50, 5)
	cache.catchUp(t, weight(50))
	read("cache caught up with it", 50, 5)

	// A refused write changed nothing: no live read.
	stale := weight(0)
	stale.ResourceVersion = "1"
	if err := c.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("update at an old version: %v, want a conflict", err)
	}
	read("after a refused write", 50, 5)

	// The Rollout's status write: the cached Rollout from before it is never returned.
	must(t, apiServer.Create(ctx, ro))
	cache.catchUp(t, ro)
	got := &rampv1.Rollout{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(ro), got))
	before2 := got.DeepCopy()
	got.Status.Phase = rampv1.PhaseProgressing
	must(t, c.Status().Patch(ctx, got, client.MergeFromWithOptions(before2, client.MergeFromWithOptimisticLock{})))
	for _, step := range []string{"stale cache", "cache caught up"} {
		if step == "cache caught up" {
			cache.catchUp(t, ro)
		}
		again := &rampv1.Rollout{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(ro), again))
		if again.Status.Phase != rampv1.PhaseProgressing {
			t.Errorf("%s: read the Rollout at phase %q, from before ramp's status write", step, again.Status.Phase)
		}
	}
	if liveGets != 6 {
		t.Errorf("%d live reads, want 6: one while the cache was behind the status write", liveGets)
	}
}
