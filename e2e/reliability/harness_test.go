package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/controllers"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// leaderElectionID is the manager binary's (cmd/manager).
const leaderElectionID = "ramp-controller.ramp.dev"

// --- ramp's manager, in-process ----------------------------------------------------------------

// mgrOptions configure one in-process manager. Every manager watches one namespace only, so
// tests run side by side without seeing each other's Rollouts.
type mgrOptions struct {
	name string // its logger's name
	ns   string
	// analyzer nil means the real Prometheus analyzer (internal/manager.Setup's default).
	analyzer controllers.Analyzer
	notifier controllers.Notifier
	// runnables are added to the manager (a notify.Sender).
	runnables []crmanager.Runnable

	leaderElection, releaseOnCancel bool
	// relaxedLease uses controller-runtime's lease durations (15s/10s/2s) instead of the short
	// ones (2s/1s/200ms), for a lone manager that must not lose its lease on a busy machine.
	relaxedLease bool
	// restConfig is whom the manager connects as (default: the cluster admin).
	restConfig *rest.Config
	// afterWrite runs after each successful write through the manager's client.
	afterWrite func(m *runningMgr, w write)
}

// write is one successful write of a manager: the object's kind (with "/status" for a status
// write) and name.
type write struct{ kind, name string }

// runningMgr is a started manager and what its client did.
type runningMgr struct {
	name   string
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	reads, writes, conflicts atomic.Int64
	stopOnce                 sync.Once

	mu      sync.Mutex
	written []write // every successful write, in order
}

// writeCount is how many writes the manager made so far.
func (m *runningMgr) writeCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.written)
}

// writesSince returns the writes after the first n.
func (m *runningMgr) writesSince(n int) []write {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]write(nil), m.written[min(n, len(m.written)):]...)
}

// startManager builds a manager with a fresh cache and a fresh reconciler (internal/manager
// Setup, as the binary does) and starts it. Leader election uses the binary's ID with short
// durations, the Lease in the test's namespace.
func startManager(t *testing.T, o mgrOptions) *runningMgr {
	t.Helper()
	e := cluster(t)
	cfg := o.restConfig
	if cfg == nil {
		cfg = e.Config
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	scheme, err := manager.Scheme()
	must(t, err)
	m := &runningMgr{name: o.name, done: make(chan struct{})}
	lease, renew, retry := 2*time.Second, time.Second, 200*time.Millisecond
	if o.relaxedLease {
		lease, renew, retry = 15*time.Second, 10*time.Second, 2*time.Second
	}
	m.mgr, err = ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 ctrl.Log.WithName(o.name),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{o.ns: {}}},
		// Many managers in one process each register a "rollout" controller.
		Controller:                    config.Controller{SkipNameValidation: ptr.To(true)},
		LeaderElection:                o.leaderElection,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       o.ns,
		LeaderElectionReleaseOnCancel: o.releaseOnCancel,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		NewClient:                     m.newClient(o.afterWrite),
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if _, err := manager.Setup(ctx, m.mgr, manager.Options{
		Concurrency: 1,
		Plan:        plan.Config{SubsetSettle: 200 * time.Millisecond, RoutingGrace: plan.DefaultConfig().RoutingGrace},
		Analyzer:    o.analyzer,
		Notifier:    o.notifier,
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	for _, r := range o.runnables {
		must(t, m.mgr.Add(r))
	}
	go func() {
		defer close(m.done)
		m.err = m.mgr.Start(ctx)
	}()
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("last log lines of manager %s:\n%s", o.name, managerLogs(o.name, 40))
		}
	})
	return m
}

// managerLogs returns the last n lines the named manager logged.
func managerLogs(name string, n int) string {
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"logger":"`+name+`"`) || strings.Contains(l, `"logger":"`+name+`.`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop cancels the manager's context and waits until Start has returned.
func (m *runningMgr) stop(t *testing.T) {
	t.Helper()
	m.stopOnce.Do(func() {
		m.cancel()
		select {
		case <-m.done:
		case <-time.After(60 * time.Second):
			t.Errorf("manager %s did not stop within 60s", m.name)
		}
	})
}

// newClient wraps the manager's client to count what it does and to call afterWrite.
func (m *runningMgr) newClient(afterWrite func(*runningMgr, write)) client.NewClientFunc {
	return func(cfg *rest.Config, o client.Options) (client.Client, error) {
		c, err := client.NewWithWatch(cfg, o)
		if err != nil {
			return nil, err
		}
		kindOf := func(obj runtime.Object) string {
			gvk, err := c.GroupVersionKindFor(obj)
			if err != nil {
				return fmt.Sprintf("%T", obj)
			}
			return gvk.Kind
		}
		wrote := func(kind string, obj client.Object, err error) error {
			if apierrors.IsConflict(err) {
				m.conflicts.Add(1)
			}
			if err == nil {
				m.writes.Add(1)
				m.mu.Lock()
				m.written = append(m.written, write{kind: kind, name: obj.GetName()})
				m.mu.Unlock()
				if afterWrite != nil {
					afterWrite(m, write{kind: kind, name: obj.GetName()})
				}
			}
			return err
		}
		return interceptor.NewClient(c, interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				m.reads.Add(1)
				return c.Get(ctx, key, obj, opts...)
			},
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				m.reads.Add(1)
				return c.List(ctx, list, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				return wrote(kindOf(obj), obj, c.Create(ctx, obj, opts...))
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				return wrote(kindOf(obj), obj, c.Update(ctx, obj, opts...))
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
				return wrote(kindOf(obj), obj, c.Patch(ctx, obj, p, opts...))
			},
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				return wrote(kindOf(obj), obj, c.Delete(ctx, obj, opts...))
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				return wrote(kindOf(obj)+"/"+sub, obj, c.SubResource(sub).Patch(ctx, obj, p, opts...))
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				return wrote(kindOf(obj)+"/"+sub, obj, c.SubResource(sub).Update(ctx, obj, opts...))
			},
		}), nil
	}
}

// verdicts is a fake analyzer answering every round with one verdict.
type verdicts struct {
	verdict string
	rounds  atomic.Int32
}

func (v *verdicts) Analyze(_ context.Context, _ *rampv1.Rollout) *plan.AnalysisResult {
	v.rounds.Add(1)
	r := &plan.AnalysisResult{Verdict: v.verdict, Metrics: []rampv1.MetricResult{{
		Name: "error-rate", Verdict: v.verdict, Value: "0.1", Threshold: "<= 1", Time: metav1.Now(),
	}}}
	if v.verdict == rampv1.VerdictFailed {
		r.Metrics[0].Value, r.Reason = "8.3", "error-rate 8.3 > 1"
	}
	return r
}

// --- the application and its Rollout ----------------------------------------------------------

// app creates the Deployment "web" and waits until it has rolled out.
func app(t *testing.T, ns string, replicas int32, image string) *appsv1.Deployment {
	t.Helper()
	return cluster(t).App(t, ns, "web", image, replicas)
}

func setImage(t *testing.T, ns, image string) {
	t.Helper()
	p := client.RawPatch(types.StrategicMergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":%q}]}}}}`, image)))
	must(t, env.Client.Patch(context.Background(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}, p))
}

func pauseFor(d time.Duration) *rampv1.Pause {
	return &rampv1.Pause{Duration: &metav1.Duration{Duration: d}}
}

func untilPromoted() *rampv1.Pause { return &rampv1.Pause{} }

// canaryRollout targets "web" with the given steps and a header route to the canary.
func canaryRollout(ns, name string, steps ...rampv1.CanaryStep) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps:       steps,
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
			ProgressDeadline: &metav1.Duration{Duration: 2 * time.Minute},
		},
	}
}

func blueGreenRollout(ns, name string, pause time.Duration) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{
				PrePromotionPause: pauseFor(pause),
			}},
			ProgressDeadline: &metav1.Duration{Duration: 2 * time.Minute},
		},
	}
}

// withAnalysis adds an analysis every second against address, failing at the first failed
// round and at the given number of inconclusive ones.
func withAnalysis(ro *rampv1.Rollout, address string, inconclusiveLimit int32) *rampv1.Rollout {
	ro.Spec.Analysis = &rampv1.AnalysisSpec{
		Interval:          &metav1.Duration{Duration: time.Second},
		FailureLimit:      ptr.To[int32](1),
		InconclusiveLimit: ptr.To(inconclusiveLimit),
		Prometheus:        rampv1.PrometheusSpec{Address: address, Timeout: &metav1.Duration{Duration: 2 * time.Second}},
		Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate,
			ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}}},
	}
	return ro
}

// --- reading the cluster ----------------------------------------------------------------------

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.WaitFor(context.Background(), timeout, cond); err != nil {
		t.Fatalf("waiting %s for %s: %v", timeout, what, err)
	}
}

// waitRollout polls the Rollout until cond holds; ro is left as last read.
func waitRollout(t *testing.T, ro *rampv1.Rollout, timeout time.Duration, what string, cond func(*rampv1.Rollout) bool) {
	t.Helper()
	waitFor(t, timeout, what, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return cond(ro), nil
	})
}

func phaseIs(phase string) func(*rampv1.Rollout) bool {
	return func(ro *rampv1.Rollout) bool { return ro.Status.Phase == phase }
}

// liveRouting is the live VirtualService's routing; ok is false when there is none or it is
// not in ramp's shape.
func liveRouting(ctx context.Context, ns, name string) (r istio.Routing, ok bool, err error) {
	vs, err := env.IstioObject(ctx, ns, istio.KindVirtualService, name)
	if err != nil || vs == nil {
		return r, false, err
	}
	r, err = istio.ObservedRouting(vs)
	return r, err == nil, nil
}

func stableSubset(dr *unstructured.Unstructured) string {
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		m, _ := s.(map[string]any)
		if m["name"] == istio.StableSubset {
			v, _, _ := unstructured.NestedString(m, "labels", appsv1.DefaultDeploymentUniqueLabelKey)
			return v
		}
	}
	return ""
}

func getDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d); err != nil {
		return nil, err
	}
	return d, nil
}

// deploymentSettled reports whether the Deployment controller has caught up with d: it has
// seen the latest spec and has nothing left to do, so it will not write d's status again.
func deploymentSettled(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	st := d.Status
	if st.ObservedGeneration != d.Generation || st.Replicas != want || st.UpdatedReplicas != want || st.ReadyReplicas != want || st.AvailableReplicas != want {
		return false
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && !d.Spec.Paused && c.Reason != "NewReplicaSetAvailable" {
			return false
		}
	}
	return true
}

// settled reports whether the Rollout is in phase and the world matches it: the
// VirtualService routes all to stable without a header route, the stable subset is the
// recorded one, the target is paused and the canary (if any) is scaled to zero.
func settled(phase string) func(ctx context.Context, ro *rampv1.Rollout) (bool, error) {
	return func(ctx context.Context, ro *rampv1.Rollout) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		if ro.Status.Phase != phase {
			return false, nil
		}
		r, ok, err := liveRouting(ctx, ro.Namespace, ro.Name)
		if err != nil || !ok || r.CanaryWeight != 0 || r.HeaderRoute {
			return false, err
		}
		dr, err := env.IstioObject(ctx, ro.Namespace, istio.KindDestinationRule, ro.Name)
		if err != nil || dr == nil || stableSubset(dr) != ro.Status.StablePodTemplateHash {
			return false, err
		}
		target, err := getDeployment(ctx, ro.Namespace, ro.Spec.TargetRef.Name)
		if err != nil || !target.Spec.Paused {
			return false, err
		}
		canary, err := getDeployment(ctx, ro.Namespace, ro.CanaryName())
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return ptr.Deref(canary.Spec.Replicas, 1) == 0 && canary.Status.Replicas == 0, nil
	}
}

// finalState is what an outcome is compared on: the Rollout's status without timestamps, the
// VirtualService and DestinationRule specs, the canary's size and revision, the target's
// template and pause; the namespace is replaced by "NS".
func finalState(t *testing.T, ro *rampv1.Rollout) string {
	t.Helper()
	ctx := context.Background()
	cur := &rampv1.Rollout{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), cur))
	st := cur.Status.DeepCopy()
	st.RolloutStartedAt, st.StageStartedAt, st.LastAnalysisTime = nil, nil, nil
	if st.Target != nil {
		st.Target.UID = "" // each run's own Deployment
	}
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	for i := range st.LastAnalysis {
		st.LastAnalysis[i].Time = metav1.Time{}
	}
	out := map[string]any{"status": st}
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		u, err := env.IstioObject(ctx, ro.Namespace, kind, ro.Name)
		must(t, err)
		if u != nil {
			out[kind] = u.Object["spec"]
		}
	}
	if d, err := getDeployment(ctx, ro.Namespace, ro.Spec.TargetRef.Name); err == nil {
		out["target"] = map[string]any{"paused": d.Spec.Paused, "image": d.Spec.Template.Spec.Containers[0].Image,
			"replicas": d.Status.Replicas, "updated": d.Status.UpdatedReplicas}
	}
	if d, err := getDeployment(ctx, ro.Namespace, ro.CanaryName()); err == nil {
		out["canary"] = map[string]any{"replicas": ptr.Deref(d.Spec.Replicas, 1), "revision": d.Annotations["ramp.dev/revision"],
			"image": d.Spec.Template.Spec.Containers[0].Image}
	}
	b, err := json.MarshalIndent(out, "", " ")
	must(t, err)
	return strings.ReplaceAll(string(b), ro.Namespace, "NS")
}
