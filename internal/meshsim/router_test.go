package meshsim

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// Weighted routing as istiod renders ramp's route: the shares of the subsets, at the source,
// within 5σ (at 30k requests 5σ ≤ 1.44 percentage points), and exactly 0 or 100% at the ends;
// each subset's requests land on its own workload's pods.
func TestWeights(t *testing.T) {
	const n = 30000
	for _, w := range []uint32{5, 25, 50, 0, 100} {
		r := NewRouter(rampEnvoy(t, w))
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

// Weighted clusters: shares relative to the weights' sum (not necessarily 100), zero never
// chosen.
func TestWeightsRelativeToSum(t *testing.T) {
	const n = 30000
	rt := weightedRoute("r", map[string]uint32{"stable": 1, "": 3})
	wc := rt.GetRoute().GetWeightedClusters()
	wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: clusterOf("canary"), Weight: wrapperspb.UInt32(0)})
	r := NewRouter(envoyTopology(t, rampPods(), nil, rt))
	st, _ := run(t, r, nil, Traffic{}, n)
	near(t, "stable", st.Share(ReporterSource, "stable"), 0.25, n)
	near(t, "whole service", st.Share(ReporterSource, ""), 0.75, n)
	near(t, "canary (weight 0)", st.Share(ReporterSource, "canary"), 0, n)
}

// ramp's header route as istiod renders it: every request whose header matches (exact,
// prefix or regex) goes to the canary on ramp-canary; the others follow the weighted
// ramp-primary route.
func TestHeaderRoute(t *testing.T) {
	const n = 40000
	str := func(name string, m *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
	}
	for _, tc := range []struct {
		name          string
		hm            *routev3.HeaderMatcher
		match, others []string // header values that match, and that do not
	}{
		{"exact", exactHeader("x-canary", "true"), []string{"true"}, []string{"True", "true ", "truex", ""}},
		{"prefix", str("x-user", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "beta-"}}),
			[]string{"beta-", "beta-42"}, []string{"Beta-42", "xbeta-1", "beta"}},
		{"regex", str("x-env", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "gr(ee)?n"}}}),
			[]string{"grn", "green"}, []string{"greens", "a green", "GREEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter(envoyTopology(t, rampPods(), nil, headerRoute(tc.hm), primaryRoute(25)))
			name := tc.hm.GetName()
			var classes []Class
			for _, v := range tc.match {
				classes = append(classes, Class{Share: 0.15, Request: header(name, v)})
			}
			for _, v := range tc.others {
				classes = append(classes, Class{Share: 0.05, Request: header(name, v)})
			}
			c, _ := Traffic{Classes: classes}.compiled()
			rng := newRNG()
			m := MustModel(DefaultBehaviour, nil)
			var matched, other Stats
			var nOther int64
			for range n {
				req := c.pick(rng)
				res := r.Route(rng, m, req)
				v, has := req.Headers[name]
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

// A fault abort on the header route: ~20% of that route's requests get the status, only the
// source reports them (flag FI, no pod); the weighted route is untouched.
func TestFaultAbortOnlyOnItsRoute(t *testing.T) {
	const n = 40000
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 418}, Percentage: percent(20)}}
	top := envoyTopology(t, rampPods(), nil, withFault(t, headerRoute(exactHeader("x-canary", "true")), abort), primaryRoute(10))
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
	delay := &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(200 * time.Millisecond)}, Percentage: percent(50)}}
	top := envoyTopology(t, rampPods(), nil, withFault(t, headerRoute(exactHeader("x-canary", "true")), delay), primaryRoute(10))
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
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: percent(100)}}
	r := NewRouter(envoyTopology(t, rampPods(), nil, withFault(t, headerRoute(exactHeader("x-canary", "true")), abort), primaryRoute(0)))
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

// A subset without ready pods (no endpoints in its load assignment) answers 503 UH (source
// only); unready and terminating pods never get traffic; a cluster CDS lacks (a subset no
// DestinationRule defines) answers 503 NC.
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

	r := NewRouter(envoyTopology(t, pods, nil, primaryRoute(30)))
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
	r = NewRouter(envoyTopology(t, rampPods(), nil, weightedRoute("r", map[string]uint32{"v3": 1})))
	if res := r.Route(newRNG(), MustModel(DefaultBehaviour, nil), &Request{}); res.Code != 503 || res.Flags != "NC" || len(res.Attempts) != 0 {
		t.Errorf("undefined subset: %+v, want 503 NC without attempts", res)
	}
}

// The behaviour model: an image with 8% errors (500 and 503 alike) yields ~8% 5xx at the
// destination and at the client: Istio's default retry policy lists no status code, so it
// retries neither.
func TestBehaviourErrorRate(t *testing.T) {
	const n = 50000
	m := MustModel(DefaultBehaviour, map[string]Behaviour{
		canaryImage: {ErrorRate: 0.08, LatencyP50: 20 * time.Millisecond, LatencyP99: 200 * time.Millisecond},
	})
	r := NewRouter(rampEnvoy(t, 100))
	st, _ := run(t, r, m, Traffic{}, n)
	dst := st.Total(ReporterDestination)
	near(t, "destination 5xx ratio", st.ErrorRate(ReporterDestination, "web-canary"), 0.08, dst)
	near(t, "client 5xx ratio", st.ErrorRate(ReporterSource, ""), 0.08, n)
	if dst != n {
		t.Errorf("%d attempts for %d requests, want one each", dst, n)
	}
	codes := st.ByCode(ReporterDestination)
	near(t, "500 share", float64(codes[500])/float64(dst), 0.04, dst)
	t.Logf("destination: %d attempts, %.2f%% 5xx; source: %d requests, %.2f%% 5xx",
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
	r := NewRouter(rampEnvoy(t, 50))
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

// Retry policies, as istiod renders a VirtualService's retries (previous_hosts with 5 host
// selection attempts), and the route timeout.
func TestRetries(t *testing.T) {
	const n = 20000
	half500 := MustModel(Behaviour{ErrorRate: 0.5, ErrorCode: 500, LatencyP50: 10 * time.Millisecond, LatencyP99: 10 * time.Millisecond}, nil)
	policy := func(retryOn string, retries uint32) *routev3.RetryPolicy {
		return &routev3.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(retries),
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}}, HostSelectionRetryMaxAttempts: 5}
	}
	route := func(rp *routev3.RetryPolicy, timeout time.Duration) *Router {
		return NewRouter(envoyTopology(t, rampPods(), nil, withTimeout(withRetry(weightedRoute("r", map[string]uint32{"": 1}), rp), timeout)))
	}

	t.Run("5xx retried up to attempts", func(t *testing.T) {
		st, results := run(t, route(policy("5xx", 3), 0), half500, Traffic{}, n)
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
		st, _ := run(t, route(policy("gateway-error", 3), 0), half500, Traffic{}, n)
		if st.Total(ReporterDestination) != n {
			t.Errorf("%d attempts for %d requests", st.Total(ReporterDestination), n)
		}
	})
	t.Run("retriable status codes", func(t *testing.T) {
		rp := policy("retriable-status-codes", 1)
		rp.RetriableStatusCodes = []uint32{500}
		st, _ := run(t, route(rp, 0), half500, Traffic{}, n)
		near(t, "client errors", st.ErrorRate(ReporterSource, ""), 0.25, n)
	})
	t.Run("no retry policy", func(t *testing.T) {
		m := MustModel(Behaviour{ErrorRate: 1, ErrorCode: 503}, nil)
		st, _ := run(t, route(nil, 0), m, Traffic{}, 100)
		if st.Total(ReporterDestination) != 100 || st.ByCode(ReporterSource)[503] != 100 {
			t.Errorf("got %v", st.Counts)
		}
	})
	t.Run("Istio's default policy does not retry an application's 503", func(t *testing.T) {
		m := MustModel(Behaviour{ErrorRate: 1, ErrorCode: 503}, nil)
		_, results := run(t, route(istioDefaultRetry(), 0), m, Traffic{}, 100)
		for _, res := range results {
			if len(res.Attempts) != 1 || res.Code != 503 || res.Flags != "-" {
				t.Fatalf("%+v, want 1 attempt, 503", res)
			}
		}
	})
	t.Run("perTryTimeout", func(t *testing.T) {
		slow := MustModel(Behaviour{LatencyP50: 100 * time.Millisecond, LatencyP99: 100 * time.Millisecond}, nil)
		rp := policy("5xx", 2)
		rp.PerTryTimeout = durationpb.New(50 * time.Millisecond)
		_, results := run(t, route(rp, 0), slow, Traffic{}, 100)
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
		st, results := run(t, route(policy("5xx", 2), 120*time.Millisecond), failing, Traffic{}, 1000)
		for _, res := range results {
			if res.Code != 504 || res.Flags != "UT" || res.Latency != 120*time.Millisecond {
				t.Fatalf("%+v, want 504 UT after 120ms", res)
			}
		}
		if got := st.ByCode(ReporterDestination); got[503]+got[0] != st.Total(ReporterDestination) || got[503] != 1000 {
			t.Errorf("destination codes %v: want every first attempt's 503 and resets (0) of the retries cut short", got)
		}
	})
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
