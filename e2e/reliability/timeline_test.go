package reliability_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
)

// timeline records every version of the Rollouts, Deployments, VirtualServices and
// DestinationRules of a namespace through the test's own watches, which outlive every
// manager the test starts and stops. Replayed in resourceVersion order (one etcd: increasing),
// it shows what no single object does.
type timeline struct {
	mu      sync.Mutex
	entries []entry
}

type entry struct {
	rv      int64
	kind    string
	deleted bool
	obj     *unstructured.Unstructured
}

func recordTimeline(t *testing.T, ns string) *timeline {
	t.Helper()
	e := cluster(t)
	wc, err := client.NewWithWatch(e.Config, client.Options{Scheme: e.Scheme})
	must(t, err)
	tl := &timeline{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var watches []watch.Interface
	for _, gvk := range []struct{ apiVersion, kind string }{
		{rampv1.GroupVersion.String(), "Rollout"},
		{"apps/v1", "Deployment"},
		{istio.APIVersion, istio.KindVirtualService},
		{istio.APIVersion, istio.KindDestinationRule},
	} {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(gvk.apiVersion)
		list.SetKind(gvk.kind + "List")
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		watches = append(watches, w)
		wg.Add(1)
		go func(kind string) {
			defer wg.Done()
			for ev := range w.ResultChan() {
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv, err := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
				if err != nil {
					continue
				}
				tl.mu.Lock()
				tl.entries = append(tl.entries, entry{rv: rv, kind: kind, deleted: ev.Type == watch.Deleted, obj: u})
				tl.mu.Unlock()
			}
		}(gvk.kind)
	}
	t.Cleanup(func() {
		cancel()
		for _, w := range watches {
			w.Stop()
		}
		wg.Wait()
	})
	return tl
}

func (tl *timeline) sorted() []entry {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := slices.Clone(tl.entries)
	slices.SortStableFunc(out, func(a, b entry) int { return cmp.Compare(a.rv, b.rv) })
	return out
}

// weights is the sequence of distinct consecutive canary weights of the VirtualService.
func (tl *timeline) weights(name string) []int32 {
	var out []int32
	for _, e := range tl.sorted() {
		if e.kind != istio.KindVirtualService || e.obj.GetName() != name || e.deleted {
			continue
		}
		r, err := istio.ObservedRouting(e.obj)
		if err != nil {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != r.CanaryWeight {
			out = append(out, r.CanaryWeight)
		}
	}
	return out
}

// checkWeightsForward checks the VirtualService's weights only moved forward along the plan
// want (e.g. 0 10 50 100 0): the sequence of distinct weights must be exactly want.
func (tl *timeline) checkWeightsForward(t *testing.T, name string, want []int32) {
	t.Helper()
	if got := tl.weights(name); !slices.Equal(got, want) {
		t.Errorf("VirtualService canary weights over time = %v, want %v", got, want)
	}
}

// checkCanaryServes replays the namespace and reports every moment the VirtualService sent
// traffic to a canary Deployment too small for it (ramp sizes the canary before it routes to
// it and routes away before it shrinks it) or to a canary whose template was being replaced.
func (tl *timeline) checkCanaryServes(t *testing.T, rollout, canary string, targetReplicas int32) {
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
			problems = append(problems, fmt.Sprintf("rv %d (%s): %d%% routed to a canary of %d replicas (exists=%t)", rv, what, weight, replicas, exists))
		}
		if headerRoute && (!exists || replicas < 1) {
			problems = append(problems, fmt.Sprintf("rv %d (%s): header route to a canary of %d replicas", rv, what, replicas))
		}
	}
	for _, e := range tl.sorted() {
		switch {
		case e.kind == istio.KindVirtualService && e.obj.GetName() == rollout:
			if e.deleted {
				weight, headerRoute = 0, false
				continue
			}
			r, err := istio.ObservedRouting(e.obj)
			if err != nil {
				continue // a hand edit: not ramp's routing
			}
			weight, headerRoute = r.CanaryWeight, r.HeaderRoute
			check(e.rv, "VirtualService changed")
		case e.kind == "Deployment" && e.obj.GetName() == canary:
			newRev := e.obj.GetAnnotations()["ramp.dev/revision"]
			n, found, _ := unstructured.NestedInt64(e.obj.Object, "spec", "replicas")
			if !found {
				n = 1
			}
			if e.deleted {
				exists, replicas = false, 0
			} else {
				if exists && rev != newRev && (weight > 0 || headerRoute) {
					problems = append(problems, fmt.Sprintf("rv %d: canary template replaced (%s → %s) while it took %d%% (header route %t)", e.rv, rev, newRev, weight, headerRoute))
				}
				exists, replicas, rev = true, int32(n), newRev
			}
			check(e.rv, "canary Deployment changed")
		}
	}
	if len(problems) > 0 {
		t.Errorf("traffic sent to a canary that could not serve it:\n  %s", strings.Join(problems, "\n  "))
	}
}

// stageRank orders the states a rollout goes through, so a status that went back to an
// earlier one shows up.
var stageRank = map[string]int{
	plan.StageScalingCanary: 0, plan.StageWaitingForWindow: 0, plan.StageHolding: 1,
	plan.StageRoutingToCanary: 2, plan.StageUpdatingStable: 3, plan.StageSwitchingStableSubset: 4, plan.StageRoutingToStable: 5,
}

func progress(st map[string]any) (int, string) {
	phase, _ := st["phase"].(string)
	stage, _ := st["stage"].(string)
	step, _ := st["currentStep"].(int64)
	key := fmt.Sprintf("%s/%s step %d", phase, stage, step)
	switch phase {
	case "", rampv1.PhaseInitializing:
		return 0, key
	case rampv1.PhaseIdle:
		return 1, key
	case rampv1.PhaseSucceeded:
		return 10000, key
	case rampv1.PhaseRollingBack:
		return 20000, key
	case rampv1.PhaseFailed:
		return 20001, key
	}
	if r, ok := stageRank[stage]; ok && r >= 2 {
		return 5000 + r, key
	}
	return 100 + 10*int(step) + stageRank[stage], key
}

// checkStatusForward replays the Rollout's status: it must never return to an earlier phase,
// step or stage, and a stage, once entered, must not be entered again (its start time would
// move: a transition decided twice).
func (tl *timeline) checkStatusForward(t *testing.T, name string) {
	t.Helper()
	last, lastKey, lastStart := -1, "", ""
	var problems []string
	for _, e := range tl.sorted() {
		if e.kind != "Rollout" || e.obj.GetName() != name || e.deleted {
			continue
		}
		st, _, _ := unstructured.NestedMap(e.obj.Object, "status")
		if st == nil {
			continue
		}
		rank, key := progress(st)
		start, _ := st["stageStartedAt"].(string)
		switch {
		case rank < last:
			problems = append(problems, fmt.Sprintf("rv %d: status went back from %s to %s", e.rv, lastKey, key))
		case rank == last && key == lastKey && start != lastStart && lastStart != "" && start != "":
			problems = append(problems, fmt.Sprintf("rv %d: %s entered again (stageStartedAt %s → %s)", e.rv, key, lastStart, start))
		}
		last, lastKey, lastStart = rank, key, start
	}
	if len(problems) > 0 {
		t.Errorf("status of %s did not only move forward:\n  %s", name, strings.Join(problems, "\n  "))
	}
}

// resourceVersions of the named objects of the namespace, by kind/name ("" when absent).
func resourceVersions(ctx context.Context, ns string, objs ...client.Object) (map[string]string, error) {
	out := map[string]string{}
	for _, o := range objs {
		key := fmt.Sprintf("%T/%s", o, o.GetName())
		if u, ok := o.(*unstructured.Unstructured); ok {
			key = u.GetKind() + "/" + o.GetName()
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			out[key] = ""
			continue
		}
		out[key] = o.GetResourceVersion()
	}
	return out, nil
}
