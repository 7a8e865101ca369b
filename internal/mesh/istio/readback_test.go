package istio

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// wantObserved is the routing ObservedRouting should read back from VirtualService(ro, r):
// the weight clamped, the header route only when rendered, the fault only on it and only
// when it injects something.
func wantObserved(ro *v1alpha1.Rollout, r Routing) Routing {
	w := Routing{CanaryWeight: max(0, min(100, r.CanaryWeight))}
	if hm := HeaderMatch(ro); r.HeaderRoute && stringMatch(hm) != nil {
		w.HeaderRoute = true
		if f := r.Fault; f != nil && (f.Delay != nil || f.Abort != nil) {
			w.Fault = f
		}
	}
	return w
}

func TestObservedRoutingRoundTrip(t *testing.T) {
	faults := []*v1alpha1.FaultInjection{
		nil,
		{},
		faultBoth(),
		{Delay: &v1alpha1.FaultDelay{Percentage: 0, FixedDelay: metav1.Duration{Duration: time.Nanosecond}}},
		{Abort: &v1alpha1.FaultAbort{Percentage: 33.3, HTTPStatus: 599}},
		{Abort: &v1alpha1.FaultAbort{Percentage: 0, HTTPStatus: 503}},
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
					// As rendered, and as read back from the API server, where proto3 JSON
					// has dropped zero weights and percentages.
					for how, v := range map[string]runtime.Object{"rendered": vs, "read back": liveCopy(t, vs), "unstructured": unstructuredCopy(t, vs)} {
						got, err := ObservedRouting(v)
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

func TestObservedRoutingForeignShapes(t *testing.T) {
	type vs = networkingv1.VirtualService
	dest := func(v *vs, i, j int) *networking.HTTPRouteDestination { return v.Spec.Http[i].Route[j] }
	delay := func(v *vs) *networking.HTTPFaultInjection_Delay { return v.Spec.Http[0].Fault.Delay }
	for _, tc := range []struct {
		name string
		edit func(v *vs)
	}{
		{"no http", func(v *vs) { v.Spec.Http = nil }},
		{"three routes", func(v *vs) { v.Spec.Http = append(v.Spec.Http, v.Spec.Http[1]) }},
		{"routes swapped", func(v *vs) { v.Spec.Http[0], v.Spec.Http[1] = v.Spec.Http[1], v.Spec.Http[0] }},
		{"primary renamed", func(v *vs) { v.Spec.Http[1].Name = "default" }},
		{"header route renamed", func(v *vs) { v.Spec.Http[0].Name = "testers" }},
		{"primary only, but it is the header route", func(v *vs) { v.Spec.Http = v.Spec.Http[:1] }},
		{"primary with a match", func(v *vs) { v.Spec.Http[1].Match = v.Spec.Http[0].Match }},
		{"primary with a fault", func(v *vs) { v.Spec.Http[1].Fault = v.Spec.Http[0].Fault }},
		{"primary single destination", func(v *vs) { v.Spec.Http[1].Route = v.Spec.Http[1].Route[:1] }},
		{"primary subsets swapped", func(v *vs) {
			r := v.Spec.Http[1].Route
			r[0], r[1] = r[1], r[0]
		}},
		{"primary foreign subset", func(v *vs) { dest(v, 1, 1).Destination.Subset = "v2" }},
		{"primary no destination", func(v *vs) { dest(v, 1, 0).Destination = nil }},
		{"weights sum to 90", func(v *vs) { dest(v, 1, 0).Weight = 65 }},
		{"weight above 100", func(v *vs) {
			dest(v, 1, 0).Weight = -10
			dest(v, 1, 1).Weight = 110
		}},
		{"header route without match", func(v *vs) { v.Spec.Http[0].Match = nil }},
		{"header route match without headers", func(v *vs) {
			v.Spec.Http[0].Match = []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/"}}}}
		}},
		{"header route on two headers", func(v *vs) {
			v.Spec.Http[0].Match[0].Headers["x-other"] = &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "1"}}
		}},
		{"header route to stable", func(v *vs) { dest(v, 0, 0).Destination.Subset = "stable" }},
		{"header route with two destinations", func(v *vs) { v.Spec.Http[0].Route = v.Spec.Http[1].Route }},
		{"exponential delay", func(v *vs) {
			delay(v).HttpDelayType = &networking.HTTPFaultInjection_Delay_ExponentialDelay{ExponentialDelay: durationpb.New(time.Second)}
		}},
		{"delay without fixedDelay", func(v *vs) { delay(v).HttpDelayType = nil }},
		{"bad fixedDelay", func(v *vs) {
			delay(v).HttpDelayType = &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: &durationpb.Duration{Seconds: 1, Nanos: -1}}
		}},
		{"delay with the deprecated percent", func(v *vs) { delay(v).Percent = 50 }},
		{"delay without percentage", func(v *vs) { delay(v).Percentage = nil }},
		{"grpc abort", func(v *vs) {
			v.Spec.Http[0].Fault.Abort.ErrorType = &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "UNAVAILABLE"}
		}},
		{"abort without percentage", func(v *vs) { v.Spec.Http[0].Fault.Abort.Percentage = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := VirtualService(rollout(), Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()})
			if _, err := ObservedRouting(v); err != nil {
				t.Fatalf("unedited VirtualService: %v", err)
			}
			tc.edit(v)
			if got, err := ObservedRouting(v); err == nil {
				t.Errorf("ObservedRouting accepted a foreign shape: %+v", got)
			}
		})
	}
	u := unstructuredCopy(t, VirtualService(rollout(), Routing{}))
	if _, err := ObservedRouting(u); err != nil {
		t.Fatalf("unedited unstructured VirtualService: %v", err)
	}
	for name, edit := range map[string]func(u *unstructured.Unstructured){
		"wrong kind":  func(u *unstructured.Unstructured) { u.SetKind("DestinationRule") },
		"wrong group": func(u *unstructured.Unstructured) { u.SetAPIVersion("gateway.networking.k8s.io/v1") },
		"bad weight": func(u *unstructured.Unstructured) {
			u.Object["spec"] = map[string]any{"http": []any{map[string]any{"route": "x"}}}
		},
	} {
		v := u.DeepCopy()
		edit(v)
		if got, err := ObservedRouting(v); err == nil {
			t.Errorf("%s: ObservedRouting accepted %+v", name, got)
		}
	}
	if _, err := ObservedRouting(nil); err == nil {
		t.Error("ObservedRouting(nil) did not fail")
	}
	for _, o := range []runtime.Object{&networkingv1.VirtualService{}, (*networkingv1.VirtualService)(nil), &unstructured.Unstructured{}, (*unstructured.Unstructured)(nil)} {
		if _, err := ObservedRouting(o); err == nil {
			t.Errorf("ObservedRouting of an empty %T did not fail", o)
		}
	}
}

func TestObservedStableSubset(t *testing.T) {
	ro := &v1alpha1.Rollout{}
	ro.Name, ro.Namespace, ro.Spec.TargetRef.Name = "web", "shop", "web"
	dr, err := DestinationRule(ro, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if got := ObservedStableSubset(liveCopy(t, dr)); got != "abc123" {
		t.Errorf("rendered DestinationRule: stable subset %q, want abc123", got)
	}
	foreign := &networkingv1.DestinationRule{Spec: networking.DestinationRule{
		Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
	}}
	for name, d := range map[string]*networkingv1.DestinationRule{"nil": nil, "no spec": {}, "other subsets": foreign} {
		if got := ObservedStableSubset(d); got != "" {
			t.Errorf("%s: stable subset %q, want none", name, got)
		}
	}
}
