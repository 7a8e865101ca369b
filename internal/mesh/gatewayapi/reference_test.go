package gatewayapi

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// gitRoute is an HTTPRoute as Git keeps it: a legacy rule, then the rule "primary" to ramp's
// two Services (all to stable), with a timeout and a header modifier.
func gitRoute() *gwapiv1.HTTPRoute {
	svc := func(name string, w int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{BackendObjectReference: gwapiv1.BackendObjectReference{
			Name: gwapiv1.ObjectName(name), Port: ptr.To(gwapiv1.PortNumber(8080))}, Weight: ptr.To(w)}}
	}
	return &gwapiv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web-routes", Namespace: "shop"},
		Spec: gwapiv1.HTTPRouteSpec{
			Hostnames: []gwapiv1.Hostname{"web.example.com"},
			Rules: []gwapiv1.HTTPRouteRule{
				{Name: ptr.To(gwapiv1.SectionName("legacy")),
					Matches:     []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/api/v1")}}},
					BackendRefs: []gwapiv1.HTTPBackendRef{svc("web-legacy", 1)}},
				{Name: ptr.To(gwapiv1.SectionName("primary")),
					Matches: []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/")}}},
					Filters: []gwapiv1.HTTPRouteFilter{{Type: gwapiv1.HTTPRouteFilterRequestHeaderModifier,
						RequestHeaderModifier: &gwapiv1.HTTPHeaderFilter{Set: []gwapiv1.HTTPHeader{{Name: "x-team", Value: "shop"}}}}},
					BackendRefs: []gwapiv1.HTTPBackendRef{svc("web-stable", 100), svc("web-canary", 0)},
					Timeouts:    &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration("7s"))}},
			},
		},
	}
}

func referencing() *v1alpha1.Rollout {
	ro := rollout()
	ro.Spec.Service.GatewayAPI = &v1alpha1.GatewayAPIRouting{HTTPRouteRef: &v1alpha1.HTTPRouteReference{Name: "web-routes", Rules: []string{"primary"}}}
	return ro
}

func TestEditHTTPRoute(t *testing.T) {
	ro, live := referencing(), gitRoute()
	before := live.DeepCopy()
	hr, err := EditHTTPRoute(ro, live, Routing{CanaryWeight: 20, HeaderRoute: true, Mirror: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(live, before) {
		t.Error("EditHTTPRoute changed its input")
	}
	var names []string
	for _, r := range hr.Spec.Rules {
		names = append(names, string(ptr.Deref(r.Name, "")))
	}
	if got := strings.Join(names, " "); got != "legacy ramp-web-header-primary primary" {
		t.Fatalf("rules %s", got)
	}
	header, primary := hr.Spec.Rules[1], hr.Spec.Rules[2]
	if b := primary.BackendRefs; *b[0].Weight != 80 || *b[1].Weight != 20 {
		t.Errorf("weights %d/%d", *b[0].Weight, *b[1].Weight)
	}
	if f := primary.Filters; len(f) != 2 || f[0].Type != gwapiv1.HTTPRouteFilterRequestHeaderModifier || !isCanaryMirror(ro, f[1]) || *f[1].RequestMirror.Percent != 10 {
		t.Errorf("filters %+v: want Git's header modifier, then the mirror", f)
	}
	// The header rule: Git's path match and filters plus the header, to the canary alone,
	// without the mirror.
	if m := header.Matches[0]; *m.Path.Value != "/" || len(m.Headers) != 1 || m.Headers[0].Name != "x-canary" {
		t.Errorf("header rule match %+v", m)
	}
	if len(header.BackendRefs) != 1 || header.BackendRefs[0].Name != "web-canary" || len(header.Filters) != 1 || *header.Timeouts.Request != "7s" {
		t.Errorf("header rule %+v", header)
	}

	got, err := ObservedReferencedRouting(ro, hr)
	if err != nil || got != (Routing{CanaryWeight: 20, HeaderRoute: true, Mirror: 10}) {
		t.Errorf("read back %+v, %v", got, err)
	}
	// Routing back to stable removes ramp's rule and mirror; Git's fields stay as written.
	back, err := EditHTTPRoute(ro, hr, Routing{})
	if err != nil {
		t.Fatal(err)
	}
	want := before.DeepCopy()
	want.Spec.Rules[1].BackendRefs[0].Weight, want.Spec.Rules[1].BackendRefs[1].Weight = ptr.To[int32](100), ptr.To[int32](0)
	if !equality.Semantic.DeepEqual(back, want) {
		t.Errorf("routed back:\n%+v\nwant\n%+v", back.Spec.Rules, want.Spec.Rules)
	}
}

func TestReferencedRulesMustBeRamps(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*gwapiv1.HTTPRoute)
		want string
	}{
		"missing rule": {func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].Name = ptr.To(gwapiv1.SectionName("main")) },
			`HTTPRoute "web-routes" has no rule named "primary": name one of its rules ("legacy", "main")`},
		"another backend": {func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].BackendRefs[1].Name = "web-v2" },
			`backendRefs[1] (web-v2): want exactly two backendRefs, the Services "web-stable" and "web-canary"`},
		"no canary": {func(hr *gwapiv1.HTTPRoute) { hr.Spec.Rules[1].BackendRefs = hr.Spec.Rules[1].BackendRefs[:1] },
			`must have the backendRefs "web-stable" and "web-canary"`},
		"another namespace": {func(hr *gwapiv1.HTTPRoute) {
			hr.Spec.Rules[1].BackendRefs[0].Namespace = ptr.To(gwapiv1.Namespace("other"))
		},
			`backendRefs[0] (web-stable): want exactly two backendRefs`},
	} {
		hr := gitRoute()
		c.edit(hr)
		_, err := EditHTTPRoute(referencing(), hr, Routing{CanaryWeight: 5})
		var refErr *istio.RefError
		if !errors.As(err, &refErr) || refErr.Field != "spec.service.gatewayAPI.httpRouteRef.rules[0]" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a RefError containing %q", name, err, c.want)
		}
	}
	// Git's own weights (not summing to 100) are not a split ramp can read: unknown, not an error to fix.
	hr := gitRoute()
	hr.Spec.Rules[1].BackendRefs[1].Weight = ptr.To[int32](1)
	var refErr *istio.RefError
	if _, err := ObservedReferencedRouting(referencing(), hr); err == nil || errors.As(err, &refErr) {
		t.Errorf("101 in all: %v, want an error that is no RefError", err)
	}
}
