package meshsim

import (
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// The whole loop against a local cluster with istiod and a real Prometheus: ramp's
// VirtualService and DestinationRule (50% canary) over ramp's stable and canary Deployments,
// a Sim routing 2000 req/s by the Envoy configuration istiod serves it, Prometheus scraping
// its /metrics every second, and ramp's built-in error-rate query reading the canary's
// configured 8% (and stable's 0.5%) back. Then the Sim follows a change of the
// VirtualService, pushed by istiod.
func TestIntegrationPrometheusReadsErrorRate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a local cluster, istiod and Prometheus (-short)")
	}
	bin := prometheustest.BinaryFor(t)
	start := time.Now()
	// Prometheus needs ~5 s before its first scrape: start it, on the Sim's future metrics
	// address, while the cluster starts and the pods roll out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type promResult struct {
		srv *prometheustest.Server
		err error
	}
	promCh := make(chan promResult, 1)
	go func() {
		srv, err := prometheustest.Start(prometheustest.Options{Binary: bin, Targets: []string{ln.Addr().String()}})
		promCh <- promResult{srv, err}
	}()
	pr := promResult{err: errors.New("not started")}
	defer func() {
		if pr.srv != nil {
			pr.srv.Stop()
		}
	}()
	env := localCluster(t)
	nsName := env.Namespace(t)
	hash := deployWeb(t, env, nsName)
	if pr = <-promCh; pr.err != nil {
		t.Fatal(pr.err)
	}
	t.Logf("cluster, pods and Prometheus up in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	ro := rollout(nil, func(ro *rampv1.Rollout) { ro.Namespace = nsName })
	dr, err := istio.DestinationRule(ro, hash)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(ctx, t, env.Client, rendered(t, dr))
	vs := rendered(t, istio.VirtualService(ro, istio.Routing{CanaryWeight: 50}))
	mustCreate(ctx, t, env.Client, vs)

	model := MustModel(DefaultBehaviour, map[string]Behaviour{
		// 500s: Istio's default policy does not retry them, so the callers see the configured rates.
		stableImage: {ErrorRate: 0.005, ErrorCode: 500, LatencyP50: 20 * time.Millisecond, LatencyP99: 80 * time.Millisecond},
		canaryImage: {ErrorRate: 0.08, ErrorCode: 500, LatencyP50: 40 * time.Millisecond, LatencyP99: 400 * time.Millisecond},
	})
	sim, err := New(Options{Client: env.Client, Namespace: nsName, Service: app, Seed: 1, Model: model,
		XDSAddr: env.Istiod.GRPCAddr, Traffic: Traffic{RPS: 2000}, MetricsListener: ln, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	// istiod may push before it has both objects and every endpoint.
	if err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
		r := sim.Router()
		return r.VirtualService() == nsName+"/web" && len(r.Endpoints()) == 5, nil
	}); err != nil {
		t.Fatalf("sim routes with %q over %d endpoints: %v", sim.Router().VirtualService(), len(sim.Router().Endpoints()), err)
	}

	const window = "10s"
	pc, err := analysis.NewClient(pr.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	countQ, _ := analysis.RequestCountQuery(nsName, "web-canary", window)
	// Wait until the window is (nearly) full: 1000 canary req/s.
	simStart := time.Now()
	for {
		n, err := pc.Query(ctx, countQ, 5*time.Second)
		if err == nil && n >= 8500 {
			t.Logf("canary: %.0f requests in Prometheus over %s, %s after the Sim started", n, window, time.Since(simStart).Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("canary requests over %s: %v (%v); prometheus: %s", window, n, err, pr.srv.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	st := sim.Stats(10 * time.Second)
	for _, c := range []struct {
		workload string
		want     float64
	}{{"web-canary", 0.08}, {"web", 0.005}} {
		q, err := analysis.BuiltinQuery(rampv1.BuiltinErrorRate, nsName, c.workload, window)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pc.Query(ctx, q, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		cq, _ := analysis.RequestCountQuery(nsName, c.workload, window)
		n, err := pc.Query(ctx, cq, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		bound := 100 * 5 * math.Sqrt(c.want*(1-c.want)/n)
		if math.Abs(got-100*c.want) > bound {
			t.Errorf("%s error-rate = %.3f%%, want %.1f%% ± %.2f (5σ)", c.workload, got, 100*c.want, bound)
		}
		t.Logf("%s: ramp's error-rate reads %.3f%% over %.0f requests (configured %.1f%%, 5σ %.2f); the Sim's own stats %.3f%% over %s",
			c.workload, got, n, 100*c.want, bound, 100*st.ErrorRate(ReporterSource, c.workload), st.Window.Round(time.Millisecond))
	}
	p99Q, _ := analysis.BuiltinQuery(rampv1.BuiltinLatencyP99, nsName, "web-canary", window)
	if p99, err := pc.Query(ctx, p99Q, 5*time.Second); err != nil || p99 <= 250 || p99 > 500 {
		t.Errorf("canary latency-p99 = %v (%v), want within the (250, 500] bucket of 400 ms", p99, err)
	} else {
		t.Logf("web-canary: ramp's latency-p99 reads %.1f ms (configured 400 ms)", p99)
	}

	// All traffic back to stable: the Sim follows istiod's next push.
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(vs.GroupVersionKind())
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vs), cur); err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"] = rendered(t, istio.VirtualService(ro, istio.Routing{CanaryWeight: 0})).Object["spec"]
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	err = testenv.WaitFor(ctx, 10*time.Second, func(context.Context) (bool, error) {
		st := sim.Stats(100 * time.Millisecond)
		return st.Total(ReporterSource) > 0 && st.Share(ReporterSource, istio.CanarySubset) == 0, nil
	})
	if err != nil {
		t.Fatalf("canary still gets traffic: %v", err)
	}
	t.Logf("weight 0 effective within %s; whole test %s", time.Since(changed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func mustCreate(ctx context.Context, t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}
