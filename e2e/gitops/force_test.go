package gitops

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/ssa"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// setImageIn changes the image of the Deployment manifest u.
func setImageIn(t testing.TB, u *unstructured.Unstructured, image string) {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["image"] = image
	must(t, unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers"))
}

// actionOf is what a ChangeSet says Flux did to the object of kind.
func actionOf(cs *ssa.ChangeSet, kind string) ssa.Action {
	for _, e := range cs.Entries {
		if e.ObjMetadata.GroupKind.Kind == kind {
			return e.Action
		}
	}
	return ssa.UnknownAction
}

// lastWeight is the canary weight of the last version of the VirtualService the timeline
// recorded (-1 before there is one).
func lastWeight(tl *testenv.Timeline, name string) int32 {
	w := tl.Weights(name)
	if len(w) == 0 {
		return -1
	}
	return w[len(w)-1]
}

// A commit that changes the target's selector, applied by Flux's engine with force: true:
// the engine deletes the Deployment and creates it again (its ChangeSet says created), not
// paused, so Kubernetes starts all its pods on the new revision at once. Idle or mid-rollout,
// within seconds ramp routes all traffic to the new pods and says, on Ready and in an event,
// that the revision went live without a canary and why; nothing fails or waits for the
// progress deadline; Flux's next applies find no drift; the next commit rolls out through a
// canary recreated with the new selector. Throughout, no route carries weight to a subset
// without ready pods while the other has some (beyond ramp's reaction time).
func TestFluxForceRecreatesTarget(t *testing.T) {
	t.Parallel()
	for _, midRollout := range []bool{false, true} {
		t.Run(fmt.Sprintf("mid-rollout %t", midRollout), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := env.Namespace(t)
			git := readGit(t, ns, func(u *unstructured.Unstructured) {
				if u.GetKind() == "Rollout" {
					must(t, unstructured.SetNestedField(u.Object, "1s", "spec", "analysis", "interval"))
				}
			})
			_, err := git.fluxApplyWith(ctx, true)
			must(t, err)
			ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
			settledIn(t, ro, rampv1.PhaseIdle)
			tl := env.RecordTimeline(t, ns, testenv.Rollouts, testenv.Deployments, testenv.VirtualServices, testenv.DestinationRules, testenv.ReplicaSets)
			wait := func(what string, d time.Duration, cond func() bool) {
				t.Helper()
				wctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				if err := tl.Wait(wctx, cond); err != nil {
					t.Fatalf("waiting %s for %s: %v", d, what, err)
				}
			}

			if midRollout {
				git.commit("Deployment", func(u *unstructured.Unstructured) { setImageIn(t, u, newImage) })
				_, err := git.fluxApplyWith(ctx, true)
				must(t, err)
				wait("25% to the canary", waitLong, func() bool { return lastWeight(tl, "podinfo") == 25 })
			}

			// The commit: a label added to the selector (and the pods), and a new image.
			git.commit("Deployment", func(u *unstructured.Unstructured) {
				must(t, unstructured.SetNestedField(u.Object, "front", "spec", "selector", "matchLabels", "tier"))
				must(t, unstructured.SetNestedField(u.Object, "front", "spec", "template", "metadata", "labels", "tier"))
				setImageIn(t, u, "ghcr.io/stefanprodan/podinfo:6.7.2")
			})
			start := time.Now()
			cs, err := git.fluxApplyWith(ctx, true)
			must(t, err)
			if a := actionOf(cs, "Deployment"); a != ssa.CreatedAction {
				t.Fatalf("Flux's ChangeSet says the Deployment was %s, want created (deleted and created again): %s", a, cs)
			}

			var last *rampv1.Rollout
			wait("Ready, reason "+plan.ReasonReleasedWithoutCanary, 20*time.Second, func() bool {
				ros := tl.Rollouts("podinfo")
				if len(ros) == 0 {
					return false
				}
				last = ros[len(ros)-1]
				c := apimeta.FindStatusCondition(last.Status.Conditions, meta.ReadyCondition)
				return last.Status.Phase == rampv1.PhaseIdle && c != nil && c.Status == metav1.ConditionTrue && c.Reason == plan.ReasonReleasedWithoutCanary
			})
			t.Logf("force-recreated target → Ready (%s) in %s", plan.ReasonReleasedWithoutCanary, time.Since(start).Round(time.Millisecond))
			msg := apimeta.FindStatusCondition(last.Status.Conditions, meta.ReadyCondition).Message
			wants := []string{"went live without a canary", `selector changed from "app=podinfo" to "app=podinfo,tier=front"`}
			if midRollout {
				wants = append(wants, "ended unpromoted")
			}
			for _, w := range wants {
				if !strings.Contains(msg, w) {
					t.Errorf("Ready message %q does not say %q", msg, w)
				}
			}
			if r := last.Status.ReleasedWithoutCanary; r == nil || r.Revision != last.Status.StableRevision {
				t.Errorf("status.releasedWithoutCanary %+v, stable revision %s", r, last.Status.StableRevision)
			}
			if got := lastWeight(tl, "podinfo"); got != 0 {
				t.Errorf("VirtualService routes %d%% to the canary, want all traffic on the new pods", got)
			}
			reasons := eventReasons(t, ns, "podinfo")
			if !slices.Contains(reasons, "ReleasedWithoutCanary") {
				t.Errorf("no ReleasedWithoutCanary event: %v", reasons)
			}
			for _, r := range reasons {
				if r == plan.ReasonApplyFailed || r == "ProgressDeadlineExceeded" || r == "RolledBack" {
					t.Errorf("event %s (events %v)", r, reasons)
				}
			}

			// Flux goes on applying the same commit: nothing to do.
			cs, err = git.fluxApplyWith(ctx, true)
			must(t, err)
			for _, e := range cs.Entries {
				if e.Action != ssa.UnchangedAction {
					t.Errorf("Flux reapplying the same commit: %s %s", e.Subject, e.Action)
				}
			}

			// The next commit rolls out through a canary with the new selector.
			git.commit("Deployment", func(u *unstructured.Unstructured) { setImageIn(t, u, "ghcr.io/stefanprodan/podinfo:6.7.3") })
			_, err = git.fluxApplyWith(ctx, true)
			must(t, err)
			wait("5% to the new canary", waitLong, func() bool { return lastWeight(tl, "podinfo") == 5 })
			c, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo-canary")
			must(t, err)
			if tier, _, _ := unstructured.NestedString(c.Object, "spec", "selector", "matchLabels", "tier"); tier != "front" {
				t.Errorf("canary selector without tier=front: %v", c.Object["spec"].(map[string]any)["selector"])
			}
			if _, err := tl.Routings("podinfo"); err != nil {
				t.Error(err)
			}
			must(t, tl.Sync(ctx))
			tl.CheckRoutesFollowReadyPods(t, "podinfo", 2*time.Second)
		})
	}
}
