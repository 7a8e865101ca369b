package istio

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// wantObserved is the routing ObservedRouting should read back from VirtualService(ro, r):
// the weight clamped, the header route only when rendered, the fault only on it and only
// when it injects something.
func wantObserved(ro *v1alpha1.Rollout, r Routing) Routing {
	w := Routing{CanaryWeight: max(0, min(100, r.CanaryWeight))}
	if hm := HeaderMatch(ro); r.HeaderRoute && hm != nil {
		if _, ok := stringMatch(hm); ok {
			w.HeaderRoute = true
			if f := r.Fault; f != nil && (f.Delay != nil || f.Abort != nil) {
				w.Fault = f
			}
		}
	}
	return w
}

// viaJSON round-trips u through JSON as the API server and client would: apimachinery's
// decoder yields int64 for integral numbers (so a 100.0 percentage comes back as int64).
func viaJSON(t testing.TB, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return out
}

// viaStdJSON round-trips u through encoding/json: every number becomes float64.
func viaStdJSON(t testing.TB, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	out := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &out.Object); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestObservedRoutingRoundTrip(t *testing.T) {
	faults := []*v1alpha1.FaultInjection{
		nil,
		{},
		faultBoth(),
		{Delay: &v1alpha1.FaultDelay{Percentage: 0, FixedDelay: metav1.Duration{Duration: time.Nanosecond}}},
		{Abort: &v1alpha1.FaultAbort{Percentage: 33.3, HTTPStatus: 599}},
	}
	rollouts := map[string]*v1alpha1.Rollout{
		"canary":                rollout(retriesAndTimeout),
		"canary no headerMatch": rollout(noHeaderMatch),
		"blue/green default":    rollout(blueGreen(nil)),
		"blue/green regex":      rollout(blueGreen(&v1alpha1.HeaderMatch{Name: "x-env", Regex: ptr(".*")})),
		"no port":               rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Port = 0 }),
	}
	for name, ro := range rollouts {
		for _, w := range []int32{0, 5, 25, 100, -1, 101} {
			for _, hr := range []bool{false, true} {
				for _, f := range faults {
					r := Routing{CanaryWeight: w, HeaderRoute: hr, Fault: f}
					want := wantObserved(ro, r)
					vs := VirtualService(ro, r)
					for how, u := range map[string]*unstructured.Unstructured{
						"rendered":      vs,
						"apimachinery":  viaJSON(t, vs),
						"encoding/json": viaStdJSON(t, vs),
					} {
						got, err := ObservedRouting(u)
						if err != nil {
							t.Errorf("%s %+v (%s): %v", name, r, how, err)
							continue
						}
						equal(t, name+" "+how, got, want)
					}
				}
			}
		}
	}
}

// TestObservedRoutingProto3 accepts what a proto3 round trip leaves: zero weights and zero
// percentages omitted.
func TestObservedRoutingProto3(t *testing.T) {
	vs := VirtualService(rollout(), Routing{CanaryWeight: 0, HeaderRoute: true, Fault: &v1alpha1.FaultInjection{
		Abort: &v1alpha1.FaultAbort{Percentage: 0, HTTPStatus: 503},
	}})
	delete(get(t, vs.Object, "spec", "http", 1, "route", 1).(map[string]any), "weight")
	delete(get(t, vs.Object, "spec", "http", 0, "fault", "abort", "percentage").(map[string]any), "value")
	got, err := ObservedRouting(vs)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "routing", got, Routing{HeaderRoute: true, Fault: &v1alpha1.FaultInjection{
		Abort: &v1alpha1.FaultAbort{Percentage: 0, HTTPStatus: 503},
	}})
}

func TestObservedRoutingForeignShapes(t *testing.T) {
	type obj = map[string]any
	route := func(u *unstructured.Unstructured, i int) obj { return u.Object["spec"].(obj)["http"].([]any)[i].(obj) }
	dest := func(u *unstructured.Unstructured, i, j int) obj { return route(u, i)["route"].([]any)[j].(obj) }
	for _, tc := range []struct {
		name string
		edit func(u *unstructured.Unstructured)
	}{
		{"wrong kind", func(u *unstructured.Unstructured) { u.SetKind("DestinationRule") }},
		{"wrong group", func(u *unstructured.Unstructured) { u.SetAPIVersion("gateway.networking.k8s.io/v1") }},
		{"no spec", func(u *unstructured.Unstructured) { delete(u.Object, "spec") }},
		{"no http", func(u *unstructured.Unstructured) { delete(u.Object["spec"].(obj), "http") }},
		{"empty http", func(u *unstructured.Unstructured) { u.Object["spec"].(obj)["http"] = []any{} }},
		{"three routes", func(u *unstructured.Unstructured) {
			u.Object["spec"].(obj)["http"] = append(u.Object["spec"].(obj)["http"].([]any), route(u, 1))
		}},
		{"routes swapped", func(u *unstructured.Unstructured) {
			h := u.Object["spec"].(obj)["http"].([]any)
			h[0], h[1] = h[1], h[0]
		}},
		{"primary renamed", func(u *unstructured.Unstructured) { route(u, 1)["name"] = "default" }},
		{"header route renamed", func(u *unstructured.Unstructured) { route(u, 0)["name"] = "testers" }},
		{"primary only, but it is the header route", func(u *unstructured.Unstructured) {
			u.Object["spec"].(obj)["http"] = []any{route(u, 0)}
		}},
		{"primary with a match", func(u *unstructured.Unstructured) { route(u, 1)["match"] = route(u, 0)["match"] }},
		{"primary with a fault", func(u *unstructured.Unstructured) { route(u, 1)["fault"] = route(u, 0)["fault"] }},
		{"primary single destination", func(u *unstructured.Unstructured) {
			route(u, 1)["route"] = route(u, 1)["route"].([]any)[:1]
		}},
		{"primary subsets swapped", func(u *unstructured.Unstructured) {
			r := route(u, 1)["route"].([]any)
			r[0], r[1] = r[1], r[0]
		}},
		{"primary foreign subset", func(u *unstructured.Unstructured) { dest(u, 1, 1)["destination"].(obj)["subset"] = "v2" }},
		{"primary no destination", func(u *unstructured.Unstructured) { delete(dest(u, 1, 0), "destination") }},
		{"weights sum to 90", func(u *unstructured.Unstructured) { dest(u, 1, 0)["weight"] = int64(65) }},
		{"weight above 100", func(u *unstructured.Unstructured) {
			dest(u, 1, 0)["weight"] = int64(-10)
			dest(u, 1, 1)["weight"] = int64(110)
		}},
		{"fractional weight", func(u *unstructured.Unstructured) {
			dest(u, 1, 0)["weight"] = 74.5
			dest(u, 1, 1)["weight"] = 25.5
		}},
		{"weight not a number", func(u *unstructured.Unstructured) { dest(u, 1, 1)["weight"] = "25" }},
		{"header route without match", func(u *unstructured.Unstructured) { delete(route(u, 0), "match") }},
		{"header route match without headers", func(u *unstructured.Unstructured) {
			route(u, 0)["match"] = []any{obj{"uri": obj{"prefix": "/"}}}
		}},
		{"header route to stable", func(u *unstructured.Unstructured) { dest(u, 0, 0)["destination"].(obj)["subset"] = "stable" }},
		{"header route with two destinations", func(u *unstructured.Unstructured) { route(u, 0)["route"] = route(u, 1)["route"] }},
		{"fault not an object", func(u *unstructured.Unstructured) { route(u, 0)["fault"] = "yes" }},
		{"fault with an unknown field", func(u *unstructured.Unstructured) { route(u, 0)["fault"].(obj)["reset"] = obj{} }},
		{"exponential delay", func(u *unstructured.Unstructured) {
			d := route(u, 0)["fault"].(obj)["delay"].(obj)
			d["exponentialDelay"] = d["fixedDelay"]
			delete(d, "fixedDelay")
		}},
		{"bad fixedDelay", func(u *unstructured.Unstructured) { route(u, 0)["fault"].(obj)["delay"].(obj)["fixedDelay"] = "soon" }},
		{"delay without percentage", func(u *unstructured.Unstructured) {
			delete(route(u, 0)["fault"].(obj)["delay"].(obj), "percentage")
		}},
		{"grpc abort", func(u *unstructured.Unstructured) {
			a := route(u, 0)["fault"].(obj)["abort"].(obj)
			delete(a, "httpStatus")
			a["grpcStatus"] = "UNAVAILABLE"
		}},
		{"abort status not an integer", func(u *unstructured.Unstructured) {
			route(u, 0)["fault"].(obj)["abort"].(obj)["httpStatus"] = 503.5
		}},
		{"percentage not a number", func(u *unstructured.Unstructured) {
			route(u, 0)["fault"].(obj)["abort"].(obj)["percentage"] = obj{"value": "all"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := VirtualService(rollout(), Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()})
			if _, err := ObservedRouting(u); err != nil {
				t.Fatalf("unedited VirtualService: %v", err)
			}
			tc.edit(u)
			if got, err := ObservedRouting(u); err == nil {
				t.Errorf("ObservedRouting accepted a foreign shape: %+v", got)
			}
		})
	}
	if _, err := ObservedRouting(nil); err == nil {
		t.Error("ObservedRouting(nil) did not fail")
	}
	if _, err := ObservedRouting(&unstructured.Unstructured{}); err == nil {
		t.Error("ObservedRouting of an empty object did not fail")
	}
}

func TestObservedStableSubset(t *testing.T) {
	ro := &v1alpha1.Rollout{}
	ro.Name, ro.Namespace, ro.Spec.TargetRef.Name = "web", "shop", "web"
	dr, err := DestinationRule(ro, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if got := ObservedStableSubset(viaJSON(t, dr)); got != "abc123" {
		t.Errorf("rendered DestinationRule: stable subset %q, want abc123", got)
	}
	foreign := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"subsets": []any{map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}}},
	}}}
	for name, u := range map[string]*unstructured.Unstructured{"nil": nil, "no spec": {Object: map[string]any{}}, "other subsets": foreign} {
		if got := ObservedStableSubset(u); got != "" {
			t.Errorf("%s: stable subset %q, want none", name, got)
		}
	}
}
