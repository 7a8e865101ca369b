package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

var (
	gvrVirtualService = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	gvrRollout        = schema.GroupVersionResource{Group: "ramp.dev", Version: "v1alpha1", Resource: "rollouts"}
	gvrDeployment     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// weightAt is a VirtualService's canary weight as a watch event delivered it.
type weightAt struct {
	at     time.Time
	weight int32 // -1: not in ramp's shape
}

// phaseAt is a Rollout's status as a watch event delivered it.
type phaseAt struct {
	at     time.Time
	phase  string
	weight int32
}

// tracker records, with the instant each watch event was received, the VirtualServices'
// weights, the Rollouts' phases and when each Deployment first appeared.
type tracker struct {
	mu       sync.Mutex
	weights  map[string][]weightAt
	phases   map[string][]phaseAt
	deployed map[string]time.Time
	changed  chan struct{}
}

func newTracker() *tracker {
	return &tracker{weights: map[string][]weightAt{}, phases: map[string][]phaseAt{}, deployed: map[string]time.Time{}, changed: make(chan struct{})}
}

// start watches the three kinds in namespace ns until ctx ends.
func (t *tracker) start(ctx context.Context, dyn dynamic.Interface, ns string) error {
	for _, w := range []struct {
		gvr schema.GroupVersionResource
		on  func(time.Time, watch.EventType, *unstructured.Unstructured)
	}{{gvrVirtualService, t.onVS}, {gvrRollout, t.onRollout}, {gvrDeployment, t.onDeployment}} {
		if err := testenv.Watch(ctx, dyn.Resource(w.gvr).Namespace(ns), w.on); err != nil {
			return fmt.Errorf("watching %s: %w", w.gvr.Resource, err)
		}
	}
	return nil
}

func (t *tracker) bump() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) onVS(at time.Time, typ watch.EventType, u *unstructured.Unstructured) {
	if typ == watch.Deleted {
		return
	}
	w := int32(-1)
	if r, err := istio.ObservedRouting(u); err == nil {
		w = r.CanaryWeight
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.weights[u.GetName()] = append(t.weights[u.GetName()], weightAt{at: at, weight: w})
	t.bump()
}

func (t *tracker) onRollout(at time.Time, typ watch.EventType, u *unstructured.Unstructured) {
	if typ == watch.Deleted {
		return
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	weight, _, _ := unstructured.NestedInt64(u.Object, "status", "canaryWeight")
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.phases[u.GetName()]
	if n := len(h); n == 0 || h[n-1].phase != phase || h[n-1].weight != int32(weight) {
		t.phases[u.GetName()] = append(h, phaseAt{at: at, phase: phase, weight: int32(weight)})
		t.bump()
	}
}

func (t *tracker) onDeployment(at time.Time, typ watch.EventType, u *unstructured.Unstructured) {
	if typ != watch.Added {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.deployed[u.GetName()]; !seen {
		t.deployed[u.GetName()] = at
		t.bump()
	}
}

// wait calls cond (with the tracker locked) on every change until it holds or timeout.
func (t *tracker) wait(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	return t.waitEvery(ctx, timeout, 0, what, cond)
}

// bulkCheckEvery is how often a condition over every rollout is checked at most: checked on
// every event instead, 10,000 rollouts' events times a scan of 10,000 made the benchmark's
// driver, not the manager, the busiest process. Only the wait's return is that late; the
// figures come from the events' own instants.
const bulkCheckEvery = 200 * time.Millisecond

// waitEvery is wait checking cond at most once per every (on the first change after it).
func (t *tracker) waitEvery(ctx context.Context, timeout, every time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		checked := time.Now()
		t.mu.Lock()
		ok, ch := cond(), t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		if rest := every - time.Since(checked); rest > 0 {
			select {
			case <-time.After(rest):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// phase is a Rollout's last phase seen (locked).
func (t *tracker) phase(name string) string {
	h := t.phases[name]
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1].phase
}

// firstWeight is the first VirtualService event after from whose canary weight satisfies ok
// (locked).
func (t *tracker) firstWeight(name string, from time.Time, ok func(int32) bool) (time.Time, bool) {
	for _, w := range t.weights[name] {
		if !w.at.Before(from) && ok(w.weight) {
			return w.at, true
		}
	}
	return time.Time{}, false
}

// firstPhase is the first Rollout event after from in phase (locked).
func (t *tracker) firstPhase(name, phase string, from time.Time) (time.Time, bool) {
	for _, p := range t.phases[name] {
		if !p.at.Before(from) && p.phase == phase {
			return p.at, true
		}
	}
	return time.Time{}, false
}

// routedInOrder reports whether the VirtualService events after from routed each of weights
// in turn (other weights between them allowed) (locked).
func (t *tracker) routedInOrder(name string, from time.Time, weights []int32) bool {
	next := 0
	for _, w := range t.weights[name] {
		if next < len(weights) && !w.at.Before(from) && w.weight == weights[next] {
			next++
		}
	}
	return next == len(weights)
}
