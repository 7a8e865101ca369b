package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/bench"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/revision"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Two shards on one API server, as Flux shards its controllers: one manager with
// --watch-label-selector=sharding.fluxcd.io/key=shard1, one with !sharding.fluxcd.io/key.
// Each runs as ramp's service account with the roles ramp ships (config/rbac) and nothing
// more, and elects its leader on its own Lease in ramp's namespace. Each takes its own Rollout
// through adoption and a release to its first weight, and writes nothing of the other's (every
// write request of each manager is recorded). Then the shard1 Rollout loses its label: the
// other manager takes it over, and the first writes nothing more, although the new revision's
// events (its target, its canary) reach both.
func TestShardsSplitRolloutsByLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartT(ctx, t, testenv.Options{})
	// The managers and the fake Deployment controller stop before the API server.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if _, err := bench.StartFakeDeploymentController(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	tl := env.RecordTimeline(t, ns)
	installShippedRBAC(ctx, t, env)

	shard1 := startShard(ctx, t, env, manager.ShardLabel+"=shard1", true)
	rest := startShard(ctx, t, env, "!"+manager.ShardLabel, true)
	// A shard with no Rollouts whose cache is not filtered: every Rollout's events reach it,
	// and only the reconciler's own check keeps it from acting on them.
	idle := startShard(ctx, t, env, manager.ShardLabel+"=shard2", false)
	// Each leads its own shard: the Role lets every shard's Lease be taken.
	holders := map[string]bool{}
	for _, s := range []*shard{shard1, rest, idle} {
		s.waitElected(ctx, t)
		lease := &coordinationv1.Lease{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: rampNamespace, Name: s.lease}, lease); err != nil {
			t.Fatalf("the Lease of shard %s: %v", s.selector, err)
		}
		holder := ptr.Deref(lease.Spec.HolderIdentity, "")
		if holder == "" || holders[holder] {
			t.Errorf("Lease %s is held by %q, want a holder of its own", s.lease, holder)
		}
		holders[holder] = true
	}

	createApp(ctx, t, env, ns, "alpha", map[string]string{manager.ShardLabel: "shard1"})
	createApp(ctx, t, env, ns, "bravo", nil)
	// Adopted (Idle is recorded once ramp's pause of the target is seen), then released to the
	// first weight.
	for _, name := range []string{"alpha", "bravo"} {
		waitTimeline(ctx, t, tl, name+" Idle", func() bool { return slices.Contains(tl.Phases(name), rampv1.PhaseIdle) })
		releaseApp(ctx, t, env, ns, name, "v2")
	}
	for _, name := range []string{"alpha", "bravo"} {
		waitTimeline(ctx, t, tl, name+" at 50%", func() bool { return slices.Contains(tl.Weights(name), 50) })
		if testing.Verbose() {
			for _, v := range tl.Of(testenv.Rollouts, name) {
				st, _, _ := unstructured.NestedMap(v.Object.Object, "status")
				t.Logf("%s rv %d: %v %v %v", name, v.RV, st["phase"], st["stage"], st["message"])
			}
		}
	}
	shard1.waitWrites(ctx, t, "shard1's writes of alpha's objects", func(ws []write) bool {
		for _, obj := range []string{"rollouts/alpha/status", "virtualservices/alpha", "destinationrules/alpha", "deployments/alpha-canary"} {
			if !containsWrite(ws, obj) {
				return false
			}
		}
		return true
	})
	assertOnly(t, "shard1", shard1.writes(), "alpha")
	assertOnly(t, "the unlabelled shard", rest.writes(), "bravo")

	// The cache options are cmd/manager's: only the shard's Rollouts, no managedFields (a
	// target has those of the test and the fake Deployment controller), no ReplicaSet templates.
	var cached rampv1.RolloutList
	if err := shard1.cache.List(ctx, &cached, client.InNamespace(ns)); err != nil || len(cached.Items) != 1 || cached.Items[0].Name != "alpha" {
		t.Errorf("shard1's cache holds Rollouts %v (err %v), want alpha alone", cached.Items, err)
	}
	target := &appsv1.Deployment{}
	if err := shard1.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: "bravo"}, target); err != nil || target.ManagedFields != nil {
		t.Errorf("a target in the cache has managedFields %v (err %v), want none", target.ManagedFields, err)
	}
	// Nor pod templates of ReplicaSets: ramp found the one running each target's revision
	// above without them.
	var rss appsv1.ReplicaSetList
	if err := shard1.cache.List(ctx, &rss, client.InNamespace(ns)); err != nil || len(rss.Items) == 0 {
		t.Errorf("ReplicaSets in the cache: %d (err %v)", len(rss.Items), err)
	}
	for _, rs := range rss.Items {
		if len(rs.Spec.Template.Spec.Containers) > 0 {
			t.Errorf("ReplicaSet %s is cached with its pod template", rs.Name)
		}
		if rs.Labels[istio.TrackLabel] == istio.TrackCanary {
			t.Errorf("a canary's ReplicaSet %s is cached", rs.Name)
		}
	}
	// The canaries have theirs, which ramp does not read.
	var live appsv1.ReplicaSetList
	if err := env.Client.List(ctx, &live, client.InNamespace(ns), client.MatchingLabels{istio.TrackLabel: istio.TrackCanary}); err != nil || len(live.Items) == 0 {
		t.Errorf("canary ReplicaSets: %d (err %v), want some", len(live.Items), err)
	}
	// Nor the canaries' pod templates (a copy of their target's): alpha's was rendered, sized
	// and routed above from a cache without it. The targets keep theirs.
	canary := &appsv1.Deployment{}
	if err := shard1.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-canary"}, canary); err != nil ||
		len(canary.Spec.Template.Spec.Containers) > 0 || canary.Spec.Template.Labels != nil {
		t.Errorf("the canary in the cache: template %+v (err %v), want none", canary.Spec.Template, err)
	}
	if len(target.Spec.Template.Spec.Containers) == 0 {
		t.Error("a target is cached without its pod template")
	}

	// alpha moves to the unlabelled shard, and gets a new revision.
	moved := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "alpha", Namespace: ns}}
	if err := env.Client.Patch(ctx, moved, client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, manager.ShardLabel)))); err != nil {
		t.Fatal(err)
	}
	movedAt, err := strconv.ParseInt(moved.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	v3 := releaseApp(ctx, t, env, ns, "alpha", "v3")
	waitTimeline(ctx, t, tl, "alpha's canary at v3", func() bool {
		for _, v := range tl.Of(testenv.Deployments, "alpha-canary") {
			if !v.Deleted && v.Object.GetAnnotations()[revision.Annotation] == v3 {
				return true
			}
		}
		return false
	})
	waitTimeline(ctx, t, tl, "alpha's status on v3", func() bool {
		ros := tl.Rollouts("alpha")
		return len(ros) > 0 && ros[len(ros)-1].Status.CanaryRevision == v3
	})
	rest.waitWrites(ctx, t, "the unlabelled shard's writes of alpha's canary and status", func(ws []write) bool {
		after := landedAfter(ws, movedAt)
		return containsWrite(after, "rollouts/alpha/status") && containsWrite(after, "deployments/alpha-canary")
	})
	// Every write that landed after the move: none of shard1's (its Events, sent after the
	// pass that decided them, aside).
	if after := landedAfter(shard1.writes(), movedAt); len(after) > 0 {
		t.Errorf("shard1 wrote after alpha left it (resourceVersion > %d): %v", movedAt, after)
	}
	if ws := idle.writes(); len(ws) > 0 {
		t.Errorf("the shard without Rollouts wrote: %v", ws)
	}
}

// shard is a manager started as cmd/manager starts one with --watch-label-selector, its
// write requests recorded.
type shard struct {
	cache    client.Reader // the manager's cache
	selector string
	lease    string          // the name of its leader election Lease
	elected  <-chan struct{} // closed once it leads its shard

	mu      sync.Mutex
	log     []write
	changed chan struct{} // closed and replaced on every write recorded
}

// write is one successful write request: its verb, the object it names
// ("rollouts/alpha/status") and the resourceVersion the API server answered with.
type write struct {
	verb, object string
	rv           int64
}

func (w write) String() string { return fmt.Sprintf("%s %s@%d", w.verb, w.object, w.rv) }

// rampNamespace and rampServiceAccount are where config/rbac binds its roles.
const rampNamespace, rampServiceAccount = "ramp-system", "ramp-controller"

// installShippedRBAC creates ramp's namespace and applies config/rbac as kustomize lists it:
// the service account, the ClusterRole and the leader election Role, with their bindings.
func installShippedRBAC(ctx context.Context, t *testing.T, env *testenv.Env) {
	t.Helper()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rampNamespace}}); err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range []string{"service_account.yaml", "role.yaml", "role_binding.yaml", "leader_election_role.yaml"} {
		o, err := testenv.ReadObjects(filepath.Join("..", "..", "config", "rbac", f))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	if err := env.Apply(ctx, "test", objs); err != nil {
		t.Fatal(err)
	}
}

// startShard starts a manager as cmd/manager starts one with --watch-label-selector and
// --leader-elect, as ramp's service account.
func startShard(ctx context.Context, t *testing.T, env *testenv.Env, selector string, filterCache bool) *shard {
	t.Helper()
	s := &shard{changed: make(chan struct{}), selector: selector, lease: manager.LeaderElectionID(selector)}
	sel, err := manager.ParseShard(selector)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	// The user name Kubernetes gives the service account's token.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + rampNamespace + ":" + rampServiceAccount}
	cfg.Wrap(s.wrap)
	scheme, err := manager.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	cacheSel := sel
	if !filterCache {
		cacheSel = nil
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: manager.CacheOptions("", cacheSel),
		// Two managers in one process register the same controller name.
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		LeaderElection:          true,
		LeaderElectionID:        s.lease,
		LeaderElectionNamespace: rampNamespace,
		// So the shards' Leases are free for the next test.
		LeaderElectionReleaseOnCancel: true,
		// Renewals get time on a loaded machine: this test is about who may take which Lease.
		LeaseDuration: ptr.To(time.Minute), RenewDeadline: ptr.To(45 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manager.Setup(ctx, mgr, manager.Options{Concurrency: 2, Shard: sel}); err != nil {
		t.Fatal(err)
	}
	s.cache, s.elected = mgr.GetCache(), mgr.Elected()
	go func() {
		// A manager that stops early (its Lease lost, say) would leave its Rollouts unserved.
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("shard %s stopped: %v", selector, err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}
	return s
}

// waitElected returns once the manager leads its shard.
func (s *shard) waitElected(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-s.elected:
	case <-time.After(30 * time.Second):
		t.Fatalf("shard %s did not acquire its Lease %s/%s in 30s (the leader election Role must allow it)", s.selector, rampNamespace, s.lease)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// wrap records the manager's writes, except those of its leader election in ramp's namespace.
func (s *shard) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodGet || strings.Contains(req.URL.Path, "/namespaces/"+rampNamespace+"/") {
			return rt.RoundTrip(req)
		}
		w := write{verb: req.Method, object: objectOf(req)}
		resp, err := rt.RoundTrip(req)
		if err != nil || resp.StatusCode >= 300 {
			return resp, err // changed nothing
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			return resp, err
		}
		w.rv = resourceVersion(b)
		s.mu.Lock()
		s.log = append(s.log, w)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		return resp, nil
	})
}

// waitWrites returns once cond holds for the writes recorded. The timeline can see a write
// (through its watch) before the writer's client has its answer, and so before it is recorded.
func (s *shard) waitWrites(ctx context.Context, t *testing.T, what string, cond func([]write) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		s.mu.Lock()
		ws, changed := slices.Clone(s.log), s.changed
		s.mu.Unlock()
		if cond(ws) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; writes: %v", what, ctx.Err(), ws)
		case <-changed:
		}
	}
}

func (s *shard) writes() []write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// objectOf names the object a request writes: "<resource>/<name>[/<subresource>]" from its
// path, the name from its body for a create.
func objectOf(req *http.Request) string {
	p := req.URL.Path
	i := strings.Index(p, "/namespaces/")
	if i < 0 {
		return p
	}
	parts := strings.Split(p[i+len("/namespaces/"):], "/")[1:] // resource, name, subresource
	if req.Method == http.MethodPost && len(parts) == 1 && req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		var o struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		_ = json.Unmarshal(b, &o)
		parts = append(parts, o.Metadata.Name)
	}
	return strings.Join(parts, "/")
}

// resourceVersion reads metadata.resourceVersion from an object's JSON (0 if none).
func resourceVersion(body []byte) int64 {
	var o struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(body, &o)
	rv, _ := strconv.ParseInt(o.Metadata.ResourceVersion, 10, 64)
	return rv
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// assertOnly fails unless every write names one of app's objects (its Rollout, target,
// canary, VirtualService, DestinationRule, Events about them).
func assertOnly(t *testing.T, who string, ws []write, app string) {
	t.Helper()
	if len(ws) == 0 {
		t.Errorf("%s wrote nothing", who)
	}
	for _, w := range ws {
		parts := strings.SplitN(w.object, "/", 3)
		if len(parts) < 2 || !(parts[1] == app || strings.HasPrefix(parts[1], app+"-") || strings.HasPrefix(parts[1], app+".")) {
			t.Errorf("%s wrote %s, not one of %s's objects", who, w, app)
		}
	}
}

// landedAfter returns the writes of objects other than Events that the API server answered
// with a resourceVersion after rv.
func landedAfter(ws []write, rv int64) []write {
	var out []write
	for _, w := range ws {
		if w.rv > rv && !strings.HasPrefix(w.object, "events/") {
			out = append(out, w)
		}
	}
	return out
}

func containsWrite(ws []write, object string) bool {
	return slices.ContainsFunc(ws, func(w write) bool { return w.object == object })
}

func waitTimeline(ctx context.Context, t *testing.T, tl *testenv.Timeline, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := tl.Wait(ctx, cond); err != nil {
		for _, name := range []string{"alpha", "bravo"} {
			for _, v := range tl.Of(testenv.Rollouts, name) {
				st, _, _ := unstructured.NestedMap(v.Object.Object, "status")
				t.Logf("DEBUG %s rv %d: %v %v %v", name, v.RV, st["phase"], st["stage"], st["message"])
			}
		}
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// createApp creates an app's Deployment, Service and a Rollout holding at 50% for an hour.
func createApp(ctx context.Context, t *testing.T, env *testenv.Env, ns, name string, labels map[string]string) {
	t.Helper()
	lbl := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: map[string]string{bench.ReleaseAnnotation: "v1"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "podinfo:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9898}},
				}}},
			},
		},
	}
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: name},
			Service:   rampv1.ServiceSpec{Port: 9898},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{
				{SetWeight: 50, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: time.Hour}}}, {SetWeight: 100},
			}}},
		},
	}
	for _, o := range []client.Object{d, testenv.ServiceFor(d, 9898), ro} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// releaseApp changes the app's pod template as a Git sync would, and returns the revision.
func releaseApp(ctx context.Context, t *testing.T, env *testenv.Env, ns, name, version string) string {
	t.Helper()
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	p := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, bench.ReleaseAnnotation, version)
	if err := env.Client.Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	return revision.Of(&d.Spec.Template)
}
