package controllers

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/fieldowners"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// pauseHooks run inside ramp's reconcile, right before it applies spec.paused to a Deployment
// the test named: a Git commit landed there falls in the window between ramp's observation of
// the Deployment and its write. The suite's reconciler writes through hookedClient.
var pauseHooks = &pauseHookSet{byTarget: map[types.NamespacedName]*pauseHook{}}

type pauseHookSet struct {
	mu       sync.Mutex
	byTarget map[types.NamespacedName]*pauseHook
}

// pauseHook runs before once, before ramp's nth apply of spec.paused: true (1 is the first),
// and records what the API server answered that apply.
type pauseHook struct {
	nth    int
	before func(ctx context.Context)

	applies int
	result  chan error // the answer to the hooked apply
}

// on registers h for the Deployment ns/name until the test ends.
func (s *pauseHookSet) on(t *testing.T, ns, name string, nth int, before func(ctx context.Context)) *pauseHook {
	h := &pauseHook{nth: nth, before: before, result: make(chan error, 1)}
	k := types.NamespacedName{Namespace: ns, Name: name}
	s.mu.Lock()
	s.byTarget[k] = h
	s.mu.Unlock()
	t.Cleanup(func() {
		s.mu.Lock()
		delete(s.byTarget, k)
		s.mu.Unlock()
	})
	return h
}

// due reports whether obj, applied with patch, is the hooked apply of a pause.
func (s *pauseHookSet) due(obj client.Object, patch client.Patch) *pauseHook {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || patch.Type() != types.ApplyPatchType || u.GetKind() != "Deployment" {
		return nil
	}
	if paused, found, _ := unstructured.NestedBool(u.Object, "spec", "paused"); !found || !paused {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.byTarget[client.ObjectKeyFromObject(u)]
	if h == nil {
		return nil
	}
	h.applies++
	if h.applies != h.nth {
		return nil
	}
	return h
}

// wait returns the API server's answer to the hooked apply.
func (h *pauseHook) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.result:
		return err
	case <-time.After(waitLong):
		t.Fatalf("ramp made no pause apply #%d", h.nth)
		return nil
	}
}

// hookedClient is the suite reconciler's client: the manager's, with pauseHooks run.
type hookedClient struct{ client.Client }

func (c hookedClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	h := pauseHooks.due(obj, patch)
	if h != nil {
		h.before(ctx)
	}
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if h != nil {
		h.result <- err
	}
	return err
}

// commit is a hook's Git commit: the image of d's container set to image. It runs on ramp's
// reconcile goroutine, so it reports a failure without stopping the test there.
func commit(t *testing.T, d *appsv1.Deployment, image string) func(ctx context.Context) {
	d = d.DeepCopy()
	return func(ctx context.Context) {
		p := client.RawPatch(types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"`+image+`"}]}}}}`))
		if err := env.Client.Patch(ctx, d, p); err != nil {
			t.Errorf("committing %s: %v", image, err)
		}
	}
}

// deploymentAt converts a recorded version of a Deployment.
func deploymentAt(t *testing.T, v testenv.Version) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, d))
	return d
}

// fullyRolledOut: every replica of d runs its template, ready and available, none left over.
func fullyRolledOut(d *appsv1.Deployment) bool {
	n := *d.Spec.Replicas
	st := d.Status
	return st.ObservedGeneration >= d.Generation-1 && st.UpdatedReplicas == n && st.ReadyReplicas == n && st.AvailableReplicas == n && st.Replicas == n
}

// A Git commit that lands between ramp's observation of a new target and its pause: the pause
// (conditional on the version observed) fails with a conflict and changes nothing, the
// Deployment rolls the new template out itself, and ramp does not claim it: no status says
// Idle with the old revision as stable, no rollout starts, and once the new revision has rolled
// out ramp pauses the Deployment there and adopts it, saying (status, Ready, event) that the
// revision went live without a canary. The next commit then rolls out through the canary.
func TestCommitBeforeAdoptionPauseGoesLiveWithoutCanary(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	rev1 := revision.Of(&target.Spec.Template)
	tl := env.RecordTimeline(t, ns, testenv.Rollouts, testenv.Deployments, testenv.VirtualServices)
	hook := pauseHooks.on(t, ns, target.Name, 1, commit(t, target, "podinfo:2"))
	ro := withSteps(canaryRollout(ns), rampv1.CanaryStep{SetWeight: 50}, rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))

	if err := hook.wait(t); !apierrors.IsConflict(err) {
		t.Errorf("ramp's pause after the commit: %v, want a conflict (the resourceVersion precondition)", err)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	rev2 := revision.Of(&target.Spec.Template)

	wctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	var last *rampv1.Rollout
	if err := tl.Wait(wctx, func() bool {
		ros := tl.Rollouts(ro.Name)
		if len(ros) == 0 {
			return false
		}
		last = ros[len(ros)-1]
		return last.Status.Phase == rampv1.PhaseIdle
	}); err != nil {
		t.Fatalf("not Idle: %v (last status %+v)", err, last)
	}
	st := last.Status
	if st.StableRevision != rev2 || st.CanaryRevision != "" || st.ReleasedWithoutCanary == nil || st.ReleasedWithoutCanary.Revision != rev2 {
		t.Errorf("adopted with status %+v, want stable %s, released without canary", st, rev2)
	}
	for _, want := range []string{"revision " + rev2 + " went live without a canary", "from revision " + rev1 + " to " + rev2 + " before ramp's pause took effect"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("message %q does not say %q", st.Message, want)
		}
	}
	waitRollout(t, ro, "Ready with reason "+plan.ReasonReleasedWithoutCanary, func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == plan.ReasonReleasedWithoutCanary
	})
	if e := waitEvent(t, ro, "ReleasedWithoutCanary"); !strings.Contains(e.Message, "revision "+rev2+" went live without a canary") {
		t.Errorf("event %q does not name revision %s", e.Message, rev2)
	}

	// What the watches saw: ramp never recorded r1 as adopted (Idle) nor started a rollout of
	// r2, and the pause took effect only on the Deployment fully rolled out at r2.
	for _, v := range tl.Rollouts(ro.Name) {
		if s := v.Status; (s.Phase == rampv1.PhaseIdle && s.StableRevision != rev2) || s.CanaryRevision != "" {
			t.Errorf("Rollout at resourceVersion %s: %s, stable %s, canary %q", v.ResourceVersion, s.Phase, s.StableRevision, s.CanaryRevision)
		}
	}
	pausedSeen := false
	for _, v := range tl.Of(testenv.Deployments, target.Name) {
		d := deploymentAt(t, v)
		if !d.Spec.Paused || pausedSeen {
			continue
		}
		pausedSeen = true
		if rev := revision.Of(&d.Spec.Template); rev != rev2 || !fullyRolledOut(d) {
			t.Errorf("first paused version of the target (resourceVersion %d): revision %s, status %+v; want %s fully rolled out", v.RV, rev, d.Status, rev2)
		}
	}
	if !pausedSeen {
		t.Errorf("the target was never seen paused")
	}
	if w := tl.Weights(ro.Name); len(w) != 1 || w[0] != 0 {
		t.Errorf("VirtualService weights %v before any rollout, want [0]", w)
	}

	// The next commit goes through the canary.
	setImage(t, target, "podinfo:3")
	waitRouting(t, ns, ro.Name, 50, true)
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.ReleasedWithoutCanary != nil {
		t.Errorf("releasedWithoutCanary kept after a canary rollout: %+v", ro.Status.ReleasedWithoutCanary)
	}
}

// A Git commit that lands between ramp's observation of the target rolled out at the promoted
// revision and its pause: the pause fails with a conflict, and as for a commit during the
// target's update the Rollout stalls (NewRevisionDuringPromotion) with all traffic on the
// canary and the target paused again, instead of routing traffic back to a Deployment rolling
// out an unanalysed revision. Once Git holds the promoted revision again, the promotion ends.
func TestCommitBeforePromotionRepauseKeepsTrafficOnCanary(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	tl := env.RecordTimeline(t, ns, testenv.Rollouts, testenv.Deployments, testenv.VirtualServices)
	ro := withSteps(canaryRollout(ns), rampv1.CanaryStep{SetWeight: 50}, rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	// Adopted, so the target is paused: ramp's next pause is the one after the target rolled
	// the promoted revision out.
	hook := pauseHooks.on(t, ns, target.Name, 1, commit(t, target, "podinfo:3"))
	setImage(t, target, "podinfo:2")
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	rev2 := revision.Of(&target.Spec.Template)

	if err := hook.wait(t); !apierrors.IsConflict(err) {
		t.Errorf("ramp's re-pause after the commit: %v, want a conflict (the resourceVersion precondition)", err)
	}
	waitRollout(t, ro, "stalled by the new revision", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.StalledCondition)
		return c != nil && c.Reason == "NewRevisionDuringPromotion"
	})
	assertTargetPaused(t, target, true)
	if ro.Status.Stage != plan.StageUpdatingStable || ro.Status.CanaryWeight != 100 || ro.Status.CanaryRevision != rev2 {
		t.Errorf("status while stalled: %+v", ro.Status)
	}
	if r, err := liveRouting(ctx, ns, ro.Name); err != nil || r.CanaryWeight != 100 {
		t.Errorf("routing while stalled: %+v, %v; want all traffic on the canary", r, err)
	}

	// Git goes back to the promoted revision: the target finishes rolling it out, the promotion ends.
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.StableRevision != rev2 {
		t.Errorf("promoted %s, want %s", ro.Status.StableRevision, rev2)
	}

	// Traffic went back to the target only once it was paused at r2: the VirtualService left
	// 100% canary once, at the end.
	if w := tl.Weights(ro.Name); !slices.Equal(w, []int32{0, 50, 100, 0}) {
		t.Errorf("VirtualService weights %v, want [0 50 100 0]: back to the target once, at the end", w)
	}
	// And no status routed back to the target while it held the unanalysed revision.
	h := onlyReplicaSetHash(t, ns)
	for _, v := range tl.Rollouts(ro.Name) {
		if s := v.Status; s.Stage == plan.StageRoutingToStable && s.StablePodTemplateHash != h {
			t.Errorf("routing to stable subset %s, the target's pods are %s", s.StablePodTemplateHash, h)
		}
	}
}

// A pause someone else makes in the same window (kubectl rollout pause, between ramp's
// observation and its own pause) is not taken for ramp's: ramp's pause fails on the changed
// version, the Rollout stalls naming who paused the target, and adopts it once that pause is
// lifted, then paused by ramp's own field manager.
func TestForeignPauseBeforeAdoptionIsNotRamps(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	rev1 := revision.Of(&target.Spec.Template)
	setPaused := func(ctx context.Context, paused bool) error {
		d := target.DeepCopy()
		p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":`+strconv.FormatBool(paused)+`}}`))
		return env.Client.Patch(ctx, d, p, client.FieldOwner("kubectl-rollout"))
	}
	hook := pauseHooks.on(t, ns, target.Name, 1, func(ctx context.Context) {
		if err := setPaused(ctx, true); err != nil {
			t.Errorf("kubectl rollout pause: %v", err)
		}
	})
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	if err := hook.wait(t); !apierrors.IsConflict(err) {
		t.Errorf("ramp's pause after the foreign one: %v, want a conflict", err)
	}
	c := waitStalled(t, ro, "TargetPaused")
	if want := "has spec.paused: true (set by kubectl-rollout)"; !strings.Contains(c.Message, want) {
		t.Errorf("Stalled message %q does not say %q", c.Message, want)
	}
	if ro.Status.Phase != rampv1.PhaseStalled || ro.Status.StablePodTemplateHash != "" {
		t.Errorf("status while the foreign pause holds: %+v", ro.Status)
	}

	// kubectl rollout resume: ramp pauses the Deployment itself and adopts it.
	must(t, setPaused(ctx, false))
	waitPhase(t, ro, rampv1.PhaseIdle)
	if ro.Status.StableRevision != rev1 || ro.Status.ReleasedWithoutCanary != nil {
		t.Errorf("adopted with %+v, want stable %s", ro.Status, rev1)
	}
	d := &appsv1.Deployment{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), d))
	if owners := fieldowners.Managers(fieldowners.Entries(d.ManagedFields, "spec", "paused")); !d.Spec.Paused || !slices.Equal(owners, []string{FieldManager}) {
		t.Errorf("target paused=%t, spec.paused owned by %v; want paused by %s alone", d.Spec.Paused, owners, FieldManager)
	}
}
