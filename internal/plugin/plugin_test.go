package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/fieldowners"
	"github.com/ramp-dev/ramp/internal/testenv"
	"github.com/ramp-dev/ramp/internal/version"
)

// The API server starts on the first test that needs it, so the rendering tests run without.
var (
	envOnce sync.Once
	envErr  error
	env     *testenv.Env
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

func apiServer(t *testing.T) *testenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs an API server (envtest); skipped with -short")
	}
	envOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		env, envErr = testenv.Start(ctx, testenv.Options{LogDir: os.Getenv("RAMP_TESTENV_LOGS")})
	})
	if envErr != nil {
		t.Fatalf("testenv: %v", envErr)
	}
	return env
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	out, errOut string
	err         error
	code        int
}

// kubectlRamp runs the plugin in-process against the test API server, in namespace ns.
func kubectlRamp(ctx context.Context, t *testing.T, ns string, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	return runInto(ctx, t, &out, &errOut, ns, args...)
}

func runInto(ctx context.Context, t *testing.T, out, errOut *syncBuffer, ns string, args ...string) result {
	cmd := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	cmd.SetArgs(append(args, "--kubeconfig", env.Kubeconfig, "-n", ns))
	err := cmd.ExecuteContext(ctx)
	r := result{out: out.String(), errOut: errOut.String(), err: err, code: ExitCode(err)}
	t.Logf("kubectl ramp %s → exit %d\nstdout: %s\nstderr: %s\nerr: %v", strings.Join(args, " "), r.code, r.out, r.errOut, err)
	return r
}

// gitManifest is the Rollout as Git holds it: no request annotations, one of Git's own.
func gitManifest(ns, name string) *unstructured.Unstructured {
	doc := fmt.Sprintf(`apiVersion: ramp.dev/v1alpha1
kind: Rollout
metadata:
  name: %s
  namespace: %s
  labels: {app: %s}
  annotations: {team: payments}
spec:
  targetRef: {name: %s}
  service: {port: 8080}
  strategy:
    canary:
      steps:
      - setWeight: 10
      - setWeight: 50
        pause: {}
      - setWeight: 100
`, name, ns, name, name)
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		panic(err)
	}
	return u
}

func rollouts(t *testing.T, ns string) dynamic.ResourceInterface {
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dyn.Resource(rolloutsGVR).Namespace(ns)
}

// fluxApply applies the Git manifest as Flux's kustomize-controller does: server-side apply,
// forced, field manager kustomize-controller.
func fluxApply(ctx context.Context, t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	out, err := rollouts(t, ns).Apply(ctx, name, gitManifest(ns, name), metav1.ApplyOptions{FieldManager: "kustomize-controller", Force: true})
	if err != nil {
		t.Fatalf("Flux-style apply: %v", err)
	}
	return out
}

// setStatus changes the Rollout's status as the controller would.
func setStatus(ctx context.Context, t *testing.T, ns, name string, mutate func(*rampv1.RolloutStatus)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ro := &rampv1.Rollout{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ro); err != nil {
			return err
		}
		mutate(&ro.Status)
		return env.Client.Status().Update(ctx, ro)
	})
	if err != nil {
		t.Fatalf("updating status: %v", err)
	}
}

// midRollout puts a Rollout at step 2/3, holding at 50%.
func midRollout(st *rampv1.RolloutStatus) {
	*st = rampv1.RolloutStatus{
		Phase: rampv1.PhaseProgressing, Message: "step 2/3: 50% to canary; waiting for kubectl ramp promote",
		CurrentStep: 2, Steps: 3, CanaryWeight: 50, Stage: "Holding",
		StableRevision: "aaaa1111", CanaryRevision: "bbbb2222", HandledRequests: st.HandledRequests,
	}
}

func getRollout(ctx context.Context, t *testing.T, ns, name string) *rampv1.Rollout {
	t.Helper()
	ro := &rampv1.Rollout{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

// fakeController acknowledges the next request on annotation the way ramp's controller does:
// it records the token in status.handledRequests together with the effect (mutate).
func fakeController(ctx context.Context, t *testing.T, ns, name, annotation string, mutate func(st *rampv1.RolloutStatus)) <-chan error {
	done := make(chan error, 1)
	handled := func(h *rampv1.HandledRequests) *string {
		switch annotation {
		case rampv1.AnnotationPromote:
			return &h.Promote
		case rampv1.AnnotationPromoteFull:
			return &h.PromoteFull
		case rampv1.AnnotationAbort:
			return &h.Abort
		case rampv1.AnnotationRetry:
			return &h.Retry
		}
		return nil
	}
	go func() {
		done <- testenv.WaitFor(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			ro := &rampv1.Rollout{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ro); err != nil {
				return false, nil
			}
			tok := ro.Annotations[annotation]
			if annotation == rampv1.AnnotationPaused {
				// pause/resume are levels, not tokens: act on any change of the annotation.
				if (tok == "true") == (ro.Status.Phase == rampv1.PhasePaused) {
					return false, nil
				}
				mutate(&ro.Status)
				return true, env.Client.Status().Update(ctx, ro)
			}
			if tok == "" || tok == *handled(&ro.Status.HandledRequests) {
				return false, nil
			}
			*handled(&ro.Status.HandledRequests) = tok
			mutate(&ro.Status)
			return true, env.Client.Status().Update(ctx, ro)
		})
	}()
	return done
}

// ownedBy returns the annotations a manager owns with the given operation.
func ownedBy(u metav1.Object, manager string, op metav1.ManagedFieldsOperationType) []string {
	for _, e := range u.GetManagedFields() {
		if e.Manager == manager && e.Operation == op {
			return fieldowners.Annotations(e)
		}
	}
	return nil
}

func wantAnnotations(t *testing.T, ro metav1.Object, want map[string]string, absent ...string) {
	t.Helper()
	got := ro.GetAnnotations()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("annotation %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("annotation %s is set (%q), want it removed", k, got[k])
		}
	}
}

// hasRow reports whether a line of out starts with the given columns.
func hasRow(out string, cols ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(cols) && strings.Join(f[:len(cols)], " ") == strings.Join(cols, " ") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRootHelpListsEveryVerb(t *testing.T) {
	var out bytes.Buffer
	cmd := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, verb := range []string{"promote", "abort", "pause", "resume", "retry", "status", "list", "dashboard"} {
		if !strings.Contains(help, "\n  "+verb+" ") {
			t.Errorf("--help does not list %q:\n%s", verb, help)
		}
	}
	for _, s := range []string{"kubectl ramp [command]", FieldManager, "--kubeconfig", "--context", "-n, --namespace", "Flux", "Argo CD"} {
		if !strings.Contains(help, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	for _, verb := range []string{"promote", "abort", "pause", "resume", "retry"} {
		out.Reset()
		cmd := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
		cmd.SetArgs([]string{verb, "--help"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"server-side apply", "Flux", "Argo CD", "--timeout", "--wait"} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("%s --help lacks %q", verb, s)
			}
		}
	}
}

// Every verb writes only its annotation, as field manager ramp-plugin, without bumping the
// generation; a second verb keeps the annotations of the first (server-side apply would
// otherwise release them); and Git sync, Flux- or Argo-CD-style, leaves them all alone.
func TestRequestsSurviveGitSync(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	created := fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)
	gen := created.GetGeneration()

	for _, verb := range []string{"promote", "abort", "retry", "pause"} {
		if r := kubectlRamp(ctx, t, ns, verb, "web", "--wait=false"); r.err != nil {
			t.Fatalf("%s: %v", verb, r.err)
		}
	}
	if r := kubectlRamp(ctx, t, ns, "promote", "web", "--full", "--wait=false"); r.err != nil {
		t.Fatal(r.err)
	}
	u, err := rollouts(t, ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ann := u.GetAnnotations()
	requests := []string{rampv1.AnnotationPromote, rampv1.AnnotationPromoteFull, rampv1.AnnotationAbort, rampv1.AnnotationRetry}
	for _, k := range requests {
		if _, err := time.Parse(time.RFC3339Nano, ann[k]); err != nil {
			t.Errorf("%s = %q, want an RFC3339Nano token: %v", k, ann[k], err)
		}
	}
	wantAnnotations(t, u, map[string]string{rampv1.AnnotationPaused: "true", "team": "payments"})
	owned := ownedBy(u, FieldManager, metav1.ManagedFieldsOperationApply)
	for _, k := range append(requests, rampv1.AnnotationPaused) {
		if !contains(owned, k) {
			t.Errorf("ramp-plugin's apply does not own %s; it owns %v", k, owned)
		}
	}
	if contains(owned, "team") {
		t.Error("kubectl-ramp took ownership of Git's annotation team")
	}
	if u.GetGeneration() != gen {
		t.Errorf("generation %d → %d: requests must not bump it", gen, u.GetGeneration())
	}
	before := u.GetAnnotations()

	// Flux re-applies the original manifest (server-side apply, forced).
	after := fluxApply(ctx, t, ns, "web")
	wantAnnotations(t, after, before)
	if after.GetGeneration() != gen {
		t.Errorf("generation changed on an identical re-apply: %d → %d", gen, after.GetGeneration())
	}

	// Flux applies a changed spec from a new commit: the requests stay too.
	changed := gitManifest(ns, "web")
	if err := unstructured.SetNestedSlice(changed.Object, []any{map[string]any{"setWeight": int64(20)}, map[string]any{"setWeight": int64(100)}}, "spec", "strategy", "canary", "steps"); err != nil {
		t.Fatal(err)
	}
	after, err = rollouts(t, ns).Apply(ctx, "web", changed, metav1.ApplyOptions{FieldManager: "kustomize-controller", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	wantAnnotations(t, after, before)
	if after.GetGeneration() == gen {
		t.Error("a spec change did not bump the generation (test sanity)")
	}
}

// Argo CD's default (client-side) sync is kubectl apply: a three-way JSON merge patch from the
// last-applied configuration, the new manifest and the live object. Fields it never applied,
// like the request annotations, are not in the patch.
func TestRequestsSurviveArgoCDClientSideApply(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

	manifest := func(weight int64) []byte {
		m := gitManifest(ns, "shop")
		_ = unstructured.SetNestedSlice(m.Object, []any{map[string]any{"setWeight": weight}, map[string]any{"setWeight": int64(100)}}, "spec", "strategy", "canary", "steps")
		b, err := json.Marshal(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Argo creates the object with its manifest recorded in the last-applied annotation.
	obj := &unstructured.Unstructured{}
	if err := json.Unmarshal(manifest(10), &obj.Object); err != nil {
		t.Fatal(err)
	}
	ann := obj.GetAnnotations()
	ann[lastApplied] = string(manifest(10))
	obj.SetAnnotations(ann)
	if _, err := rollouts(t, ns).Create(ctx, obj, metav1.CreateOptions{FieldManager: "argocd-controller"}); err != nil {
		t.Fatal(err)
	}
	setStatus(ctx, t, ns, "shop", midRollout)
	for _, args := range [][]string{{"promote", "shop"}, {"abort", "shop"}, {"pause", "shop"}} {
		if r := kubectlRamp(ctx, t, ns, append(args, "--wait=false")...); r.err != nil {
			t.Fatal(r.err)
		}
	}
	live, err := rollouts(t, ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	requests := map[string]string{}
	for _, k := range []string{rampv1.AnnotationPromote, rampv1.AnnotationAbort, rampv1.AnnotationPaused} {
		requests[k] = live.GetAnnotations()[k]
	}

	for _, weight := range []int64{10, 30} { // an identical sync, then a new commit
		modified := manifest(weight)
		withAnn := &unstructured.Unstructured{}
		_ = json.Unmarshal(modified, &withAnn.Object)
		a := withAnn.GetAnnotations()
		a[lastApplied] = string(modified)
		withAnn.SetAnnotations(a)
		modifiedWithAnn, _ := json.Marshal(withAnn.Object)
		current, _ := json.Marshal(live.Object)
		original := []byte(live.GetAnnotations()[lastApplied])
		patch, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, modifiedWithAnn, current)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Argo CD-style patch: %s", patch)
		live, err = rollouts(t, ns).Patch(ctx, "shop", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "argocd-controller"})
		if err != nil {
			t.Fatal(err)
		}
		wantAnnotations(t, live, requests)
	}
	if got, _, _ := unstructured.NestedSlice(live.Object, "spec", "strategy", "canary", "steps"); len(got) != 2 || got[0].(map[string]any)["setWeight"] != int64(30) {
		t.Errorf("the Argo CD-style sync did not apply the new spec: %v", got)
	}

	// A controller that reads, modifies and writes the whole object (update) keeps them too.
	_ = unstructured.SetNestedField(live.Object, "5m", "spec", "progressDeadline")
	live, err = rollouts(t, ns).Update(ctx, live, metav1.UpdateOptions{FieldManager: "argocd-controller"})
	if err != nil {
		t.Fatal(err)
	}
	wantAnnotations(t, live, requests)
}

// resume releases ramp-plugin's ownership of ramp.dev/paused: the API server removes it, and
// the other annotations kubectl-ramp owns stay.
func TestResumeRemovesOnlyThePausedAnnotation(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	if r := kubectlRamp(ctx, t, ns, "promote", "web", "--wait=false"); r.err != nil {
		t.Fatal(r.err)
	}
	if r := kubectlRamp(ctx, t, ns, "pause", "web", "--wait=false"); r.err != nil {
		t.Fatal(r.err)
	}
	// Idempotent: pausing again changes nothing.
	rv := getRollout(ctx, t, ns, "web").ResourceVersion
	if r := kubectlRamp(ctx, t, ns, "pause", "web", "--wait=false"); r.err != nil {
		t.Fatal(r.err)
	}
	if got := getRollout(ctx, t, ns, "web").ResourceVersion; got != rv {
		t.Errorf("a second pause wrote the Rollout (resourceVersion %s → %s)", rv, got)
	}
	r := kubectlRamp(ctx, t, ns, "resume", "web", "--wait=false")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.errOut != "" {
		t.Errorf("unexpected warning: %s", r.errOut)
	}
	u, err := rollouts(t, ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantAnnotations(t, u, map[string]string{"team": "payments"}, rampv1.AnnotationPaused)
	if u.GetAnnotations()[rampv1.AnnotationPromote] == "" {
		t.Error("resume removed the promote request")
	}
	if owned := ownedBy(u, FieldManager, metav1.ManagedFieldsOperationApply); contains(owned, rampv1.AnnotationPaused) || !contains(owned, rampv1.AnnotationPromote) {
		t.Errorf("kubectl-ramp owns %v after resume", owned)
	}
	if ownedBy(u, FieldManager, metav1.ManagedFieldsOperationUpdate) != nil {
		t.Error("resume fell back to a merge patch although kubectl-ramp alone owned the annotation")
	}

	// Nothing to resume now.
	if r := kubectlRamp(ctx, t, ns, "resume", "web"); r.err != nil || !strings.Contains(r.out, "nothing to resume") {
		t.Errorf("second resume: %v, %q", r.err, r.out)
	}
}

// When another manager also set ramp.dev/paused (kubectl annotate), releasing ramp-plugin's
// ownership leaves it in place: resume falls back to a merge patch and names that manager.
func TestResumeRemovesAnAnnotationOthersAlsoSet(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	patch := []byte(`{"metadata":{"annotations":{"ramp.dev/paused":"true"}}}`)
	if _, err := rollouts(t, ns).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-annotate"}); err != nil {
		t.Fatal(err)
	}
	if r := kubectlRamp(ctx, t, ns, "pause", "web", "--wait=false"); r.err != nil {
		t.Fatal(r.err)
	}
	u, _ := rollouts(t, ns).Get(ctx, "web", metav1.GetOptions{})
	if owners := annotationOwners(u.GetManagedFields(), rampv1.AnnotationPaused); !contains(owners, "kubectl-annotate (Update)") {
		t.Fatalf("after pause, the other owners of ramp.dev/paused are %v (expected shared ownership)", owners)
	}
	r := kubectlRamp(ctx, t, ns, "resume", "web", "--wait=false")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.errOut, "kubectl-annotate") {
		t.Errorf("resume did not name the other manager: %q", r.errOut)
	}
	u, _ = rollouts(t, ns).Get(ctx, "web", metav1.GetOptions{})
	wantAnnotations(t, u, nil, rampv1.AnnotationPaused)
}

func TestPromoteWaitsForTheAcknowledgement(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	ack := fakeController(ctx, t, ns, "web", rampv1.AnnotationPromote, func(st *rampv1.RolloutStatus) {
		st.CurrentStep, st.Stage, st.Message = 3, "ScalingCanary", "step 3/3: waiting for the canary to have 1 ready replicas; 25% to canary meanwhile"
	})
	r := kubectlRamp(ctx, t, ns, "promote", "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || strings.TrimSpace(r.out) != "promoted: step 2/3 → 3/3" {
		t.Errorf("promote: exit %d, %q", r.code, r.out)
	}

	// promote --full from the last step.
	ack = fakeController(ctx, t, ns, "web", rampv1.AnnotationPromoteFull, func(st *rampv1.RolloutStatus) {
		st.Phase, st.Stage, st.Message = rampv1.PhasePromoting, "RoutingToCanary", "promoting revision bbbb2222"
	})
	r = kubectlRamp(ctx, t, ns, "promote", "web", "--full", "--timeout=10s")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || !strings.HasPrefix(r.out, "promoted fully: step 3/3 → promotion") {
		t.Errorf("promote --full: exit %d, %q", r.code, r.out)
	}
}

func TestAbortAndRetryWaitForTheAcknowledgement(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	ack := fakeController(ctx, t, ns, "web", rampv1.AnnotationAbort, func(st *rampv1.RolloutStatus) {
		st.Phase, st.CanaryWeight, st.Message = rampv1.PhaseRollingBack, 0, "aborted by kubectl ramp abort"
	})
	r := kubectlRamp(ctx, t, ns, "abort", "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || !strings.HasPrefix(r.out, "abort acknowledged: rolling back") {
		t.Errorf("abort: exit %d, %q", r.code, r.out)
	}

	setStatus(ctx, t, ns, "web", func(st *rampv1.RolloutStatus) { st.Phase = rampv1.PhaseFailed })
	ack = fakeController(ctx, t, ns, "web", rampv1.AnnotationRetry, func(st *rampv1.RolloutStatus) {
		st.Phase, st.CurrentStep, st.Stage = rampv1.PhaseProgressing, 1, "ScalingCanary"
	})
	r = kubectlRamp(ctx, t, ns, "retry", "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || strings.TrimSpace(r.out) != "retry acknowledged: restarting revision bbbb2222 at step 1/3" {
		t.Errorf("retry: exit %d, %q", r.code, r.out)
	}
}

// With no rollout in progress the controller acknowledges promote and abort, does nothing and
// records a RequestIgnored event; the plugin says so with exit code 3.
func TestPromoteWithoutARolloutIsIgnored(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", func(st *rampv1.RolloutStatus) {
		st.Phase, st.StableRevision, st.Message = rampv1.PhaseIdle, "aaaa1111", "managing Deployment \"web\" at revision aaaa1111"
	})
	for _, verb := range []string{"promote", "abort"} {
		annotation := map[string]string{"promote": rampv1.AnnotationPromote, "abort": rampv1.AnnotationAbort}[verb]
		ack := fakeController(ctx, t, ns, "web", annotation, func(*rampv1.RolloutStatus) {})
		recorded := make(chan struct{})
		go func() {
			defer close(recorded)
			// The controller's event, recorded after the status (events.k8s.io/v1).
			if err := <-ack; err != nil {
				t.Error(err)
				return
			}
			ro := getRollout(ctx, t, ns, "web")
			// This request's event, then a newer one about someone else's request.
			for _, note := range []string{
				"no rollout in progress: nothing to promote or abort [" + annotation + "=" + ro.Annotations[annotation] + "]",
				"nothing to retry: the target runs the stable revision [" + rampv1.AnnotationRetry + "=someone-else]",
			} {
				ev := &eventsv1.Event{
					ObjectMeta:          metav1.ObjectMeta{GenerateName: "web-", Namespace: ns},
					EventTime:           metav1.NowMicro(),
					ReportingController: "ramp", ReportingInstance: "ramp-test", Action: "Reconcile",
					Reason: "RequestIgnored", Type: corev1.EventTypeWarning,
					Note:      note,
					Regarding: corev1.ObjectReference{Kind: "Rollout", APIVersion: rampv1.GroupVersion.String(), Namespace: ns, Name: "web", UID: ro.UID},
				}
				if _, err := env.Clientset.EventsV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
		r := kubectlRamp(ctx, t, ns, verb, "web")
		<-recorded
		if r.code != ExitIgnored || r.err.Error() != verb+" ignored by the controller: no rollout in progress: nothing to promote or abort" {
			t.Errorf("%s: exit %d, %v", verb, r.code, r.err)
		}
	}
}

// Without a controller the request stays recorded and the plugin says it was not
// acknowledged, with exit code 2.
func TestRequestNotAcknowledgedInTime(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	start := time.Now()
	r := kubectlRamp(ctx, t, ns, "promote", "web", "--timeout=400ms")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s with --timeout=400ms", took)
	}
	if r.code != ExitNotAcknowledged || !strings.Contains(r.err.Error(), "promote request recorded on rollout "+ns+"/web") ||
		!strings.Contains(r.err.Error(), "did not acknowledge it within 400ms") {
		t.Errorf("exit %d, %v", r.code, r.err)
	}
	tok := getRollout(ctx, t, ns, "web").Annotations[rampv1.AnnotationPromote]
	if tok == "" || !strings.Contains(r.err.Error(), tok) {
		t.Errorf("the message does not name the recorded token %q", tok)
	}

	// pause waits for the phase; without a controller it times out the same way.
	r = kubectlRamp(ctx, t, ns, "pause", "web", "--timeout=300ms")
	if r.code != ExitNotAcknowledged || !strings.Contains(r.err.Error(), "did not pause it within 300ms") {
		t.Errorf("pause: exit %d, %v", r.code, r.err)
	}
	// A paused rollout keeps promote requests pending: the plugin says so at once.
	r = kubectlRamp(ctx, t, ns, "promote", "web")
	if r.code != ExitNotAcknowledged || !strings.Contains(r.err.Error(), "paused by kubectl ramp pause") {
		t.Errorf("promote while paused: exit %d, %v", r.code, r.err)
	}
	if !strings.Contains(r.errOut, "replaced the earlier promote request "+tok) {
		t.Errorf("no note about the replaced request: %q", r.errOut)
	}
	// A missing rollout is an error before anything is written.
	if r := kubectlRamp(ctx, t, ns, "promote", "nope"); r.code != 1 || !strings.Contains(r.err.Error(), `rollout "nope" not found`) {
		t.Errorf("missing rollout: exit %d, %v", r.code, r.err)
	}
}

func TestPauseAndResumeWaitForThePhase(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	ack := fakeController(ctx, t, ns, "web", rampv1.AnnotationPaused, func(st *rampv1.RolloutStatus) {
		st.Phase, st.Message = rampv1.PhasePaused, "paused by kubectl ramp pause at step 2/3, 50% to canary"
	})
	r := kubectlRamp(ctx, t, ns, "pause", "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || strings.TrimSpace(r.out) != "paused at step 2/3 (stable 50%, canary 50%)" {
		t.Errorf("pause: exit %d, %q", r.code, r.out)
	}
	if r := kubectlRamp(ctx, t, ns, "pause", "web"); r.code != 0 || !strings.HasPrefix(r.out, "already paused") {
		t.Errorf("second pause: exit %d, %q", r.code, r.out)
	}

	ack = fakeController(ctx, t, ns, "web", rampv1.AnnotationPaused, func(st *rampv1.RolloutStatus) {
		st.Phase, st.Message = rampv1.PhaseProgressing, "step 2/3: 50% to canary; waiting for kubectl ramp promote"
	})
	r = kubectlRamp(ctx, t, ns, "resume", "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || strings.TrimSpace(r.out) != "resumed at step 2/3: 50% to canary; waiting for kubectl ramp promote" {
		t.Errorf("resume: exit %d, %q", r.code, r.out)
	}
}

// status reads the Rollout and its events from both event APIs (the API server serves one
// store through both, so each event shows once); list shows every rollout.
func TestStatusAndList(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	fluxApply(ctx, t, ns, "api")
	setStatus(ctx, t, ns, "web", midRollout)
	ro := getRollout(ctx, t, ns, "web")

	core := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "web-", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Rollout", APIVersion: rampv1.GroupVersion.String(), Namespace: ns, Name: "web", UID: ro.UID},
		Reason:         "StepStarted", Message: "step 2/3: 50% to canary", Type: corev1.EventTypeNormal,
		FirstTimestamp: metav1.NewTime(time.Now().Add(-time.Minute)), LastTimestamp: metav1.NewTime(time.Now().Add(-time.Minute)), Count: 1,
		Source: corev1.EventSource{Component: "ramp"},
	}
	if _, err := env.Clientset.CoreV1().Events(ns).Create(ctx, core, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	newer := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns},
		EventTime:  metav1.NowMicro(), ReportingController: "ramp", ReportingInstance: "ramp-test", Action: "Reconcile",
		Reason: "PromoteRequested", Type: corev1.EventTypeNormal, Note: "kubectl ramp promote: step 1/3 done",
		Regarding: corev1.ObjectReference{Kind: "Rollout", APIVersion: rampv1.GroupVersion.String(), Namespace: ns, Name: "web", UID: ro.UID},
	}
	if _, err := env.Clientset.EventsV1().Events(ns).Create(ctx, newer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An event about the other Rollout must not show.
	other := core.DeepCopy()
	other.InvolvedObject.Name, other.Reason = "api", "Adopted"
	if _, err := env.Clientset.CoreV1().Events(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := kubectlRamp(ctx, t, ns, "status", "web")
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, s := range []string{"Rollout:   " + ns + "/web", "Phase:     Progressing", "Traffic:   stable 50%, canary 50%",
		"▶  2/3      50%   pause until promoted  ← Holding", "StepStarted", "PromoteRequested"} {
		if !strings.Contains(r.out, s) {
			t.Errorf("status lacks %q", s)
		}
	}
	if strings.Count(r.out, "StepStarted") != 1 || strings.Count(r.out, "PromoteRequested") != 1 || strings.Contains(r.out, "Adopted") {
		t.Errorf("events not merged once each, or another rollout's shown:\n%s", r.out)
	}
	if strings.Index(r.out, "StepStarted") > strings.Index(r.out, "PromoteRequested") {
		t.Error("events are not newest last")
	}
	if strings.Contains(r.out, "\x1b[") {
		t.Error("colour written to a non-terminal")
	}
	if r := kubectlRamp(ctx, t, ns, "status", "web", "--color=always"); !strings.Contains(r.out, "\x1b[33mProgressing") {
		t.Errorf("--color=always is not coloured:\n%s", r.out)
	}
	if r := kubectlRamp(ctx, t, ns, "status", "nope"); r.code != 1 || !strings.Contains(r.err.Error(), "not found") {
		t.Errorf("status of a missing rollout: %d %v", r.code, r.err)
	}

	r = kubectlRamp(ctx, t, ns, "list")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.err != nil || len(lines) != 3 || !hasRow(lines[0], "NAME", "PHASE", "WEIGHT", "STEP", "AGE") ||
		!hasRow(lines[1], "api", "-", "0%", "-") || !hasRow(lines[2], "web", "Progressing", "50%", "2/3") {
		t.Errorf("list:\n%s", r.out)
	}
	r = kubectlRamp(ctx, t, ns, "list", "-A")
	if r.err != nil || !strings.HasPrefix(r.out, "NAMESPACE ") || !hasRow(r.out, ns, "web", "Progressing", "50%", "2/3") {
		t.Errorf("list -A:\n%s", r.out)
	}
	empty := env.Namespace(t)
	if r := kubectlRamp(ctx, t, empty, "list"); r.err != nil || r.out != "" || !strings.Contains(r.errOut, "No rollouts found") {
		t.Errorf("empty list: %q %q", r.out, r.errOut)
	}
}

func TestStatusWatchRedrawsOnChange(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	wctx, cancel := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- runInto(wctx, t, &out, &errOut, ns, "status", "web", "--watch") }()

	waitOut := func(what string, cond func(string) bool) {
		t.Helper()
		if err := testenv.WaitFor(ctx, 15*time.Second, func(context.Context) (bool, error) { return cond(out.String()), nil }); err != nil {
			cancel()
			t.Fatalf("waiting for %s: %v\n%s", what, err, out.String())
		}
	}
	waitOut("the first frame", func(s string) bool { return strings.Contains(s, "Events:") })
	setStatus(ctx, t, ns, "web", func(st *rampv1.RolloutStatus) {
		st.CurrentStep, st.CanaryWeight, st.Message = 3, 100, "step 3/3: 100% to canary"
	})
	waitOut("the second frame", func(s string) bool { return strings.Contains(s, "step 3/3: 100% to canary") })
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatalf("watch ended with %v", r.err)
	}
	if n := strings.Count(r.out, frameSeparator); n < 1 {
		t.Errorf("frames not separated by %q:\n%s", frameSeparator, r.out)
	}
	if strings.Contains(r.out, "\x1b[") {
		t.Error("ANSI (colour or screen clearing) written to a non-terminal")
	}
	last := r.out[strings.LastIndex(r.out, frameSeparator):]
	if !strings.Contains(last, "Traffic:   stable 0%, canary 100%") {
		t.Errorf("last frame:\n%s", last)
	}
}

// The API server behaviours the plugin relies on.
func TestAPIServerBehaviour(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	live := fluxApply(ctx, t, ns, "web")

	t.Run("an apply carrying a stale resourceVersion conflicts", func(t *testing.T) {
		stale := live.GetResourceVersion()
		setStatus(ctx, t, ns, "web", midRollout) // the controller writes in between
		body := fmt.Sprintf(`{"apiVersion":"ramp.dev/v1alpha1","kind":"Rollout","metadata":{"name":"web","namespace":%q,"resourceVersion":%q,"annotations":{"ramp.dev/promote":"x"}}}`, ns, stale)
		_, err := rollouts(t, ns).Patch(ctx, "web", types.ApplyPatchType, []byte(body), metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
		if !apierrors.IsConflict(err) {
			t.Fatalf("apply with a stale resourceVersion: %v, want a conflict", err)
		}
	})

	t.Run("both event APIs serve the same events", func(t *testing.T) {
		ro := getRollout(ctx, t, ns, "web")
		ev := &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns},
			EventTime:  metav1.NowMicro(), ReportingController: "ramp", ReportingInstance: "ramp-test", Action: "Reconcile",
			Reason: "StepStarted", Type: corev1.EventTypeNormal, Note: "step 1/3: 10% to canary",
			Regarding: corev1.ObjectReference{Kind: "Rollout", APIVersion: rampv1.GroupVersion.String(), Namespace: ns, Name: "web", UID: ro.UID},
		}
		if _, err := env.Clientset.EventsV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		core, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Rollout,involvedObject.name=web"})
		if err != nil {
			t.Fatal(err)
		}
		newer, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "regarding.kind=Rollout,regarding.name=web"})
		if err != nil {
			t.Fatalf("events.k8s.io field selector: %v", err)
		}
		if len(core.Items) != 1 || len(newer.Items) != 1 || core.Items[0].UID != newer.Items[0].UID {
			t.Fatalf("core/v1 lists %d, events.k8s.io/v1 %d events", len(core.Items), len(newer.Items))
		}
		cl := &clients{kube: env.Clientset}
		merged, err := cl.eventsFor(ctx, ro)
		if err != nil || len(merged) != 1 || merged[0].Message != "step 1/3: 10% to canary" {
			t.Errorf("merged: %v %+v", err, merged)
		}
	})
}

// A request racing another write (another kubectl ramp, the controller's status) is retried
// on a fresh read, and keeps the other request.
func TestConcurrentRequestsKeepEachOther(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	calls := 0
	testHookBeforeApply = func() {
		calls++
		if calls == 1 {
			// Another kubectl ramp pauses the rollout between our read and our apply.
			if r := kubectlRamp(ctx, t, ns, "pause", "web", "--wait=false"); r.err != nil {
				t.Error(r.err)
			}
		}
	}
	r := kubectlRamp(ctx, t, ns, "promote", "web", "--wait=false")
	testHookBeforeApply = nil
	if r.err != nil {
		t.Fatal(r.err)
	}
	// 1: promote's first attempt (conflicts); 2: pause's apply; 3: promote's retry.
	if calls != 3 {
		t.Errorf("apply attempts = %d, want 3 (a conflict and a retry)", calls)
	}
	ro := getRollout(ctx, t, ns, "web")
	if ro.Annotations[rampv1.AnnotationPaused] != "true" || ro.Annotations[rampv1.AnnotationPromote] == "" {
		t.Errorf("annotations after the race: %v", ro.Annotations)
	}
}

func TestVersionPrintsTheBuild(t *testing.T) {
	var out, errOut syncBuffer
	cmd := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs([]string{"version"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), version.Get().String(); got != want {
		t.Errorf("kubectl ramp version printed %q, want %q", got, want)
	}
}
