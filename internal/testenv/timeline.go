package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/gatewayapi"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Kind is an object kind a Timeline watches.
type Kind struct{ APIVersion, Kind string }

// The kinds ramp reads and writes; a Timeline watches them all unless told otherwise.
var (
	Rollouts         = Kind{rampv1.GroupVersion.String(), "Rollout"}
	Deployments      = Kind{"apps/v1", "Deployment"}
	VirtualServices  = Kind{istio.APIVersion, istio.KindVirtualService}
	DestinationRules = Kind{istio.APIVersion, istio.KindDestinationRule}
	// ReplicaSets tell how many ready pods each subset has (CheckRoutesFollowReadyPods).
	ReplicaSets = Kind{"apps/v1", "ReplicaSet"}
	// HTTPRoutes are the Gateway API router's routes (spec.service.gatewayAPI).
	HTTPRoutes = Kind{gwapiv1.GroupVersion.String(), gatewayapi.KindHTTPRoute}
)

// Version is one version of an object, as the API server's watch delivered it.
type Version struct {
	// RV is its resourceVersion: one etcd's revision, so increasing across all objects.
	RV      int64
	Kind    string
	Deleted bool
	Object  *unstructured.Unstructured
	// Seen is when the watch delivered it.
	Seen time.Time
}

// Timeline records every version of the objects of some kinds in one namespace through its
// own watches, which outlive every manager a test starts and stops. Replayed in
// resourceVersion order it shows what no single object does (a weight routed before the
// canary could serve it, a step skipped between two polls), and a test waits on it instead of
// polling: Wait re-checks its condition on every version recorded.
type Timeline struct {
	env     *Env
	ns      string
	kinds   []Kind
	stopped <-chan struct{} // closed when the test that started it ends

	mu       sync.Mutex
	versions []Version
	changed  chan struct{} // closed and replaced when a version is recorded
}

// RecordTimeline starts recording the namespace's objects of kinds (Rollouts, Deployments,
// VirtualServices and DestinationRules when none are given): first the versions they have
// now, then every change. It stops when the test ends.
func (e *Env) RecordTimeline(t TB, ns string, kinds ...Kind) *Timeline {
	t.Helper()
	if len(kinds) == 0 {
		kinds = []Kind{Rollouts, Deployments, VirtualServices, DestinationRules}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tl := &Timeline{env: e, ns: ns, kinds: kinds, stopped: ctx.Done(), changed: make(chan struct{})}
	for _, k := range kinds {
		ri, err := e.resource(ns, k)
		if err == nil {
			err = Watch(ctx, ri, func(at time.Time, typ watch.EventType, u *unstructured.Unstructured) {
				tl.add(at, k.Kind, typ == watch.Deleted, u)
			})
		}
		if err != nil {
			t.Fatalf("watching %ss in %s: %v", k.Kind, ns, err)
		}
	}
	return tl
}

func (e *Env) resource(ns string, k Kind) (dynamic.ResourceInterface, error) {
	gv, err := schema.ParseGroupVersion(k.APIVersion)
	if err != nil {
		return nil, err
	}
	m, err := e.Client.RESTMapper().RESTMapping(gv.WithKind(k.Kind).GroupKind(), gv.Version)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		return nil, err
	}
	return dyn.Resource(m.Resource).Namespace(ns), nil
}

func (tl *Timeline) add(at time.Time, kind string, deleted bool, u *unstructured.Unstructured) {
	rv, err := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.versions = append(tl.versions, Version{RV: rv, Kind: kind, Deleted: deleted, Object: u, Seen: at})
	close(tl.changed)
	tl.changed = make(chan struct{})
}

// Versions returns every version recorded so far, in the API server's order.
func (tl *Timeline) Versions() []Version {
	tl.mu.Lock()
	out := slices.Clone(tl.versions)
	tl.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Version) int { return cmp.Compare(a.RV, b.RV) })
	return out
}

// Of returns the recorded versions of the named object of kind, in order.
func (tl *Timeline) Of(kind Kind, name string) []Version {
	var out []Version
	for _, v := range tl.Versions() {
		if v.Kind == kind.Kind && v.Object.GetName() == name {
			out = append(out, v)
		}
	}
	return out
}

// Rollouts returns every recorded version of the named Rollout that was not a deletion.
func (tl *Timeline) Rollouts(name string) []*rampv1.Rollout {
	var out []*rampv1.Rollout
	for _, v := range tl.Of(Rollouts, name) {
		ro := &rampv1.Rollout{}
		if v.Deleted || runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, ro) != nil {
			continue
		}
		out = append(out, ro)
	}
	return out
}

// Phases is the sequence of distinct consecutive phases of the named Rollout.
func (tl *Timeline) Phases(name string) []string {
	var out []string
	for _, ro := range tl.Rollouts(name) {
		if p := ro.Status.Phase; p != "" && (len(out) == 0 || out[len(out)-1] != p) {
			out = append(out, p)
		}
	}
	return out
}

// Routings returns ramp's routing as each recorded version of the named VirtualService had
// it (deletions left out), or an error naming the first version not in ramp's shape.
func (tl *Timeline) Routings(name string) ([]istio.Routing, error) {
	var out []istio.Routing
	for _, v := range tl.Of(VirtualServices, name) {
		if v.Deleted {
			continue
		}
		r, err := istio.ObservedRouting(v.Object)
		if err != nil {
			return out, fmt.Errorf("VirtualService %s at resourceVersion %d: %w", name, v.RV, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// HTTPRouteRoutings returns the split each recorded version of ro's HTTPRoute (the Gateway
// API router's) held, deletions left out, or an error naming the first version not in
// ramp's shape.
func (tl *Timeline) HTTPRouteRoutings(ro *rampv1.Rollout) ([]gatewayapi.Routing, error) {
	var out []gatewayapi.Routing
	for _, v := range tl.Of(HTTPRoutes, ro.Name) {
		if v.Deleted {
			continue
		}
		hr := &gwapiv1.HTTPRoute{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, hr); err != nil {
			return out, err
		}
		r, err := gatewayapi.ObservedRouting(ro, hr)
		if err != nil {
			return out, fmt.Errorf("HTTPRoute %s at resourceVersion %d: %w", ro.Name, v.RV, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// HTTPRouteWeights is the sequence of distinct consecutive canary weights of ro's HTTPRoute.
func (tl *Timeline) HTTPRouteWeights(ro *rampv1.Rollout) ([]int32, error) {
	rts, err := tl.HTTPRouteRoutings(ro)
	var out []int32
	for _, r := range rts {
		if len(out) == 0 || out[len(out)-1] != r.CanaryWeight {
			out = append(out, r.CanaryWeight)
		}
	}
	return out, err
}

// Weights is the sequence of distinct consecutive canary weights of the named VirtualService,
// e.g. [0 10 50 100 0]. Versions not in ramp's shape (hand edits) are left out.
func (tl *Timeline) Weights(name string) []int32 {
	var out []int32
	for _, v := range tl.Of(VirtualServices, name) {
		if v.Deleted {
			continue
		}
		r, err := istio.ObservedRouting(v.Object)
		if err != nil {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != r.CanaryWeight {
			out = append(out, r.CanaryWeight)
		}
	}
	return out
}

// Wait returns once cond holds. It checks cond now and again after every version recorded,
// until ctx ends or the timeline stops (its test has ended: nothing more will come).
func (tl *Timeline) Wait(ctx context.Context, cond func() bool) error {
	for {
		tl.mu.Lock()
		changed := tl.changed
		tl.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tl.stopped:
			if cond() {
				return nil
			}
			return errors.New("the timeline has stopped: the test that recorded it has ended")
		case <-changed:
		}
	}
}

// Sync returns once the timeline holds the current version of every object of its kinds, so
// what it says includes everything the API server held when Sync was called (the watches
// deliver each kind in order, but not in step with one another).
func (tl *Timeline) Sync(ctx context.Context) error {
	type key struct{ kind, name string }
	want := map[key]int64{}
	for _, k := range tl.kinds {
		ri, err := tl.env.resource(tl.ns, k)
		if err != nil {
			return err
		}
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, u := range list.Items {
			rv, err := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
			if err != nil {
				return err
			}
			want[key{k.Kind, u.GetName()}] = rv
		}
	}
	return tl.Wait(ctx, func() bool {
		seen := map[key]int64{}
		tl.mu.Lock()
		for _, v := range tl.versions {
			k := key{v.Kind, v.Object.GetName()}
			seen[k] = max(seen[k], v.RV)
		}
		tl.mu.Unlock()
		for k, rv := range want {
			if seen[k] < rv {
				return false
			}
		}
		return true
	})
}

// CheckCanaryServes replays the namespace and reports (t.Errorf) every moment the named
// VirtualService sent traffic to the canary Deployment that could not take it: fewer replicas than the weight
// needs for a target of targetReplicas (ramp sizes the canary before it routes to it, and
// routes away before it shrinks it), or a template replaced while it took traffic (the new
// revision's pods would serve that traffic unannounced).
func (tl *Timeline) CheckCanaryServes(t TB, rollout, canary string, targetReplicas int32) {
	t.Helper()
	var (
		weight      int32
		headerRoute bool
		exists      bool
		replicas    int32
		rev         string
		problems    []string
	)
	check := func(rv int64, what string) {
		if weight > 0 && (!exists || replicas < plan.CanaryReplicas(targetReplicas, weight)) {
			problems = append(problems, fmt.Sprintf("rv %d (%s): VirtualService routes %d%% to the canary, which has %d replicas (exists=%t)", rv, what, weight, replicas, exists))
		}
		if headerRoute && (!exists || replicas < 1) {
			problems = append(problems, fmt.Sprintf("rv %d (%s): header route to a canary with %d replicas", rv, what, replicas))
		}
	}
	for _, v := range tl.Versions() {
		switch {
		case v.Kind == istio.KindVirtualService && v.Object.GetName() == rollout:
			if v.Deleted {
				weight, headerRoute = 0, false
				continue
			}
			r, err := istio.ObservedRouting(v.Object)
			if err != nil {
				continue // a hand edit: not ramp's routing
			}
			weight, headerRoute = r.CanaryWeight, r.HeaderRoute
			check(v.RV, "VirtualService changed")
		case v.Kind == Deployments.Kind && v.Object.GetName() == canary:
			newRev := v.Object.GetAnnotations()["ramp.dev/revision"]
			n, found, _ := unstructured.NestedInt64(v.Object.Object, "spec", "replicas")
			if !found {
				n = 1
			}
			if v.Deleted {
				exists, replicas = false, 0
			} else {
				if exists && rev != newRev && (weight > 0 || headerRoute) {
					problems = append(problems, fmt.Sprintf("rv %d: canary template replaced (revision %s → %s) while the VirtualService routed %d%% (header route %t) to it", v.RV, rev, newRev, weight, headerRoute))
				}
				exists, replicas, rev = true, int32(n), newRev
			}
			check(v.RV, "canary Deployment changed")
		}
	}
	if len(problems) > 0 {
		t.Errorf("traffic sent to a canary that could not serve it:\n  %s", strings.Join(problems, "\n  "))
	}
}

// CheckRoutesFollowReadyPods replays the namespace and reports (t.Errorf) every time the named
// Rollout's VirtualService carried weight to a subset with no ready pods while the other
// subset had some, for longer than grace (ramp reacts to what it watches, so a moment passes
// between pods changing and the routes following). The stable subset's pods are the
// ReplicaSets with the pod-template-hash its DestinationRule selects, the canary subset's
// those labelled ramp.dev/track=canary. The timeline must record VirtualServices,
// DestinationRules and ReplicaSets.
func (tl *Timeline) CheckRoutesFollowReadyPods(t TB, rollout string, grace time.Duration) {
	t.Helper()
	for _, k := range []Kind{VirtualServices, DestinationRules, ReplicaSets} {
		if !slices.Contains(tl.kinds, k) {
			t.Errorf("CheckRoutesFollowReadyPods needs a timeline of %ss", k.Kind)
			return
		}
	}
	type rsState struct {
		hash   string
		canary bool
		ready  int64
	}
	var (
		weight    int32
		routed    bool
		subset    string
		rss       = map[string]rsState{}
		badSince  time.Time
		badRV     int64
		badDetail string
		problems  []string
	)
	ready := func() (stable, canary int64) {
		for _, r := range rss {
			if r.canary {
				canary += r.ready
			} else if subset != "" && r.hash == subset {
				stable += r.ready
			}
		}
		return stable, canary
	}
	end := func(at time.Time, rv int64) {
		if !badSince.IsZero() && at.Sub(badSince) > grace {
			problems = append(problems, fmt.Sprintf("rv %d to %d (%s): %s", badRV, rv, at.Sub(badSince).Round(time.Millisecond), badDetail))
		}
		badSince = time.Time{}
	}
	for _, v := range tl.Versions() {
		switch {
		case v.Kind == istio.KindVirtualService && v.Object.GetName() == rollout:
			routed = !v.Deleted
			if r, err := istio.ObservedRouting(v.Object); err == nil && routed {
				weight = r.CanaryWeight
			}
		case v.Kind == istio.KindDestinationRule && v.Object.GetName() == rollout:
			subset = ""
			if !v.Deleted {
				subsets, _, _ := unstructured.NestedSlice(v.Object.Object, "spec", "subsets")
				for _, sub := range subsets {
					if m, ok := sub.(map[string]any); ok && m["name"] == istio.StableSubset {
						subset, _, _ = unstructured.NestedString(m, "labels", istio.PodTemplateHashLabel)
					}
				}
			}
		case v.Kind == ReplicaSets.Kind:
			if v.Deleted {
				delete(rss, v.Object.GetName())
				break
			}
			n, _, _ := unstructured.NestedInt64(v.Object.Object, "status", "readyReplicas")
			l := v.Object.GetLabels()
			rss[v.Object.GetName()] = rsState{hash: l["pod-template-hash"], canary: l[istio.TrackLabel] == istio.TrackCanary, ready: n}
		default:
			continue
		}
		stable, canary := ready()
		bad := ""
		switch {
		case !routed:
		case weight > 0 && canary == 0 && stable > 0:
			bad = fmt.Sprintf("%d%% to the canary subset, which has no ready pods, while the stable subset (%s) has %d", weight, subset, stable)
		case weight < 100 && stable == 0 && canary > 0:
			bad = fmt.Sprintf("%d%% to the stable subset (%s), which has no ready pods, while the canary subset has %d", 100-weight, subset, canary)
		}
		if bad == "" {
			end(v.Seen, v.RV)
		} else if badSince.IsZero() {
			badSince, badRV, badDetail = v.Seen, v.RV, bad
		}
	}
	end(time.Now(), 0)
	if len(problems) > 0 {
		t.Errorf("routes carried weight to a subset without ready pods while the other had some, for longer than %s:\n  %s", grace, strings.Join(problems, "\n  "))
	}
}

// Watch lists ri (for a resourceVersion), calls on for each object it holds, then watches it
// from there, calling on for each event with the instant it was received, until ctx ends. It
// survives dropped connections, and a watch the API server ends for good (410 Gone, as when a
// CRD is updated and its storage rebuilt): it lists again and watches on, calling on only for
// versions it has not delivered yet.
func Watch(ctx context.Context, ri dynamic.ResourceInterface, on func(time.Time, watch.EventType, *unstructured.Unstructured)) error {
	delivered := map[types.UID]string{} // the last resourceVersion delivered, by object
	deliver := func(at time.Time, typ watch.EventType, u *unstructured.Unstructured) {
		if typ != watch.Deleted && delivered[u.GetUID()] == u.GetResourceVersion() {
			return
		}
		delivered[u.GetUID()] = u.GetResourceVersion()
		on(at, typ, u)
	}
	start := func(ctx context.Context) (*watchtools.RetryWatcher, error) {
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		now := time.Now()
		for i := range list.Items {
			deliver(now, watch.Added, &list.Items[i])
		}
		return watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), &cache.ListWatch{
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return ri.Watch(ctx, o)
			},
		})
	}
	rw, err := start(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer func() { rw.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					// Ended for good: list and watch again (what changed meanwhile is in the
					// list), retrying while the API server rebuilds its storage.
					for {
						next, err := start(ctx)
						if err == nil {
							rw = next
							break
						}
						select {
						case <-ctx.Done():
							return
						case <-time.After(100 * time.Millisecond):
						}
					}
					continue
				}
				at := time.Now()
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					deliver(at, ev.Type, u)
				}
			}
		}
	}()
	return nil
}
