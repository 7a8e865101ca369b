package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// recorder is a TB that keeps what a check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }

func vsVersion(rv int64, at time.Time, weight int32) Version {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": istio.APIVersion, "kind": istio.KindVirtualService,
		"metadata": map[string]any{"name": "web"},
		"spec": map[string]any{"http": []any{map[string]any{"name": "ramp-primary", "route": []any{
			map[string]any{"destination": map[string]any{"host": "web", "subset": "stable"}, "weight": int64(100 - weight)},
			map[string]any{"destination": map[string]any{"host": "web", "subset": "canary"}, "weight": int64(weight)},
		}}}},
	}}
	return Version{RV: rv, Kind: istio.KindVirtualService, Object: u, Seen: at}
}

func drVersion(rv int64, at time.Time, hash string) Version {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": istio.APIVersion, "kind": istio.KindDestinationRule,
		"metadata": map[string]any{"name": "web"},
		"spec": map[string]any{"subsets": []any{
			map[string]any{"name": istio.StableSubset, "labels": map[string]any{istio.PodTemplateHashLabel: hash}},
		}},
	}}
	return Version{RV: rv, Kind: istio.KindDestinationRule, Object: u, Seen: at}
}

func rsVersion(rv int64, at time.Time, name, hash string, canary bool, ready int64) Version {
	labels := map[string]any{"pod-template-hash": hash}
	if canary {
		labels[istio.TrackLabel] = istio.TrackCanary
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": map[string]any{"name": name, "labels": labels},
		"status":   map[string]any{"readyReplicas": ready},
	}}
	return Version{RV: rv, Kind: ReplicaSets.Kind, Object: u, Seen: at}
}

// The check reports weight on a subset without ready pods while the other has some, past the
// grace period, and nothing else.
func TestCheckRoutesFollowReadyPods(t *testing.T) {
	t0 := time.Now().Add(-time.Minute) // the check ends an open violation at the present
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	base := []Version{
		drVersion(1, at(0), "h1"),
		rsVersion(2, at(0), "web-h1", "h1", false, 3),
		rsVersion(3, at(0), "web-canary-c1", "c1", true, 1),
		vsVersion(4, at(0), 10),
	}
	for _, c := range []struct {
		name string
		more []Version
		bad  string
	}{
		{name: "both subsets ready"},
		{name: "stable pods gone, routes follow within the grace period", more: []Version{
			rsVersion(5, at(100), "web-h1", "h1", false, 0), vsVersion(6, at(600), 100),
		}},
		{name: "stable pods gone, routes stay", more: []Version{
			rsVersion(5, at(100), "web-h1", "h1", false, 0), vsVersion(6, at(5000), 100),
		}, bad: "90% to the stable subset (h1), which has no ready pods, while the canary subset has 1"},
		{name: "canary pods gone, weight stays", more: []Version{
			rsVersion(5, at(100), "web-canary-c1", "c1", true, 0), drVersion(6, at(5000), "h1"),
		}, bad: "10% to the canary subset, which has no ready pods"},
		{name: "no ready pods anywhere: nothing better to route to", more: []Version{
			rsVersion(5, at(100), "web-canary-c1", "c1", true, 0), rsVersion(6, at(100), "web-h1", "h1", false, 0), drVersion(7, at(5000), "h1"),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl := &Timeline{kinds: []Kind{VirtualServices, DestinationRules, ReplicaSets}, versions: append(append([]Version{}, base...), c.more...), changed: make(chan struct{})}
			r := &recorder{TB: t}
			tl.CheckRoutesFollowReadyPods(r, "web", 2*time.Second)
			got := strings.Join(r.errs, "\n")
			if (c.bad == "") != (got == "") || (c.bad != "" && !strings.Contains(got, c.bad)) {
				t.Errorf("reported %q, want %q", got, c.bad)
			}
		})
	}
}
