package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Analysis rounds run off the reconcile workers: with as many Rollouts as there are reconcile
// workers waiting on a Prometheus that never answers, another Rollout still walks its steps
// (each needing a passing round) and is promoted in its usual time. Run on the reconcile
// workers, the hanging rounds would hold every one of them and nothing else would move.
func TestHangingAnalysisStallsNoOtherRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	hung := make([]*rampv1.Rollout, reconcileWorkers)
	targets := make([]*appsv1.Deployment, reconcileWorkers)
	for i := range hung {
		hns := env.Namespace(t)
		targets[i] = app(t, hns, "podinfo:1")
		hung[i] = canaryRollout(hns)
		must(t, env.Client.Create(ctx, hung[i]))
		verdicts.set(hung[i], verdictHang)
	}
	_, endedBefore := verdicts.hangs()
	for i := range hung {
		waitPhase(t, hung[i], rampv1.PhaseIdle)
		setImage(t, targets[i], "podinfo:2")
	}
	waitFor(t, fmt.Sprintf("%d analysis rounds hanging", reconcileWorkers), func(context.Context) (bool, error) {
		now, _ := verdicts.hangs()
		return now >= reconcileWorkers, nil
	})

	start := time.Now()
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	t.Logf("promoted through 3 analysed steps in %s beside %d hanging rounds", time.Since(start).Round(time.Millisecond), reconcileWorkers)

	if now, ended := verdicts.hangs(); now < reconcileWorkers || ended != endedBefore {
		t.Errorf("the hanging rounds did not hang throughout: %d hanging, %d ended", now, ended-endedBefore)
	}
	for _, h := range hung {
		waitRollout(t, h, "hung Rollout still waiting at step 1", func(h *rampv1.Rollout) bool {
			return h.Status.Phase == rampv1.PhaseProgressing && h.Status.CurrentStep == 1
		})
		if h.Status.LastAnalysisTime != nil {
			t.Errorf("%s/%s recorded a round although its rounds hang: %+v", h.Namespace, h.Name, h.Status.LastAnalysis)
		}
	}
}
