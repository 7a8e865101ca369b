package meshsim

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// The integration tests share one local cluster (API server, controller manager, scheduler,
// KWOK nodes and istiod), started by the first that needs it.
var (
	clusterOnce sync.Once
	clusterEnv  *testenv.Env
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterEnv != nil {
		_ = clusterEnv.Stop()
	}
	os.Exit(code)
}

// localCluster returns the shared local cluster with istiod, starting it on first use (a
// first build of the binaries takes minutes).
func localCluster(t *testing.T) *testenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with a local cluster and istiod (-short)")
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		start := time.Now()
		clusterEnv, clusterErr = testenv.Start(ctx, testenv.Options{LocalCluster: true})
		t.Logf("local cluster with istiod up in %s", time.Since(start).Round(time.Millisecond))
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return clusterEnv
}

// deployWeb runs ramp's layout of app in ns on the local cluster: the Service, the stable
// Deployment (3 pods of stableImage) and the canary Deployment web-canary (2 pods of
// canaryImage, labelled as ramp labels canaries). It returns the stable pods' template hash
// once all five pods are Ready.
func deployWeb(t *testing.T, env *testenv.Env, namespace string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc := service()
	svc.Namespace = namespace
	mustCreate(ctx, t, env.Client, svc)
	deploy := func(name, image string, replicas int32, labels map[string]string) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
				},
			},
		}
		mustCreate(ctx, t, env.Client, d)
		return d
	}
	stable := deploy(app, stableImage, 3, map[string]string{"app": app})
	canary := deploy(app+"-canary", canaryImage, 2, map[string]string{"app": app, istio.TrackLabel: istio.TrackCanary})
	env.WaitRolledOut(t, stable, 3)
	env.WaitRolledOut(t, canary, 2)
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"app": app}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if WorkloadName(&p) == app {
			return p.Labels["pod-template-hash"]
		}
	}
	t.Fatalf("no stable pod among %d", len(pods.Items))
	return ""
}

// Ramp's VirtualService and DestinationRule on a local cluster with istiod: the Sim routes by
// the Envoy configuration istiod pushes to it (RDS, CDS, EDS over ADS), not by the objects.
// The header route carries a 25% abort and no retries of its own, so Istio's default retry
// policy applies there; the primary route splits 95/5 with ramp's timeout and retries. Then
// the weights change to 75/25 and the Sim routes by istiod's next push.
func TestXDSRoutesAsIstiodConfigures(t *testing.T) {
	env := localCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	nsName := env.Namespace(t)
	hash := deployWeb(t, env, nsName)

	ro := rollout(&rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")}, func(ro *rampv1.Rollout) {
		ro.Namespace = nsName
		ro.Spec.Service = rampv1.ServiceSpec{
			Timeout: &metav1.Duration{Duration: 5 * time.Second},
			Retries: &rampv1.HTTPRetry{Attempts: 2, RetryOn: "5xx,reset", PerTryTimeout: &metav1.Duration{Duration: 2 * time.Second}},
		}
	})
	dr, err := istio.DestinationRule(ro, hash)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(ctx, t, env.Client, rendered(t, dr))
	vsFor := func(weight int32) *unstructured.Unstructured {
		vs := rendered(t, istio.VirtualService(ro, istio.Routing{CanaryWeight: weight, HeaderRoute: true,
			Fault: &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 25, HTTPStatus: 503}}}))
		// The header route sets no retries: Istio's default policy applies to it.
		http := vs.Object["spec"].(map[string]any)["http"].([]any)
		delete(http[0].(map[string]any), "retries")
		return vs
	}
	vs := vsFor(5)
	mustCreate(ctx, t, env.Client, vs)

	// Canary pods answer 503 one time in five: retried by Istio's default policy, not by
	// ramp's 5xx,reset policy (which retries them too); stable pods never fail.
	model := MustModel(Behaviour{LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond}, map[string]Behaviour{
		canaryImage: {ErrorRate: 0.2, ErrorCode: 503, LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond},
	})
	sim, err := New(Options{Client: env.Client, Namespace: nsName, Service: app, Seed: 1, Model: model,
		XDSAddr: env.Istiod.GRPCAddr, MetricsAddr: "-", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()

	primary := func(r *Router) *httpRoute {
		for _, rt := range r.vhostFor(fqdn2(nsName)).routesOrNil() {
			if rt.name == istio.RoutePrimary {
				return rt
			}
		}
		return nil
	}
	canaryWeight := func(r *Router) uint64 {
		rt := primary(r)
		if rt == nil {
			return 0
		}
		for _, d := range rt.dests {
			if d.c.subset == istio.CanarySubset {
				return d.weight
			}
		}
		return 0
	}
	// istiod may push before it has both objects and every endpoint: wait for the 95/5 split
	// over the five pods.
	if err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
		return canaryWeight(sim.Router()) == 5 && len(sim.Router().Endpoints()) == 5, nil
	}); err != nil {
		held, herr := env.Istiod.Holds(ctx, istio.KindVirtualService, nsName, app)
		t.Logf("istiod holds the VirtualService: %v %v", held, herr)
		t.Fatalf("meshsim never got the 95/5 routes from istiod: %v (config %+v, warnings %q)", err, envoySummary(sim.Envoy()), sim.Router().Warnings())
	}
	r := sim.Router()
	e := sim.Envoy()
	t.Logf("istiod served route %s version %s, clusters version %s, endpoints version %s", e.Routes.GetName(), e.Versions["rds"], e.Versions["cds"], e.Versions["eds"])
	if got := r.VirtualService(); got != nsName+"/"+app {
		t.Errorf("VirtualService = %q, want %s/%s (from the routes' istio metadata)", got, nsName, app)
	}

	// What istiod translated, as the Router holds it.
	rt := primary(r)
	if rt.timeout != 5*time.Second || rt.retry.retries != 2 || rt.retry.perTry != 2*time.Second || !rt.retry.on5xx || !rt.retry.onReset {
		t.Errorf("primary route: timeout %s, retry %+v; want 5s and 2 retries on 5xx,reset per try 2s", rt.timeout, rt.retry)
	}
	// The header route sets no retries: istiod gives it Istio's default policy, 2 retries on
	// connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes, with
	// no status code listed: an application's 503 is not retried. The unit tests' copy of it
	// (istioDefaultRetry) must read the same.
	hdr := r.vhostFor(fqdn2(nsName)).routes[0]
	if want := compileEnvoyRetry(istioDefaultRetry()); hdr.name != istio.RouteCanary ||
		hdr.timeout != 5*time.Second || fmt.Sprint(hdr.retry) != fmt.Sprint(want) {
		t.Errorf("header route %q: timeout %s, retry %+v; want 5s and Istio's default retries %+v", hdr.name, hdr.timeout, hdr.retry, want)
	}

	// Plain requests: 95/5 by subset, each subset's pods by EDS; the canary's 503s are
	// retried under 5xx (a request fails when all 3 attempts do: 0.2^3).
	const n = 40000
	st, results := run(t, r, model, Traffic{}, n)
	near(t, "canary share (95/5)", st.Share(ReporterSource, istio.CanarySubset), 0.05, n)
	if wrong := st.Sum(func(k Key) bool {
		return k.Reporter == ReporterDestination && k.Subset == istio.StableSubset && k.Workload != app
	}); wrong > 0 {
		t.Errorf("%d stable-subset attempts reached canary pods", wrong)
	}
	toCanary, failed, attempts := canaryOutcomes(results)
	near(t, "canary 503 after ramp's retries", float64(failed)/float64(toCanary), 0.008, toCanary)
	if got, want := float64(attempts)/float64(toCanary), 1+0.2+0.04; got < want-0.05 || got > want+0.05 {
		t.Errorf("primary route: %.3f attempts per canary request, want %.2f (2 retries on 5xx)", got, want)
	}

	// Header requests: all to the canary, 25% aborted by the fault filter, the rest not
	// retried on 503.
	st, results = run(t, r, model, Traffic{Classes: []Class{{Share: 1, Request: header("x-canary", "true")}}}, n)
	var aborted int64
	for _, res := range results {
		if res.Flags == "FI" {
			aborted++
		} else if res.Subset != istio.CanarySubset {
			t.Fatalf("header request routed to %q", res.Subset)
		}
	}
	reached, failed, attempts := canaryOutcomes(results)
	near(t, "aborted share", float64(aborted)/n, 0.25, n)
	near(t, "503 under the default retry policy", float64(failed)/float64(reached), 0.2, reached)
	if attempts != reached {
		t.Errorf("header route: %d attempts for %d requests, want one each (503 is not retried by default)", attempts, reached)
	}
	t.Logf("header route: %.1f%% aborted, %.2f%% 503 not retried; %d source reports", 100*float64(aborted)/n, 100*float64(failed)/float64(reached), st.Total(ReporterSource))

	// 95/5 → 75/25: istiod pushes new routes, the Sim routes by them.
	rdsBefore := e.Responses["rds"]
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(vs.GroupVersionKind())
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vs), cur); err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"] = vsFor(25).Object["spec"]
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	if err := testenv.WaitFor(ctx, 30*time.Second, func(context.Context) (bool, error) {
		return canaryWeight(sim.Router()) == 25, nil
	}); err != nil {
		t.Fatalf("75/25 never reached meshsim: %v", err)
	}
	t.Logf("xDS push latency: VirtualService write → meshsim routing 75/25 in %s", time.Since(written).Round(time.Millisecond))
	e2 := sim.Envoy()
	if e2.Responses["rds"] <= rdsBefore || e2.Versions["rds"] == e.Versions["rds"] {
		t.Errorf("routes changed without a new RDS push: responses %d → %d, version %s → %s", rdsBefore, e2.Responses["rds"], e.Versions["rds"], e2.Versions["rds"])
	}
	st, _ = run(t, sim.Router(), model, Traffic{}, n)
	near(t, "canary share (75/25)", st.Share(ReporterSource, istio.CanarySubset), 0.25, n)
}

// canaryOutcomes counts the requests that reached the canary subset, those of them that
// failed with 503, and their attempts.
func canaryOutcomes(results []Result) (reached, failed, attempts int64) {
	for _, res := range results {
		if res.Subset != istio.CanarySubset || len(res.Attempts) == 0 {
			continue
		}
		reached++
		attempts += int64(len(res.Attempts))
		if res.Code == 503 {
			failed++
		}
	}
	return reached, failed, attempts
}

func fqdn2(namespace string) string { return app + "." + namespace + ".svc.cluster.local" }

func (vh *vhost) routesOrNil() []*httpRoute {
	if vh == nil {
		return nil
	}
	return vh.routes
}

func envoySummary(e *EnvoyConfig) any {
	if e == nil {
		return nil
	}
	var clusters, loads []string
	for _, c := range e.Clusters {
		clusters = append(clusters, c.GetName())
	}
	for _, l := range e.Endpoints {
		loads = append(loads, fmt.Sprintf("%s:%d", l.GetClusterName(), len(l.GetEndpoints())))
	}
	var routes []string
	for _, vh := range e.Routes.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			routes = append(routes, fmt.Sprintf("%s %v: %s %s", vh.GetName(), vh.GetDomains(), rt.GetName(), rt.GetRoute().GetWeightedClusters()))
		}
	}
	return fmt.Sprintf("versions %v responses %v clusters %v endpoints %v routes %s %q", e.Versions, e.Responses, clusters, loads, e.Routes.GetName(), routes)
}
