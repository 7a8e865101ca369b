package controllers

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Analysis rounds keep their interval while every reconcile worker is busy: the round runner
// starts a Rollout's next round one interval after the recorded one began, on its own timer.
// Here each worker is held in a pass of another Rollout (its live read of a Secret held)
// whenever a round falls due; before, a round started only in a pass that found it due, so
// none started until a worker was free.
func TestRoundsKeepTheirIntervalWhileWorkersAreBusy(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	// Step 1 holds until promoted: a round every interval, for as long as the test runs. The
	// interval leaves the test time to occupy every worker between two rounds.
	ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 5, Pause: &rampv1.Pause{}}, {SetWeight: 100}}
	interval := 3 * time.Second
	ro.Spec.Analysis.Interval = &metav1.Duration{Duration: interval}
	calls := verdicts.watch(ro)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	// One Rollout per reconcile worker whose every pass reads Secret "hold" live (its Slack
	// notifications name it, and ramp checks the Secret's label): while that read is held, so
	// is the worker.
	bns := env.Namespace(t)
	blockers := make([]*rampv1.Rollout, reconcileWorkers)
	for i := range blockers {
		b := canaryRollout(bns)
		b.Name = fmt.Sprintf("busy-%d", i)
		b.Spec.TargetRef.Name = b.Name
		b.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "hold"}}}
		must(t, env.Client.Create(ctx, b))
		blockers[i] = b
	}
	occupy := func(round int) (since time.Time) {
		t.Helper()
		h := heldReads.hold(t, "/namespaces/"+bns+"/secrets/hold")
		for _, b := range blockers {
			p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{"test.ramp.dev/poke":"%d"}}}`, round)))
			must(t, env.Client.Patch(ctx, b, p))
		}
		h.waitHeld(t, reconcileWorkers)
		return clock.Now()
	}

	setImage(t, target, "podinfo:2")
	waitRollout(t, ro, "step 1's first round recorded", func(ro *rampv1.Rollout) bool {
		return ro.Status.CurrentStep == 1 && ro.Status.LastAnalysisTime != nil
	})
	for round := 1; round <= 3; round++ {
		busy := occupy(round)
		// No pass of ro can run now: its status is the last one written.
		must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
		last := ro.Status.LastAnalysisTime.Time
		due := last.Add(interval)
		if !busy.Before(due) {
			t.Fatalf("round %d: the workers were occupied only at %s, after the round was due (%s); the machine is too slow for this test's interval",
				round, busy.Format(time.StampMicro), due.Format(time.StampMicro))
		}
		// The round after last: the calls before it are of earlier rounds (the one that began
		// at last included).
		var at time.Time
		for at.Before(last.Add(interval / 2)) {
			select {
			case at = <-calls:
			case <-time.After(5 * interval):
				t.Fatalf("round %d: no round started while every reconcile worker was busy (last round %s, due %s)",
					round, last.Format(time.StampMicro), due.Format(time.StampMicro))
			}
		}
		if late := at.Sub(due); late < 0 || late > time.Second {
			t.Errorf("round %d started %s after the previous one began, want %s … %s", round, at.Sub(last), interval, interval+time.Second)
		}
		heldReads.release()

		// Freed, a pass records it: its start, so the next round is due an interval later.
		waitRollout(t, ro, fmt.Sprintf("round %d recorded", round), func(ro *rampv1.Rollout) bool {
			return ro.Status.LastAnalysisTime.After(last)
		})
		if got := ro.Status.LastAnalysisTime.Time; got.Before(due) || got.After(at) {
			t.Errorf("round %d recorded as of %s, want its start: between its due time %s and its call %s",
				round, got.Format(time.StampMicro), due.Format(time.StampMicro), at.Format(time.StampMicro))
		}
		if ro.Status.CurrentStep != 1 || ro.Status.Phase != rampv1.PhaseProgressing {
			t.Fatalf("round %d: the rollout left step 1: %s at step %d", round, ro.Status.Phase, ro.Status.CurrentStep)
		}
	}
}

// heldReads holds the reconciler's live reads (its APIReader) of chosen paths until released:
// a pass making one keeps its reconcile worker busy meanwhile.
var heldReads = &readHolds{}

type readHolds struct {
	mu  sync.Mutex
	cur *readHold
}

// readHold is one hold: the requests it holds and the signal that ends it.
type readHold struct {
	suffix  string
	arrived chan struct{}
	freed   chan struct{}
	once    sync.Once
}

// hold holds the reconciler's live reads of paths ending in suffix until release (or the end
// of the test).
func (h *readHolds) hold(t *testing.T, suffix string) *readHold {
	t.Helper()
	rh := &readHold{suffix: suffix, arrived: make(chan struct{}, 100), freed: make(chan struct{})}
	h.mu.Lock()
	h.cur = rh
	h.mu.Unlock()
	t.Cleanup(h.release)
	return rh
}

// release lets the held reads go, and holds no more.
func (h *readHolds) release() {
	h.mu.Lock()
	rh := h.cur
	h.cur = nil
	h.mu.Unlock()
	if rh != nil {
		rh.once.Do(func() { close(rh.freed) })
	}
}

// waitHeld waits until n reads are held: n passes are blocked on their workers.
func (rh *readHold) waitHeld(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-rh.arrived:
		case <-time.After(waitLong):
			t.Fatalf("%d of %d reads held after %s", i, n, waitLong)
		}
	}
}

func (h *readHolds) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		h.mu.Lock()
		rh := h.cur
		h.mu.Unlock()
		if rh != nil && strings.HasSuffix(req.URL.Path, rh.suffix) {
			rh.arrived <- struct{}{}
			select {
			case <-rh.freed:
			case <-req.Context().Done():
			}
		}
		return rt.RoundTrip(req)
	})
}
