package gitops

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plugin"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// What Flux (kstatus) and Argo CD (config/argocd/health.lua) must say of a Rollout in each
// phase, once ramp has observed its spec.
var healthOfPhase = map[string]struct {
	kstatus status.Status
	argo    string
}{
	rampv1.PhaseInitializing:     {status.InProgressStatus, progressing},
	rampv1.PhaseIdle:             {status.CurrentStatus, healthy},
	rampv1.PhaseProgressing:      {status.InProgressStatus, progressing},
	rampv1.PhasePaused:           {status.InProgressStatus, suspended},
	rampv1.PhaseWaitingForWindow: {status.InProgressStatus, suspended},
	rampv1.PhasePromoting:        {status.InProgressStatus, progressing},
	rampv1.PhaseSucceeded:        {status.CurrentStatus, healthy},
	rampv1.PhaseRollingBack:      {status.InProgressStatus, progressing},
	// A failed rollout waits for a new commit (or kubectl ramp retry): Stalled, which kstatus
	// reports as Failed, so Flux's health check fails at once instead of timing out.
	rampv1.PhaseFailed: {status.FailedStatus, degraded},
}

func kstatusOf(t testing.TB, u *unstructured.Unstructured) *status.Result {
	t.Helper()
	res, err := status.Compute(u)
	must(t, err)
	return res
}

// A Rollout walked through every phase on the local cluster: at each, what Flux's health check
// (kstatus) and Argo CD's (the Lua scripts) say of it and of its target Deployment; then every
// version the API server held during the walk, replayed.
func TestHealthInEveryPhase(t *testing.T) {
	t.Parallel()
	rolloutLua := repoFile(t, "config/argocd/health.lua")
	deploymentLua := repoFile(t, "config/argocd/deployment-health.lua")

	t.Run("walk", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		ns := env.Namespace(t)
		// As examples/flux/apps/podinfo/deployment.yaml: no progress deadline (see below).
		target := app(t, ns, "podinfo:1", 3, func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = ptr.To[int32](noProgressDeadline) })
		ro := canaryRollout(ns,
			rampv1.CanaryStep{SetWeight: 5, Pause: &rampv1.Pause{}}, // until promoted
			rampv1.CanaryStep{SetWeight: 100})
		// A window that opens in twelve hours: closed for the whole test.
		opens := time.Now().UTC().Add(12 * time.Hour)
		ro.Spec.PromotionWindows = []rampv1.PromotionWindow{{
			Schedule: fmt.Sprintf("%d %d * * *", opens.Minute(), opens.Hour()),
			Duration: metav1.Duration{Duration: time.Minute},
		}}
		tl := env.RecordTimeline(t, ns, testenv.Rollouts)
		must(t, env.Client.Create(ctx, ro))

		checkRollout := func(phase, msgHas string) {
			t.Helper()
			settledIn(t, ro, phase)
			u, err := getUnstructured(ctx, rampv1.GroupVersion.String(), "Rollout", ns, ro.Name)
			must(t, err)
			if p, _, _ := unstructured.NestedString(u.Object, "status", "phase"); p != phase {
				t.Fatalf("phase moved on to %s before it could be checked", p)
			}
			res, h, want := kstatusOf(t, u), mustHealth(t, rolloutLua, u), healthOfPhase[phase]
			t.Logf("Rollout %-16s kstatus %-10s %q | Argo CD %s", phase, res.Status, res.Message, h)
			if res.Status != want.kstatus {
				t.Errorf("%s: kstatus %s (%s), want %s", phase, res.Status, res.Message, want.kstatus)
			}
			if h.status != want.argo || !strings.Contains(h.message, msgHas) {
				t.Errorf("%s: Argo CD health %s, want %s with a message containing %q", phase, h, want.argo, msgHas)
			}
		}
		checkTarget := func(when string, wantK status.Status, wantArgo string) {
			t.Helper()
			var u *unstructured.Unstructured
			waitFor(t, "the Deployment controller to observe the target", func(ctx context.Context) (bool, error) {
				var err error
				u, err = getUnstructured(ctx, "apps/v1", "Deployment", ns, target.Name)
				og, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
				return err == nil && og == u.GetGeneration(), err
			})
			res, h := kstatusOf(t, u), mustHealth(t, deploymentLua, u)
			paused, _, _ := unstructured.NestedBool(u.Object, "spec", "paused")
			t.Logf("Deployment (%s, paused=%t): kstatus %-10s %q | Argo CD with deployment-health.lua %s", when, paused, res.Status, res.Message, h)
			if res.Status != wantK || h.status != wantArgo {
				t.Errorf("target Deployment %s: kstatus %s, Argo CD %s; want %s and %s", when, res.Status, h, wantK, wantArgo)
			}
		}
		waitPaused := func(d *appsv1.Deployment, paused bool) {
			t.Helper()
			waitFor(t, fmt.Sprintf("target paused=%t", paused), func(ctx context.Context) (bool, error) {
				err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d)
				return err == nil && d.Spec.Paused == paused, err
			})
		}

		checkRollout(rampv1.PhaseIdle, "managing Deployment")
		waitPaused(target, true)
		checkTarget("idle", status.CurrentStatus, healthy)

		// A commit: ramp holds the target on its old pods and runs the canary.
		setImage(t, target, "web", "podinfo:2")
		waitRollout(t, ro, "step 1 holding", func(ro *rampv1.Rollout) bool {
			return ro.Status.Phase == rampv1.PhaseProgressing && ro.Status.Stage == "Holding" && ro.Status.CurrentStep == 1
		})
		checkRollout(rampv1.PhaseProgressing, "step 1/2")
		checkTarget("held on the old revision", status.InProgressStatus, suspended)

		annotateAs(t, plugin.FieldManager, ro, rampv1.AnnotationPaused, ptr.To("true"))
		checkRollout(rampv1.PhasePaused, "kubectl ramp pause")
		annotateAs(t, plugin.FieldManager, ro, rampv1.AnnotationPaused, nil)
		checkRollout(rampv1.PhaseProgressing, "step 1/2")

		annotateAs(t, plugin.FieldManager, ro, rampv1.AnnotationPromote, ptr.To("p1"))
		checkRollout(rampv1.PhaseWaitingForWindow, "outside promotion windows")

		// Git drops the window: until ramp observes the new generation, both say in progress.
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(rampv1.GroupVersion.String())
		u.SetKind("Rollout")
		u.SetNamespace(ns)
		u.SetName(ro.Name)
		must(t, env.Client.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"promotionWindows":null}}`))))
		if og, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); og >= u.GetGeneration() {
			t.Fatalf("the patched Rollout has observedGeneration %d, generation %d", og, u.GetGeneration())
		}
		res, h := kstatusOf(t, u), mustHealth(t, rolloutLua, u)
		t.Logf("Rollout (spec not observed) kstatus %-10s %q | Argo CD %s", res.Status, res.Message, h)
		if res.Status != status.InProgressStatus || h != (health{progressing, "waiting for ramp to observe the spec"}) {
			t.Errorf("new spec not yet observed: kstatus %s, Argo CD %s", res.Status, h)
		}

		checkRollout(rampv1.PhaseSucceeded, "promoted")
		waitRolledOut(t, target, 3)
		waitPaused(target, true)
		checkTarget("promoted", status.CurrentStatus, healthy)

		// A bad commit: analysis fails, ramp rolls back and waits for the next commit.
		verdicts.set(ro, rampv1.VerdictFailed)
		setImage(t, target, "web", "podinfo:3")
		checkRollout(rampv1.PhaseFailed, "analysis failed")
		checkTarget("held on the old revision after a rollback", status.InProgressStatus, suspended)
		res = kstatusOf(t, mustGetRollout(t, ns, ro.Name))
		if !strings.Contains(res.Message, "error-rate 8.3 > 1") {
			t.Errorf("kstatus message %q does not say why the rollout failed", res.Message)
		}

		// Git reverts the commit: nothing to roll out, Current again.
		verdicts.set(ro, rampv1.VerdictPassed)
		setImage(t, target, "web", "podinfo:2")
		checkRollout(rampv1.PhaseIdle, "reverted")
		checkTarget("after the revert", status.CurrentStatus, healthy)

		// Every version the API server held, replayed. ramp writes the conditions of a decision
		// just before the rest of its status, so within each stretch of one phase the version
		// to judge is the first one whose Ready reason is the phase's (the conditions of the
		// next phase may land while the phase field still shows this one).
		seen := map[string]bool{}
		var runs []string
		var all []*unstructured.Unstructured
		for _, v := range tl.Of(testenv.Rollouts, ro.Name) {
			if !v.Deleted {
				all = append(all, v.Object)
			}
		}
		for i := 0; i < len(all); {
			phase, _, _ := unstructured.NestedString(all[i].Object, "status", "phase")
			j := i
			for j < len(all) {
				if p, _, _ := unstructured.NestedString(all[j].Object, "status", "phase"); p != phase {
					break
				}
				j++
			}
			run := all[i:j]
			i = j
			if phase == "" {
				continue
			}
			runs = append(runs, phase)
			var judged *unstructured.Unstructured
			for _, v := range run {
				ro := &rampv1.Rollout{}
				must(t, runtimeFromUnstructured(v, ro))
				if ro.Status.ObservedGeneration == ro.Generation && readyReason(ro) == phaseReason(phase) &&
					(!steadyPhase(phase) || readyStatus(ro) == metav1.ConditionTrue) {
					judged = v
					break
				}
			}
			if judged == nil {
				t.Errorf("no version of the %s stretch (%d versions) has its conditions", phase, len(run))
				continue
			}
			seen[phase] = true
			want := healthOfPhase[phase]
			if res, h := kstatusOf(t, judged), mustHealth(t, rolloutLua, judged); res.Status != want.kstatus || h.status != want.argo {
				t.Errorf("%s (rv %s): kstatus %s, Argo CD %s; want %s and %s", phase, judged.GetResourceVersion(), res.Status, h, want.kstatus, want.argo)
			}
		}
		t.Logf("phases replayed: %v", runs)
		for _, p := range []string{rampv1.PhaseIdle, rampv1.PhaseProgressing, rampv1.PhasePaused, rampv1.PhaseWaitingForWindow,
			rampv1.PhasePromoting, rampv1.PhaseSucceeded, rampv1.PhaseRollingBack, rampv1.PhaseFailed} {
			if !seen[p] {
				t.Errorf("phase %s never seen (phases %v)", p, runs)
			}
		}
	})

	// Why the walk's Deployment (and the Flux example's) turns the progress deadline off: the
	// Deployment controller gives a paused Deployment the condition Progressing=Unknown
	// (DeploymentPaused), and kstatus, which wants Progressing=True (NewReplicaSetAvailable)
	// whenever a deadline is set, then reports InProgress for good. ramp keeps its target paused
	// between rollouts, so Flux's wait would never see it Current.
	t.Run("a paused Deployment with a progress deadline is never Current", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		ns := env.Namespace(t)
		target := app(t, ns, "podinfo:1", 2)
		if res := kstatusOf(t, toUnstructured(t, target)); res.Status != status.CurrentStatus {
			t.Fatalf("before ramp adopts it: kstatus %s %q", res.Status, res.Message)
		}
		ro := canaryRollout(ns)
		must(t, env.Client.Create(ctx, ro))
		settledIn(t, ro, rampv1.PhaseIdle)
		var u *unstructured.Unstructured
		waitFor(t, "a paused, observed target", func(ctx context.Context) (bool, error) {
			var err error
			u, err = getUnstructured(ctx, "apps/v1", "Deployment", ns, target.Name)
			og, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
			paused, _, _ := unstructured.NestedBool(u.Object, "spec", "paused")
			return err == nil && paused && og == u.GetGeneration(), err
		})
		res := kstatusOf(t, u)
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		t.Logf("paused target, default progressDeadlineSeconds: kstatus %s %q; conditions %v", res.Status, res.Message, conds)
		if res.Status != status.InProgressStatus {
			t.Errorf("kstatus %s: the workaround documented in docs/gitops.md is no longer needed", res.Status)
		}
	})

	stalled := func(t *testing.T, ro *rampv1.Rollout, reason, msgHas string) {
		t.Helper()
		must(t, env.Client.Create(context.Background(), ro))
		waitRollout(t, ro, "Stalled="+reason, func(ro *rampv1.Rollout) bool {
			for _, c := range ro.Status.Conditions {
				if c.Type == "Stalled" && c.Status == metav1.ConditionTrue && c.Reason == reason {
					return ro.Status.ObservedGeneration == ro.Generation
				}
			}
			return false
		})
		u := mustGetRollout(t, ro.Namespace, ro.Name)
		res, h := kstatusOf(t, u), mustHealth(t, rolloutLua, u)
		t.Logf("Rollout stalled (%s): kstatus %s %q | Argo CD %s", reason, res.Status, res.Message, h)
		if res.Status != status.FailedStatus || !strings.Contains(res.Message, msgHas) {
			t.Errorf("kstatus %s %q, want Failed naming %q", res.Status, res.Message, msgHas)
		}
		if h.status != degraded || !strings.Contains(h.message, msgHas) {
			t.Errorf("Argo CD health %s, want Degraded naming %q", h, msgHas)
		}
	}
	t.Run("stalled on an invalid schedule", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		app(t, ns, "podinfo:1", 1)
		ro := canaryRollout(ns)
		ro.Spec.PromotionWindows = []rampv1.PromotionWindow{{Schedule: "0 25 * * *", Duration: metav1.Duration{Duration: time.Hour}}}
		stalled(t, ro, "InvalidSpec", "spec.promotionWindows[0].schedule")
	})
	t.Run("stalled on a missing target", func(t *testing.T) {
		t.Parallel()
		stalled(t, canaryRollout(env.Namespace(t)), "TargetNotFound", `Deployment "web" not found`)
	})
}

func mustGetRollout(t testing.TB, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := getUnstructured(context.Background(), rampv1.GroupVersion.String(), "Rollout", ns, name)
	must(t, err)
	return u
}
