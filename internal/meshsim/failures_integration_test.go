package meshsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Each failure kind only the calling proxy sees, on a fresh canary (its series are all born
// in the rollout's first window), fails ramp's first analysis round read from a real
// Prometheus scraping the Sims; a healthy canary passes it. Each scenario is ramp's layout in
// its own namespace of the local cluster, routed by the Envoy configuration istiod generates
// from ramp's VirtualService (50% canary) and DestinationRule. For each, the built-in
// error-rate as ramp computed it before (reporter="destination", rate()) is read too: it
// would not have failed the round.
func TestIntegrationFailureKindsFailTheFirstRound(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a local cluster, istiod and Prometheus (-short)")
	}
	bin := prometheustest.BinaryFor(t)
	slow := Behaviour{LatencyP50: 2 * time.Second, LatencyP99: 4 * time.Second}
	healthy := Behaviour{LatencyP50: 20 * time.Millisecond, LatencyP99: 80 * time.Millisecond}
	scenarios := []struct {
		name    string
		canary  Behaviour
		service func(*rampv1.ServiceSpec)
		// dr edits the DestinationRule ramp renders.
		dr    func(*unstructured.Unstructured)
		want  string // verdict
		flags string // the source reports' flags the failures carry
	}{
		// ramp's route timeout: the client gets 504 UT; the pod's proxy reports code 0.
		{name: "timeout", canary: slow, service: func(s *rampv1.ServiceSpec) { s.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond} },
			want: rampv1.VerdictFailed, flags: "UT"},
		// Refused connections, retried by Istio's default policy: 503 UF,URX; the pods see nothing.
		{name: "connect", canary: Behaviour{ConnectFailureRate: 0.6, LatencyP50: healthy.LatencyP50, LatencyP99: healthy.LatencyP99},
			want: rampv1.VerdictFailed, flags: "UF,URX"},
		// 503s eject both canary pods at once (ramp's outlier detection, as istiod puts it in
		// CDS): then 503 UH with destination_workload "unknown", charged to the canary.
		{name: "eject", canary: Behaviour{ErrorRate: 1, ErrorCode: 503}, service: func(s *rampv1.ServiceSpec) {
			s.TrafficPolicy = &rampv1.TrafficPolicy{OutlierDetection: &rampv1.OutlierDetection{Consecutive5xxErrors: ptr.To[int32](3),
				BaseEjectionTime: &metav1.Duration{Duration: time.Minute}, MaxEjectionPercent: ptr.To[int32](100)}}
		}, want: rampv1.VerdictFailed, flags: "UH"},
		// The route names the canary subset, the DestinationRule lacks it (e.g. an older rule
		// still in place): istiod routes to a cluster CDS does not have, 503 NC, with the Host
		// header as destination_service; no canary pod ever gets a request.
		{name: "nocluster", canary: healthy, dr: func(u *unstructured.Unstructured) {
			subsets, _, _ := unstructured.NestedSlice(u.Object, "spec", "subsets")
			var kept []any
			for _, s := range subsets {
				if s.(map[string]any)["name"] != istio.CanarySubset {
					kept = append(kept, s)
				}
			}
			if err := unstructured.SetNestedSlice(u.Object, kept, "spec", "subsets"); err != nil {
				t.Fatal(err)
			}
		}, want: rampv1.VerdictFailed, flags: "NC"},
		{name: "healthy", canary: healthy, want: rampv1.VerdictPassed},
	}

	// Prometheus needs seconds before its first scrape: start it, on the Sims' future metrics
	// addresses, while the cluster starts and the pods roll out.
	var listeners []net.Listener
	var targets []string
	for range scenarios {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, ln)
		targets = append(targets, ln.Addr().String())
	}
	type promResult struct {
		srv *prometheustest.Server
		err error
	}
	promCh := make(chan promResult, 1)
	go func() {
		srv, err := prometheustest.Start(prometheustest.Options{Binary: bin, Targets: targets})
		promCh <- promResult{srv, err}
	}()
	pr := promResult{err: errors.New("not started")}
	defer func() {
		if pr.srv != nil {
			pr.srv.Stop()
		}
	}()
	env := localCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	rollouts := make([]*rampv1.Rollout, len(scenarios))
	sims := make([]*Sim, len(scenarios))
	for i, sc := range scenarios {
		nsName := env.Namespace(t)
		hash := deployWeb(t, env, nsName)
		ro := rollout(nil, func(ro *rampv1.Rollout) {
			ro.Namespace = nsName
			if sc.service != nil {
				sc.service(&ro.Spec.Service)
			}
		})
		rollouts[i] = ro
		dr, err := istio.DestinationRule(ro, hash)
		if err != nil {
			t.Fatal(err)
		}
		u := rendered(t, dr)
		if sc.dr != nil {
			sc.dr(u)
		}
		mustCreate(ctx, t, env.Client, u)
		mustCreate(ctx, t, env.Client, rendered(t, istio.VirtualService(ro, istio.Routing{CanaryWeight: 50})))
		// No traffic until every Sim routes by istiod's configuration of ramp's objects.
		model := MustModel(healthy, map[string]Behaviour{canaryImage: sc.canary})
		sim, err := New(Options{Client: env.Client, Namespace: nsName, Service: app, Seed: uint64(i + 1), Model: model,
			XDSAddr: env.Istiod.GRPCAddr, MetricsListener: listeners[i], Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer sim.Stop()
		sims[i] = sim
	}
	for i, sim := range sims {
		ns := rollouts[i].Namespace
		if err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
			r := sim.Router()
			return r.VirtualService() == ns+"/"+app && len(r.Endpoints()) == 5, nil
		}); err != nil {
			t.Fatalf("%s: the Sim routes with %q over %d endpoints: %v (%v)", scenarios[i].name, sim.Router().VirtualService(), len(sim.Router().Endpoints()), err, envoySummary(sim.Envoy()))
		}
	}
	if pr = <-promCh; pr.err != nil {
		t.Fatal(pr.err)
	}
	prom := pr.srv

	// The rollout starts now: the canary gets its first request, every canary series is born.
	started := metav1.Now()
	for _, sim := range sims {
		if err := sim.SetTraffic(Traffic{RPS: 200}); err != nil {
			t.Fatal(err)
		}
	}

	// The first round: once the rollout has run for the window, with 1 s scrapes covering it.
	const window = 10 * time.Second
	if _, err := prom.WaitForData(ctx, `min(count_over_time(istio_requests_total{reporter="source",destination_workload="web"}[10s])) >= 10`); err != nil {
		t.Fatal(err)
	}
	pc, err := analysis.NewClient(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := analysis.NewAnalyzer()
	for i, sc := range scenarios {
		ro := rollouts[i]
		ns := ro.Namespace
		ro.Spec.Analysis = &rampv1.AnalysisSpec{
			Interval:   &metav1.Duration{Duration: window},
			Prometheus: rampv1.PrometheusSpec{Address: prom.URL, Timeout: &metav1.Duration{Duration: 5 * time.Second}},
			Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(5.0)}},
				{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(5000.0)}}},
		}
		ro.Status.RolloutStartedAt = &started
		got := a.Analyze(ctx, ro)
		er := got.Metrics[0]
		t.Logf("%s: round %s %q; error-rate %s", sc.name, got.Verdict, got.Reason, er.Value)
		if got.Verdict != sc.want || er.Verdict != sc.want {
			t.Errorf("%s: round %s (%q), error-rate %+v; want %s", sc.name, got.Verdict, got.Reason, er, sc.want)
		}
		if sc.flags != "" {
			q := fmt.Sprintf(`sum(istio_requests_total{reporter="source",source_workload_namespace=%q,response_flags=%q})`, ns, sc.flags)
			if n, err := pc.Query(ctx, q, 5*time.Second); err != nil || n == 0 {
				t.Errorf("%s: no source reports with flags %s (%v, %v)", sc.name, sc.flags, n, err)
			}
		}
		// The built-in as it was: what the canary's own proxy reported, by rate().
		sel := `reporter="destination",destination_workload_namespace="` + ns + `",destination_workload="web-canary"`
		old := `100 * (sum(rate(istio_requests_total{` + sel + `,response_code=~"5.."}[10s])) or vector(0)) / sum(rate(istio_requests_total{` + sel + `}[10s]))`
		oldCount := `sum(increase(istio_requests_total{` + sel + `}[10s]))`
		v, verr := pc.Query(ctx, old, 5*time.Second)
		n, _ := pc.Query(ctx, oldCount, 5*time.Second)
		t.Logf("%s: the destination-reported rate() error-rate read %v (%v) over %v requests", sc.name, v, verr, n)
		if sc.want == rampv1.VerdictFailed && verr == nil && v > 5 && n >= float64(rampv1.DefaultMinRequests) {
			t.Errorf("%s: the old query fails this canary too (%v%% over %v): the scenario does not show a failure only the caller sees", sc.name, v, n)
		}
	}
	if t.Failed() {
		t.Logf("prometheus logs: %s", prom.Logs())
	}
}
