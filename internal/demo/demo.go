// Package demo is ramp's scripted local story: a local cluster (real API server, controller
// manager, scheduler and KWOK fake nodes, so Deployments really roll out), a real Prometheus,
// istiod, the mesh simulator (internal/meshsim: synthetic traffic routed by the Envoy
// configuration istiod serves it over xDS, with Istio's telemetry) and ramp's controller in-process with its real
// Prometheus analysis. An app's releases are "committed" by changing its image. Act 4 applies
// examples/podinfo-bluegreen-load, with ramp's load generator in-process (load.go). The
// ramp-demo command runs it for people to watch; e2e/demo runs it to prove it works.
package demo

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/grafana"
	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Options tune the story.
type Options struct {
	// Interval between analysis rounds (each step holds at least one). Defaults to 5s.
	Interval time.Duration
	// RPS is the simulated users' request rate in acts 1 to 3. Defaults to DefaultRPS.
	RPS float64
	// Replicas of the app. Defaults to 4.
	Replicas int32
	// Timeout bounds each release. Defaults to 2m.
	Timeout time.Duration
	// Picture, if set, is where the story's chart (SVG) is written.
	Picture string
	// Keep leaves the cluster, Prometheus, the mesh simulators, the load generator and ramp
	// running after the story until ctx ends (Ctrl-C), for people to try kubectl ramp against.
	Keep bool
}

// Row is one line of the summary: a state the rollout was in and for how long.
type Row struct {
	Release string
	Phase   string
	Step    string
	Weight  int32
	Message string
	// Metrics are the analysis results in status while in this state ("error-rate 0.3 <= 1 Passed").
	Metrics  string
	At, Took time.Duration
}

// Result is what the story observed.
type Result struct {
	Rows []Row
	// Outcome per release: the phase each one ended in.
	Outcome map[string]string
	// Picture is the story over time (weights, error rate, P99, verdicts).
	Picture Picture
	// Board is how many series each query of ramp's Grafana board found in the story's
	// Prometheus, by where the query is.
	Board map[string]int
	// Load is act 4: a blue/green preview judged on the load ramp's load generator sends.
	Load LoadResult
}

// LoadResult is what act 4 observed (release LoadRelease of examples/podinfo-bluegreen-load).
type LoadResult struct {
	// Namespace is the example's.
	Namespace string
	// Sent counts the load generator's requests and ByCode their answers by status code.
	Sent   int64
	ByCode map[int]int64
	// PreviewRoute counts the requests the mesh routed on the preview route (the preview
	// header's), ToPreview those of them that reached the new version, and Users the
	// simulated users' requests (none with the header), over the act.
	PreviewRoute, ToPreview, Users int64
	// Rounds are the release's analysis rounds, in order (Value NaN when there was none).
	Rounds []Round
}

// LoadRelease names act 4's release in Rows and Outcome.
const LoadRelease = "bg-v2"

const (
	ns      = "demo"
	appName = "podinfo"
	// platformNamespace is the manager's own namespace, as in config/default.
	platformNamespace = "ramp-system"
)

// The platform team's metric templates (as in examples/podinfo-templates/platform.yaml, on
// the demo's Prometheus): the app team's Rollout names them and sets its own thresholds.
const (
	errorRateTemplate  = "istio-error-rate"
	latencyP99Template = "istio-latency-p99"
)

// Behaviour of each release in the simulated mesh: v2 is healthy, v3 answers 8% errors.
// TestRoundsCannotGoWrongByChance checks that no analysis round of the story can pass v3 or
// fail v2 by chance: at 0.3% errors v2 failed a round of the first step (about 70 canary
// requests at 200 requests/s) one run in five.
var releases = map[string]meshsim.Behaviour{
	"v1": {ErrorRate: 0.002, LatencyP50: 20 * time.Millisecond, LatencyP99: 120 * time.Millisecond, ErrorCode: 500},
	"v2": {ErrorRate: 0.001, LatencyP50: 25 * time.Millisecond, LatencyP99: 150 * time.Millisecond, ErrorCode: 500},
	"v3": {ErrorRate: 0.08, LatencyP50: 25 * time.Millisecond, LatencyP99: 160 * time.Millisecond, ErrorCode: 500},
}

// DefaultRPS is the users' request rate of acts 1 to 3 unless Options say otherwise: the first
// step's rounds (5%, plus the testers) judge about 600 canary requests, enough that neither
// v2 fails nor v3 passes a round by chance (TestRoundsCannotGoWrongByChance).
const DefaultRPS = 2000

// testerShare of the users' requests carry the canary header: they reach the canary at
// every step.
const testerShare = 0.02

// The demo app's Rollout (acts 1 to 3): its steps and the thresholds of its two metrics.
var canarySteps = []rampv1.CanaryStep{{SetWeight: 5}, {SetWeight: 25}, {SetWeight: 100}}

const (
	maxErrorRate  = 1.0   // percent
	maxLatencyP99 = 300.0 // milliseconds
)

// Run plays the story, printing progress to out. Cancelling ctx (Ctrl-C) stops everything and
// leaves no process behind.
func Run(ctx context.Context, out io.Writer, o Options) (*Result, error) {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.RPS == 0 {
		o.RPS = DefaultRPS
	}
	if o.Replicas == 0 {
		o.Replicas = 4
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	p := &printer{out: out, start: time.Now()}

	promBin, err := prometheustest.Binary()
	if err != nil {
		return nil, fmt.Errorf("the demo needs Prometheus: %w", err)
	}
	// The mesh simulator's /metrics listener exists before Prometheus so it scrapes from the start.
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// ramp's own metrics (the manager runs in this process) on a second target, for the board.
	rampLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		metricsLn.Close()
		return nil, err
	}
	rampMetrics := &http.Server{Handler: promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rampMetrics.Serve(rampLn) }()
	defer func() { _ = rampMetrics.Close() }()
	// Act 4's mesh simulator (its own namespace's) on a third target, and its load generator,
	// whose gate endpoint the manager must allow before it starts.
	load, err := newLoadAct()
	if err != nil {
		metricsLn.Close()
		return nil, err
	}
	defer load.stop()
	p.say("starting Prometheus and a local cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, KWOK fake nodes, istiod")
	p.say("(the first run builds them from the Go module proxy and caches them in ~/.cache/ramp: 15-25 minutes)")
	// As installed by config/default: Rollouts may name Istio's Prometheus only, and the load
	// generator, as examples/podinfo-bluegreen-load asks. The demo's Prometheus is the
	// platform's choice, reached through its ClusterMetricTemplates.
	allowed := endpoints.MustParse("http://prometheus.istio-system:9090," + load.gateURL)
	stack, err := harness.Start(ctx, harness.Options{Prometheus: promBin, Targets: []string{metricsLn.Addr().String(), rampLn.Addr().String(), load.metricsLn.Addr().String()}, Nodes: 2,
		// Analyzer left nil: the real Prometheus analysis.
		Manager: manager.Options{Concurrency: 2, Plan: plan.Config{SubsetSettle: time.Second, RoutingGrace: plan.DefaultConfig().RoutingGrace},
			AnalysisEndpoints: &allowed, PlatformNamespace: platformNamespace}})
	if err != nil {
		metricsLn.Close()
		return nil, err
	}
	defer func() { _ = stack.Stop() }()
	defer load.stop() // before the cluster stops (it runs once)
	env, prom := stack.Env, stack.Prom
	p.say("cluster ready; kubeconfig: %s", env.Kubeconfig)
	p.say("istiod ready (http %s): its webhook validates every VirtualService and DestinationRule written", env.Istiod.HTTPAddr)
	p.say("Prometheus %s scraping the mesh simulator and ramp every second", prom.URL)
	p.say("ramp controller running in-process, analysing with Prometheus")

	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		metricsLn.Close()
		return nil, err
	}
	model := meshsim.MustModel(meshsim.DefaultBehaviour, map[string]meshsim.Behaviour{
		Image("v1"): releases["v1"], Image("v2"): releases["v2"], Image("v3"): releases["v3"],
	})
	sim, err := meshsim.New(meshsim.Options{
		Client: c, Namespace: ns, Service: appName, Model: model, Seed: 1,
		// Routes by the Envoy configuration istiod serves a sidecar of the client (xDS), for
		// the Service's port (the Service is created after the simulator starts).
		XDSAddr: env.Istiod.GRPCAddr, Source: meshsim.Source{Port: 9898},
		Traffic: meshsim.Traffic{RPS: o.RPS, Classes: []meshsim.Class{
			// Testers' requests carry the canary header and always reach the canary.
			{Share: testerShare, Request: meshsim.Request{Headers: map[string]string{"x-canary": "true"}}},
		}},
		MetricsListener: metricsLn,
	})
	if err != nil {
		metricsLn.Close()
		return nil, err
	}
	if err := sim.Start(ctx); err != nil {
		return nil, err
	}
	defer sim.Stop()
	p.say("mesh simulator sending %.0f requests/s to %s, routed by the Envoy configuration istiod serves it (ADS %s)", o.RPS, appName, env.Istiod.GRPCAddr)

	s := &story{c: c, p: p, o: o, sim: sim, prom: prom, model: model, xdsAddr: env.Istiod.GRPCAddr, load: load,
		res: &Result{Outcome: map[string]string{}}}
	canaryEnd := func(context.Context) error { s.canaryEnd = time.Now(); return nil }
	for _, step := range []func(context.Context) error{s.platformTemplates, s.deployV1, s.releaseV2, s.releaseV3, canaryEnd, s.previewOnLoad} {
		if err := step(ctx); err != nil {
			return s.res, err
		}
		select {
		case <-stack.Done():
			return s.res, fmt.Errorf("controller stopped: %v", stack.Err())
		default:
		}
	}
	_, canary := s.liveWeights(ctx)
	if err := istiodReport(ctx, p, env.Istiod, sim, canary); err != nil {
		return s.res, err
	}
	p.summary(s.res)
	if err := s.drawPicture(ctx); err != nil {
		return s.res, err
	}
	if err := s.checkBoard(ctx); err != nil {
		return s.res, err
	}
	if o.Keep {
		s.keep(ctx, env.Kubeconfig)
	}
	return s.res, nil
}

// keep says how to look around and waits for ctx to end.
func (s *story) keep(ctx context.Context, kubeconfig string) {
	p, lns := s.p, s.res.Load.Namespace
	p.say("")
	p.say("--keep: everything keeps running until Ctrl-C: the cluster, Prometheus, ramp, both mesh simulators and ramp's load generator. Try, from this checkout:")
	p.say("  export KUBECONFIG=%s", kubeconfig)
	p.say("  go run ./cmd/kubectl-ramp status %s -n %s --watch", appName, ns)
	p.say("  go run ./cmd/kubectl-ramp list -A")
	p.say("  go run ./cmd/kubectl-ramp dashboard -A   # then open the URL it prints")
	p.say("  kubectl -n %s set image deploy/%s %s=%s   # a new release (with kubectl installed)", ns, appName, appName, Image("v2"))
	p.say("  kubectl -n %s set image deploy/%s %s=%s   # a preview judged on the load again: %.0f%% errors, rolled back", lns, appName, appName, Image("v3"), 100*releases["v3"].ErrorRate)
	p.say("  (%s's gate calls the load generator in this process, %s, which sends through that namespace's mesh simulator)", lns, s.load.gateURL)
	p.say("  Prometheus: %s", s.prom.URL)
	<-ctx.Done()
}

// istiodReport says how many of the story's Istio writes istiod validated, checks that
// istiod holds the routes ramp wrote, and shows the routes it served the mesh simulator once
// they send canary% (the live VirtualService's weight) to the canary.
func istiodReport(ctx context.Context, p *printer, d *testenv.Istiod, sim *meshsim.Sim, canary int32) error {
	v, err := d.Validations(ctx)
	if err != nil {
		return err
	}
	if v.ByResource["virtualservices"] == 0 || v.ByResource["destinationrules"] == 0 {
		return fmt.Errorf("istiod validated no VirtualService or no DestinationRule write: %+v", v)
	}
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		held, err := d.Holds(ctx, kind, ns, appName)
		if err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("istiod does not hold %s %s/%s", kind, ns, appName)
		}
	}
	p.say("")
	p.say("istiod validated the routes: %d VirtualService and %d DestinationRule writes admitted by Istio's webhook, %d denied;",
		v.ByResource["virtualservices"], v.ByResource["destinationrules"], v.Failed)
	p.say("istiod holds both (%s/%s) in the configuration it pushes to sidecars (its /debug/configz)", ns, appName)
	// ramp's last write reaches the simulator with istiod's next push.
	var e *meshsim.EnvoyConfig
	err = testenv.WaitFor(ctx, 10*time.Second, func(context.Context) (bool, error) {
		e = sim.Envoy()
		w, ok := primaryCanaryWeight(e)
		return ok && w == canary && sim.Router().VirtualService() == ns+"/"+appName, nil
	})
	if err != nil {
		return fmt.Errorf("the mesh simulator never got istiod's translation of %s/%s sending %d%% to the canary: %w", ns, appName, canary, err)
	}
	p.say("istiod served the routes: the mesh simulator, a sidecar of namespace %s to istiod, routes by (canary %d%%, as the live VirtualService; %s's shown)", ns, canary, appName)
	host := appName + "." + ns + ".svc.cluster.local"
	for _, l := range e.Summary() {
		// istiod serves the sidecar every namespace's routes on the port: act 4's are its own.
		if strings.Contains(l, ".svc.cluster.local") && !strings.Contains(l, host) {
			continue
		}
		p.say("  %s", l)
	}
	return nil
}

// primaryCanaryWeight is the canary's weight on ramp's primary route in the Envoy
// configuration (0 when istiod dropped its zero weight); ok is false without that route.
func primaryCanaryWeight(e *meshsim.EnvoyConfig) (w int32, ok bool) {
	if e == nil {
		return 0, false
	}
	canary := meshsim.ClusterName(9898, istio.CanarySubset, appName+"."+ns+".svc.cluster.local")
	for _, vh := range e.Routes.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			if rt.GetName() != istio.RoutePrimary {
				continue
			}
			for _, c := range rt.GetRoute().GetWeightedClusters().GetClusters() {
				if c.GetName() == canary {
					return int32(c.GetWeight().GetValue()), true
				}
			}
			if rt.GetRoute().GetCluster() == canary {
				return 100, true
			}
			return 0, true
		}
	}
	return 0, false
}

type story struct {
	c       client.Client
	p       *printer
	o       Options
	sim     *meshsim.Sim
	prom    *prometheustest.Server
	model   *meshsim.Model
	xdsAddr string
	load    *loadAct
	res     *Result
	// canaryEnd is when act 3 ended: the picture shows acts 1 to 3 (namespace demo).
	canaryEnd time.Time
}

// platformTemplates is the platform team's part: the Istio metrics on the cluster's
// Prometheus, defined once for every namespace.
func (s *story) platformTemplates(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 0. Platform team: ClusterMetricTemplates %s and %s on Prometheus %s (Rollouts may not name that address themselves)",
		errorRateTemplate, latencyP99Template, s.prom.URL)
	for name, builtin := range map[string]string{errorRateTemplate: rampv1.BuiltinErrorRate, latencyP99Template: rampv1.BuiltinLatencyP99} {
		t := &rampv1.ClusterMetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: rampv1.ClusterMetricTemplateSpec{
			Prometheus:          rampv1.ClusterPrometheusSpec{Address: s.prom.URL},
			MetricTemplateQuery: rampv1.MetricTemplateQuery{Builtin: builtin},
		}}
		if err := s.c.Create(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (s *story) deployV1(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 1. Git: deploy %s v1 (%d replicas) with a Rollout: canary 5%% → 25%% → 100%%, error rate <= 1%%, P99 <= 300 ms (the platform's templates), checked every %s",
		appName, s.o.Replicas, s.o.Interval)
	lbl := map[string]string{"app": appName}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(s.o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: appName, Image: Image("v1")}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: 9898, TargetPort: intstr.FromInt32(9898)}}},
	}
	window := metav1.Duration{Duration: 2 * s.o.Interval}
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: appName},
			Service:   rampv1.ServiceSpec{Port: 9898},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps:       canarySteps,
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
			Analysis: &rampv1.AnalysisSpec{
				Interval:     &metav1.Duration{Duration: s.o.Interval},
				FailureLimit: ptr.To[int32](1),
				// No Prometheus of its own: the metrics come from the platform's templates.
				Metrics: []rampv1.Metric{
					{Name: "error-rate", TemplateRef: &rampv1.MetricTemplateRef{Kind: rampv1.KindClusterMetricTemplate, Name: errorRateTemplate},
						Window: &window, MinRequests: ptr.To[int32](20), ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(maxErrorRate)}},
					{Name: "latency-p99", TemplateRef: &rampv1.MetricTemplateRef{Kind: rampv1.KindClusterMetricTemplate, Name: latencyP99Template},
						Window: &window, MinRequests: ptr.To[int32](20), ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(maxLatencyP99)}},
				},
			},
		},
	}
	for _, o := range []client.Object{d, svc, ro} {
		if err := s.c.Create(ctx, o); err != nil {
			return err
		}
	}
	if _, err := s.watch(ctx, "v1", func(r *rampv1.Rollout) bool { return r.Status.Phase == rampv1.PhaseIdle }); err != nil {
		return err
	}
	s.p.say("ramp adopted %s: Deployment paused, all traffic on its own pods (stable subset)", appName)
	// Analysis compares against real telemetry: wait until Prometheus has rates for v1.
	q := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace=%q,destination_workload=%q}[10s]))`, ns, appName)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	took, err := s.prom.WaitForData(wctx, q)
	if err != nil {
		return fmt.Errorf("waiting for Prometheus data: %w", err)
	}
	s.p.say("Prometheus has traffic data for v1 (after %s)", took.Round(100*time.Millisecond))
	return nil
}

func (s *story) releaseV2(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 2. Git: commit v2 (image %s): healthy, %.1f%% errors, P99 %s", Image("v2"), 100*releases["v2"].ErrorRate, releases["v2"].LatencyP99)
	if err := s.setImage(ctx, "v2"); err != nil {
		return err
	}
	r, err := s.watch(ctx, "v2", func(r *rampv1.Rollout) bool {
		return r.Status.Phase == rampv1.PhaseSucceeded || r.Status.Phase == rampv1.PhaseFailed
	})
	if err != nil {
		return err
	}
	s.outcome("v2", r.Status.Phase)
	if r.Status.Phase != rampv1.PhaseSucceeded {
		return fmt.Errorf("v2 was not promoted: %s", r.Status.Message)
	}
	s.p.say("v2 promoted: Deployment %q (same name) runs it; canary scaled to zero", appName)
	return nil
}

func (s *story) releaseV3(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 3. Git: commit v3 (image %s): it answers %.0f%% errors", Image("v3"), 100*releases["v3"].ErrorRate)
	if err := s.setImage(ctx, "v3"); err != nil {
		return err
	}
	// Done once v3's rollout has started and ended (the phase still says Succeeded for v2 at first).
	started := false
	r, err := s.watch(ctx, "v3", func(r *rampv1.Rollout) bool {
		started = started || r.Status.CanaryRevision != ""
		return started && (r.Status.Phase == rampv1.PhaseFailed || r.Status.Phase == rampv1.PhaseSucceeded)
	})
	if err != nil {
		return err
	}
	s.outcome("v3", r.Status.Phase)
	if r.Status.Phase != rampv1.PhaseFailed {
		return fmt.Errorf("v3 was promoted despite its errors")
	}
	s.p.say("v3 rolled back automatically: all traffic on v2, canary scaled to zero (%s)", r.Status.Message)
	return nil
}

// outcome records how release v's rollout ended.
func (s *story) outcome(v, phase string) {
	s.res.Outcome[v] = phase
	for i := range s.res.Picture.Releases {
		if s.res.Picture.Releases[i].Name == v {
			s.res.Picture.Releases[i].Outcome = phase
		}
	}
}

// drawPicture completes the picture with what Prometheus recorded of stable and canary over
// the story, and writes it to Options.Picture.
func (s *story) drawPicture(ctx context.Context) error {
	pic := &s.res.Picture
	// Up to two scrapes after act 3, so the picture's last seconds have data (Prometheus
	// scrapes every second); act 4 is another app's.
	end := s.canaryEnd.Add(2 * time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(end)):
	}
	pic.End = end.Sub(s.p.start)
	// The thresholds the Rollout judges by, as Git wrote them.
	ro := &rampv1.Rollout{}
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: appName}, ro); err != nil {
		return err
	}
	pic.Thresholds = map[string]float64{}
	for _, m := range ro.Spec.Analysis.Metrics {
		if m.ThresholdRange != nil && m.ThresholdRange.Max != nil {
			pic.Thresholds[m.Name] = *m.ThresholdRange.Max
		}
	}
	// Short rate windows: a canary step lasts a few seconds, and a longer window would mix the
	// previous release's canary traffic into the next one's (both are <target>-canary).
	sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
	var err error
	pic.ErrorRate, err = s.rangeByTrack(ctx, end, fmt.Sprintf(
		`100 * (sum by (destination_workload) (rate(istio_requests_total{%s,response_code=~"5.."}[5s])) or sum by (destination_workload) (rate(istio_requests_total{%s}[5s])) * 0) / sum by (destination_workload) (rate(istio_requests_total{%s}[5s]))`,
		sel, sel, sel))
	if err != nil {
		return err
	}
	pic.P99, err = s.rangeByTrack(ctx, end, fmt.Sprintf(
		`histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket{%s}[5s])))`, sel))
	if err != nil {
		return err
	}
	if s.o.Picture == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.o.Picture), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.o.Picture, pic.SVG(), 0o644); err != nil {
		return err
	}
	s.p.say("")
	s.p.say("the story as a picture (weight, error rate, P99, verdicts): %s", s.o.Picture)
	return nil
}

// checkBoard runs every query of ramp's Grafana board (config/grafana/ramp.json) against the
// story's Prometheus, as Grafana would with this Rollout selected, and fails unless each
// parses and finds data: the board names metrics ramp and Istio's proxies really export.
func (s *story) checkBoard(ctx context.Context) error {
	d, err := grafana.Board()
	if err != nil {
		return err
	}
	vars := map[string]string{"namespace": ns, "rollout": appName, "workload": appName, "datasource": "prometheus"}
	s.res.Board = map[string]int{}
	var empty []string
	for _, q := range grafana.Queries(d) {
		expr := grafana.Expand(q.Expr, vars, "15s")
		if q.LabelValues != "" {
			expr = fmt.Sprintf("count by (%s) (%s)", q.LabelValues, expr)
		}
		m, err := s.overStory(ctx, time.Now(), expr)
		if err != nil {
			return fmt.Errorf("Grafana board, %s: %w", q.Where, err)
		}
		n := 0
		for _, ss := range m {
			if len(ss.Values) > 0 {
				n++
			}
		}
		s.res.Board[q.Where] = n
		if n == 0 {
			empty = append(empty, q.Where)
		}
	}
	if len(empty) > 0 {
		return fmt.Errorf("Grafana board: no data for %s", strings.Join(empty, ", "))
	}
	s.p.say("Grafana board config/grafana/ramp.json: its %d queries (panels, variables, the transitions annotation) all found data in this Prometheus", len(s.res.Board))
	return nil
}

// overStory asks the story's Prometheus for q from the story's start to end, one second apart.
func (s *story) overStory(ctx context.Context, end time.Time, q string) (model.Matrix, error) {
	c, err := api.NewClient(api.Config{Address: s.prom.URL})
	if err != nil {
		return nil, err
	}
	v, _, _, err := promv1.NewAPI(c).QueryRange(ctx, q, promv1.Range{Start: s.p.start, End: end, Step: time.Second})
	if err != nil {
		return nil, fmt.Errorf("Prometheus range query %s: %w", q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("Prometheus range query %s: a %s, not a matrix", q, v.Type())
	}
	return m, nil
}

// rangeByTrack asks Prometheus for q over the story up to end, one second apart, and files the
// series by the workload's track (the target Deployment is stable, <target>-canary the canary).
func (s *story) rangeByTrack(ctx context.Context, end time.Time, q string) (map[string][]Point, error) {
	m, err := s.overStory(ctx, end, q)
	if err != nil {
		return nil, err
	}
	out := map[string][]Point{}
	for _, ss := range m {
		track := "stable"
		if string(ss.Metric["destination_workload"]) == rampv1.CanaryNameFor(appName) {
			track = "canary"
		}
		for _, sp := range ss.Values {
			if f := float64(sp.Value); !math.IsNaN(f) && !math.IsInf(f, 0) {
				out[track] = append(out[track], Point{At: sp.Timestamp.Time().Sub(s.p.start), V: f})
			}
		}
	}
	return out, nil
}

func (s *story) setImage(ctx context.Context, v string) error {
	s.res.Picture.Releases = append(s.res.Picture.Releases, ReleaseMark{Name: v, At: time.Since(s.p.start)})
	return s.setImageIn(ctx, ns, v)
}

// setImageIn commits release v of the app in namespace.
func (s *story) setImageIn(ctx context.Context, namespace, v string) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: namespace}}
	patch := client.RawPatch(types.StrategicMergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, appName, Image(v))))
	return s.c.Patch(ctx, d, patch)
}

// watch prints every change of the demo app's rollout state (and the live VirtualService
// weights) until done reports true, and draws them in the picture.
func (s *story) watch(ctx context.Context, release string, done func(*rampv1.Rollout) bool) (*rampv1.Rollout, error) {
	return s.watchIn(ctx, ns, release, done)
}

// watchIn is watch for the app in namespace: only namespace demo's is in the picture; act 4's
// analysis rounds go to Result.Load.
func (s *story) watchIn(ctx context.Context, namespace, release string, done func(*rampv1.Rollout) bool) (*rampv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	var last, lastMetrics string
	var lastRow *Row
	var lastRound *metav1.MicroTime
	pic := &s.res.Picture
	inPicture := namespace == ns
	rounds := &pic.Rounds
	if !inPicture {
		rounds = &s.res.Load.Rounds
	}
	for {
		ro := &rampv1.Rollout{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: appName}, ro); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("release %s: %w", release, ctx.Err())
			}
			return nil, err
		}
		stable, canary := s.liveWeightsIn(ctx, namespace)
		st := ro.Status
		if n := len(pic.Weight); inPicture && canary >= 0 && (n == 0 || pic.Weight[n-1].V != float64(canary)) {
			pic.Weight = append(pic.Weight, Point{At: time.Since(s.p.start), V: float64(canary)})
		}
		if t := st.LastAnalysisTime; t != nil && (lastRound == nil || !t.Equal(lastRound)) {
			lastRound = t
			for _, m := range st.LastAnalysis {
				v, err := strconv.ParseFloat(m.Value, 64)
				if err != nil && inPicture {
					continue // the picture draws values only
				} else if err != nil {
					v = math.NaN()
				}
				*rounds = append(*rounds, Round{At: t.Sub(s.p.start), Metric: m.Name, Value: v, Verdict: m.Verdict})
			}
		}
		if st.Phase == "" {
			st.Phase = "(not seen yet)"
		}
		step := "-"
		if st.CurrentStep > 0 {
			step = fmt.Sprintf("%d/%d", st.CurrentStep, st.Steps)
		}
		key := fmt.Sprint(st.Phase, step, st.CanaryWeight, stable, canary, st.Stage, metricsText(st.LastAnalysis))
		if key != last {
			last = key
			now := time.Since(s.p.start)
			if lastRow != nil {
				lastRow.Took = now - lastRow.At
			}
			s.res.Rows = append(s.res.Rows, Row{Release: release, Phase: st.Phase, Step: step, Weight: st.CanaryWeight, Message: st.Message, Metrics: metricsText(st.LastAnalysis), At: now})
			lastRow = &s.res.Rows[len(s.res.Rows)-1]
			vs := "no VirtualService yet"
			if stable >= 0 {
				vs = fmt.Sprintf("VirtualService stable %3d%% / canary %3d%%", stable, canary)
			}
			s.p.say("%-5s %-16s step %-4s %s  %s", release, st.Phase, step, vs, st.Message)
			if m := metricsText(st.LastAnalysis); m != "" && m != lastMetrics {
				s.p.say("      analysis: %s", m)
				lastMetrics = m
			}
		}
		if done(ro) {
			if lastRow != nil {
				lastRow.Took = time.Since(s.p.start) - lastRow.At
			}
			return ro, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("release %s did not finish within %s (phase %s: %s)", release, s.o.Timeout, st.Phase, st.Message)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *story) liveWeights(ctx context.Context) (stable, canary int32) {
	return s.liveWeightsIn(ctx, ns)
}

// liveWeightsIn reads the weights of the VirtualService of the app in namespace (-1, -1
// without one).
func (s *story) liveWeightsIn(ctx context.Context, namespace string) (stable, canary int32) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(istio.APIVersion)
	u.SetKind(istio.KindVirtualService)
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: appName}, u); err != nil {
		return -1, -1
	}
	r, err := istio.ObservedRouting(u)
	if err != nil {
		return -1, -1
	}
	return 100 - r.CanaryWeight, r.CanaryWeight
}

// metricsText renders analysis results as "error-rate 0.31 (<= 1) Passed, ...".
func metricsText(rs []rampv1.MetricResult) string {
	var parts []string
	for _, r := range rs {
		v := r.Value
		if v == "" {
			v = "no data"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s) %s", r.Name, v, r.Threshold, r.Verdict))
	}
	return strings.Join(parts, ", ")
}

// Image is release v's image (v1, v2 or v3; v3 answers 8% errors).
func Image(v string) string {
	return "ghcr.io/stefanprodan/podinfo:" + map[string]string{"v1": "6.7.0", "v2": "6.7.1", "v3": "6.8.0"}[v]
}

type printer struct {
	out   io.Writer
	start time.Time
	// mu serializes writes: the load generator logs from its own goroutines.
	mu sync.Mutex
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if format == "" {
		fmt.Fprintln(p.out)
		return
	}
	fmt.Fprintf(p.out, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *printer) summary(r *Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.out)
	fmt.Fprintln(p.out, "Summary")
	fmt.Fprintf(p.out, "%-8s %-17s %-5s %7s %8s  %s\n", "release", "phase", "step", "weight", "took", "analysis (value, threshold, verdict)")
	fmt.Fprintln(p.out, strings.Repeat("-", 110))
	for _, row := range r.Rows {
		if row.Phase == "(not seen yet)" {
			continue
		}
		fmt.Fprintf(p.out, "%-8s %-17s %-5s %6d%% %7.1fs  %s\n", row.Release, row.Phase, row.Step, row.Weight, row.Took.Seconds(), row.Metrics)
	}
}
