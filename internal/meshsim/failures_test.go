package meshsim

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

const canaryCluster = "outbound|80|canary|" + fqdn

// A connection the canary refuses: the client's proxy retries it (Istio's default policy has
// connect-failure) and reports 503 UF,URX naming the last pod it tried; no pod reports it.
// Without retries it is 503 UF.
func TestConnectFailure(t *testing.T) {
	broken := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {ConnectFailureRate: 1}})
	for _, tc := range []struct {
		name  string
		retry *routev3.RetryPolicy
		flags string
		tries int
	}{
		{"default retries", istioDefaultRetry(), "UF,URX", 3},
		{"no retries", nil, "UF", 1},
		{"retryOn 5xx", &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1)}, "UF,URX", 2},
		{"retryOn retriable-4xx only", &routev3.RetryPolicy{RetryOn: "retriable-4xx", NumRetries: wrapperspb.UInt32(3)}, "UF", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter(envoyTopology(t, rampPods(), nil, withRetry(primaryRoute(100), tc.retry)))
			o := NewOutliers()
			res := r.RouteWith(newRNG(), broken, o, time.Now(), &Request{})
			if res.Code != 503 || res.Flags != tc.flags || len(res.Attempts) != 0 || res.Endpoint == nil {
				t.Fatalf("%+v, want 503 %s, no attempt reaching a pod", res, tc.flags)
			}
			reps := res.Reports(nil)
			if len(reps) != 1 || reps[0].Reporter != ReporterSource || reps[0].Workload != "web-canary" || reps[0].Namespace != ns {
				t.Errorf("reports %+v, want one source report naming web-canary", reps)
			}
		})
	}
	// Half the connections fail: with two retries on other canary pods, 1/8 of requests fail.
	half := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {ConnectFailureRate: 0.5}})
	r := NewRouter(rampEnvoy(t, 100))
	st, _ := run(t, r, half, Traffic{}, 20000)
	near(t, "UF,URX share", float64(st.Sum(func(k Key) bool { return k.Flags == "UF,URX" }))/20000, 0.125, 20000)
	if n := st.Sum(func(k Key) bool { return k.Reporter == ReporterDestination && k.Code != 200 }); n != 0 {
		t.Errorf("%d destination reports of failures: a refused connection reaches no pod", n)
	}
}

func TestBehaviourValidateConnectFailureRate(t *testing.T) {
	for _, v := range []float64{-0.1, 1.5} {
		if err := (Behaviour{ConnectFailureRate: v}).Validate(); err == nil || !strings.Contains(err.Error(), "connect failure rate") {
			t.Errorf("ConnectFailureRate %v: %v", v, err)
		}
	}
}

// Outlier detection as istiod writes ramp's DestinationRule's into CDS (consecutive5xxErrors
// 3, interval 1s, baseEjectionTime 10s, maxEjectionPercent 100): after 3 consecutive 500s a
// canary pod is ejected and gets no traffic; with both canary pods ejected the canary subset
// has no healthy upstream (503 UH, destination unknown) until baseEjectionTime has passed at
// an interval sweep; then both are back, and ejected again for twice as long.
func TestOutlierEjection(t *testing.T) {
	od := envoyOD{c5: wrapperspb.UInt32(3), e5: wrapperspb.UInt32(100), interval: durationpb.New(time.Second),
		base: durationpb.New(10 * time.Second), pct: wrapperspb.UInt32(100)}
	r := NewRouter(envoyTopology(t, rampPods(), od.proto(), primaryRoute(100)))
	if w := r.Warnings(); len(w) != 0 {
		t.Errorf("warnings %v", w)
	}
	m := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {ErrorRate: 1, ErrorCode: 500}})
	o, rng, t0 := NewOutliers(), newRNG(), time.Now()
	route := func(at time.Time) Result { return r.RouteWith(rng, m, o, at, &Request{}) }
	var first []Result
	for range 6 {
		first = append(first, route(t0))
	}
	for i, res := range first {
		if res.Code != 500 || res.Flags != "-" {
			t.Fatalf("request %d: %+v, want the canary's 500", i, res)
		}
	}
	a, b := "web-canary-"+canaryHash+"-a", "web-canary-"+canaryHash+"-b"
	if !o.Ejected(canaryCluster, a) || !o.Ejected(canaryCluster, b) {
		t.Fatalf("after 6 500s over two pods: ejected a %v b %v", o.Ejected(canaryCluster, a), o.Ejected(canaryCluster, b))
	}
	res := route(t0.Add(time.Second))
	rep := res.Reports(nil)
	if res.Code != 503 || res.Flags != "UH" || len(rep) != 1 || rep[0].Workload != Unknown || rep[0].Namespace != Unknown || rep[0].Service != fqdn {
		t.Fatalf("all ejected: %+v, reports %+v; want 503 UH from the source only, destination unknown", res, rep)
	}
	// Back after 10 s (at the sweep at t0+10s), failing again: ejected for 20 s this time.
	if res := route(t0.Add(9500 * time.Millisecond)); res.Flags != "UH" {
		t.Fatalf("before baseEjectionTime: %+v", res)
	}
	if res := route(t0.Add(10 * time.Second)); res.Code != 500 {
		t.Fatalf("after baseEjectionTime: %+v, want the canary again", res)
	}
	for range 5 {
		route(t0.Add(10 * time.Second))
	}
	if res := route(t0.Add(29 * time.Second)); res.Flags != "UH" {
		t.Errorf("second ejection lasts 2 x baseEjectionTime: %+v at +19s", res)
	}
	if res := route(t0.Add(30 * time.Second)); res.Code != 500 {
		t.Errorf("second ejection over at +20s: %+v", res)
	}
}

// An ejected pod gets no traffic while its healthy sibling takes the subset's share; Envoy's
// maxEjectionPercent counts the host being ejected, so at Envoy's default of 10% a two-pod
// subset ejects nothing.
func TestOutlierEjectionLimits(t *testing.T) {
	bad := pod("web-canary-"+canaryHash+"-a", "web-canary", canaryHash, "registry.example/web:broken", true, istio.TrackLabel, istio.TrackCanary)
	pods := append(rampPods()[:3], bad, rampPods()[4])
	m := MustModel(DefaultBehaviour, map[string]Behaviour{"registry.example/web:broken": {ErrorRate: 1, ErrorCode: 500}})
	for _, tc := range []struct {
		name    string
		percent *wrapperspb.UInt32Value
		ejected bool
	}{{"max_ejection_percent 50", wrapperspb.UInt32(50), true}, {"Envoy's default 10", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			od := envoyOD{pct: tc.percent} // consecutive 5xx: Envoy's 5
			r := NewRouter(envoyTopology(t, pods, od.proto(), primaryRoute(100)))
			o, rng, now := NewOutliers(), newRNG(), time.Now()
			var st Stats
			for range 400 {
				res := r.RouteWith(rng, m, o, now, &Request{})
				st.AddResult(&res)
			}
			if got := o.Ejected(canaryCluster, bad.Name); got != tc.ejected {
				t.Fatalf("ejected %v, want %v", got, tc.ejected)
			}
			errs := st.Sum(func(k Key) bool { return k.Reporter == ReporterSource && k.Code == 500 })
			if tc.ejected && errs != 5 {
				t.Errorf("%d 500s, want exactly the 5 that ejected the pod", errs)
			}
			if !tc.ejected && errs < 100 {
				t.Errorf("%d 500s: the bad pod kept half the traffic", errs)
			}
		})
	}
}

// A cluster's outlier detection state survives a new Router with the same settings (a new
// push or pod read) and restarts when they change.
func TestOutlierStateAcrossRouters(t *testing.T) {
	top := envoyTopology(t, rampPods(), envoyOD{c5: wrapperspb.UInt32(1), e5: wrapperspb.UInt32(100), pct: wrapperspb.UInt32(100)}.proto(), primaryRoute(100))
	m := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {ErrorRate: 1, ErrorCode: 500}})
	rng, now := newRNG(), time.Now()
	o := NewOutliers()
	NewRouter(top).RouteWith(rng, m, o, now, &Request{})
	r2 := NewRouter(top) // same settings: state kept
	if res := r2.RouteWith(rng, m, o, now, &Request{}); res.Code != 500 {
		t.Fatalf("%+v: one pod ejected, the other still serves", res)
	}
	if res := r2.RouteWith(rng, m, o, now, &Request{}); res.Flags != "UH" {
		t.Fatalf("%+v: both pods ejected across Routers, want UH", res)
	}
	for _, c := range top.Envoy.Clusters {
		if c.GetName() == canaryCluster {
			c.OutlierDetection.Consecutive_5Xx = wrapperspb.UInt32(2)
		}
	}
	if res := NewRouter(top).RouteWith(rng, m, o, now, &Request{}); res.Code != 500 {
		t.Fatalf("%+v: new settings start a new detector", res)
	}
}

// A route timeout: the client's proxy reports 504 UT naming the pod; the pod's proxy reports
// the reset request as 0 DC; the outlier detector counts a 504.
func TestRouteTimeoutTelemetry(t *testing.T) {
	od := envoyOD{c5: wrapperspb.UInt32(1), e5: wrapperspb.UInt32(100), pct: wrapperspb.UInt32(50)}
	r := NewRouter(envoyTopology(t, rampPods(), od.proto(), withTimeout(primaryRoute(100), 100*time.Millisecond)))
	slow := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {LatencyP50: time.Second, LatencyP99: time.Second}})
	o := NewOutliers()
	res := r.RouteWith(newRNG(), slow, o, time.Now(), &Request{})
	reps := res.Reports(nil)
	if res.Code != 504 || res.Flags != "UT" || len(reps) != 2 || reps[0].Workload != "web-canary" ||
		reps[1].Code != 0 || reps[1].Flags != "DC" || reps[1].Latency != 100*time.Millisecond {
		t.Fatalf("%+v, reports %+v", res, reps)
	}
	if !o.Ejected(canaryCluster, res.Endpoint.Pod) {
		t.Error("the timed-out pod is not ejected after consecutive5xxErrors 1")
	}
}

// Series exist from their label set's first request, as Envoy creates its counters: a
// canary's first 503 is a new series whose first value is already 1.
func TestTelemetryLazySeries(t *testing.T) {
	tel := NewTelemetry("meshsim", ns)
	if got := gather(t, tel); len(got) != 0 {
		t.Fatalf("series before any request: %v", got)
	}
	ep := &Endpoint{Pod: "p", Namespace: ns, Workload: "web-canary"}
	ok := Result{Service: fqdn, Code: 200, Flags: "-", Endpoint: ep, Attempts: []Attempt{{Endpoint: ep, Code: 200, Flags: "-"}}}
	tel.Record(ok.Reports(nil))
	count := func(got map[string]float64, code string) (n int) {
		for k := range got {
			if strings.HasPrefix(k, "istio_requests_total{") && strings.Contains(k, `response_code="`+code+`"`) {
				n++
			}
		}
		return n
	}
	got := gather(t, tel)
	if count(got, "200") != 2 || count(got, "503") != 0 {
		t.Fatalf("after one 200: %v", got)
	}
	uh := Result{Service: fqdn, Code: 503, Flags: "UH"}
	tel.Record(uh.Reports(nil))
	got = gather(t, tel)
	k := seriesName("istio_requests_total", map[string]string{"destination_service": fqdn, "destination_workload": Unknown,
		"destination_workload_namespace": Unknown, "reporter": "source", "response_code": "503", "response_flags": "UH",
		"source_workload": "meshsim", "source_workload_namespace": ns})
	if got[k] != 1 || count(got, "503") != 1 {
		t.Errorf("after a UH: %s = %v; %v", k, got[k], got)
	}
	if IstioBuckets[0] != 0.5 || IstioBuckets[2] != 5 {
		t.Errorf("buckets %v, want Envoy's defaults 0.5, 1, 5, ...", IstioBuckets)
	}
}

// envoyOD is a CDS cluster's outlier_detection, by the fields the table sets.
type envoyOD struct {
	c5, e5, gw, egw, pct *wrapperspb.UInt32Value
	interval, base, maxT *durationpb.Duration
	one                  *wrapperspb.BoolValue
}

func (f envoyOD) proto() *clusterv3.OutlierDetection {
	return &clusterv3.OutlierDetection{Consecutive_5Xx: f.c5, EnforcingConsecutive_5Xx: f.e5, ConsecutiveGatewayFailure: f.gw,
		EnforcingConsecutiveGatewayFailure: f.egw, Interval: f.interval, BaseEjectionTime: f.base, MaxEjectionTime: f.maxT,
		MaxEjectionPercent: f.pct, AlwaysEjectOneHost: f.one}
}

// A CDS cluster's outlier_detection, with Envoy's defaults for what it leaves unset.
func TestOutlierFromEnvoy(t *testing.T) {
	u := wrapperspb.UInt32
	defaults := outlierPolicy{consecutive5xx: 5, interval: 10 * time.Second, baseEjection: 30 * time.Second, maxEjection: 300 * time.Second, maxEjectionPercent: 10}
	for _, tc := range []struct {
		name string
		in   envoyOD
		want func(p *outlierPolicy)
	}{
		{"empty", envoyOD{}, func(*outlierPolicy) {}},
		{"5xx not enforced", envoyOD{c5: u(3), e5: u(0)}, func(p *outlierPolicy) { p.consecutive5xx = 0 }},
		{"gateway counted, not enforced by default", envoyOD{gw: u(2)}, func(*outlierPolicy) {}},
		{"gateway enforced", envoyOD{gw: u(2), egw: u(100)}, func(p *outlierPolicy) { p.consecutiveGateway = 2 }},
		{"as istiod writes ramp's rule", envoyOD{c5: u(3), e5: u(100), interval: durationpb.New(time.Second),
			base: durationpb.New(400 * time.Second), pct: u(100)}, func(p *outlierPolicy) {
			p.consecutive5xx, p.interval, p.baseEjection, p.maxEjection, p.maxEjectionPercent = 3, time.Second, 400*time.Second, 400*time.Second, 100
		}},
		{"always eject one", envoyOD{one: wrapperspb.Bool(true), maxT: durationpb.New(time.Minute)}, func(p *outlierPolicy) {
			p.alwaysEjectOne, p.maxEjection = true, time.Minute
		}},
	} {
		want := defaults
		tc.want(&want)
		if got := outlierFromEnvoy(tc.in.proto()); *got != want {
			t.Errorf("%s: %+v, want %+v", tc.name, *got, want)
		}
	}
	// always_eject_one_host lets Envoy eject one of two hosts at max_ejection_percent 10.
	d := &detector{policy: *outlierFromEnvoy(envoyOD{c5: u(1), one: wrapperspb.Bool(true)}.proto()), hosts: map[string]*hostMonitor{}}
	d.sync([]*Endpoint{{Pod: "a"}, {Pod: "b"}})
	now := time.Now()
	d.record("a", 503, now)
	d.record("b", 503, now)
	if !d.hosts["a"].ejected || d.hosts["b"].ejected {
		t.Errorf("always_eject_one_host: a %v b %v, want only a", d.hosts["a"].ejected, d.hosts["b"].ejected)
	}
}
