package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// A rollout outside its promotion window holds before the 100% step, then completes once the
// (injected) clock enters the window.
func TestPromotionWindowHoldsThenCompletes(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")

	// The controller's "now" sits 5 s before a daily window opens (cron is minute-grained).
	opens := time.Now().UTC().Add(36 * time.Hour).Truncate(time.Minute)
	clock.shift(t, opens.Add(-5*time.Second).Sub(time.Now()))

	ro := canaryRollout(ns)
	ro.Spec.FaultInjection = nil
	ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 100}}
	ro.Spec.PromotionWindows = []rampv1.PromotionWindow{{
		Schedule: fmt.Sprintf("%d %d * * *", opens.Minute(), opens.Hour()),
		Duration: metav1.Duration{Duration: time.Hour},
	}}
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseWaitingForWindow)
	if ro.Status.CanaryWeight != 10 || !strings.Contains(ro.Status.Message, opens.Format(time.RFC3339)) {
		t.Fatalf("must hold at 10%% and name the opening %s: weight %d, %q", opens.Format(time.RFC3339), ro.Status.CanaryWeight, ro.Status.Message)
	}
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if now := clock.Now(); now.Before(opens) {
		t.Fatalf("promoted at %s, before the window opened at %s", now, opens)
	}
	if got := fmt.Sprint(tl.Weights(ro.Name)); got != "[0 10 100 0]" {
		t.Errorf("weights %s, want [0 10 100 0]", got)
	}
	waitEvent(t, ro, "WaitingForWindow")
}
