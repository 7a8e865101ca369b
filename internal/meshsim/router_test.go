package meshsim

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// Weighted routing as ramp renders it: the shares of the subsets, at the source, within 5σ
// (at 30k requests 5σ ≤ 1.44 percentage points), and exactly 0 or 100% at the ends; each
// subset's requests land on its own workload's pods.
func TestWeightsAsRampRendersThem(t *testing.T) {
	const n = 30000
	for _, w := range []int32{5, 25, 50, 0, 100} {
		r := NewRouter(rampTopology(t, rollout(nil), istio.Routing{CanaryWeight: w}, rampPods()))
		st, _ := run(t, r, nil, Traffic{}, n)
		want := float64(w) / 100
		bound := near(t, "canary share", st.Share(ReporterSource, istio.CanarySubset), want, n)
		if bound > 0.015 {
			t.Errorf("5σ bound %.4f is wider than 1.5 percentage points", bound)
		}
		near(t, "stable share", st.Share(ReporterSource, istio.StableSubset), 1-want, n)
		byWorkload := st.ByWorkload(ReporterDestination)
		if byWorkload["web-canary"] != st.Sum(func(k Key) bool { return k.Reporter == ReporterDestination && k.Subset == istio.CanarySubset }) ||
			byWorkload["web"] != st.Sum(func(k Key) bool { return k.Reporter == ReporterDestination && k.Subset == istio.StableSubset }) {
			t.Errorf("workloads %v do not follow subsets %v", byWorkload, st.BySubset(ReporterDestination))
		}
		t.Logf("weight %3d: canary %.2f%% (±%.2f pp at 5σ), workloads%s", w,
			100*st.Share(ReporterSource, istio.CanarySubset), 100*bound, fmtShares(byWorkload, st.Total(ReporterDestination)))
	}
}

// General Istio weights: relative to their sum (not necessarily 100), zero never chosen, a
// sole destination takes everything whatever its weight.
func TestWeightsRelativeToSum(t *testing.T) {
	const n = 30000
	vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web, subset: stable}, weight: 1}
    - {destination: {host: web, subset: canary}, weight: 0}
    - {destination: {host: web.demo.svc.cluster.local}, weight: 3}
`)
	r := NewRouter(Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{vs},
		DestinationRules: []unstructured.Unstructured{subsetsDR(t)}})
	st, _ := run(t, r, nil, Traffic{}, n)
	near(t, "stable", st.Share(ReporterSource, "stable"), 0.25, n)
	near(t, "whole service", st.Share(ReporterSource, ""), 0.75, n)
	near(t, "canary (weight 0)", st.Share(ReporterSource, "canary"), 0, n)

	sole := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web, subset: canary}, weight: 0}
`)
	r = NewRouter(Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{sole},
		DestinationRules: []unstructured.Unstructured{subsetsDR(t)}})
	st, _ = run(t, r, nil, Traffic{}, 1000)
	if got := st.Share(ReporterSource, "canary"); got != 1 {
		t.Errorf("sole destination with weight 0 got share %v, want 1", got)
	}
}

// ramp's header route: every request whose header matches (exact, prefix or regex) goes to
// the canary on ramp-canary; the others follow the weighted ramp-primary route.
func TestHeaderRouteAsRampRendersIt(t *testing.T) {
	const n = 40000
	for _, tc := range []struct {
		name          string
		hm            rampv1.HeaderMatch
		match, others []string // header values that match, and that do not
	}{
		{"exact", rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")}, []string{"true"}, []string{"True", "true ", "truex", ""}},
		{"prefix", rampv1.HeaderMatch{Name: "x-user", Prefix: ptr.To("beta-")}, []string{"beta-", "beta-42"}, []string{"Beta-42", "xbeta-1", "beta"}},
		{"regex", rampv1.HeaderMatch{Name: "x-env", Regex: ptr.To("gr(ee)?n")}, []string{"grn", "green"}, []string{"greens", "a green", "GREEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter(rampTopology(t, rollout(&tc.hm), istio.Routing{CanaryWeight: 25, HeaderRoute: true}, rampPods()))
			var classes []Class
			for _, v := range tc.match {
				classes = append(classes, Class{Share: 0.15, Request: header(tc.hm.Name, v)})
			}
			for _, v := range tc.others {
				classes = append(classes, Class{Share: 0.05, Request: header(tc.hm.Name, v)})
			}
			c, _ := Traffic{Classes: classes}.compiled()
			rng := newRNG()
			m := MustModel(DefaultBehaviour, nil)
			var matched, other Stats
			var nOther int64
			for range n {
				req := c.pick(rng)
				res := r.Route(rng, m, req)
				v, has := req.Headers[tc.hm.Name]
				if has && slices.Contains(tc.match, v) {
					matched.AddResult(&res)
				} else {
					other.AddResult(&res)
					nOther++
				}
			}
			if got := matched.ByRoute(ReporterSource); got[istio.RouteCanary] != matched.Total(ReporterSource) || len(got) != 1 {
				t.Errorf("matching requests took routes %v, want all on %s", got, istio.RouteCanary)
			}
			if got := matched.Share(ReporterSource, istio.CanarySubset); got != 1 {
				t.Errorf("matching requests: canary share %v, want 1", got)
			}
			if got := other.ByRoute(ReporterSource); got[istio.RoutePrimary] != nOther {
				t.Errorf("other requests took routes %v, want all %d on %s", got, nOther, istio.RoutePrimary)
			}
			near(t, "canary share of the others", other.Share(ReporterSource, istio.CanarySubset), 0.25, nOther)
			t.Logf("%d matching requests 100%% canary; %d others %.2f%% canary", matched.Total(ReporterSource), nOther,
				100*other.Share(ReporterSource, istio.CanarySubset))
		})
	}
}

// Routes are evaluated in order, first match wins; match blocks are ORed, conditions ANDed;
// nothing after a catch-all route is ever used.
func TestFirstMatchWins(t *testing.T) {
	vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: first
    match:
    - headers: {x-a: {exact: "1"}}
      uri: {prefix: /api}
    - headers: {x-b: {}}
    route: [{destination: {host: web, subset: canary}}]
  - name: second
    match:
    - headers: {x-a: {exact: "1"}}
    route: [{destination: {host: web, subset: stable}}]
  - name: catch-all
    route: [{destination: {host: web, subset: stable}}]
  - name: unreachable
    match:
    - headers: {x-c: {exact: "1"}}
    route: [{destination: {host: web, subset: canary}}]
`)
	r := NewRouter(Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{vs},
		DestinationRules: []unstructured.Unstructured{subsetsDR(t)}})
	rng, m := newRNG(), MustModel(DefaultBehaviour, nil)
	for _, tc := range []struct {
		req   Request
		route string
	}{
		{Request{Path: "/api/v1", Headers: map[string]string{"x-a": "1"}}, "first"},
		{Request{Path: "/api", Headers: map[string]string{"x-a": "1", "x-c": "1"}}, "first"},
		{Request{Path: "/", Headers: map[string]string{"x-b": ""}}, "first"}, // presence, any value
		{Request{Path: "/web", Headers: map[string]string{"x-a": "1"}}, "second"},
		{Request{Path: "/api", Headers: map[string]string{"x-a": "2"}}, "catch-all"},
		{Request{Headers: map[string]string{"x-c": "1"}}, "catch-all"},
		{Request{}, "catch-all"},
	} {
		for range 50 {
			if res := r.Route(rng, m, &tc.req); res.Route != tc.route {
				t.Fatalf("%+v took route %q, want %q", tc.req, res.Route, tc.route)
			}
		}
	}
}

// Each kind of match condition, against requests that must and must not match.
func TestMatchConditions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		match    string // one HTTPMatchRequest
		src      Source
		hit, not []Request
	}{
		{"uri exact", `uri: {exact: /a}`, Source{},
			[]Request{{Path: "/a"}, {Path: "/a?x=1"}}, []Request{{Path: "/a/"}, {Path: "/A"}, {}}},
		{"uri prefix", `uri: {prefix: /api/}`, Source{},
			[]Request{{Path: "/api/"}, {Path: "/api/x"}}, []Request{{Path: "/api"}, {Path: "/API/x"}}},
		{"uri regex is a full match", `uri: {regex: "/v[0-9]+"}`, Source{},
			[]Request{{Path: "/v1"}, {Path: "/v12?q"}}, []Request{{Path: "/v1/x"}, {Path: "/x/v1"}}},
		{"ignoreUriCase", `{uri: {prefix: /API}, ignoreUriCase: true}`, Source{},
			[]Request{{Path: "/api/x"}, {Path: "/Api"}}, []Request{{Path: "/ap"}}},
		{"method", `method: {exact: POST}`, Source{},
			[]Request{{Method: "POST"}}, []Request{{}, {Method: "post"}}},
		{"scheme", `scheme: {exact: https}`, Source{},
			[]Request{{Scheme: "https"}}, []Request{{}}},
		{"authority", `authority: {exact: web}`, Source{},
			[]Request{{}, {Authority: "web"}}, []Request{{Authority: "web.demo"}, {Authority: fqdn + ":80"}}},
		{"header regex is a full match", `headers: {x-v: {regex: "ab+"}}`, Source{},
			[]Request{header("x-v", "abb")}, []Request{header("x-v", "xab"), header("x-v", "abc"), {}}},
		{"header regex * is presence", `headers: {x-v: {regex: "*"}}`, Source{},
			[]Request{header("x-v", ""), header("x-v", "anything")}, []Request{{}}},
		{"header names are case-insensitive", `headers: {X-V: {exact: "1"}}`, Source{},
			[]Request{header("x-v", "1")}, []Request{header("x-v", "2")}},
		{"uri/method keys in headers are ignored", `headers: {method: {exact: PUT}}`, Source{},
			[]Request{{}, {Method: "GET"}}, nil},
		{"two headers are ANDed", `headers: {x-a: {exact: "1"}, x-b: {prefix: "2"}}`, Source{},
			[]Request{{Headers: map[string]string{"x-a": "1", "x-b": "22"}}}, []Request{header("x-a", "1"), header("x-b", "2")}},
		{"withoutHeaders presence", `withoutHeaders: {x-a: {}}`, Source{},
			[]Request{{}, header("x-b", "1")}, []Request{header("x-a", ""), header("x-a", "1")}},
		{"withoutHeaders value, missing header is empty", `withoutHeaders: {x-a: {exact: "1"}}`, Source{},
			[]Request{{}, header("x-a", "2")}, []Request{header("x-a", "1")}},
		{"withoutHeaders exact empty excludes a missing header", `withoutHeaders: {x-a: {exact: ""}}`, Source{},
			[]Request{header("x-a", "2")}, []Request{{}, header("x-a", "")}},
		{"queryParams", `queryParams: {q: {exact: "1"}, p: {}}`, Source{},
			[]Request{{Path: "/?q=1&p"}, {Path: "/x?p=2&q=1"}}, []Request{{Path: "/?q=1"}, {Path: "/?q=2&p=1"}, {}}},
		{"JWT claims never match", `headers: {"@request.auth.claims.group": {exact: admin}}`, Source{},
			nil, []Request{{}, header("@request.auth.claims.group", "admin")}},
		{"sourceLabels of another client", `sourceLabels: {app: frontend}`, Source{},
			nil, []Request{{}}},
		{"sourceLabels of this client", `sourceLabels: {app: frontend}`, Source{Labels: map[string]string{"app": "frontend", "v": "1"}},
			[]Request{{}}, nil},
		{"sourceNamespace", `sourceNamespace: other`, Source{Namespace: "other"},
			[]Request{{Authority: "web.demo"}}, nil},
		{"sourceNamespace of another client", `sourceNamespace: other`, Source{},
			nil, []Request{{}}},
		{"port", `port: 8080`, Source{},
			nil, []Request{{}}},
		{"port the client calls", `port: 8080`, Source{Port: 8080},
			[]Request{{}}, nil},
		{"match gateways override", `gateways: [istio-system/public]`, Source{},
			nil, []Request{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: hit
    match:
    - `+tc.match+`
    route: [{destination: {host: web}}]
  - name: miss
    route: [{destination: {host: web}}]
`)
			svc := service()
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "alt", Port: 8080})
			r := NewRouter(Topology{Service: svc, Pods: rampPods(), VirtualServices: []unstructured.Unstructured{vs}, Source: tc.src})
			if w := r.Warnings(); len(w) > 0 {
				t.Fatalf("warnings: %v", w)
			}
			rng, m := newRNG(), MustModel(DefaultBehaviour, nil)
			for _, req := range tc.hit {
				if res := r.Route(rng, m, &req); res.Route != "hit" || res.Code != 200 {
					t.Errorf("%+v: route %q code %d, want hit 200", req, res.Route, res.Code)
				}
			}
			for _, req := range tc.not {
				if res := r.Route(rng, m, &req); res.Route != "miss" {
					t.Errorf("%+v: route %q, want miss", req, res.Route)
				}
			}
		})
	}
}

// A fault abort on the header route: ~20% of that route's requests get the status, only the
// source reports them (flag FI, no pod); the weighted route is untouched.
func TestFaultAbortOnlyOnItsRoute(t *testing.T) {
	const n = 40000
	ro := rollout(&rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")})
	top := rampTopology(t, ro, istio.Routing{CanaryWeight: 10, HeaderRoute: true,
		Fault: &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 20, HTTPStatus: 418}}}, rampPods())
	st, results := run(t, NewRouter(top), nil, Traffic{Classes: []Class{{Share: 0.5, Request: header("x-canary", "true")}}}, n)

	onRoute := func(route, reporter string, f func(Key) bool) int64 {
		return st.Sum(func(k Key) bool { return k.Route == route && k.Reporter == reporter && f(k) })
	}
	all := func(Key) bool { return true }
	aborted := func(k Key) bool { return k.Code == 418 }
	headerReqs := onRoute(istio.RouteCanary, ReporterSource, all)
	abortedSrc := onRoute(istio.RouteCanary, ReporterSource, aborted)
	near(t, "aborted share of the header route", float64(abortedSrc)/float64(headerReqs), 0.20, headerReqs)
	if got := onRoute(istio.RouteCanary, ReporterSource, func(k Key) bool { return k.Code == 418 && (k.Flags != "FI" || k.Workload != Unknown) }); got != 0 {
		t.Errorf("%d aborted requests without flag FI or with a workload", got)
	}
	if got := st.Sum(func(k Key) bool { return k.Reporter == ReporterDestination && (k.Code == 418 || k.Flags == "FI") }); got != 0 {
		t.Errorf("the destination reported %d aborted requests; they never reach it", got)
	}
	if got, want := onRoute(istio.RouteCanary, ReporterDestination, all), headerReqs-abortedSrc; got != want {
		t.Errorf("destination saw %d header-route requests, want the %d not aborted", got, want)
	}
	if got := onRoute(istio.RoutePrimary, ReporterSource, func(k Key) bool { return k.Code != 200 || k.Flags != "-" }); got != 0 {
		t.Errorf("%d requests on %s were touched by the fault", got, istio.RoutePrimary)
	}
	for _, res := range results {
		if res.Code == 418 && (res.Endpoint != nil || len(res.Attempts) != 0 || res.Subset != "") {
			t.Fatalf("aborted request reached a destination: %+v", res)
		}
	}
	t.Logf("header route: %d requests, %.2f%% aborted (source only)", headerReqs, 100*float64(abortedSrc)/float64(headerReqs))
}

// A fault delay (50%, 200ms) shifts about half of the header route's client latencies by
// 200ms; the pods' own latencies and the weighted route are unchanged.
func TestFaultDelay(t *testing.T) {
	const n = 20000
	ro := rollout(&rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")})
	top := rampTopology(t, ro, istio.Routing{CanaryWeight: 10, HeaderRoute: true,
		Fault: &rampv1.FaultInjection{Delay: &rampv1.FaultDelay{Percentage: 50, FixedDelay: metav1.Duration{Duration: 200 * time.Millisecond}}}}, rampPods())
	app := 10 * time.Millisecond
	m := MustModel(Behaviour{LatencyP50: app, LatencyP99: app}, nil)
	_, results := run(t, NewRouter(top), m, Traffic{Classes: []Class{{Share: 0.5, Request: header("x-canary", "true")}}}, n)
	var header, delayed int64
	for _, res := range results {
		if res.Code != 200 || len(res.Attempts) != 1 || res.Attempts[0].Latency != app {
			t.Fatalf("unexpected result %+v", res)
		}
		switch {
		case res.Route == istio.RoutePrimary:
			if res.Latency != app || res.Flags != "-" {
				t.Fatalf("weighted route delayed: %+v", res)
			}
		case res.Latency == app+200*time.Millisecond && res.Flags == "DI":
			header++
			delayed++
		case res.Latency == app && res.Flags == "-":
			header++
		default:
			t.Fatalf("header route result %+v", res)
		}
	}
	near(t, "delayed share", float64(delayed)/float64(header), 0.5, header)
}

// Telemetry of an abort: reporter="source" only, with the status and flag FI.
func TestTelemetryAbortSourceOnly(t *testing.T) {
	ro := rollout(&rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")})
	r := NewRouter(rampTopology(t, ro, istio.Routing{CanaryWeight: 0, HeaderRoute: true,
		Fault: &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 100, HTTPStatus: 503}}}, rampPods()))
	tel := NewTelemetry("meshsim", ns)
	rng, m := newRNG(), MustModel(DefaultBehaviour, nil)
	for _, req := range []Request{header("x-canary", "true"), header("x-canary", "true"), {}} {
		res := r.Route(rng, m, &req)
		tel.Record(res.Reports(nil))
	}
	got := gather(t, tel)
	want := map[string]float64{
		`istio_requests_total{destination_service="web.demo.svc.cluster.local",destination_workload="unknown",destination_workload_namespace="unknown",reporter="source",response_code="503",response_flags="FI",source_workload="meshsim",source_workload_namespace="demo"}`: 2,
		`istio_requests_total{destination_service="web.demo.svc.cluster.local",destination_workload="web",destination_workload_namespace="demo",reporter="source",response_code="200",response_flags="-",source_workload="meshsim",source_workload_namespace="demo"}`:         1,
		`istio_requests_total{destination_service="web.demo.svc.cluster.local",destination_workload="web",destination_workload_namespace="demo",reporter="destination",response_code="200",response_flags="-",source_workload="meshsim",source_workload_namespace="demo"}`:    1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "istio_requests_total") && want[k] == 0 {
			t.Errorf("unexpected series %s", k)
		}
	}
}

// A subset without ready pods answers 503 UH (source only); unready pods never get traffic;
// a subset no rule defines answers 503 NC.
func TestSubsetWithoutReadyPods(t *testing.T) {
	const n = 20000
	pods := rampPods()
	for i := range pods {
		if pods[i].Labels[istio.TrackLabel] == istio.TrackCanary {
			pods[i].Status.Conditions[0].Status = corev1.ConditionFalse
		}
	}
	pods[0].Status.Conditions[0].Status = corev1.ConditionFalse // one stable pod unready
	terminating := pod("web-"+stableHash+"-t", "web", stableHash, stableImage, true)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pods = append(pods, terminating)

	r := NewRouter(rampTopology(t, rollout(nil), istio.Routing{CanaryWeight: 30}, pods))
	st, results := run(t, r, nil, Traffic{}, n)
	uh := st.Sum(func(k Key) bool {
		return k.Reporter == ReporterSource && k.Code == 503 && k.Flags == "UH" && k.Subset == "canary"
	})
	near(t, "no healthy upstream share", float64(uh)/n, 0.30, n)
	if got := st.BySubset(ReporterDestination)["canary"]; got != 0 {
		t.Errorf("canary pods (unready) got %d requests", got)
	}
	for _, res := range results {
		for _, a := range res.Attempts {
			if a.Endpoint.Pod == pods[0].Name || a.Endpoint.Pod == terminating.Name {
				t.Fatalf("unready or terminating pod %s got a request", a.Endpoint.Pod)
			}
		}
	}
	if got := len(r.Endpoints()); got != 2 {
		t.Errorf("%d endpoints, want the 2 ready stable pods", got)
	}

	// A subset no DestinationRule defines.
	vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web, subset: v3}}]
`)
	r = NewRouter(Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{vs},
		DestinationRules: []unstructured.Unstructured{subsetsDR(t)}})
	if res := r.Route(newRNG(), MustModel(DefaultBehaviour, nil), &Request{}); res.Code != 503 || res.Flags != "NC" || len(res.Attempts) != 0 {
		t.Errorf("undefined subset: %+v, want 503 NC without attempts", res)
	}
}

// DestinationRule subsets select exactly the Service's ready pods carrying all their labels.
func TestSubsetLabelsSelectExactPods(t *testing.T) {
	pods := []corev1.Pod{
		pod("a", "web", "h1", stableImage, true, "version", "v1"),
		pod("b", "web", "h1", stableImage, true, "version", "v1", "zone", "z1"),
		pod("c", "web-b", "h2", canaryImage, true, "version", "v2", "zone", "z1"),
		pod("d", "web-b", "h2", canaryImage, true, "version", "v2", "zone", "z2"),
		pod("e", "web-b", "h2", canaryImage, false, "version", "v2", "zone", "z1"), // unready
	}
	other := pod("f", "api", "h3", stableImage, true, "version", "v2", "zone", "z1")
	other.Labels["app"] = "api" // not selected by the Service
	pods = append(pods, other)
	dr := obj(t, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2z1, labels: {version: v2, zone: z1}}
  - {name: z1, labels: {zone: z1}}
  - {name: all}
`)
	for subset, want := range map[string][]string{"v1": {"a", "b"}, "v2z1": {"c"}, "z1": {"b", "c"}, "all": {"a", "b", "c", "d"}} {
		vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web, subset: `+subset+`}}]
`)
		r := NewRouter(Topology{Service: service(), Pods: pods, VirtualServices: []unstructured.Unstructured{vs}, DestinationRules: []unstructured.Unstructured{dr}})
		_, results := run(t, r, nil, Traffic{}, 2000)
		seen := map[string]bool{}
		for _, res := range results {
			for _, a := range res.Attempts {
				seen[a.Endpoint.Pod] = true
			}
		}
		var got []string
		for p := range seen {
			got = append(got, p)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("subset %s reached pods %v, want %v", subset, got, want)
		}
	}
}

// The behaviour model: an image with 8% errors yields ~8% 5xx at the destination, however
// Istio's default policy retries its 503s; the client sees fewer errors (500s are not
// retried, 503s twice).
func TestBehaviourErrorRate(t *testing.T) {
	const n = 50000
	m := MustModel(DefaultBehaviour, map[string]Behaviour{
		canaryImage: {ErrorRate: 0.08, LatencyP50: 20 * time.Millisecond, LatencyP99: 200 * time.Millisecond},
	})
	r := NewRouter(rampTopology(t, rollout(nil), istio.Routing{CanaryWeight: 100}, rampPods()))
	st, _ := run(t, r, m, Traffic{}, n)
	dst := st.Total(ReporterDestination)
	near(t, "destination 5xx ratio", st.ErrorRate(ReporterDestination, "web-canary"), 0.08, dst)
	// Per attempt: 500 (4%, final), 503 (4%, retried up to twice), 200.
	wantSrc := 0.04 + 0.04*(0.04+0.04*(0.04+0.04))
	near(t, "client 5xx ratio", st.ErrorRate(ReporterSource, ""), wantSrc, n)
	wantAttempts := 1 + 0.04 + 0.04*0.04
	if got := float64(dst) / n; math.Abs(got-wantAttempts) > 0.005 {
		t.Errorf("attempts per request %.4f, want %.4f", got, wantAttempts)
	}
	codes := st.ByCode(ReporterDestination)
	near(t, "500 share", float64(codes[500])/float64(dst), 0.04, dst)
	t.Logf("destination: %d attempts, %.2f%% 5xx; source: %d requests, %.2f%% 5xx (retries absorb 503s)",
		dst, 100*st.ErrorRate(ReporterDestination, ""), n, 100*st.ErrorRate(ReporterSource, ""))
}

// Latencies follow the configured quantiles: empirical p50 and p99 within 6% (5 standard
// errors of the p99 estimate at 100k samples), and the p99
// histogram_quantile over Istio's buckets (what ramp's latency-p99 reads) in the configured
// p99's bucket.
func TestBehaviourLatency(t *testing.T) {
	const n = 100000
	p50, p99 := 40*time.Millisecond, 400*time.Millisecond
	m := MustModel(Behaviour{LatencyP50: p50, LatencyP99: p99}, nil)
	r := NewRouter(rampTopology(t, rollout(nil), istio.Routing{CanaryWeight: 50}, rampPods()))
	_, results := run(t, r, m, Traffic{}, n)
	lat := make([]time.Duration, 0, n)
	buckets := make([]float64, len(IstioBuckets)+1)
	for _, res := range results {
		for _, a := range res.Attempts {
			lat = append(lat, a.Latency)
			ms := float64(a.Latency) / 1e6
			i, _ := slices.BinarySearch(IstioBuckets, ms)
			buckets[i]++
		}
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)))] }
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{{"p50", q(0.50), p50}, {"p99", q(0.99), p99}} {
		if math.Abs(float64(c.got-c.want))/float64(c.want) > 0.06 {
			t.Errorf("%s = %s, want %s ± 6%%", c.name, c.got, c.want)
		}
	}
	est := histogramQuantile(0.99, IstioBuckets, buckets)
	if est <= 250 || est > 500 {
		t.Errorf("histogram_quantile(0.99) = %.1f ms, want in the (250, 500] bucket of %s", est, p99)
	}
	t.Logf("empirical p50 %s p99 %s; histogram_quantile(0.99) over Istio's buckets %.1f ms", q(0.5), q(0.99), est)
}

// histogramQuantile is Prometheus' histogram_quantile over non-cumulative bucket counts.
func histogramQuantile(q float64, bounds, counts []float64) float64 {
	total := 0.0
	for _, c := range counts {
		total += c
	}
	rank, cum := q*total, 0.0
	for i, c := range counts {
		if cum+c >= rank {
			if i == len(bounds) {
				return bounds[len(bounds)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			return lo + (bounds[i]-lo)*(rank-cum)/c
		}
		cum += c
	}
	return math.NaN()
}

// Retry policies, per istiod's translation.
func TestRetries(t *testing.T) {
	const n = 20000
	half500 := MustModel(Behaviour{ErrorRate: 0.5, ErrorCode: 500, LatencyP50: 10 * time.Millisecond, LatencyP99: 10 * time.Millisecond}, nil)
	route := func(retries, timeout string) Topology {
		y := `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: r
    route: [{destination: {host: web}}]
`
		if retries != "" {
			y += "    retries: " + retries + "\n"
		}
		if timeout != "" {
			y += "    timeout: " + timeout + "\n"
		}
		return Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{obj(t, y)}}
	}

	t.Run("5xx retried up to attempts", func(t *testing.T) {
		st, results := run(t, NewRouter(route(`{attempts: 3, retryOn: 5xx}`, "")), half500, Traffic{}, n)
		var retries, sameHost int
		near(t, "client errors", st.ErrorRate(ReporterSource, ""), 1.0/16, n)
		near(t, "destination errors", st.ErrorRate(ReporterDestination, ""), 0.5, st.Total(ReporterDestination))
		if got, want := float64(st.Total(ReporterDestination))/n, 1.875; math.Abs(got-want) > 0.03 {
			t.Errorf("attempts per request %.3f, want %.3f", got, want)
		}
		for _, res := range results {
			if res.Code == 500 && (res.Flags != "URX" || len(res.Attempts) != 4) {
				t.Fatalf("failed request %+v, want 4 attempts and URX", res)
			}
			if len(res.Attempts) > 1 {
				retries++
				if res.Attempts[1].Endpoint == res.Attempts[0].Endpoint {
					sameHost++
				}
			}
			if want := 10 * time.Millisecond * time.Duration(len(res.Attempts)); res.Latency < want || res.Latency > want+time.Duration(len(res.Attempts)-1)*250*time.Millisecond {
				t.Fatalf("latency %s for %d attempts", res.Latency, len(res.Attempts))
			}
		}
		// previous_hosts: a first retry returns to the same pod (1 in 5 without it) only when
		// all 1+5 picks do: 1 in 5^6.
		if sameHost > retries/1000 {
			t.Errorf("%d of %d first retries went back to the pod just tried", sameHost, retries)
		}
	})
	t.Run("gateway-error does not retry 500", func(t *testing.T) {
		st, _ := run(t, NewRouter(route(`{attempts: 3, retryOn: gateway-error}`, "")), half500, Traffic{}, n)
		if st.Total(ReporterDestination) != n {
			t.Errorf("%d attempts for %d requests", st.Total(ReporterDestination), n)
		}
	})
	t.Run("status codes in retryOn", func(t *testing.T) {
		st, _ := run(t, NewRouter(route(`{attempts: 1, retryOn: "500"}`, "")), half500, Traffic{}, n)
		near(t, "client errors", st.ErrorRate(ReporterSource, ""), 0.25, n)
	})
	t.Run("attempts 0 disables retries", func(t *testing.T) {
		m := MustModel(Behaviour{ErrorRate: 1, ErrorCode: 503}, nil)
		st, _ := run(t, NewRouter(route(`{attempts: 0}`, "")), m, Traffic{}, 100)
		if st.Total(ReporterDestination) != 100 || st.ByCode(ReporterSource)[503] != 100 {
			t.Errorf("got %v", st.Counts)
		}
	})
	t.Run("default policy retries 503 twice", func(t *testing.T) {
		m := MustModel(Behaviour{ErrorRate: 1, ErrorCode: 503}, nil)
		_, results := run(t, NewRouter(route("", "")), m, Traffic{}, 100)
		for _, res := range results {
			if len(res.Attempts) != 3 || res.Code != 503 || res.Flags != "URX" {
				t.Fatalf("%+v, want 3 attempts, 503 URX", res)
			}
		}
	})
	t.Run("perTryTimeout", func(t *testing.T) {
		slow := MustModel(Behaviour{LatencyP50: 100 * time.Millisecond, LatencyP99: 100 * time.Millisecond}, nil)
		_, results := run(t, NewRouter(route(`{attempts: 2, perTryTimeout: 0.050s, retryOn: 5xx}`, "")), slow, Traffic{}, 100)
		for _, res := range results {
			if res.Code != 504 || res.Flags != "UT,URX" || len(res.Attempts) != 3 {
				t.Fatalf("%+v, want 504 UT,URX after 3 attempts", res)
			}
			for _, a := range res.Attempts {
				if a.Code != 0 || a.Flags != "DC" || a.Latency != 50*time.Millisecond {
					t.Fatalf("attempt %+v, want reset after 50ms", a)
				}
			}
		}
	})
	t.Run("route timeout", func(t *testing.T) {
		failing := MustModel(Behaviour{ErrorRate: 1, ErrorCode: 503, LatencyP50: 100 * time.Millisecond, LatencyP99: 100 * time.Millisecond}, nil)
		st, results := run(t, NewRouter(route("", "0.120s")), failing, Traffic{}, 1000)
		for _, res := range results {
			if res.Code != 504 || res.Flags != "UT" || res.Latency != 120*time.Millisecond {
				t.Fatalf("%+v, want 504 UT after 120ms", res)
			}
		}
		if got := st.ByCode(ReporterDestination); got[503]+got[0] != st.Total(ReporterDestination) || got[503] != 1000 {
			t.Errorf("destination codes %v: want every first attempt's 503 and resets (0) of the retries cut short", got)
		}
	})
	t.Run("Go duration is not decoded by istiod", func(t *testing.T) {
		r := NewRouter(route("", "1m"))
		if r.VirtualService() != "" || len(r.Warnings()) != 1 || !strings.Contains(r.Warnings()[0], "ignored") {
			t.Errorf("vs %q warnings %v", r.VirtualService(), r.Warnings())
		}
	})
}

// Without a VirtualService the Service's default route spreads over all its ready pods; the
// oldest VirtualService for a host wins; VirtualServices bound to gateways only do not apply
// to sidecars; hosts resolve like Istio's.
func TestVirtualServiceSelection(t *testing.T) {
	m := MustModel(DefaultBehaviour, nil)
	r := NewRouter(Topology{Service: service(), Pods: rampPods()})
	st, _ := run(t, r, m, Traffic{}, 20000)
	if got := st.ByWorkload(ReporterDestination); len(got) != 2 || st.ByRoute(ReporterSource)["default"] != 20000 {
		t.Errorf("default route: workloads %v routes %v", got, st.ByRoute(ReporterSource))
	}
	near(t, "canary pods' share (2 of 5)", float64(st.ByWorkload(ReporterDestination)["web-canary"])/float64(st.Total(ReporterDestination)), 0.4, st.Total(ReporterDestination))

	vs := func(name, created, hosts, gateways, subset string) unstructured.Unstructured {
		u := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: `+name+`, creationTimestamp: "`+created+`"}
spec:
  hosts: `+hosts+`
  gateways: `+gateways+`
  http:
  - name: `+name+`
    route: [{destination: {host: web, subset: `+subset+`}}]
`)
		return u
	}
	top := Topology{Service: service(), Pods: rampPods(), DestinationRules: []unstructured.Unstructured{subsetsDR(t)},
		VirtualServices: []unstructured.Unstructured{
			vs("newer", "2026-01-02T00:00:00Z", "[web]", "[]", "canary"),
			vs("older", "2026-01-01T00:00:00Z", "[web.demo.svc.cluster.local]", "[mesh]", "stable"),
			vs("gateway-only", "2025-01-01T00:00:00Z", "[web]", "[public]", "canary"),
			vs("external", "2026-01-01T00:00:00Z", "['*.example.com']", "[mesh, istio-system/public]", "canary"),
		}}
	r = NewRouter(top)
	rng := newRNG()
	for _, tc := range []struct {
		authority, route string
		code             int
	}{
		{"", "older", 200}, {"web", "older", 200}, {"web.demo:80", "older", 200}, {fqdn, "older", 200},
		{"www.example.com", "external", 200}, {"example.com", "", 404}, {"api", "", 404},
	} {
		res := r.Route(rng, m, &Request{Authority: tc.authority})
		if res.Route != tc.route || res.Code != tc.code {
			t.Errorf("authority %q: route %q code %d, want %q %d", tc.authority, res.Route, res.Code, tc.route, tc.code)
		}
	}
	if !slices.ContainsFunc(r.Warnings(), func(w string) bool { return strings.Contains(w, "already bound by the older demo/older") }) {
		t.Errorf("no warning about the conflict: %v", r.Warnings())
	}
	// The same objects seen from the gateway demo/public.
	top.Source.Gateway = "demo/public"
	r = NewRouter(top)
	if res := r.Route(rng, m, &Request{}); res.Route != "gateway-only" {
		t.Errorf("from the gateway: route %q, want gateway-only", res.Route)
	}
}

func TestWorkloadName(t *testing.T) {
	p := pod("web-canary-abc-x", "web-canary", "abc", canaryImage, true)
	if got := WorkloadName(&p); got != "web-canary" {
		t.Errorf("ReplicaSet pod: %q", got)
	}
	p.OwnerReferences[0].Kind, p.OwnerReferences[0].Name = "StatefulSet", "db"
	if got := WorkloadName(&p); got != "db" {
		t.Errorf("StatefulSet pod: %q", got)
	}
	p.OwnerReferences = nil
	p.GenerateName = "web-abc-"
	p.Labels["pod-template-hash"] = "abc"
	if got := WorkloadName(&p); got != "web" {
		t.Errorf("generateName: %q", got)
	}
	p.GenerateName = ""
	if got := WorkloadName(&p); got != p.Name {
		t.Errorf("bare pod: %q", got)
	}
}

func TestNoService(t *testing.T) {
	r := NewRouter(Topology{Pods: rampPods()})
	if res := r.Route(newRNG(), MustModel(DefaultBehaviour, nil), &Request{}); res.Code != 404 || res.Flags != "NR" {
		t.Errorf("%+v", res)
	}
}

// DestinationRules: the client's namespace before the Service's, an exact host before a
// wildcard, merged subsets first-defined-wins, workloadSelector for other clients ignored.
func TestDestinationRulePrecedence(t *testing.T) {
	dr := func(name, namespace, created, host, canaryLabels, extra string) unstructured.Unstructured {
		return obj(t, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: `+name+`, namespace: `+namespace+`, creationTimestamp: "`+created+`"}
spec:
  host: `+host+`
  subsets:
  - {name: canary, labels: `+canaryLabels+`}
`+extra)
	}
	toStable := "{pod-template-hash: " + stableHash + "}"
	toCanary := "{ramp.dev/track: canary}"
	vs := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.demo.svc.cluster.local]
  http:
  - route: [{destination: {host: web.demo.svc.cluster.local, subset: canary}}]
`)
	for _, tc := range []struct {
		name     string
		drs      []unstructured.Unstructured
		src      Source
		workload string
	}{
		{"exact host beats an older wildcard", []unstructured.Unstructured{
			dr("wild", ns, "2025-01-01T00:00:00Z", "'*.demo.svc.cluster.local'", toStable, ""),
			dr("exact", ns, "2026-01-01T00:00:00Z", "web", toCanary, ""),
		}, Source{}, "web-canary"},
		{"older rule's subset wins on merge", []unstructured.Unstructured{
			dr("b", ns, "2026-01-02T00:00:00Z", "web", toCanary, ""),
			dr("a", ns, "2026-01-01T00:00:00Z", "web", toStable, ""),
		}, Source{}, "web"},
		{"client namespace first", []unstructured.Unstructured{
			dr("svc-ns", ns, "2025-01-01T00:00:00Z", "web", toCanary, ""),
			dr("client-ns", "client", "2026-01-01T00:00:00Z", "web.demo.svc.cluster.local", toStable, ""),
		}, Source{Namespace: "client"}, "web"},
		{"workloadSelector of another client", []unstructured.Unstructured{
			dr("selected", ns, "2025-01-01T00:00:00Z", "web", toStable, "  workloadSelector: {matchLabels: {app: other}}\n"),
			dr("plain", ns, "2026-01-01T00:00:00Z", "web", toCanary, ""),
		}, Source{}, "web-canary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter(Topology{Service: service(), Pods: rampPods(), VirtualServices: []unstructured.Unstructured{vs},
				DestinationRules: tc.drs, Source: tc.src})
			st, _ := run(t, r, nil, Traffic{Classes: []Class{{Share: 1, Request: Request{Authority: "web.demo"}}}}, 200)
			if got := st.ByWorkload(ReporterDestination); got[tc.workload] != 200 {
				t.Errorf("workloads %v, want all on %s (warnings %v)", got, tc.workload, r.Warnings())
			}
		})
	}
}
