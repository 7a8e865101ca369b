package istio

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

func sticky(cookie string) func(*v1alpha1.Rollout) {
	return func(ro *v1alpha1.Rollout) {
		ro.Spec.Strategy.Canary.StickySessions = &v1alpha1.StickySessions{CookieName: cookie}
	}
}

func TestVirtualServiceMirror(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mirror float64
	}{{"none", 0}, {"half a percent", 0.5}, {"all", 100}} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rollout()
			vs := renderVS(t, ro, Routing{CanaryWeight: 5, HeaderRoute: true, Mirror: tc.mirror})
			primary := vs.Spec.Http[len(vs.Spec.Http)-1]
			if tc.mirror == 0 {
				if primary.Mirror != nil || primary.MirrorPercentage != nil {
					t.Fatalf("mirror %v / %v without a mirror step", primary.Mirror, primary.MirrorPercentage)
				}
			} else {
				want := &networking.Destination{Host: "web", Subset: CanarySubset, Port: &networking.PortSelector{Number: 8080}}
				if !proto.Equal(primary.Mirror, want) || primary.MirrorPercentage.GetValue() != tc.mirror {
					t.Fatalf("mirror %v %v, want %v %v", primary.Mirror, primary.MirrorPercentage, want, tc.mirror)
				}
			}
			// The header route reaches the canary itself: it never mirrors.
			if h := vs.Spec.Http[0]; h.Name != RouteCanary || h.Mirror != nil {
				t.Fatalf("header route %s mirrors %v", h.Name, h.Mirror)
			}
			got, err := ObservedRouting(liveCopy(t, vs))
			if err != nil {
				t.Fatal(err)
			}
			equal(t, "read back", got, Routing{CanaryWeight: 5, HeaderRoute: true, Mirror: tc.mirror})
		})
	}
}

func TestVirtualServiceSticky(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ro         *v1alpha1.Rollout
		r          Routing
		wantRoutes []string
		wantCookie string
	}{
		{"no sticky sessions in the spec", rollout(), Routing{CanaryWeight: 25, HeaderRoute: true, Sticky: "rev1"},
			[]string{RouteCanary, RoutePrimary}, ""},
		{"default cookie", rollout(sticky("")), Routing{CanaryWeight: 25, HeaderRoute: true, Sticky: "rev1"},
			[]string{RouteCanary, RouteSticky, RoutePrimary}, "ramp-web=rev1; Path=/; HttpOnly"},
		{"own cookie, no header route", rollout(sticky("cs"), noHeaderMatch), Routing{CanaryWeight: 25, Sticky: "rev1"},
			[]string{RouteSticky, RoutePrimary}, "cs=rev1; Path=/; HttpOnly"},
		{"sticky off", rollout(sticky("")), Routing{CanaryWeight: 25, HeaderRoute: true},
			[]string{RouteCanary, RoutePrimary}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := renderVS(t, tc.ro, tc.r)
			equal(t, "routes", routeNames(t, wire(t, vs)), tc.wantRoutes)
			primary := vs.Spec.Http[len(vs.Spec.Http)-1]
			equal(t, "Set-Cookie on the canary", primary.Route[1].GetHeaders().GetResponse().GetSet()[SetCookieHeader], tc.wantCookie)
			if primary.Route[0].Headers != nil {
				t.Errorf("stable's answers set %v", primary.Route[0].Headers)
			}
			if tc.wantCookie != "" {
				m := vs.Spec.Http[len(vs.Spec.Http)-2].Match[0].Headers["cookie"].GetRegex()
				cookie := StickyCookie(tc.ro)
				for header, want := range map[string]bool{
					cookie + "=rev1":                   true,
					"a=b; " + cookie + "=rev1; c=d":    true,
					"a=b;" + cookie + "=rev1":          true,
					cookie + "=rev10":                  false,
					"x" + cookie + "=rev1":             false,
					cookie + "=rev0":                   false,
					"other=" + cookie + "=rev1; x=1":   false,
					"a=b; " + cookie + "=rev1;secure=": true,
				} {
					if got := regexpFullMatch(t, m, header); got != want {
						t.Errorf("cookie %q matches %v, want %v (regex %s)", header, got, want, m)
					}
				}
			}
			got, err := ObservedRouting(liveCopy(t, vs))
			if err != nil {
				t.Fatal(err)
			}
			want := Routing{CanaryWeight: tc.r.CanaryWeight, HeaderRoute: tc.r.HeaderRoute && HeaderMatch(tc.ro) != nil}
			if tc.wantCookie != "" {
				want.Sticky = tc.r.Sticky
			}
			equal(t, "read back", got, want)
		})
	}
}

// userVS is a VirtualService as Git writes it: a legacy route, the route ramp weights (with
// retries and a rewrite), a route for the canary's own API and a catch-all.
func userVS() *networkingv1.VirtualService {
	dest := func(host, subset string, w int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset, Port: &networking.PortSelector{Number: 8080}}, Weight: w}
	}
	return &networkingv1.VirtualService{
		TypeMeta:   typeMeta(KindVirtualService),
		ObjectMeta: metav1.ObjectMeta{Name: "web-routes", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: networking.VirtualService{
			Hosts:    []string{"web", "web.example.com"},
			Gateways: []string{"mesh", "istio-system/public"},
			Http: []*networking.HTTPRoute{
				{Name: "legacy", Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api/v1"}}}},
					Route: []*networking.HTTPRouteDestination{dest("web-legacy", "", 0)}},
				{Name: "api", Match: []*networking.HTTPMatchRequest{
					{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api/v2"}}},
					{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api/v3"}}, Headers: map[string]*networking.StringMatch{"x-team": {MatchType: &networking.StringMatch_Exact{Exact: "a"}}}},
				},
					Rewrite: &networking.HTTPRewrite{Uri: "/api"},
					Retries: &networking.HTTPRetry{Attempts: 2, RetryOn: "5xx"},
					Route:   []*networking.HTTPRouteDestination{dest("web.shop.svc.cluster.local", StableSubset, 100), dest("web.shop.svc.cluster.local", CanarySubset, 0)}},
				{Name: "primary", Timeout: durationpb.New(3e9),
					Route: []*networking.HTTPRouteDestination{dest("web", CanarySubset, 0), dest("web", StableSubset, 100)}},
			},
		},
	}
}

// referencing makes ro reference userVS's routes.
func referencing(routes ...string) func(*v1alpha1.Rollout) {
	return func(ro *v1alpha1.Rollout) {
		ro.Spec.Service.VirtualServiceRef = &v1alpha1.VirtualServiceReference{Name: "web-routes", Routes: routes}
	}
}

// edit is EditVirtualService, recorded for TestIstioAcceptsRendered.
func edit(t *testing.T, ro *v1alpha1.Rollout, live *networkingv1.VirtualService, r Routing) *networkingv1.VirtualService {
	t.Helper()
	vs, err := EditVirtualService(ro, live, r)
	if err != nil {
		t.Fatal(err)
	}
	record(t, vs)
	return vs
}

func TestEditVirtualService(t *testing.T) {
	ro := rollout(referencing("api", "primary"), sticky(""))
	live := userVS()
	orig := live.DeepCopy()
	r := Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth(), Sticky: "rev1"}
	vs := edit(t, ro, live, r)
	if !proto.Equal(&live.Spec, &orig.Spec) {
		t.Fatal("EditVirtualService changed its input")
	}
	equal(t, "routes", routeNames(t, wire(t, vs)), []string{"legacy",
		"ramp-web-header-api", "ramp-web-header-primary", "ramp-web-sticky-api", "ramp-web-sticky-primary", "api", "primary"})
	// Everything but the weights, the cookie and ramp's routes is as Git wrote it.
	want := orig.DeepCopy()
	want.Spec.Http[1].Route[0].Weight, want.Spec.Http[1].Route[1].Weight = 75, 25
	want.Spec.Http[2].Route[0].Weight, want.Spec.Http[2].Route[1].Weight = 25, 75
	set := &networking.Headers{Response: &networking.Headers_HeaderOperations{Set: map[string]string{SetCookieHeader: "ramp-web=rev1; Path=/; HttpOnly"}}}
	want.Spec.Http[1].Route[1].Headers = set
	want.Spec.Http[2].Route[0].Headers = set
	gotUser := vs.DeepCopy()
	gotUser.Spec.Http = append([]*networking.HTTPRoute{gotUser.Spec.Http[0]}, gotUser.Spec.Http[5:]...)
	if !proto.Equal(&gotUser.Spec, &want.Spec) {
		t.Errorf("Git's routes changed beyond the weights and the cookie:\n got %v\nwant %v", &gotUser.Spec, &want.Spec)
	}
	equal(t, "metadata", vs.ObjectMeta, orig.ObjectMeta)

	// The header route of "api" catches what "api" catches, with the header, and keeps its
	// rewrite and retries; it goes to the canary alone, with the fault.
	h := vs.Spec.Http[1]
	if len(h.Match) != 2 || h.Match[0].Uri.GetPrefix() != "/api/v2" || h.Match[0].Headers["x-canary"].GetExact() != "true" ||
		h.Match[1].Headers["x-team"].GetExact() != "a" || h.Match[1].Headers["x-canary"].GetExact() != "true" {
		t.Errorf("header route matches %v", h.Match)
	}
	if h.Rewrite.GetUri() != "/api" || h.Retries.GetAttempts() != 2 || h.Fault == nil {
		t.Errorf("header route: rewrite %v retries %v fault %v", h.Rewrite, h.Retries, h.Fault)
	}
	if len(h.Route) != 1 || h.Route[0].Destination.Subset != CanarySubset || h.Route[0].Weight != 100 || h.Route[0].Destination.Host != "web.shop.svc.cluster.local" {
		t.Errorf("header route goes to %v", h.Route)
	}
	// The catch-all's header route matches the header alone.
	if m := vs.Spec.Http[2].Match; len(m) != 1 || len(m[0].Headers) != 1 || m[0].Uri != nil {
		t.Errorf("catch-all header route matches %v", m)
	}
	if m := vs.Spec.Http[4].Match; len(m) != 1 || m[0].Headers["cookie"].GetRegex() == "" || vs.Spec.Http[4].Fault != nil {
		t.Errorf("sticky route: match %v fault %v", m, vs.Spec.Http[4].Fault)
	}

	got, err := ObservedReferencedRouting(ro, liveCopy(t, vs))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "read back", got, r)

	// Editing again changes nothing; the next step moves only the weights.
	if again := edit(t, ro, vs, r); !proto.Equal(&again.Spec, &vs.Spec) {
		t.Errorf("a second edit changed the VirtualService:\n%v\n%v", &again.Spec, &vs.Spec)
	}
	next := edit(t, ro, vs, Routing{CanaryWeight: 50, HeaderRoute: true, Sticky: "rev1"})
	if next.Spec.Http[5].Route[1].Weight != 50 || next.Spec.Http[6].Route[0].Weight != 50 || next.Spec.Http[1].Fault != nil {
		t.Errorf("next step: %v", next.Spec.Http)
	}

	// Routing{} (promoted, rolled back, released) gives back Git's VirtualService with all
	// traffic on stable: no ramp route, no cookie, no mirror.
	mirrored := edit(t, ro, vs, Routing{CanaryWeight: 5, Mirror: 20})
	if m := mirrored.Spec.Http[len(mirrored.Spec.Http)-1]; m.Mirror.GetSubset() != CanarySubset || m.MirrorPercentage.GetValue() != 20 {
		t.Errorf("mirror step: %v %v", m.Mirror, m.MirrorPercentage)
	}
	back := edit(t, ro, mirrored, Routing{})
	if !proto.Equal(&back.Spec, &orig.Spec) {
		t.Errorf("Routing{} is not Git's VirtualService:\n got %v\nwant %v", &back.Spec, &orig.Spec)
	}
}

// A mirror Git wrote to somewhere else is Git's: ramp leaves it when it mirrors nothing.
func TestEditVirtualServiceLeavesForeignMirror(t *testing.T) {
	ro := rollout(referencing("primary"))
	live := userVS()
	live.Spec.Http[2].Mirror = &networking.Destination{Host: "web-shadow"}
	vs := edit(t, ro, live, Routing{CanaryWeight: 5})
	if vs.Spec.Http[2].Mirror.GetHost() != "web-shadow" {
		t.Fatalf("mirror %v", vs.Spec.Http[2].Mirror)
	}
}

func TestEditVirtualServiceErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		routes    []string
		mutate    func(*networkingv1.VirtualService)
		field     string
		wantInMsg string
	}{
		{"no such route", []string{"primary", "nope"}, nil,
			"spec.service.virtualServiceRef.routes[1]", `VirtualService "web-routes" has no http route named "nope": name one of its http routes ("legacy", "api", "primary")`},
		{"no canary destination", []string{"primary"}, func(vs *networkingv1.VirtualService) { vs.Spec.Http[2].Route = vs.Spec.Http[2].Route[1:] },
			"spec.service.virtualServiceRef.routes[0]", `route "primary" of VirtualService "web-routes" has no destination with subset "canary" of host "web"`},
		{"no stable destination", []string{"primary"}, func(vs *networkingv1.VirtualService) { vs.Spec.Http[2].Route = vs.Spec.Http[2].Route[:1] },
			"spec.service.virtualServiceRef.routes[0]", `has no destination with subset "stable"`},
		{"another host", []string{"legacy"}, nil,
			"spec.service.virtualServiceRef.routes[0]", `route "legacy" of VirtualService "web-routes", route[0] goes to host "web-legacy", not to Service "web"`},
		{"another subset", []string{"primary"}, func(vs *networkingv1.VirtualService) { vs.Spec.Http[2].Route[0].Destination.Subset = "v2" },
			"spec.service.virtualServiceRef.routes[0]", `has subset "v2": want "stable" or "canary"`},
		{"another namespace's Service", []string{"primary"}, func(vs *networkingv1.VirtualService) {
			vs.Spec.Http[2].Route[0].Destination.Host = "web.other.svc.cluster.local"
		},
			"spec.service.virtualServiceRef.routes[0]", `goes to host "web.other.svc.cluster.local"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := userVS()
			if tc.mutate != nil {
				tc.mutate(live)
			}
			ro := rollout(referencing(tc.routes...))
			for what, err := range map[string]error{
				"edit":      func() error { _, err := EditVirtualService(ro, live, Routing{CanaryWeight: 5}); return err }(),
				"read back": func() error { _, err := ObservedReferencedRouting(ro, live); return err }(),
			} {
				var re *RefError
				if !errors.As(err, &re) {
					t.Fatalf("%s: error %v, want a *RefError", what, err)
				}
				if re.Field != tc.field || !strings.Contains(re.Message, tc.wantInMsg) {
					t.Errorf("%s: %s: %s\nwant field %s and %q", what, re.Field, re.Message, tc.field, tc.wantInMsg)
				}
			}
		})
	}
}

// The named routes disagreeing on the weight is someone else's edit: unreadable.
func TestObservedReferencedRoutingDisagreeingRoutes(t *testing.T) {
	ro := rollout(referencing("api", "primary"))
	vs := edit(t, ro, userVS(), Routing{CanaryWeight: 25})
	vs.Spec.Http[2].Route[0].Weight, vs.Spec.Http[2].Route[1].Weight = 10, 90
	if _, err := ObservedReferencedRouting(ro, vs); err == nil || !strings.Contains(err.Error(), `route "api" sends 25% to the canary, route "primary" 10%`) {
		t.Fatalf("error %v", err)
	}
}

func TestReferencedApplyPatch(t *testing.T) {
	ro := rollout(referencing("primary"))
	live := userVS()
	live.ResourceVersion = "42"
	vs := edit(t, ro, live, Routing{CanaryWeight: 5})
	b, err := ReferencedApplyPatch(vs)
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]any{}
	if err := jsonUnmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	equal(t, "metadata", u["metadata"], map[string]any{"name": "web-routes", "namespace": "shop", "resourceVersion": "42"})
	spec := u["spec"].(map[string]any)
	if len(spec) != 1 || len(spec["http"].([]any)) != 3 {
		t.Fatalf("spec %v: want spec.http alone, all of it", spec)
	}
}

// regexpFullMatch matches s against re as Envoy does: the whole string.
func regexpFullMatch(t *testing.T, re, s string) bool {
	t.Helper()
	return regexp.MustCompile("^(?:" + re + ")$").MatchString(s)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestUsesSubsets(t *testing.T) {
	ro := rollout(referencing("api", "primary"))
	plain := func(vs *networkingv1.VirtualService) {
		for _, r := range vs.Spec.Http {
			for _, d := range r.Route {
				d.Destination.Subset = ""
			}
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*networkingv1.VirtualService)
		want bool
	}{
		{"routes to the subsets", func(*networkingv1.VirtualService) {}, true},
		{"routes to the plain Service", plain, false},
		{"another Service's subsets", func(vs *networkingv1.VirtualService) {
			plain(vs)
			vs.Spec.Http[0].Route[0].Destination.Subset = StableSubset // web-legacy
		}, false},
		{"mirrors to a subset", func(vs *networkingv1.VirtualService) {
			plain(vs)
			vs.Spec.Http[0].Mirror = &networking.Destination{Host: "web.shop", Subset: CanarySubset}
		}, true},
	} {
		vs := userVS()
		tc.edit(vs)
		if got := UsesSubsets(ro, vs); got != tc.want {
			t.Errorf("%s: UsesSubsets = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReleasedDestinationRule(t *testing.T) {
	ro := rollout(referencing("api"), fullTrafficPolicy)
	dr := ReleasedDestinationRule(ro)
	record(t, dr)
	owned := mustDR(t, ro)
	if len(dr.OwnerReferences) != 0 || len(dr.Labels) != 0 || dr.Annotations[ReleasedFromAnnotation] != ro.Name {
		t.Errorf("metadata %+v: want no owner, no labels, %s=%s", dr.ObjectMeta, ReleasedFromAnnotation, ro.Name)
	}
	if dr.Spec.Host != owned.Spec.Host || !proto.Equal(dr.Spec.TrafficPolicy, owned.Spec.TrafficPolicy) {
		t.Errorf("host or traffic policy differ from the DestinationRule ramp manages: %v", &dr.Spec)
	}
	if len(dr.Spec.Subsets) != 2 || dr.Spec.Subsets[0].Name != StableSubset || dr.Spec.Subsets[1].Name != CanarySubset ||
		len(dr.Spec.Subsets[0].Labels)+len(dr.Spec.Subsets[1].Labels) != 0 {
		t.Errorf("subsets %v: want stable and canary, both selecting every pod", dr.Spec.Subsets)
	}
}
