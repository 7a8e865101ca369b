package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plugin"
	"github.com/ramp-dev/ramp/internal/testenv"
)

func TestPluginFieldManagerIsKubectlRamps(t *testing.T) {
	if pluginFieldManager != plugin.FieldManager {
		t.Fatalf("pluginFieldManager %q, kubectl ramp writes as %q", pluginFieldManager, plugin.FieldManager)
	}
}

// A pause written with kubectl annotate is reported as such, not as kubectl ramp pause; the
// step's pause is served in full around it.
func TestPauseByAnnotationSaysWhoWroteIt(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5, Pause: pauseFor(3 * time.Second)},
		rampv1.CanaryStep{SetWeight: 100})
	tl := env.RecordTimeline(t, ns, testenv.Rollouts)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 5, true)

	// kubectl annotate, as field manager kubectl-annotate.
	p := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ro.Name}}
	must(t, env.Client.Patch(ctx, p, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"ramp.dev/paused":"true"}}}`)), client.FieldOwner("kubectl-annotate")))
	waitPhase(t, ro, rampv1.PhasePaused)
	if want := "paused by the annotation ramp.dev/paused (written by kubectl-annotate)"; !strings.Contains(ro.Status.Message, want) {
		t.Errorf("message %q does not say %q", ro.Status.Message, want)
	}
	if ro.Status.PausedAt == nil {
		t.Errorf("status.pausedAt not set while paused")
	}
	before := ro.Status.StageStartedAt.Time
	// Held longer than the step's 3s pause.
	time.Sleep(4 * time.Second)
	annotate(t, ro, rampv1.AnnotationPaused, nil)
	// The pass that resumes moves the stage's start forward by the time paused: the step
	// still holds the rest of its pause instead of ending at once.
	var first *rampv1.Rollout
	wctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if err := tl.Wait(wctx, func() bool {
		seenPaused := false
		for _, v := range tl.Rollouts(ro.Name) {
			if v.Status.Phase == rampv1.PhasePaused {
				seenPaused = true
			} else if seenPaused {
				first = v
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("waiting for the resume: %v", err)
	}
	st := first.Status
	if st.Stage != "Holding" || st.CurrentStep != 1 || st.PausedAt != nil || st.StageStartedAt == nil || st.StageStartedAt.Sub(before) < 4*time.Second {
		t.Errorf("after resume: %s/%s step %d, stage started %v (was %v), pausedAt %v: the time paused counted towards the step's pause",
			st.Phase, st.Stage, st.CurrentStep, st.StageStartedAt, before, st.PausedAt)
	}
	waitPhase(t, ro, rampv1.PhaseSucceeded)
}
