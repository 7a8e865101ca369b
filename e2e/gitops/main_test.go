package gitops

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

var (
	env      *testenv.Env
	verdicts = &fakeAnalyzer{byRollout: map[string]string{}}
)

// fakeAnalyzer answers analysis rounds with the verdict the test sets per Rollout (Passed by
// default): these tests are about what GitOps tools see, not about Prometheus.
type fakeAnalyzer struct {
	mu        sync.Mutex
	byRollout map[string]string
}

func (f *fakeAnalyzer) set(ro client.Object, verdict string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byRollout[ro.GetNamespace()+"/"+ro.GetName()] = verdict
}

func (f *fakeAnalyzer) Analyze(_ context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	f.mu.Lock()
	v := f.byRollout[ro.Namespace+"/"+ro.Name]
	f.mu.Unlock()
	if v == "" {
		v = rampv1.VerdictPassed
	}
	r := &plan.AnalysisResult{Verdict: v, Metrics: []rampv1.MetricResult{{
		Name: "error-rate", Verdict: v, Value: "0.1", Threshold: "<= 1", Time: metav1.Now(),
	}}}
	if v == rampv1.VerdictFailed {
		r.Metrics[0].Value = "8.3"
		r.Reason = "error-rate 8.3 > 1"
	}
	return r
}

func TestMain(m *testing.M) {
	level := zapcore.Level(1) // warnings and errors: the tests log what they check
	if os.Getenv("RAMP_TEST_VERBOSE") != "" {
		level = -1
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(level)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	var err error
	env, err = testenv.Start(ctx, testenv.Options{LocalCluster: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the local cluster:", err)
		os.Exit(1)
	}
	mctx, stop := context.WithCancel(context.Background())
	done, err := startManager(mctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting ramp:", err)
		stop()
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	stop()
	<-done
	_ = env.Stop()
	os.Exit(code)
}

// startManager runs ramp's manager as the binary wires it (internal/manager), with the fake
// analyzer and a short subset settle time.
func startManager(ctx context.Context) (<-chan struct{}, error) {
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, err
	}
	if _, err := manager.Setup(ctx, mgr, manager.Options{
		Concurrency: 4,
		Plan:        plan.Config{SubsetSettle: 200 * time.Millisecond, RoutingGrace: plan.DefaultConfig().RoutingGrace},
		Analyzer:    verdicts,
	}); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return done, nil
}

// --- helpers -----------------------------------------------------------------------------------

const waitLong = 90 * time.Second

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.WaitFor(context.Background(), waitLong, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitRollout polls the Rollout until cond holds; ro is left as last read.
func waitRollout(t testing.TB, ro *rampv1.Rollout, what string, cond func(*rampv1.Rollout) bool) {
	t.Helper()
	waitFor(t, what, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return cond(ro), nil
	})
}

// settledIn waits until the Rollout is in phase with its spec observed and the conditions
// written for that phase (ramp patches conditions and the rest of the status separately).
func settledIn(t testing.TB, ro *rampv1.Rollout, phase string) {
	t.Helper()
	waitRollout(t, ro, "phase "+phase, func(ro *rampv1.Rollout) bool {
		return ro.Status.Phase == phase && ro.Status.ObservedGeneration == ro.Generation && readyReason(ro) == phaseReason(phase) &&
			(!steadyPhase(phase) || readyStatus(ro) == metav1.ConditionTrue)
	})
}

// steadyPhase: Idle and Succeeded are Ready once the live VirtualService and DestinationRule
// route all traffic to stable, a pass after the phase is written.
func steadyPhase(phase string) bool {
	return phase == rampv1.PhaseIdle || phase == rampv1.PhaseSucceeded
}

func readyStatus(ro *rampv1.Rollout) metav1.ConditionStatus {
	for _, c := range ro.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return ""
}

func readyReason(ro *rampv1.Rollout) string {
	for _, c := range ro.Status.Conditions {
		if c.Type == "Ready" {
			return c.Reason
		}
	}
	return ""
}

// phaseReason is the Ready condition's reason ramp writes in phase.
func phaseReason(phase string) string {
	if phase == rampv1.PhaseFailed {
		return "RolloutFailed"
	}
	return phase
}

// noProgressDeadline is the progressDeadlineSeconds that turns the Deployment controller's
// progress deadline off: then kstatus does not need a Progressing condition, which a paused
// Deployment never has (see docs/gitops.md).
const noProgressDeadline = math.MaxInt32

// app creates a Deployment "web" with n replicas and waits until it has rolled out.
func app(t testing.TB, ns, image string, n int32, opts ...func(*appsv1.Deployment)) *appsv1.Deployment {
	t.Helper()
	return env.App(t, ns, "web", image, n, opts...)
}

func waitRolledOut(t testing.TB, d *appsv1.Deployment, n int32) {
	t.Helper()
	env.WaitRolledOut(t, d, n)
}

func setImage(t testing.TB, d *appsv1.Deployment, container, image string) {
	t.Helper()
	p := client.RawPatch(types.StrategicMergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, container, image)))
	must(t, env.Client.Patch(context.Background(), d, p))
}

// canaryRollout targets "web" with a header route and a fast (1s) analysis.
func canaryRollout(ns string, steps ...rampv1.CanaryStep) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
				Steps:       steps,
			}},
			Analysis: &rampv1.AnalysisSpec{
				Interval:     &metav1.Duration{Duration: time.Second},
				FailureLimit: ptr.To[int32](1),
				Prometheus:   rampv1.PrometheusSpec{Address: "http://prometheus.invalid:9090"},
				Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate,
					ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}}},
			},
		},
	}
}

// annotateAs sets (value != nil) or removes (nil) a Rollout annotation as the given field
// manager with a JSON merge patch (an Update operation, as kubectl annotate writes).
func annotateAs(t testing.TB, manager string, ro client.Object, key string, value *string) {
	t.Helper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)))
	target := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.GetNamespace(), Name: ro.GetName()}}
	must(t, env.Client.Patch(context.Background(), target, p, client.FieldOwner(manager)))
}

// toUnstructured converts a typed object into the form Flux's and Argo CD's health checks read.
func toUnstructured(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	must(t, err)
	return &unstructured.Unstructured{Object: m}
}

// getUnstructured reads an object as the API server serves it.
func getUnstructured(ctx context.Context, apiVersion, kind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u)
	return u, err
}

func runtimeFromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}
