package meshsim

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// Each failure kind only the calling proxy sees, on a fresh canary (its series are all born
// in the rollout's first window), fails ramp's first analysis round read from a real
// Prometheus scraping the Sims; a healthy canary passes it. For each, the built-in error-rate
// as ramp computed it before (reporter="destination", rate()) is read too: it would not have
// failed the round.
func TestIntegrationFailureKindsFailTheFirstRound(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with Prometheus (-short)")
	}
	bin, err := prometheustest.Binary()
	if err != nil {
		if os.Getenv("RAMP_REQUIRE_PROMETHEUS") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	slow := Behaviour{LatencyP50: 2 * time.Second, LatencyP99: 4 * time.Second}
	healthy := Behaviour{LatencyP50: 20 * time.Millisecond, LatencyP99: 80 * time.Millisecond}
	scenarios := []struct {
		ns      string
		canary  Behaviour
		service func(*rampv1.ServiceSpec)
		want    string // verdict
		flags   string // the source reports' flags the failures carry
	}{
		// ramp's route timeout: the client gets 504 UT; the pod's proxy reports code 0.
		{"timeout", slow, func(s *rampv1.ServiceSpec) { s.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond} }, rampv1.VerdictFailed, "UT"},
		// Refused connections, retried by Istio's default policy: 503 UF,URX; the pods see nothing.
		{"connect", Behaviour{ConnectFailureRate: 0.6, LatencyP50: healthy.LatencyP50, LatencyP99: healthy.LatencyP99}, nil, rampv1.VerdictFailed, "UF,URX"},
		// 503s eject both canary pods at once (ramp's outlier detection): then 503 UH with
		// destination_workload "unknown", charged to the canary.
		{"eject", Behaviour{ErrorRate: 1, ErrorCode: 503}, func(s *rampv1.ServiceSpec) {
			s.TrafficPolicy = &rampv1.TrafficPolicy{OutlierDetection: &rampv1.OutlierDetection{Consecutive5xxErrors: ptr.To[int32](3),
				BaseEjectionTime: &metav1.Duration{Duration: time.Minute}, MaxEjectionPercent: ptr.To[int32](100)}}
		}, rampv1.VerdictFailed, "UH"},
		{"healthy", healthy, nil, rampv1.VerdictPassed, ""},
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"VirtualService", "DestinationRule"} {
		gv := schema.GroupVersion{Group: "networking.istio.io", Version: "v1"}
		scheme.AddKnownTypeWithName(gv.WithKind(kind), &unstructured.Unstructured{})
		scheme.AddKnownTypeWithName(gv.WithKind(kind+"List"), &unstructured.UnstructuredList{})
	}
	var objs []client.Object
	rollouts := map[string]*rampv1.Rollout{}
	var listeners []net.Listener
	var targets []string
	for _, sc := range scenarios {
		ro := rollout(nil, func(ro *rampv1.Rollout) {
			ro.Namespace = sc.ns
			if sc.service != nil {
				sc.service(&ro.Spec.Service)
			}
		})
		rollouts[sc.ns] = ro
		svc := service()
		svc.Namespace = sc.ns
		objs = append(objs, svc)
		for _, p := range rampPods() {
			p.Namespace = sc.ns
			objs = append(objs, &p)
		}
		dr, err := istio.DestinationRule(ro, stableHash)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, rendered(t, dr), rendered(t, istio.VirtualService(ro, istio.Routing{CanaryWeight: 50})))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, ln)
		targets = append(targets, ln.Addr().String())
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()

	prom, err := prometheustest.Start(prometheustest.Options{Binary: bin, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The rollout starts now: the canary gets its first request, every canary series is born.
	started := metav1.Now()
	for i, sc := range scenarios {
		model := MustModel(healthy, map[string]Behaviour{canaryImage: sc.canary})
		sim, err := New(Options{Client: c, Namespace: sc.ns, Service: app, Seed: uint64(i + 1), Model: model,
			Traffic: Traffic{RPS: 200}, MetricsListener: listeners[i], Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer sim.Stop()
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
	for _, sc := range scenarios {
		ro := rollouts[sc.ns]
		ro.Spec.Analysis = &rampv1.AnalysisSpec{
			Interval:   &metav1.Duration{Duration: window},
			Prometheus: rampv1.PrometheusSpec{Address: prom.URL, Timeout: &metav1.Duration{Duration: 5 * time.Second}},
			Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(5.0)}},
				{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(5000.0)}}},
		}
		ro.Status.RolloutStartedAt = &started
		got := a.Analyze(ctx, ro)
		er := got.Metrics[0]
		t.Logf("%s: round %s %q; error-rate %s", sc.ns, got.Verdict, got.Reason, er.Value)
		if got.Verdict != sc.want || er.Verdict != sc.want {
			t.Errorf("%s: round %s (%q), error-rate %+v; want %s", sc.ns, got.Verdict, got.Reason, er, sc.want)
		}
		if sc.flags != "" {
			q := fmt.Sprintf(`sum(istio_requests_total{reporter="source",destination_service=~"web[.]%s[.].+",response_flags=%q})`, sc.ns, sc.flags)
			if n, err := pc.Query(ctx, q, 5*time.Second); err != nil || n == 0 {
				t.Errorf("%s: no source reports with flags %s (%v, %v)", sc.ns, sc.flags, n, err)
			}
		}
		// The built-in as it was: what the canary's own proxy reported, by rate().
		sel := `reporter="destination",destination_workload_namespace="` + sc.ns + `",destination_workload="web-canary"`
		old := `100 * (sum(rate(istio_requests_total{` + sel + `,response_code=~"5.."}[10s])) or vector(0)) / sum(rate(istio_requests_total{` + sel + `}[10s]))`
		oldCount := `sum(increase(istio_requests_total{` + sel + `}[10s]))`
		v, verr := pc.Query(ctx, old, 5*time.Second)
		n, _ := pc.Query(ctx, oldCount, 5*time.Second)
		t.Logf("%s: the destination-reported rate() error-rate read %v (%v) over %v requests", sc.ns, v, verr, n)
		if sc.want == rampv1.VerdictFailed && verr == nil && v > 5 && n >= float64(rampv1.DefaultMinRequests) {
			t.Errorf("%s: the old query fails this canary too (%v%% over %v): the scenario does not show a failure only the caller sees", sc.ns, v, n)
		}
	}
	if t.Failed() {
		t.Logf("prometheus logs: %s", prom.Logs())
	}
}
