package analysis_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

const (
	// target is the Git-owned Deployment of every test; its canary is target-canary.
	target = "web"
	canary = target + "-canary"
	// replicas of the target: the canary has 1 at 10%, 2 at 50%, 3 at 100%.
	replicas = 3
	// rps is each simulated workload's traffic: 500 requests in a 10 s window.
	rps = 50
	// window of every metric's rate(): ten 1 s scrapes.
	window = 10 * time.Second
	// minRequests a workload must have served in the window.
	minRequests = 20
	// timeout bounds each rollout.
	timeout = 2 * time.Minute
)

// traffic is what a workload's telemetry says: its 5xx share and its P99 latency.
type traffic struct {
	errorRatio float64
	p99        float64 // ms
}

// healthy: 0.5% errors, P99 100 ms.
var healthy = traffic{errorRatio: 0.005, p99: 100}

// p99Buckets are latency buckets whose histogram_quantile(0.99) is p99: 50% of requests
// within 0.3×, 95% within 0.6×, all within 1.1×, so the 99th percentile lies 4/5 into the
// last bucket. The wide last bucket keeps the floors of the exporter's counters from moving
// the quantile by more than a few percent.
func p99Buckets(p99 float64) []prometheustest.Bucket {
	return []prometheustest.Bucket{{LE: 0.3 * p99, Fraction: 0.5}, {LE: 0.6 * p99, Fraction: 0.95}, {LE: 1.1 * p99, Fraction: 1}}
}

func promWindow(d time.Duration) string {
	s, err := analysis.PromDuration(d)
	if err != nil {
		panic(err)
	}
	return s
}

// setTraffic gives the namespace's workload the traffic from now on.
func setTraffic(ns, workload string, tr traffic) {
	exporter.Set(prometheustest.Workload{Namespace: ns, Name: workload, RPS: rps, ErrorRatio: tr.errorRatio, Latency: p99Buckets(tr.p99)})
}

func errorRate(max float64) rampv1.Metric {
	return rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: &metav1.Duration{Duration: window},
		MinRequests: ptr.To[int32](minRequests), ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(max)}}
}

func latencyP99(max float64) rampv1.Metric {
	return rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, Window: &metav1.Duration{Duration: window},
		MinRequests: ptr.To[int32](minRequests), ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(max)}}
}

// scenario is one test's release of "web" in its own namespace.
type scenario struct {
	// canary and stable are the workloads' traffic from the start.
	canary, stable traffic
	// interval between analysis rounds; 2s when 0.
	interval time.Duration
	// failureLimit and inconclusiveLimit; the API's defaults when 0.
	failureLimit, inconclusiveLimit int32
	// address of Prometheus; the shared server when "".
	address string
	// templates takes the metrics from ClusterMetricTemplates of the test's own (error-rate
	// <= 1; latency-p99 <= 500 and at most 50% above stable) and leaves
	// spec.analysis.prometheus out.
	templates bool
	// metrics; error-rate <= 1 and latency-p99 <= 500 when nil.
	metrics []rampv1.Metric
}

// run is a started scenario.
type run struct {
	t  *testing.T
	ns string
	ro *rampv1.Rollout
	// tl records every version of the namespace's Rollout, Deployments, VirtualService and
	// DestinationRule.
	tl *testenv.Timeline
}

// start creates the namespace, its workloads' telemetry, the target Deployment (v1) and the
// Rollout; once ramp has adopted the target and Prometheus has rate() data for both
// workloads, it "commits" v2, which starts the rollout.
func (sc scenario) start(t *testing.T) *run {
	t.Helper()
	ctx := context.Background()
	ns := env.Namespace(t)
	setTraffic(ns, canary, sc.canary)
	setTraffic(ns, target, sc.stable)

	if sc.interval == 0 {
		sc.interval = 2 * time.Second
	}
	if sc.address == "" {
		sc.address = prom.URL
	}
	if sc.templates {
		sc.metrics = templated(platformTemplates(t, ns))
	}
	if sc.metrics == nil {
		sc.metrics = []rampv1.Metric{errorRate(1), latencyP99(500)}
	}
	a := &rampv1.AnalysisSpec{
		Interval:   &metav1.Duration{Duration: sc.interval},
		Prometheus: rampv1.PrometheusSpec{Address: sc.address, Timeout: &metav1.Duration{Duration: 5 * time.Second}},
		Metrics:    sc.metrics,
	}
	if sc.templates {
		a.Prometheus = rampv1.PrometheusSpec{}
	}
	if sc.failureLimit > 0 {
		a.FailureLimit = ptr.To(sc.failureLimit)
	}
	if sc.inconclusiveLimit > 0 {
		a.InconclusiveLimit = ptr.To(sc.inconclusiveLimit)
	}
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: target},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps: []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 50}, {SetWeight: 100}},
			}},
			Analysis:         a,
			ProgressDeadline: &metav1.Duration{Duration: timeout},
		},
	}
	r := &run{t: t, ns: ns, ro: ro, tl: env.RecordTimeline(t, ns)}
	begin := time.Now()
	t.Cleanup(func() { t.Logf("%s timeline:\n  %s", ns, strings.Join(r.history(begin), "\n  ")) })

	lbl := map[string]string{"app": target}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: target, Image: "podinfo:v1"}}},
			},
		},
	}
	must(t, env.Client.Create(ctx, d))
	must(t, env.Client.Create(ctx, testenv.ServiceFor(d, 80)))
	must(t, env.Client.Create(ctx, ro))
	r.waitPhase(rampv1.PhaseIdle)

	for _, w := range []string{canary, target} {
		q, err := analysis.RequestCountQuery(ns, w, promWindow(window))
		must(t, err)
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = prom.WaitForData(qctx, q)
		cancel()
		must(t, err)
	}

	patch := client.RawPatch(types.StrategicMergePatchType,
		[]byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":"podinfo:v2"}]}}}}`, target)))
	must(t, env.Client.Patch(ctx, d, patch))
	t.Logf("%s: v2 committed", ns)
	return r
}

// waitPhase waits until a version of the Rollout is in phase and returns that version.
func (r *run) waitPhase(phase string) *rampv1.Rollout {
	r.t.Helper()
	ro, err := r.when(timeout, func(ro *rampv1.Rollout) bool { return ro.Status.Phase == phase })
	if err != nil {
		st := r.latest().Status
		r.t.Fatalf("%s: waiting for phase %s: %v (phase %s, step %d, message %q)", r.ns, phase, err, st.Phase, st.CurrentStep, st.Message)
	}
	return ro
}

// when waits until a recorded version of the Rollout satisfies cond and returns the first
// that does.
func (r *run) when(timeout time.Duration, cond func(*rampv1.Rollout) bool) (*rampv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var found *rampv1.Rollout
	err := r.tl.Wait(ctx, func() bool {
		for _, ro := range r.tl.Rollouts(target) {
			if cond(ro) {
				found = ro
				return true
			}
		}
		return false
	})
	return found, err
}

// latest is the last recorded version of the Rollout (an empty one before any).
func (r *run) latest() *rampv1.Rollout {
	ros := r.tl.Rollouts(target)
	if len(ros) == 0 {
		return &rampv1.Rollout{}
	}
	return ros[len(ros)-1]
}

// finish waits for the rollout to end in phase, with the live VirtualService routing
// nothing to the canary, and returns the Rollout.
func (r *run) finish(phase string) *rampv1.Rollout {
	r.t.Helper()
	ro := r.waitPhase(phase)
	// ramp decides Failed/Succeeded only once it has seen the VirtualService at 0%; the
	// VirtualService's watch may deliver that version after the Rollout's.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(r.t, r.tl.Sync(ctx))
	if _, err := r.tl.Routings(target); err != nil {
		r.t.Error(err)
	}
	if w := r.tl.Weights(target); len(w) == 0 || w[len(w)-1] != 0 {
		r.t.Errorf("%s: VirtualService weights %v do not end at 0", r.ns, w)
	}
	if last := r.latest(); last.Status.Phase == phase {
		return last // what the API server holds now, as tests check it
	}
	return ro
}

// expectWeights checks the distinct consecutive canary weights the live VirtualService had.
func (r *run) expectWeights(want ...int32) {
	r.t.Helper()
	if got := r.tl.Weights(target); !slices.Equal(got, want) {
		r.t.Errorf("%s: VirtualService canary weights %v, want %v", r.ns, got, want)
	} else {
		r.t.Logf("%s: VirtualService canary weights %v", r.ns, got)
	}
}

// expectEvent waits for a core/v1 Event about the Rollout with reason and returns its message.
func (r *run) expectEvent(reason string) string {
	r.t.Helper()
	var msg string
	err := testenv.WaitFor(context.Background(), 10*time.Second, func(ctx context.Context) (bool, error) {
		var list corev1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(r.ns)); err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == r.ro.Name && e.Reason == reason {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.t.Errorf("%s: no %s event: %v", r.ns, reason, err)
	}
	return msg
}

// metric returns the named result of status.lastAnalysis.
func metric(t *testing.T, ro *rampv1.Rollout, name string) rampv1.MetricResult {
	t.Helper()
	for _, m := range ro.Status.LastAnalysis {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("status.lastAnalysis has no %s: %+v", name, ro.Status.LastAnalysis)
	return rampv1.MetricResult{}
}

// expectMetric checks a metric result: its verdict, its value within [lo, hi] and its
// threshold text.
func expectMetric(t *testing.T, m rampv1.MetricResult, verdict string, lo, hi float64, threshold string) {
	t.Helper()
	if m.Verdict != verdict {
		t.Errorf("%s: verdict %s, want %s (%+v)", m.Name, m.Verdict, verdict, m)
	}
	within(t, m.Name+" value", m.Value, lo, hi)
	if m.Threshold != threshold {
		t.Errorf("%s: threshold %q, want %q", m.Name, m.Threshold, threshold)
	}
}

func within(t *testing.T, what, got string, lo, hi float64) {
	t.Helper()
	v, err := strconv.ParseFloat(got, 64)
	if err != nil || v < lo || v > hi {
		t.Errorf("%s = %q, want within [%v, %v]", what, got, lo, hi)
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	must(t, l.Close())
	return addr
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// --- what the API server held -------------------------------------------------------------

// round is one analysis round as recorded in status, with the step and weight the rollout
// held when it ran (those of the status version before the one recording it).
type round struct {
	step, weight int32
	metrics      []rampv1.MetricResult
}

func (r round) verdicts() string {
	var parts []string
	for _, m := range r.metrics {
		s := m.Name + "=" + m.Verdict
		if m.Value != "" {
			s += "(" + m.Value + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// newRound says whether st records an analysis round prev did not.
func newRound(prev, st rampv1.RolloutStatus) bool {
	return st.LastAnalysisTime != nil && (prev.LastAnalysisTime == nil || !st.LastAnalysisTime.Equal(prev.LastAnalysisTime))
}

// rounds returns the analysis rounds recorded in status, in order.
func (r *run) rounds() []round {
	var out []round
	var prev rampv1.RolloutStatus
	for _, ro := range r.tl.Rollouts(target) {
		if newRound(prev, ro.Status) {
			out = append(out, round{step: prev.CurrentStep, weight: prev.CanaryWeight, metrics: ro.Status.LastAnalysis})
		}
		prev = ro.Status
	}
	return out
}

// history tells the timeline for people: each routing and status change, with when the watch
// saw it.
func (r *run) history(begin time.Time) []string {
	var out []string
	note := func(at time.Time, format string, args ...any) {
		out = append(out, fmt.Sprintf("[%5.1fs] ", at.Sub(begin).Seconds())+fmt.Sprintf(format, args...))
	}
	weight := int32(-1)
	var prev rampv1.RolloutStatus
	for _, v := range r.tl.Versions() {
		if v.Deleted || v.Object.GetName() != target {
			continue
		}
		switch v.Kind {
		case testenv.VirtualServices.Kind:
			if rt, err := istio.ObservedRouting(v.Object); err != nil {
				note(v.Seen, "VirtualService not in ramp's shape: %v", err)
			} else if rt.CanaryWeight != weight {
				weight = rt.CanaryWeight
				note(v.Seen, "VirtualService: stable %d%% / canary %d%%", 100-weight, weight)
			}
		case testenv.Rollouts.Kind:
			ro := &rampv1.Rollout{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, ro); err != nil {
				continue
			}
			st := ro.Status
			if newRound(prev, st) {
				note(v.Seen, "analysis round at step %d (%d%%): %s", prev.CurrentStep, prev.CanaryWeight, round{metrics: st.LastAnalysis}.verdicts())
			}
			if st.Phase != prev.Phase || st.CurrentStep != prev.CurrentStep || st.CanaryWeight != prev.CanaryWeight || st.Stage != prev.Stage || st.Message != prev.Message {
				note(v.Seen, "Rollout: %-12s step %d/%d %-15s weight %3d%%  %s", st.Phase, st.CurrentStep, st.Steps, st.Stage, st.CanaryWeight, st.Message)
			}
			prev = st
		}
	}
	return out
}
