package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/ssa"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plugin"
	"github.com/ramp-dev/ramp/internal/testenv"
)

const newImage = "ghcr.io/stefanprodan/podinfo:6.7.1"

// The Flux example's manifests, server-side applied as kustomize-controller every 200 ms for a
// whole canary rollout (a commit of a new image tag, then 5% → 25% → 100% and promotion, with a
// kubectl ramp pause at 25%): the rollout never restarts or steps back, no apply fails, ramp
// keeps spec.paused and its requests, and at the end Git's view shows no diff.
func TestFluxReapplyStormDuringRollout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	git := readGit(t, ns, func(u *unstructured.Unstructured) {
		switch u.GetKind() {
		case "Deployment":
			// An HorizontalPodAutoscaler owns the replica count: Git leaves it out.
			unstructured.RemoveNestedField(u.Object, "spec", "replicas")
		case "Rollout":
			// Faster than the example: analysis every second, the 25% step held 4s, not 5m.
			must(t, unstructured.SetNestedField(u.Object, "1s", "spec", "analysis", "interval"))
			steps, _, _ := unstructured.NestedSlice(u.Object, "spec", "strategy", "canary", "steps")
			for _, s := range steps {
				if m := s.(map[string]any); m["pause"] != nil {
					m["pause"] = map[string]any{"duration": "4s"}
				}
			}
			must(t, unstructured.SetNestedSlice(u.Object, steps, "spec", "strategy", "canary", "steps"))
		}
	})
	must(t, git.fluxApply(ctx))

	// The autoscaler sizes the Deployment through its scale subresource.
	target := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
	must(t, env.Client.SubResource("scale").Update(ctx, target, client.WithSubResourceBody(scale), client.FieldOwner("kube-controller-manager")))
	waitRolledOut(t, target, 3)
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
	settledIn(t, ro, rampv1.PhaseIdle)
	waitFor(t, "target paused", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(target), target)
		return err == nil && target.Spec.Paused, err
	})
	generation, stableHash := ro.Generation, ro.Status.StablePodTemplateHash
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices, testenv.Rollouts, testenv.DestinationRules, testenv.ReplicaSets)

	// The storm.
	var (
		mu       sync.Mutex
		applies  int
		problems []string
		// drift lists the objects Flux's drift detection reported configured although Git
		// had not changed since its previous apply, with the apply's start and end.
		drift    []driftReport
		lastHead = git.head()
		// requests are the spans of kubectl ramp's writes to the Rollout.
		requests [][2]time.Duration
	)
	stormStart := time.Now()
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	stormCtx, stopStorm := context.WithCancel(ctx)
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stormCtx.Done():
				return
			case <-tick.C:
			}
			head := git.head()
			applyStart := time.Since(stormStart)
			cs, err := git.fluxApplyWith(stormCtx, false)
			if stormCtx.Err() != nil {
				return
			}
			if err != nil {
				kind := "error"
				if apierrors.IsConflict(err) {
					kind = "conflict"
				}
				problem("apply %s: %v", kind, err)
				continue
			}
			mu.Lock()
			applies++
			for _, e := range cs.Entries {
				if e.Action == ssa.ConfiguredAction && head == lastHead {
					drift = append(drift, driftReport{subject: e.Subject, start: applyStart, end: time.Since(stormStart)})
				}
			}
			lastHead = head
			mu.Unlock()
			// ramp alone owns the target's spec.paused, whatever Flux applied.
			d, err := getUnstructured(stormCtx, "apps/v1", "Deployment", ns, "podinfo")
			if err != nil {
				if stormCtx.Err() == nil {
					problem("reading the target: %v", err)
				}
				continue
			}
			if o := owners(t, d, "spec", "paused"); !slices.Equal(o, []string{"ramp/Apply"}) {
				problem("after apply %d: spec.paused owned by %v", applies, o)
			}
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopStorm()
			<-stormDone
		}
	}
	defer stop()

	// A commit: a new image tag. Flux delivers it at its next apply.
	start := time.Now()
	git.commit("Deployment", func(u *unstructured.Unstructured) {
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		containers[0].(map[string]any)["image"] = newImage
		must(t, unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers"))
	})

	// At 25% someone runs kubectl ramp pause: the request annotation survives the storm.
	waitFor(t, "25% to the canary", func(ctx context.Context) (bool, error) {
		vs, err := getUnstructured(ctx, istio.APIVersion, istio.KindVirtualService, ns, "podinfo")
		if err != nil {
			return false, client.IgnoreNotFound(err)
		}
		r, err := istio.ObservedRouting(vs)
		return err == nil && r.CanaryWeight == 25, nil
	})
	request := func(annotations map[string]string) {
		from := time.Since(stormStart)
		pluginApply(t, ns, "podinfo", annotations)
		mu.Lock()
		requests = append(requests, [2]time.Duration{from, time.Since(stormStart)})
		mu.Unlock()
	}
	request(map[string]string{rampv1.AnnotationPaused: "true"})
	settledIn(t, ro, rampv1.PhasePaused)
	held := time.Now()
	for time.Since(held) < 1500*time.Millisecond {
		u := mustGetRollout(t, ns, "podinfo")
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		if u.GetAnnotations()[rampv1.AnnotationPaused] != "true" || phase != rampv1.PhasePaused {
			t.Fatalf("kubectl ramp pause did not hold under Flux's applies: annotation %q, phase %s, annotation owners %v",
				u.GetAnnotations()[rampv1.AnnotationPaused], phase, owners(t, u, "metadata", "annotations", rampv1.AnnotationPaused))
		}
		if o := owners(t, u, "metadata", "annotations", rampv1.AnnotationPaused); !slices.Equal(o, []string{plugin.FieldManager + "/Apply"}) {
			t.Errorf("ramp.dev/paused owned by %v, want only %s", o, plugin.FieldManager)
		}
		time.Sleep(100 * time.Millisecond)
	}
	request(nil) // kubectl ramp resume
	waitRollout(t, ro, "resumed", func(ro *rampv1.Rollout) bool {
		_, still := ro.Annotations[rampv1.AnnotationPaused]
		return !still && ro.Status.Phase != rampv1.PhasePaused
	})

	settledIn(t, ro, rampv1.PhaseSucceeded)
	t.Logf("commit → Succeeded in %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second) // Flux goes on applying over the finished rollout
	stop()

	mu.Lock()
	t.Logf("%d applies of the Git manifests (every 200 ms) during the rollout", applies)
	// Drift detection: with Git unchanged, Flux's dry-run finds the live objects as Git has
	// them: ramp's spec.paused and its requests are not drift. The exceptions are benign: a
	// dry-run that lands in the instant ramp un-pauses or re-pauses the target during
	// promotion sees the Deployment change under it (docs/gitops.md), and one whose apply
	// overlaps kubectl ramp's write of a request sees the Rollout change under it.
	t.Logf("configured with Git unchanged: %v", drift)
	deploymentDrift := 0
	for _, d := range drift {
		switch {
		case strings.HasPrefix(d.subject, "Deployment/"):
			deploymentDrift++
		case strings.HasPrefix(d.subject, "Rollout/") && slices.ContainsFunc(requests, d.overlaps):
		default:
			t.Errorf("Flux reported %s configured although Git did not change", d)
		}
	}
	if deploymentDrift > 2 {
		t.Errorf("Flux reported the Deployment configured %d times although Git did not change: %v", deploymentDrift, drift)
	}
	if applies < 20 {
		t.Errorf("only %d applies: the storm did not run", applies)
	}
	for _, p := range problems {
		t.Error(p)
	}
	mu.Unlock()

	// The rollout ran once, forward only, and its routes followed the ready pods.
	if _, err := tl.Routings("podinfo"); err != nil {
		t.Error(err)
	}
	must(t, tl.Sync(ctx))
	tl.CheckRoutesFollowReadyPods(t, "podinfo", 2*time.Second)
	if got := fmt.Sprint(tl.Weights("podinfo")); got != "[0 5 25 100 0]" {
		t.Errorf("VirtualService canary weights %s, want [0 5 25 100 0]", got)
	}
	var steps []string
	maxStep, prev := int64(0), ""
	for _, v := range tl.Rollouts("podinfo") {
		phase, step := v.Status.Phase, int64(v.Status.CurrentStep)
		if s := fmt.Sprintf("%s/%d", phase, step); s != prev {
			steps, prev = append(steps, s), s
		}
		if phase == rampv1.PhaseSucceeded {
			break
		}
		if step < maxStep {
			t.Errorf("currentStep went back from %d to %d (rv %s, phase %s)", maxStep, step, v.ResourceVersion, phase)
		}
		maxStep = max(maxStep, step)
		if v.Generation != generation {
			t.Errorf("the Rollout's generation moved from %d to %d: Flux's applies changed its spec", generation, v.Generation)
		}
	}
	t.Logf("phase/step: %v", steps)
	// The time paused did not count towards the 25% step's own 4s pause: the pass that
	// resumed moved the stage's start forward by it, and the step went on holding.
	var pausedVersion, resumedVersion *rampv1.Rollout
	for _, v := range tl.Rollouts("podinfo") {
		if v.Status.Phase == rampv1.PhasePaused && pausedVersion == nil {
			pausedVersion = v
		} else if pausedVersion != nil && v.Status.Phase != rampv1.PhasePaused {
			resumedVersion = v
			break
		}
	}
	if pausedVersion == nil || resumedVersion == nil {
		t.Errorf("no pause and resume in the timeline")
	} else if r, p := resumedVersion.Status, pausedVersion.Status; r.Stage != "Holding" || r.CurrentStep != 2 ||
		r.StageStartedAt == nil || p.StageStartedAt == nil || r.StageStartedAt.Sub(p.StageStartedAt.Time) < 1500*time.Millisecond {
		t.Errorf("after resume: %s/%s step %d, stage started %v (%v before the pause): the time paused counted towards the step's pause",
			r.Phase, r.Stage, r.CurrentStep, r.StageStartedAt, p.StageStartedAt)
	}
	reasons := eventReasons(t, ns, "podinfo")
	started := 0
	for _, r := range reasons {
		switch r {
		case "RolloutStarted":
			started++
		case "RolloutRestarted", "ApplyFailed", "RolledBack":
			t.Errorf("event %s (events %v)", r, reasons)
		}
	}
	if started != 1 {
		t.Errorf("%d RolloutStarted events, want 1 (events %v)", started, reasons)
	}

	// The target: promoted, paused by ramp, sized by the autoscaler.
	d, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo")
	must(t, err)
	must(t, runtimeFromUnstructured(d, target))
	if !target.Spec.Paused || ptr.Deref(target.Spec.Replicas, 0) != 3 || target.Spec.Template.Spec.Containers[0].Image != newImage {
		t.Errorf("target: paused %t, replicas %d, image %s; want paused, 3 (the autoscaler's), %s",
			target.Spec.Paused, ptr.Deref(target.Spec.Replicas, 0), target.Spec.Template.Spec.Containers[0].Image, newImage)
	}
	if o := owners(t, d, "spec", "paused"); !slices.Equal(o, []string{"ramp/Apply"}) {
		t.Errorf("spec.paused owned by %v, want only ramp", o)
	}
	if o := owners(t, d, "spec", "replicas"); slices.Contains(o, fluxManager+"/Apply") {
		t.Errorf("spec.replicas owned by %v: Flux took it from the autoscaler", o)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	if ro.Status.StablePodTemplateHash == stableHash || ro.Status.CanaryRevision != "" {
		t.Errorf("status after promotion: %+v", ro.Status)
	}

	// Argo CD's view, or Flux's drift detection: every field Git sets has Git's value.
	for _, m := range git.manifests() {
		live, err := getUnstructured(ctx, m.GetAPIVersion(), m.GetKind(), ns, m.GetName())
		must(t, err)
		if diff := gitDiff(m.Object, live.Object, m.GetKind()); len(diff) > 0 {
			t.Errorf("%s %s differs from Git:\n  %s", m.GetKind(), m.GetName(), strings.Join(diff, "\n  "))
		}
	}
}

// pluginApply writes ramp.dev annotations as kubectl ramp does: a server-side apply, as its
// field manager, of exactly the annotations it wants (those it leaves out are released).
func pluginApply(t testing.TB, ns, name string, annotations map[string]string) {
	t.Helper()
	meta := map[string]any{"name": name, "namespace": ns}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	body, err := json.Marshal(map[string]any{"apiVersion": rampv1.GroupVersion.String(), "kind": "Rollout", "metadata": meta})
	must(t, err)
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(rampv1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(ns)
	u.SetName(name)
	must(t, env.Client.Patch(context.Background(), u, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(plugin.FieldManager), client.ForceOwnership))
}

// driftReport is an object Flux's drift detection reported configured, and when the apply
// that reported it ran (since the storm began).
type driftReport struct {
	subject    string
	start, end time.Duration
}

func (d driftReport) String() string {
	return fmt.Sprintf("%s (apply %s–%s)", d.subject, d.start.Round(time.Millisecond), d.end.Round(time.Millisecond))
}

// overlaps reports whether the apply ran while a write of span [from, to] happened.
func (d driftReport) overlaps(span [2]time.Duration) bool {
	return d.start <= span[1] && span[0] <= d.end
}
