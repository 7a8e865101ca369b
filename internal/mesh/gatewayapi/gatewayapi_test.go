package gatewayapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

func rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "uid-1"},
		Spec: v1alpha1.RolloutSpec{
			TargetRef: v1alpha1.TargetReference{Name: "web"},
			Service:   v1alpha1.ServiceSpec{Port: 8080, GatewayAPI: &v1alpha1.GatewayAPIRouting{}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{
				HeaderMatch: &v1alpha1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
		},
	}
}

// What ramp renders reads back as the same split, for every shape it renders.
func TestRoutingRoundTrips(t *testing.T) {
	for _, rt := range []Routing{
		{},
		{CanaryWeight: 5, HeaderRoute: true},
		{CanaryWeight: 100},
		{CanaryWeight: 25, Mirror: 20},
		{CanaryWeight: 0, HeaderRoute: true, Mirror: 0.5},
		{Mirror: 0.0001},
		{Mirror: 100},
	} {
		hr := HTTPRoute(rollout(), rt)
		got, err := ObservedRouting(rollout(), hr)
		if err != nil || got != rt {
			t.Errorf("%+v: read back %+v, %v", rt, got, err)
		}
	}
}

func TestHTTPRoute(t *testing.T) {
	ro := rollout()
	hr := HTTPRoute(ro, Routing{CanaryWeight: 30, HeaderRoute: true})
	if hr.Name != "web" || hr.Namespace != "shop" || !metav1.IsControlledBy(hr, ro) {
		t.Errorf("metadata %+v", hr.ObjectMeta)
	}
	// Without parentRefs the route attaches to the Service itself: the mesh's traffic (GAMMA).
	if p := hr.Spec.ParentRefs; len(p) != 1 || *p[0].Kind != "Service" || *p[0].Group != "" || p[0].Name != "web" {
		t.Errorf("parentRefs %+v", p)
	}
	if n := len(hr.Spec.Rules); n != 2 {
		t.Fatalf("%d rules, want the header rule and the weighted rule", n)
	}
	header, primary := hr.Spec.Rules[0], hr.Spec.Rules[1]
	if m := header.Matches[0].Headers[0]; m.Name != "x-canary" || *m.Type != gwapiv1.HeaderMatchExact || m.Value != "true" {
		t.Errorf("header match %+v", m)
	}
	if b := header.BackendRefs; len(b) != 1 || b[0].Name != "web-canary" || *b[0].Port != 8080 {
		t.Errorf("header rule backends %+v", b)
	}
	if b := primary.BackendRefs; b[0].Name != "web-stable" || *b[0].Weight != 70 || b[1].Name != "web-canary" || *b[1].Weight != 30 {
		t.Errorf("weighted rule backends %+v", b)
	}

	// Without the header route, or a strategy without a header, there is no header rule.
	if n := len(HTTPRoute(ro, Routing{CanaryWeight: 30}).Spec.Rules); n != 1 {
		t.Errorf("%d rules without the header route", n)
	}

	// Blue/green's default preview header; a regex header; gateways, hostnames, timeout.
	ro.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}
	ro.Spec.Service.GatewayAPI = &v1alpha1.GatewayAPIRouting{
		ParentRefs: []v1alpha1.GatewayParentReference{{Name: "public", Namespace: "gateways", SectionName: "https", Port: ptr.To[int32](443)}},
		Hostnames:  []string{"web.example.com"},
	}
	ro.Spec.Service.Timeout = &metav1.Duration{Duration: 90500 * time.Millisecond}
	hr = HTTPRoute(ro, Routing{HeaderRoute: true})
	if m := hr.Spec.Rules[0].Matches[0].Headers[0]; m.Name != istio.DefaultPreviewHeader || m.Value != istio.DefaultPreviewValue {
		t.Errorf("preview header %+v", m)
	}
	p := hr.Spec.ParentRefs[0]
	if *p.Group != gwapiv1.GroupName || *p.Kind != "Gateway" || *p.Namespace != "gateways" || *p.SectionName != "https" || *p.Port != 443 {
		t.Errorf("parentRef %+v", p)
	}
	if len(hr.Spec.Hostnames) != 1 || hr.Spec.Hostnames[0] != "web.example.com" {
		t.Errorf("hostnames %v", hr.Spec.Hostnames)
	}
	if to := hr.Spec.Rules[1].Timeouts; to == nil || *to.Request != "1m30s500ms" {
		t.Errorf("timeouts %+v", to)
	}
	ro.Spec.Strategy.BlueGreen.PreviewHeader = &v1alpha1.HeaderMatch{Name: "x-preview", Regex: ptr.To("^yes$")}
	if m := HTTPRoute(ro, Routing{HeaderRoute: true}).Spec.Rules[0].Matches[0].Headers[0]; *m.Type != gwapiv1.HeaderMatchRegularExpression || m.Value != "^yes$" {
		t.Errorf("regex header %+v", m)
	}
}

// A route ramp did not render in its shape is unreadable, never read as some weight.
func TestObservedRoutingRefusesOtherShapes(t *testing.T) {
	edit := map[string]func(*gwapiv1.HTTPRoute){
		"a rule of someone else's": func(hr *gwapiv1.HTTPRoute) {
			hr.Spec.Rules = append(hr.Spec.Rules, gwapiv1.HTTPRouteRule{Name: ptr.To(gwapiv1.SectionName("legacy"))})
		},
		"no weighted rule":        func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules = hr.Spec.Rules[:1] },
		"another backend":         func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].BackendRefs[0].Name = "web-v1" },
		"weights not summing 100": func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].BackendRefs[0].Weight = ptr.To[int32](50) },
		"no canary backend":       func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].BackendRefs = hr.Spec.Rules[1].BackendRefs[:1] },
	}
	for name, f := range edit {
		hr := HTTPRoute(rollout(), Routing{CanaryWeight: 10, HeaderRoute: true})
		f(hr)
		if rt, err := ObservedRouting(rollout(), hr); err == nil {
			t.Errorf("%s: read as %+v", name, rt)
		}
	}
}

func TestServices(t *testing.T) {
	ro := rollout()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(9898), Protocol: corev1.ProtocolTCP, NodePort: 30080}},
	}}
	stable, canary, err := Services(ro, svc, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if stable.Name != "web-stable" || stable.Spec.Selector["app"] != "web" || stable.Spec.Selector[istio.PodTemplateHashLabel] != "abc123" || len(stable.Spec.Selector) != 2 {
		t.Errorf("stable %s %v", stable.Name, stable.Spec.Selector)
	}
	if canary.Name != "web-canary" || canary.Spec.Selector[istio.TrackLabel] != istio.TrackCanary || len(canary.Spec.Selector) != 2 {
		t.Errorf("canary %s %v", canary.Name, canary.Spec.Selector)
	}
	if p := stable.Spec.Ports[0]; p.Port != 8080 || p.TargetPort.IntVal != 9898 || p.Name != "http" || p.NodePort != 0 {
		t.Errorf("ports %+v", p)
	}
	if !metav1.IsControlledBy(stable, ro) || ObservedStableHash(stable) != "abc123" {
		t.Errorf("stable %+v", stable.ObjectMeta)
	}
	if svc.Spec.Selector[istio.PodTemplateHashLabel] != "" {
		t.Error("Services changed the Service's selector")
	}

	if _, _, err := Services(ro, svc, ""); !errors.Is(err, istio.ErrNoStableHash) {
		t.Errorf("no stable hash: %v", err)
	}
	svc.Spec.Selector = nil
	if _, _, err := Services(ro, svc, "abc123"); err == nil || !strings.Contains(err.Error(), "has no selector") {
		t.Errorf("no selector: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for ms, want := range map[int64]string{0: "0s", 1: "1ms", 1500: "1s500ms", 60_000: "1m", 3_723_004: "1h2m3s4ms", 8760 * 3_600_000: "8760h"} {
		if got := formatDuration(ms); got != want {
			t.Errorf("%d ms: %q, want %q", ms, got, want)
		}
	}
}
