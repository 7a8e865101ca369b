package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// recreateTarget deletes the target and creates it again with the label tier=front added to
// its selector and pods, and image: what Flux's force: true does when Git changes an
// immutable field. The new Deployment is not paused. It returns the new Deployment.
func recreateTarget(t *testing.T, d *appsv1.Deployment, image string) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	must(t, env.Client.Delete(ctx, d, client.PropagationPolicy(metav1.DeletePropagationBackground)))
	waitFor(t, "the old target gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), &appsv1.Deployment{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	lbl := map[string]string{"app": "web", "tier": "front"}
	n := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace},
		Spec:       *d.Spec.DeepCopy(),
	}
	n.Spec.Paused = false
	n.Spec.Selector = &metav1.LabelSelector{MatchLabels: lbl}
	n.Spec.Template.Labels = lbl
	n.Spec.Template.Spec.Containers[0].Image = image
	must(t, env.Client.Create(ctx, n))
	return n
}

// A target recreated mid-rollout (Flux's force after a selector change): within seconds the
// routes send all traffic to the new Deployment's pods, the Rollout says its revision went
// live without a canary and why (Ready reason ReleasedWithoutCanary, an event), with no
// ApplyFailed and no progress deadline; the next commit recreates the canary with the new
// selector and rolls out through it. The routes never carry weight to a subset without
// ready pods while the other has some (beyond the moment ramp takes to react).
func TestTargetRecreatedMidRolloutReleasesWithoutCanary(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5},
		rampv1.CanaryStep{SetWeight: 25, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 100})
	tl := env.RecordTimeline(t, ns, testenv.Rollouts, testenv.Deployments, testenv.VirtualServices, testenv.DestinationRules, testenv.ReplicaSets)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	oldUID := target.UID

	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 25, true)

	start := time.Now()
	target = recreateTarget(t, target, "podinfo:3")
	rev3 := revision.Of(&target.Spec.Template)

	// Within seconds, watched: Ready (the live routes send everything to the new pods' subset)
	// with the reason that says what happened.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last *rampv1.Rollout
	err := tl.Wait(wctx, func() bool {
		ros := tl.Rollouts(ro.Name)
		if len(ros) == 0 {
			return false
		}
		last = ros[len(ros)-1]
		c := cond(last, meta.ReadyCondition)
		return last.Status.Phase == rampv1.PhaseIdle && c != nil && c.Status == metav1.ConditionTrue && c.Reason == plan.ReasonReleasedWithoutCanary
	})
	if err != nil {
		t.Fatalf("not Ready with reason %s within 20s of the recreate: %v (last status %+v)", plan.ReasonReleasedWithoutCanary, err, last)
	}
	t.Logf("recreated target → Ready (%s) in %s", plan.ReasonReleasedWithoutCanary, time.Since(start).Round(time.Millisecond))
	st := last.Status
	if st.StableRevision != rev3 || st.CanaryRevision != "" || st.ReleasedWithoutCanary == nil || st.ReleasedWithoutCanary.Revision != rev3 {
		t.Errorf("status after the recreate: %+v", st)
	}
	if st.Target == nil || st.Target.UID != target.UID || st.Target.UID == oldUID || st.Target.Selector != "app=web,tier=front" {
		t.Errorf("status.target = %+v, want the new Deployment %s", st.Target, target.UID)
	}
	msg := cond(last, meta.ReadyCondition).Message
	for _, want := range []string{"went live without a canary", `selector changed from "app=web" to "app=web,tier=front"`, "ended unpromoted"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ready message %q does not say %q", msg, want)
		}
	}
	newHash := ""
	var rsList appsv1.ReplicaSetList
	must(t, env.Client.List(ctx, &rsList, client.InNamespace(ns), client.MatchingLabels{"tier": "front"}))
	for _, rs := range rsList.Items {
		if metav1.IsControlledBy(&rs, target) {
			newHash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
	}
	if newHash == "" || st.StablePodTemplateHash != newHash {
		t.Errorf("stable subset %q, the new Deployment's ReplicaSet %q", st.StablePodTemplateHash, newHash)
	}
	assertStableSubset(t, ns, ro.Name, newHash)
	waitRouting(t, ns, ro.Name, 0, false)
	assertTargetPaused(t, target, true)
	assertCanaryReplicas(t, ns, 0)
	waitEvent(t, ro, "ReleasedWithoutCanary")
	for _, r := range eventReasons(t, ro) {
		if r == plan.ReasonApplyFailed || r == "ProgressDeadlineExceeded" {
			t.Errorf("event %s (events %v)", r, eventReasons(t, ro))
		}
	}

	// The next commit: the canary is recreated with the new selector, the rollout runs.
	oldCanary := canaryDeployment(t, ns)
	setImage(t, target, "podinfo:4")
	waitRouting(t, ns, ro.Name, 25, true)
	c := canaryDeployment(t, ns)
	if c.UID == oldCanary.UID || c.Spec.Selector.MatchLabels["tier"] != "front" {
		t.Errorf("canary %s with selector %v, want a new one with tier=front (was %s)", c.UID, c.Spec.Selector.MatchLabels, oldCanary.UID)
	}
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("after-recreate"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.ReleasedWithoutCanary != nil {
		t.Errorf("releasedWithoutCanary kept after a rollout: %+v", ro.Status.ReleasedWithoutCanary)
	}
	if r := cond(ro, meta.ReadyCondition); r != nil && r.Reason == plan.ReasonReleasedWithoutCanary {
		t.Errorf("Ready still says %s after a canary rollout", r.Reason)
	}

	must(t, tl.Sync(ctx))
	tl.CheckRoutesFollowReadyPods(t, ro.Name, 2*time.Second)
}
