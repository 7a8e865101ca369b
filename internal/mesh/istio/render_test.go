package istio

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestServiceHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		want string
	}{
		{"defaults to target", rollout(), "web"},
		{"service name", rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Name = "web-svc" }), "web-svc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServiceHost(tc.ro); got != tc.want {
				t.Errorf("ServiceHost = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHeaderMatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		want *v1alpha1.HeaderMatch
	}{
		{"canary headerMatch", rollout(), &v1alpha1.HeaderMatch{Name: "x-canary", Exact: ptr("true")}},
		{"canary without headerMatch", rollout(noHeaderMatch), nil},
		{"blue/green default preview header", rollout(blueGreen(nil)), &v1alpha1.HeaderMatch{Name: "x-ramp-preview", Exact: ptr("true")}},
		{"blue/green preview header", rollout(blueGreen(&v1alpha1.HeaderMatch{Name: "x-env", Prefix: ptr("pre")})),
			&v1alpha1.HeaderMatch{Name: "x-env", Prefix: ptr("pre")}},
		{"no strategy", rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Strategy = v1alpha1.Strategy{} }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := HeaderMatch(tc.ro)
			equal(t, "HeaderMatch", got, tc.want)
			if got != nil { // a copy: changing it must not change the Rollout or later results
				got.Name = "mutated"
				equal(t, "HeaderMatch after mutating a previous result", HeaderMatch(tc.ro), tc.want)
			}
		})
	}
}

func TestVirtualServiceMetadata(t *testing.T) {
	ro := rollout()
	for name, u := range map[string]map[string]any{
		"VirtualService":  wire(t, renderVS(t, ro, Routing{})),
		"DestinationRule": wire(t, mustDR(t, ro)),
	} {
		t.Run(name, func(t *testing.T) {
			if len(u) != 4 {
				t.Errorf("top-level keys %v, want apiVersion, kind, metadata, spec (never status)", keys(u))
			}
			equal(t, "apiVersion", u["apiVersion"], "networking.istio.io/v1")
			equal(t, "kind", u["kind"], name)
			equal(t, "metadata", u["metadata"], map[string]any{
				"name":      "web",
				"namespace": "shop",
				"labels":    map[string]any{"app.kubernetes.io/managed-by": "ramp", "ramp.dev/rollout": "web"},
				"ownerReferences": []any{map[string]any{
					"apiVersion": "ramp.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": "0b8f7c1e-uid",
					"controller": true, "blockOwnerDeletion": true,
				}},
			})
		})
	}
}

func TestVirtualServiceWeights(t *testing.T) {
	for _, tc := range []struct {
		weight               int32
		wantStable, wantCany int64
	}{
		{0, 100, 0}, {5, 95, 5}, {25, 75, 25}, {100, 0, 100},
		{-3, 100, 0}, {150, 0, 100}, // clamped
	} {
		vs := wire(t, renderVS(t, rollout(), Routing{CanaryWeight: tc.weight}))
		equal(t, "routes", routeNames(t, vs), []string{RoutePrimary})
		dest := func(subset string, weight int64) map[string]any {
			d := map[string]any{"destination": map[string]any{"host": "web", "subset": subset, "port": map[string]any{"number": int64(8080)}}}
			if weight != 0 { // proto3 JSON omits zero values; Istio reads the absent weight as 0
				d["weight"] = weight
			}
			return d
		}
		equal(t, "ramp-primary", get(t, vs, "spec", "http", 0), map[string]any{
			"name":  "ramp-primary",
			"route": []any{dest("stable", tc.wantStable), dest("canary", tc.wantCany)},
		})
	}
}

func TestVirtualServiceHostsAndGateways(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ro           *v1alpha1.Rollout
		wantHosts    []any
		wantGateways []any // nil: no gateways key
		wantDestHost string
	}{
		{"defaults", rollout(), []any{"web"}, nil, "web"},
		{"service name", rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Name = "web-svc" }), []any{"web-svc"}, nil, "web-svc"},
		{"hosts and gateways", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Hosts = []string{"web.example.com", "web"}
			ro.Spec.Service.Gateways = []string{"istio-system/public", "mesh"}
		}), []any{"web.example.com", "web"}, []any{"istio-system/public", "mesh"}, "web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := wire(t, renderVS(t, tc.ro, Routing{CanaryWeight: 5, HeaderRoute: true}))
			equal(t, "hosts", get(t, vs, "spec", "hosts"), tc.wantHosts)
			if tc.wantGateways == nil {
				if has(t, vs, "gateways", "spec") {
					t.Errorf("gateways rendered though none is set")
				}
			} else {
				equal(t, "gateways", get(t, vs, "spec", "gateways"), tc.wantGateways)
			}
			for i := range routes(t, vs) {
				for _, d := range get(t, vs, "spec", "http", i, "route").([]any) {
					equal(t, "destination host", get(t, d, "destination", "host"), tc.wantDestHost)
				}
			}
		})
	}
}

func TestVirtualServiceNoPort(t *testing.T) {
	vs := wire(t, renderVS(t, rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Port = 0 }), Routing{HeaderRoute: true}))
	for i := range routes(t, vs) {
		for _, d := range get(t, vs, "spec", "http", i, "route").([]any) {
			if has(t, d, "port", "destination") {
				t.Errorf("port rendered though unset: %v", d)
			}
		}
	}
}

func TestVirtualServiceHeaderRoute(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ro          *v1alpha1.Rollout
		headerRoute bool
		wantMatch   map[string]any // nil: no header route
	}{
		{"canary exact", rollout(), true, map[string]any{"x-canary": map[string]any{"exact": "true"}}},
		{"canary, not wanted", rollout(), false, nil},
		{"canary without headerMatch", rollout(noHeaderMatch), true, nil},
		{"canary prefix", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Prefix: ptr("qa-")}
		}), true, map[string]any{"x-user": map[string]any{"prefix": "qa-"}}},
		{"canary regex", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Regex: ptr("^(alice|bob)$")}
		}), true, map[string]any{"x-user": map[string]any{"regex": "^(alice|bob)$"}}},
		{"unusable match (no value)", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user"}
		}), true, nil},
		{"blue/green default preview header", rollout(blueGreen(nil)), true,
			map[string]any{"x-ramp-preview": map[string]any{"exact": "true"}}},
		{"blue/green, not wanted", rollout(blueGreen(nil)), false, nil},
		{"blue/green preview header", rollout(blueGreen(&v1alpha1.HeaderMatch{Name: "x-env", Exact: ptr("green")})), true,
			map[string]any{"x-env": map[string]any{"exact": "green"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := wire(t, renderVS(t, tc.ro, Routing{CanaryWeight: 25, HeaderRoute: tc.headerRoute}))
			if tc.wantMatch == nil {
				equal(t, "routes", routeNames(t, vs), []string{RoutePrimary})
				return
			}
			equal(t, "routes", routeNames(t, vs), []string{RouteCanary, RoutePrimary})
			equal(t, "ramp-canary", get(t, vs, "spec", "http", 0), map[string]any{
				"name":  "ramp-canary",
				"match": []any{map[string]any{"headers": tc.wantMatch}},
				"route": []any{map[string]any{
					"destination": map[string]any{"host": "web", "subset": "canary", "port": map[string]any{"number": int64(8080)}},
					"weight":      int64(100),
				}},
			})
			// The primary route keeps its weights whatever the header route.
			equal(t, "canary weight", get(t, vs, "spec", "http", 1, "route", 1, "weight"), int64(25))
		})
	}
}

func TestVirtualServiceFault(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ro          *v1alpha1.Rollout
		r           Routing
		wantFault   map[string]any // on ramp-canary; nil: none
		wantRoutes  []string
		wantNoFault bool
	}{
		{"delay and abort", rollout(), Routing{CanaryWeight: 5, HeaderRoute: true, Fault: faultBoth()},
			map[string]any{
				"delay": map[string]any{"percentage": map[string]any{"value": 12.5}, "fixedDelay": "1.500s"},
				"abort": map[string]any{"percentage": map[string]any{"value": int64(100)}, "httpStatus": int64(503)},
			}, []string{RouteCanary, RoutePrimary}, false},
		{"delay only", rollout(), Routing{HeaderRoute: true, Fault: &v1alpha1.FaultInjection{
			Delay: &v1alpha1.FaultDelay{Percentage: 0, FixedDelay: *dur(5 * time.Second)}}},
			map[string]any{"delay": map[string]any{"percentage": map[string]any{}, "fixedDelay": "5s"}}, // 0%: value omitted
			[]string{RouteCanary, RoutePrimary}, false},
		{"abort only, blue/green", rollout(blueGreen(nil)), Routing{CanaryWeight: 0, HeaderRoute: true, Fault: &v1alpha1.FaultInjection{
			Abort: &v1alpha1.FaultAbort{Percentage: 0.5, HTTPStatus: 500}}},
			map[string]any{"abort": map[string]any{"percentage": map[string]any{"value": 0.5}, "httpStatus": int64(500)}},
			[]string{RouteCanary, RoutePrimary}, false},
		{"empty fault", rollout(), Routing{HeaderRoute: true, Fault: &v1alpha1.FaultInjection{}},
			nil, []string{RouteCanary, RoutePrimary}, true},
		{"no header route: fault dropped", rollout(), Routing{CanaryWeight: 25, Fault: faultBoth()},
			nil, []string{RoutePrimary}, true},
		{"no header match: fault dropped", rollout(noHeaderMatch), Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()},
			nil, []string{RoutePrimary}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := wire(t, renderVS(t, tc.ro, tc.r))
			equal(t, "routes", routeNames(t, vs), tc.wantRoutes)
			for i, name := range tc.wantRoutes {
				hasFault := has(t, vs, "fault", "spec", "http", i)
				switch {
				case name == RoutePrimary && hasFault:
					t.Errorf("fault on %s: a fault there would hit stable traffic", RoutePrimary)
				case name == RouteCanary && tc.wantNoFault && hasFault:
					t.Errorf("fault on %s, want none", RouteCanary)
				case name == RouteCanary && !tc.wantNoFault:
					equal(t, "fault", get(t, vs, "spec", "http", i, "fault"), tc.wantFault)
				}
			}
		})
	}
}

func TestVirtualServiceRetriesAndTimeout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ro          *v1alpha1.Rollout
		wantRetries map[string]any // nil: no retries key
		wantTimeout any            // nil: no timeout key
	}{
		{"none", rollout(), nil, nil},
		{"all", rollout(retriesAndTimeout),
			map[string]any{"attempts": int64(3), "perTryTimeout": "0.250s", "retryOn": "5xx,reset"}, "2s"},
		{"attempts 0 disables retries", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Retries = &v1alpha1.HTTPRetry{Attempts: 0}
		}), map[string]any{}, nil}, // attempts 0 omitted: an empty retry policy, which Istio reads as no retries
		{"timeout only", rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Timeout = dur(1500 * time.Millisecond) }),
			nil, "1.500s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := wire(t, renderVS(t, tc.ro, Routing{CanaryWeight: 5, HeaderRoute: true}))
			equal(t, "routes", routeNames(t, vs), []string{RouteCanary, RoutePrimary})
			for i := range 2 {
				if tc.wantRetries == nil {
					if has(t, vs, "retries", "spec", "http", i) {
						t.Errorf("route %d: retries rendered though unset", i)
					}
				} else {
					equal(t, "retries", get(t, vs, "spec", "http", i, "retries"), tc.wantRetries)
				}
				if tc.wantTimeout == nil {
					if has(t, vs, "timeout", "spec", "http", i) {
						t.Errorf("route %d: timeout rendered though unset", i)
					}
				} else {
					equal(t, "timeout", get(t, vs, "spec", "http", i, "timeout"), tc.wantTimeout)
				}
			}
		})
	}
}

func TestDestinationRule(t *testing.T) {
	wantSubsets := []any{
		map[string]any{"name": "stable", "labels": map[string]any{"pod-template-hash": "6d5f8b7c9"}},
		map[string]any{"name": "canary", "labels": map[string]any{"ramp.dev/track": "canary"}},
	}
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		want any // spec.trafficPolicy; nil: no key
	}{
		{"no traffic policy", rollout(), nil},
		{"empty traffic policy", rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.TrafficPolicy = &v1alpha1.TrafficPolicy{} }), nil},
		{"empty parts", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.TrafficPolicy = &v1alpha1.TrafficPolicy{
				ConnectionPool:   &v1alpha1.ConnectionPool{TCP: &v1alpha1.TCPConnectionPool{}, HTTP: &v1alpha1.HTTPConnectionPool{}},
				OutlierDetection: &v1alpha1.OutlierDetection{},
				TLS:              &v1alpha1.ClientTLS{},
			}
		}), nil},
		{"every field", rollout(fullTrafficPolicy), map[string]any{
			"connectionPool": map[string]any{
				"tcp": map[string]any{"maxConnections": int64(100), "connectTimeout": "1.500s"},
				"http": map[string]any{
					"http1MaxPendingRequests":  int64(10),
					"http2MaxRequests":         int64(1000),
					"maxRequestsPerConnection": int64(1),
					"maxRetries":               int64(3),
					"idleTimeout":              "90s",
				},
			},
			"outlierDetection": map[string]any{
				"consecutive5xxErrors": int64(5),
				"interval":             "10s",
				"baseEjectionTime":     "30s", // maxEjectionPercent 0: omitted
			},
			"tls": map[string]any{"mode": "SIMPLE", "sni": "web.example.com", "credentialName": "web-client"},
		}},
		{"some fields", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.TrafficPolicy = &v1alpha1.TrafficPolicy{
				ConnectionPool: &v1alpha1.ConnectionPool{HTTP: &v1alpha1.HTTPConnectionPool{MaxRetries: ptr[int32](2)}},
				TLS:            &v1alpha1.ClientTLS{Mode: "ISTIO_MUTUAL"},
			}
		}), map[string]any{
			"connectionPool": map[string]any{"http": map[string]any{"maxRetries": int64(2)}},
			"tls":            map[string]any{"mode": "ISTIO_MUTUAL"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr := wire(t, mustDR(t, tc.ro))
			equal(t, "host", get(t, dr, "spec", "host"), "web")
			equal(t, "subsets", get(t, dr, "spec", "subsets"), wantSubsets)
			if tc.want == nil {
				if has(t, dr, "trafficPolicy", "spec") {
					t.Errorf("trafficPolicy rendered: %v", get(t, dr, "spec", "trafficPolicy"))
				}
				return
			}
			equal(t, "trafficPolicy", get(t, dr, "spec", "trafficPolicy"), tc.want)
		})
	}
}

func TestDestinationRuleHost(t *testing.T) {
	dr := wire(t, mustDR(t, rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Name = "web-svc" })))
	equal(t, "host", get(t, dr, "spec", "host"), "web-svc")
}

func TestDestinationRuleNoHash(t *testing.T) {
	dr, err := DestinationRule(rollout(), "")
	if !errors.Is(err, ErrNoStableHash) || dr != nil {
		t.Fatalf("DestinationRule without hash = %v, %v; want nil, ErrNoStableHash", dr, err)
	}
}

// TestDurations checks durations are sent in protobuf JSON (decimal seconds, 0, 3, 6 or 9
// fractional digits), which istiod parses and so does the CRD's CEL duration().
func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "30s"},
		{90 * time.Minute, "5400s"},
		{1500 * time.Millisecond, "1.500s"},
		{250 * time.Millisecond, "0.250s"},
		{time.Millisecond, "0.001s"},
		{100 * time.Microsecond, "0.000100s"},
		{time.Nanosecond, "0.000000001s"},
		{time.Hour + 1500*time.Microsecond, "3600.001500s"},
	} {
		vs := wire(t, VirtualService(rollout(func(ro *v1alpha1.Rollout) { ro.Spec.Service.Timeout = dur(tc.d) }), Routing{}))
		got, _ := get(t, vs, "spec", "http", 0, "timeout").(string)
		if got != tc.want {
			t.Errorf("timeout %v sent as %q, want %q", tc.d, got, tc.want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("time.ParseDuration(%q) = %v, %v; want %v", got, back, err, tc.d)
		}
		if back, err := parseProtoDuration(got); err != nil || back != tc.d {
			t.Errorf("protojson %q = %v, %v; want %v", got, back, err, tc.d)
		}
	}
}

// TestDeterministic renders the same input twice, from separately built Rollouts, and
// expects identical objects and identical JSON.
func TestDeterministic(t *testing.T) {
	build := func() (*v1alpha1.Rollout, Routing) {
		ro := rollout(fullTrafficPolicy, retriesAndTimeout, func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Hosts = []string{"b.example.com", "a.example.com"}
			ro.Spec.Service.Gateways = []string{"mesh", "istio-system/public"}
		})
		return ro, Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()}
	}
	ro1, r1 := build()
	ro2, r2 := build()
	vs1, vs2 := renderVS(t, ro1, r1), renderVS(t, ro2, r2)
	dr1, dr2 := mustDR(t, ro1), mustDR(t, ro2)
	if !proto.Equal(&vs1.Spec, &vs2.Spec) || !proto.Equal(&dr1.Spec, &dr2.Spec) ||
		!reflect.DeepEqual(vs1.ObjectMeta, vs2.ObjectMeta) || !reflect.DeepEqual(dr1.ObjectMeta, dr2.ObjectMeta) {
		t.Errorf("same input, different objects:\n%v\n%v\n%v\n%v", vs1, vs2, dr1, dr2)
	}
	for _, p := range [][2]runtime.Object{{vs1, vs2}, {dr1, dr2}} {
		j1, err1 := ApplyPatch(p[0])
		j2, err2 := ApplyPatch(p[1])
		if err1 != nil || err2 != nil || string(j1) != string(j2) {
			t.Errorf("same input, different JSON:\n%s\n%s", j1, j2)
		}
	}
	// The Rollout's slices are copied, not aliased.
	ro1.Spec.Service.Hosts[0] = "mutated"
	ro1.Spec.Service.Gateways[0] = "mutated"
	equal(t, "hosts after mutating the Rollout", vs1.Spec.Hosts, []string{"b.example.com", "a.example.com"})
	equal(t, "gateways after mutating the Rollout", vs1.Spec.Gateways, []string{"mesh", "istio-system/public"})
}

// TestDeepCopy checks the rendered objects deep-copy (as the cache and client do) into equal
// objects that share nothing with the original.
func TestDeepCopy(t *testing.T) {
	ro := rollout(fullTrafficPolicy, retriesAndTimeout, func(ro *v1alpha1.Rollout) {
		ro.Spec.Service.Hosts = []string{"web.example.com"}
		ro.Spec.Service.Gateways = []string{"mesh"}
	})
	vs := renderVS(t, ro, Routing{CanaryWeight: 5, HeaderRoute: true, Fault: faultBoth()})
	dr := mustDR(t, ro)
	vc, dc := vs.DeepCopy(), dr.DeepCopy()
	if !proto.Equal(&vc.Spec, &vs.Spec) || !proto.Equal(&dc.Spec, &dr.Spec) || !reflect.DeepEqual(vc.ObjectMeta, vs.ObjectMeta) {
		t.Fatal("DeepCopy differs")
	}
	vc.Spec.Http[1].Route[1].Weight = 99
	vc.Labels[RolloutLabel] = "mutated"
	dc.Spec.Subsets[0].Labels[PodTemplateHashLabel] = "mutated"
	if vs.Spec.Http[1].Route[1].Weight != 5 || vs.Labels[RolloutLabel] != "web" || dr.Spec.Subsets[0].Labels[PodTemplateHashLabel] != "6d5f8b7c9" {
		t.Error("a deep copy shares state with the original")
	}
}

func BenchmarkRender(b *testing.B) {
	ro := rollout(fullTrafficPolicy, retriesAndTimeout, func(ro *v1alpha1.Rollout) {
		ro.Spec.Service.Hosts = []string{"web.example.com", "web"}
		ro.Spec.Service.Gateways = []string{"istio-system/public", "mesh"}
	})
	r := Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()}
	b.ReportAllocs()
	for b.Loop() {
		_ = VirtualService(ro, r)
		if _, err := DestinationRule(ro, "6d5f8b7c9"); err != nil {
			b.Fatal(err)
		}
	}
}
