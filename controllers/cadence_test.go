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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// cadence is a Rollout holding step 1 (a round every interval, until promoted), its first
// round recorded, beside one Rollout per reconcile worker whose every pass reads Secret
// "hold" live (its Slack notifications name it, and ramp checks the Secret's label): while
// that read is held (heldReads), so is the worker.
type cadence struct {
	ro       *rampv1.Rollout
	calls    <-chan time.Time
	interval time.Duration
	bns      string
	blockers []*rampv1.Rollout
}

func newCadence(t *testing.T) *cadence {
	t.Helper()
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	c := &cadence{ro: canaryRollout(ns), interval: 3 * time.Second}
	// The interval leaves the test time to occupy every worker between two rounds.
	c.ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 5, Pause: &rampv1.Pause{}}, {SetWeight: 100}}
	c.ro.Spec.Analysis.Interval = &metav1.Duration{Duration: c.interval}
	c.calls = verdicts.watch(c.ro)
	must(t, env.Client.Create(ctx, c.ro))
	waitPhase(t, c.ro, rampv1.PhaseIdle)

	c.bns = env.Namespace(t)
	c.blockers = make([]*rampv1.Rollout, reconcileWorkers)
	for i := range c.blockers {
		b := canaryRollout(c.bns)
		b.Name = fmt.Sprintf("busy-%d", i)
		b.Spec.TargetRef.Name = b.Name
		b.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "hold"}}}
		must(t, env.Client.Create(ctx, b))
		c.blockers[i] = b
	}

	setImage(t, target, "podinfo:2")
	waitRollout(t, c.ro, "step 1's first round recorded", func(ro *rampv1.Rollout) bool {
		return ro.Status.CurrentStep == 1 && ro.Status.LastAnalysisTime != nil
	})
	return c
}

// occupy holds every reconcile worker in a pass of a blocker, then reads the Rollout's last
// round (no pass of it can run now, so its status is the last one written). The next round
// is due an interval after it; the workers must be busy before then.
func (c *cadence) occupy(t *testing.T, poke int) (last, due time.Time) {
	t.Helper()
	ctx := context.Background()
	h := heldReads.hold(t, "/namespaces/"+c.bns+"/secrets/hold")
	for _, b := range c.blockers {
		p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{"test.ramp.dev/poke":"%d"}}}`, poke)))
		must(t, env.Client.Patch(ctx, b, p))
	}
	h.waitHeld(t, reconcileWorkers)
	busy := clock.Now()
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(c.ro), c.ro))
	last = c.ro.Status.LastAnalysisTime.Time
	due = last.Add(c.interval)
	if !busy.Before(due) {
		t.Fatalf("the workers were busy only at %s, after the next round was due (%s); the machine is too slow for this test's interval",
			busy.Format(time.StampMicro), due.Format(time.StampMicro))
	}
	return last, due
}

// nextCall is when the analyzer was called for the round after last (the calls before it
// are of earlier rounds, the one that began at last included).
func (c *cadence) nextCall(t *testing.T, last time.Time) time.Time {
	t.Helper()
	var at time.Time
	for at.Before(last.Add(c.interval / 2)) {
		select {
		case at = <-c.calls:
		case <-time.After(5 * c.interval):
			t.Fatalf("no round started while every reconcile worker was busy (last round %s, next due %s)",
				last.Format(time.StampMicro), last.Add(c.interval).Format(time.StampMicro))
		}
	}
	return at
}

// Analysis rounds keep their interval while every reconcile worker is busy: the round runner
// starts a Rollout's next round one interval after the last one began, on its own timer, also
// when no pass has recorded the last one yet. Here each worker is held in a pass of another
// Rollout for two rounds at a time; before, a round started only in a pass that found it due,
// so none started until a worker was free.
func TestRoundsKeepTheirIntervalWhileWorkersAreBusy(t *testing.T) {
	c := newCadence(t)
	ro := c.ro
	for cycle := 1; cycle <= 2; cycle++ {
		last, due := c.occupy(t, cycle)
		first := c.nextCall(t, last)
		if late := first.Sub(due); late < 0 || late > time.Second {
			t.Errorf("cycle %d: a round started %s after the recorded one began, want %s … %s", cycle, first.Sub(last), c.interval, c.interval+time.Second)
		}
		// The next follows a round no pass has recorded (a call comes just after its round's
		// start, hence the 50ms).
		second := c.nextCall(t, first)
		if gap := second.Sub(first); gap < c.interval-50*time.Millisecond || gap > c.interval+time.Second {
			t.Errorf("cycle %d: the round after an unrecorded one started %s after it, want %s … %s", cycle, gap, c.interval, c.interval+time.Second)
		}
		heldReads.release()

		// Freed, passes record both, each as of its start: the second at its due time.
		waitRollout(t, ro, fmt.Sprintf("cycle %d: both rounds recorded", cycle), func(ro *rampv1.Rollout) bool {
			return ro.Status.LastAnalysisTime.After(first)
		})
		if got := ro.Status.LastAnalysisTime.Time; got.Before(first) || got.After(second) {
			t.Errorf("cycle %d: the second round recorded as of %s, want its start: after the first's call %s, by its own call %s", cycle,
				got.Format(time.StampMicro), first.Format(time.StampMicro), second.Format(time.StampMicro))
		}
		if ro.Status.CurrentStep != 1 || ro.Status.Phase != rampv1.PhaseProgressing {
			t.Fatalf("cycle %d: the rollout left step 1: %s at step %d", cycle, ro.Status.Phase, ro.Status.CurrentStep)
		}
	}
}

// A round the runner started on its timer for a Rollout paused meanwhile is dropped, never
// counted: here it fails (failureLimit 1, so counted it would roll back) while every worker is
// busy and the pause is already requested; the pass that then runs pauses the rollout.
func TestPreStartedRoundOfAPausedRolloutIsNotCounted(t *testing.T) {
	c := newCadence(t)
	ro := c.ro
	last, _ := c.occupy(t, 1)
	verdicts.set(ro, rampv1.VerdictFailed)
	t.Cleanup(func() { verdicts.set(ro, "") })
	failing := clock.Now()
	annotate(t, ro, rampv1.AnnotationPaused, ptr.To("true"))
	if at := c.nextCall(t, last); at.Before(failing) {
		t.Fatalf("the round started at %s, before its verdict was set to fail (%s); the machine is too slow for this test's interval",
			at.Format(time.StampMicro), failing.Format(time.StampMicro))
	}
	heldReads.release()

	waitPhase(t, ro, rampv1.PhasePaused)
	if ro.Status.FailedChecks != 0 || !ro.Status.LastAnalysisTime.Equal(&metav1.MicroTime{Time: last}) {
		t.Errorf("the pre-started round was counted: %d failed checks, last round %s (was %s)",
			ro.Status.FailedChecks, ro.Status.LastAnalysisTime.Format(time.StampMicro), last.Format(time.StampMicro))
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
