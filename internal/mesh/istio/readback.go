package istio

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// ObservedRouting reads ramp's routing back from a live VirtualService: the canary weight of
// RoutePrimary, whether RouteCanary is present, and its fault. It fails when vs does not have
// the shape VirtualService renders — spec.http is [RouteCanary?, RoutePrimary], RoutePrimary
// with no match and no fault, routing to the stable then canary subsets with weights 0..100
// summing to 100, RouteCanary with a header match and the canary subset alone — so callers
// can tell that someone else changed the routing. apiVersion and kind, when set, must be a
// networking.istio.io VirtualService (any version). Numbers may be int64 or float64 (as
// decoded by apimachinery or encoding/json); a missing weight is 0, as in proto3.
func ObservedRouting(vs *unstructured.Unstructured) (Routing, error) {
	if vs == nil || vs.Object == nil {
		return Routing{}, fmt.Errorf("istio: no VirtualService")
	}
	if k := vs.GetKind(); k != "" && k != KindVirtualService {
		return Routing{}, fmt.Errorf("istio: %s is not a VirtualService", k)
	}
	if av := vs.GetAPIVersion(); av != "" && !strings.HasPrefix(av, group+"/") {
		return Routing{}, fmt.Errorf("istio: apiVersion %s is not %s", av, group)
	}
	spec, ok := vs.Object["spec"].(map[string]any)
	if !ok {
		return Routing{}, fmt.Errorf("istio: VirtualService %s has no spec", vs.GetName())
	}
	http, ok := spec["http"].([]any)
	if !ok || len(http) == 0 || len(http) > 2 {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: want http routes [%s, %s] or [%s], got %d",
			vs.GetName(), RouteCanary, RoutePrimary, RoutePrimary, len(http))
	}
	var r Routing
	if len(http) == 2 {
		hr, ok := http[0].(map[string]any)
		if !ok || hr["name"] != RouteCanary {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: first of two http routes is not %s", vs.GetName(), RouteCanary)
		}
		f, err := observeHeaderRoute(hr)
		if err != nil {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.GetName(), RouteCanary, err)
		}
		r.HeaderRoute, r.Fault = true, f
	}
	pr, ok := http[len(http)-1].(map[string]any)
	if !ok || pr["name"] != RoutePrimary {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: last http route is not %s", vs.GetName(), RoutePrimary)
	}
	w, err := observePrimaryRoute(pr)
	if err != nil {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.GetName(), RoutePrimary, err)
	}
	r.CanaryWeight = w
	return r, nil
}

func observeHeaderRoute(route map[string]any) (*v1alpha1.FaultInjection, error) {
	match, ok := route["match"].([]any)
	if !ok || len(match) != 1 {
		return nil, fmt.Errorf("want one match, got %v", route["match"])
	}
	m, ok := match[0].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("match is not an object")
	}
	if h, ok := m["headers"].(map[string]any); !ok || len(h) != 1 {
		return nil, fmt.Errorf("want a match on one header, got %v", m["headers"])
	}
	dests, ok := route["route"].([]any)
	if !ok || len(dests) != 1 {
		return nil, fmt.Errorf("want the %s subset alone, got %v", CanarySubset, route["route"])
	}
	if _, err := observeDestination(dests[0], CanarySubset); err != nil {
		return nil, err
	}
	raw, ok := route["fault"]
	if !ok || raw == nil {
		return nil, nil
	}
	return observeFault(raw)
}

func observePrimaryRoute(route map[string]any) (int32, error) {
	if _, ok := route["match"]; ok {
		return 0, fmt.Errorf("has a match")
	}
	if _, ok := route["fault"]; ok {
		return 0, fmt.Errorf("has a fault")
	}
	dests, ok := route["route"].([]any)
	if !ok || len(dests) != 2 {
		return 0, fmt.Errorf("want destinations [%s, %s], got %v", StableSubset, CanarySubset, route["route"])
	}
	sw, err := observeDestination(dests[0], StableSubset)
	if err != nil {
		return 0, err
	}
	cw, err := observeDestination(dests[1], CanarySubset)
	if err != nil {
		return 0, err
	}
	if sw+cw != 100 {
		return 0, fmt.Errorf("weights %d (%s) and %d (%s) do not sum to 100", sw, StableSubset, cw, CanarySubset)
	}
	return int32(cw), nil
}

// observeDestination checks an HTTPRouteDestination goes to subset and returns its weight.
func observeDestination(raw any, subset string) (int64, error) {
	d, ok := raw.(map[string]any)
	if !ok {
		return 0, fmt.Errorf("destination is not an object")
	}
	dest, ok := d["destination"].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("route has no destination")
	}
	if s, _ := dest["subset"].(string); s != subset {
		return 0, fmt.Errorf("want subset %q, got %v", subset, dest["subset"])
	}
	w := int64(0)
	if v, ok := d["weight"]; ok {
		f, err := number(v)
		if err != nil || f != math.Trunc(f) || f < 0 || f > 100 {
			return 0, fmt.Errorf("subset %s: weight %v is not an integer in 0..100", subset, v)
		}
		w = int64(f)
	}
	return w, nil
}

func observeFault(raw any) (*v1alpha1.FaultInjection, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("fault is not an object")
	}
	if extra := extraKeys(m, "delay", "abort"); extra != "" {
		return nil, fmt.Errorf("fault has %s", extra)
	}
	var f v1alpha1.FaultInjection
	if v, ok := m["delay"]; ok {
		d, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("fault.delay is not an object")
		}
		if extra := extraKeys(d, "percentage", "fixedDelay"); extra != "" {
			return nil, fmt.Errorf("fault.delay has %s", extra)
		}
		p, err := percentage(d)
		if err != nil {
			return nil, fmt.Errorf("fault.delay: %w", err)
		}
		s, ok := d["fixedDelay"].(string)
		if !ok {
			return nil, fmt.Errorf("fault.delay: no fixedDelay")
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("fault.delay.fixedDelay: %w", err)
		}
		f.Delay = &v1alpha1.FaultDelay{Percentage: p, FixedDelay: metav1.Duration{Duration: dur}}
	}
	if v, ok := m["abort"]; ok {
		a, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("fault.abort is not an object")
		}
		if extra := extraKeys(a, "percentage", "httpStatus"); extra != "" {
			return nil, fmt.Errorf("fault.abort has %s", extra)
		}
		p, err := percentage(a)
		if err != nil {
			return nil, fmt.Errorf("fault.abort: %w", err)
		}
		raw, ok := a["httpStatus"]
		if !ok {
			return nil, fmt.Errorf("fault.abort: no httpStatus")
		}
		st, err := number(raw)
		if err != nil || st != math.Trunc(st) || st < 0 || st > math.MaxInt32 {
			return nil, fmt.Errorf("fault.abort.httpStatus %v is not a status code", raw)
		}
		f.Abort = &v1alpha1.FaultAbort{Percentage: p, HTTPStatus: int32(st)}
	}
	if f.Delay == nil && f.Abort == nil {
		return nil, nil
	}
	return &f, nil
}

// percentage reads percentage.value of a fault; a missing value is 0, as in proto3.
func percentage(m map[string]any) (float64, error) {
	p, ok := m["percentage"].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("no percentage")
	}
	v, ok := p["value"]
	if !ok {
		return 0, nil
	}
	f, err := number(v)
	if err != nil {
		return 0, fmt.Errorf("percentage.value: %w", err)
	}
	return f, nil
}

// number reads a JSON number as decoded by apimachinery (int64, float64) or encoding/json
// (float64, json.Number).
func number(v any) (float64, error) {
	switch n := v.(type) {
	case int64:
		return float64(n), nil
	case int32:
		return float64(n), nil
	case int:
		return float64(n), nil
	case float64:
		return n, nil
	case json.Number:
		return n.Float64()
	}
	return 0, fmt.Errorf("%v (%T) is not a number", v, v)
}

// extraKeys names, sorted, the keys of m other than known; "" when there are none.
func extraKeys(m map[string]any, known ...string) string {
	var extra []string
	for k := range m {
		if !slices.Contains(known, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	return strings.Join(extra, ", ")
}

// ObservedStableSubset reads the pod-template-hash the stable subset of a live
// DestinationRule selects; "" when it has no such subset.
func ObservedStableSubset(dr *unstructured.Unstructured) string {
	if dr == nil {
		return ""
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, raw := range subsets {
		s, ok := raw.(map[string]any)
		if !ok || s["name"] != StableSubset {
			continue
		}
		hash, _, _ := unstructured.NestedString(s, "labels", PodTemplateHashLabel)
		return hash
	}
	return ""
}
