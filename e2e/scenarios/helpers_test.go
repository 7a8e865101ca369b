package scenarios

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/testenv"
)

const (
	appName  = "podinfo"
	port     = 9898
	interval = 3 * time.Second
	window   = 6 * time.Second
	// rps gives the canary of a 10% step enough requests per round that a healthy image's
	// 0.1% errors never read above maxErrorRate (TestHealthyImagesCannotFailARound).
	rps = 2000
	// maxErrorRate is the error-rate check's threshold, in percent.
	maxErrorRate = 1.0
)

// Images and their behaviour in the simulated mesh.
const (
	imgV1      = "ghcr.io/stefanprodan/podinfo:6.7.0"
	imgV2      = "ghcr.io/stefanprodan/podinfo:6.7.1"
	imgErrors  = "ghcr.io/stefanprodan/podinfo:6.8.0-errors"
	imgSlow    = "ghcr.io/stefanprodan/podinfo:6.8.0-slow"
	imgV3      = "ghcr.io/stefanprodan/podinfo:6.8.1"
	canaryHdr  = "x-canary"
	previewHdr = "x-ramp-preview"
)

var behaviours = map[string]meshsim.Behaviour{
	imgV1:     {ErrorRate: 0.001, LatencyP50: 20 * time.Millisecond, LatencyP99: 120 * time.Millisecond, ErrorCode: 500},
	imgV2:     {ErrorRate: 0.001, LatencyP50: 25 * time.Millisecond, LatencyP99: 150 * time.Millisecond, ErrorCode: 500},
	imgV3:     {ErrorRate: 0.001, LatencyP50: 25 * time.Millisecond, LatencyP99: 150 * time.Millisecond, ErrorCode: 500},
	imgErrors: {ErrorRate: 0.10, LatencyP50: 25 * time.Millisecond, LatencyP99: 150 * time.Millisecond, ErrorCode: 500},
	imgSlow:   {ErrorRate: 0.001, LatencyP50: 300 * time.Millisecond, LatencyP99: 900 * time.Millisecond, ErrorCode: 500},
}

// app is one scenario's application: namespace, Deployment (3 replicas), Service, Rollout and
// a mesh simulator sending it traffic.
type app struct {
	t   *testing.T
	ns  string
	c   client.Client
	sim *meshsim.Sim
	ro  *rampv1.Rollout
	d   *appsv1.Deployment
	// tl records the namespace from before the app exists; the waits below watch it.
	tl *testenv.Timeline
	// committed is the resourceVersion of the last release's Deployment change: what the
	// waits look for happens after it.
	committed int64
}

type appOptions struct {
	// rollout edits the default Rollout (canary 10 → 50 → 100, error rate <= 1%, P99 <= 500 ms).
	rollout func(*rampv1.Rollout)
	// classes of traffic (e.g. 10% with x-canary: true).
	classes []meshsim.Class
	// before runs after the namespace exists, before the Rollout is created.
	before func(ns string)
	// backends are the Services besides the app's that routes may send its traffic to (the
	// Gateway API router's <app>-stable and <app>-canary): the mesh simulator routes to them.
	backends []string
}

func defaultRollout(ns string) *rampv1.Rollout {
	w := metav1.Duration{Duration: window}
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: appName},
			Service:   rampv1.ServiceSpec{Port: port},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps: []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 50}, {SetWeight: 100}},
			}},
			ProgressDeadline: &metav1.Duration{Duration: 2 * time.Minute},
			Analysis: &rampv1.AnalysisSpec{
				Interval:     &metav1.Duration{Duration: interval},
				FailureLimit: ptr.To[int32](1),
				Prometheus:   rampv1.PrometheusSpec{Address: prom.URL},
				Metrics: []rampv1.Metric{
					{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: &w, MinRequests: ptr.To[int32](10),
						ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(maxErrorRate)}},
					{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, Window: &w, MinRequests: ptr.To[int32](10),
						ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(500.0)}},
				},
			},
		},
	}
}

// newApp deploys v1 with its Rollout, starts the mesh simulator, and returns once ramp has
// adopted the app (Idle) and Prometheus has v1's traffic.
func newApp(t *testing.T, o appOptions) *app {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	ctx := context.Background()
	var ln net.Listener
	select {
	case ln = <-metricsLns:
	default:
		t.Fatalf("no mesh simulator listener left: raise listeners (%d) in main_test.go", listeners)
	}
	ns := env.Namespace(t)
	a := &app{t: t, ns: ns, c: env.Client, tl: env.RecordTimeline(t, ns)}
	lbl := map[string]string{"app": appName}
	a.d = &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: appName, Image: imgV1}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port)}}},
	}
	a.ro = defaultRollout(ns)
	if o.rollout != nil {
		o.rollout(a.ro)
	}
	if o.before != nil {
		o.before(ns)
	}
	for _, obj := range []client.Object{a.d, svc, a.ro} {
		if err := a.c.Create(ctx, obj); err != nil {
			ln.Close()
			t.Fatal(err)
		}
	}
	sim, err := meshsim.New(meshsim.Options{
		Client: env.Client, Namespace: ns, Service: appName, Backends: o.backends, Seed: 1,
		// Routes as istiod configures the client's sidecar, over xDS.
		XDSAddr:         env.Istiod.GRPCAddr,
		Model:           meshsim.MustModel(meshsim.DefaultBehaviour, behaviours),
		MetricsListener: ln,
		Refresh:         300 * time.Millisecond,
		Logf: func(f string, args ...any) {
			if msg := fmt.Sprintf(f, args...); !strings.Contains(msg, "context canceled") {
				t.Logf("meshsim: %s", msg)
			}
		},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	if err := sim.Start(sctx); err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); sim.Stop() })
	a.sim = sim

	a.waitPhase("adoption", time.Minute, func(r *rampv1.Rollout) bool { return r.Status.Phase == rampv1.PhaseIdle })
	// Traffic starts once istiod serves the routes of the Rollout's VirtualService over v1's
	// pods: before, the client's sidecar answers 503 NC or UH, which the built-in error-rate
	// charges to this namespace's canary.
	vs := appName
	if ref := a.ro.Spec.Service.VirtualServiceRef; ref != nil {
		vs = ref.Name
	}
	if err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
		r := sim.Router()
		return r.VirtualService() == ns+"/"+vs && len(r.Endpoints()) == 3, nil
	}); err != nil {
		t.Fatalf("the mesh simulator never routed by %s/%s over 3 pods: %v (%q)", ns, vs, err, sim.Envoy().Summary())
	}
	if err := sim.SetTraffic(meshsim.Traffic{RPS: rps, Classes: o.classes}); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace=%q,destination_workload=%q}[10s]))`, ns, appName)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := prom.WaitForData(wctx, q); err != nil {
		t.Fatalf("waiting for Prometheus data for v1: %v", err)
	}
	return a
}

func (a *app) get() *rampv1.Rollout {
	a.t.Helper()
	ro := &rampv1.Rollout{}
	if err := a.c.Get(context.Background(), types.NamespacedName{Namespace: a.ns, Name: appName}, ro); err != nil {
		a.t.Fatal(err)
	}
	return ro
}

// setImage commits a release: a new image (and optionally other pod template changes).
func (a *app) setImage(image string, mutate ...func(*corev1.PodSpec)) {
	a.t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{}
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: appName}, d); err != nil {
		a.t.Fatal(err)
	}
	base := d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = image
	for _, m := range mutate {
		m(&d.Spec.Template.Spec)
	}
	if err := a.c.Patch(ctx, d, client.MergeFrom(base)); err != nil {
		a.t.Fatal(err)
	}
	rv, err := strconv.ParseInt(d.ResourceVersion, 10, 64)
	if err != nil {
		a.t.Fatal(err)
	}
	a.committed = rv
	a.t.Logf("committed %s", image)
}

// vsState reads the live VirtualService: canary weight (-1 without one) and the raw object.
func (a *app) vsState(ctx context.Context) (int32, *unstructured.Unstructured) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(istio.APIVersion)
	u.SetKind(istio.KindVirtualService)
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: appName}, u); err != nil {
		return -1, nil
	}
	r, err := istio.ObservedRouting(u)
	if err != nil {
		return -1, u
	}
	return r.CanaryWeight, u
}

// record starts a timeline of the app's VirtualService and Rollout: their versions now, then
// every change.
func (a *app) record() *testenv.Timeline {
	return env.RecordTimeline(a.t, a.ns, testenv.VirtualServices, testenv.Rollouts)
}

// settled returns tl once it holds the API server's current state (the VirtualService's
// watch may deliver its last version after the Rollout's).
func (a *app) settled(tl *testenv.Timeline) *testenv.Timeline {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tl.Sync(ctx); err != nil {
		a.t.Fatalf("timeline: %v", err)
	}
	if _, err := tl.Routings(appName); err != nil {
		a.t.Error(err)
	}
	return tl
}

// waitPhase waits until a version of the Rollout written after the last commit satisfies
// done (fed the versions in order) and returns that version, failing the test after timeout.
func (a *app) waitPhase(what string, timeout time.Duration, done func(*rampv1.Rollout) bool) *rampv1.Rollout {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var found *rampv1.Rollout
	err := a.tl.Wait(ctx, func() bool {
		for _, ro := range a.tl.Rollouts(appName) {
			if rv, _ := strconv.ParseInt(ro.ResourceVersion, 10, 64); rv > a.committed && done(ro) {
				found = ro
				return true
			}
		}
		return false
	})
	if err != nil {
		ro := a.get()
		a.t.Fatalf("%s: not reached within %s: phase %s step %d/%d weight %d: %s\nanalysis: %s",
			what, timeout, ro.Status.Phase, ro.Status.CurrentStep, ro.Status.Steps, ro.Status.CanaryWeight, ro.Status.Message, metricsText(ro.Status.LastAnalysis))
	}
	return found
}

// waitEnd waits until the rollout of the last commit has started and ended, and returns the
// version of the Rollout that says how it ended.
func (a *app) waitEnd(timeout time.Duration) *rampv1.Rollout {
	a.t.Helper()
	started := false
	return a.waitPhase("rollout end", timeout, func(r *rampv1.Rollout) bool {
		started = started || (r.Status.CanaryRevision != "" && r.Status.Phase != rampv1.PhaseIdle)
		return started && (r.Status.Phase == rampv1.PhaseSucceeded || r.Status.Phase == rampv1.PhaseFailed)
	})
}

// waitWeight waits until a version of the VirtualService written after the last commit sends
// w% to the canary, and returns when the watch saw it.
func (a *app) waitWeight(w int32, timeout time.Duration) time.Time {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var at time.Time
	err := a.tl.Wait(ctx, func() bool {
		for _, v := range a.tl.Of(testenv.VirtualServices, appName) {
			if r, err := istio.ObservedRouting(v.Object); err == nil && !v.Deleted && v.RV > a.committed && r.CanaryWeight == w {
				at = v.Seen
				return true
			}
		}
		return false
	})
	if err != nil {
		ro := a.get()
		a.t.Fatalf("VirtualService never sent %d%% to the canary within %s (phase %s: %s)", w, timeout, ro.Status.Phase, ro.Status.Message)
	}
	return at
}

// holdUntil blocks until t (a deliberate wait so a Stats window covers only one step).
func holdUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

func metricsText(rs []rampv1.MetricResult) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s=%q (%s) %s", r.Name, r.Value, r.Threshold, r.Verdict))
	}
	return strings.Join(parts, ", ")
}

// routeSubset counts source-reported requests on route, in total and to subset.
func routeSubset(s meshsim.Stats, route, subset string) (total, toSubset int64) {
	total = s.Sum(func(k meshsim.Key) bool { return k.Reporter == meshsim.ReporterSource && k.Route == route })
	toSubset = s.Sum(func(k meshsim.Key) bool {
		return k.Reporter == meshsim.ReporterSource && k.Route == route && k.Subset == subset
	})
	return total, toSubset
}
