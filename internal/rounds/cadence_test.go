package rounds

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

const interval = 10 * time.Second

// analysed is rollout(name) with rounds every interval, its step (held until promoted) begun
// at the fake clock's start.
func analysed(name string) *rampv1.Rollout {
	ro := rollout(name)
	ro.Spec.Analysis = &rampv1.AnalysisSpec{Interval: &metav1.Duration{Duration: interval}}
	ro.Spec.Strategy.Canary = &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{{SetWeight: 5, Pause: &rampv1.Pause{}}, {SetWeight: 100}}}
	return ro
}

// record does what the pass that takes res does to the status: its start becomes the last
// round's time (plan.Decide), as the API server stores it.
func record(ro *rampv1.Rollout, res *plan.AnalysisResult) {
	t := metav1.NewMicroTime(res.Started)
	ro.Status.LastAnalysisTime = &t
}

// timed is a Runner of g's rounds on a fake clock set at t0, started, and its wake-ups.
func timed(t *testing.T, g *gate, t0 time.Time) (*clocktesting.FakeClock, *Runner, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	t.Helper()
	fc := clocktesting.NewFakeClock(t0)
	r := New(g.analyze, 4, time.Minute, WithClock(fc))
	return fc, r, start(t, r)
}

// due is when the plan says ro's next round is due, what the reconciler schedules.
func due(ro *rampv1.Rollout) time.Time { return plan.NextAnalysisAt(&ro.Spec, &ro.Status) }

// noRoundStarted fails t if a round started: the fake clock has not reached any timer, so no
// callback ran and nothing can be on its way.
func noRoundStarted(t *testing.T, g *gate, when string) {
	t.Helper()
	select {
	case name := <-g.started:
		t.Fatalf("%s: a round of %s started", when, name)
	default:
	}
}

// Once a pass has recorded a round, the runner starts the next one of the step at exactly the
// recorded start + the interval, on its own timer: no reconcile (no Take) in between.
func TestNextRoundStartsOnItsOwnTimer(t *testing.T) {
	g := newGate()
	g.verdicts["web"] = rampv1.VerdictPassed
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	fc, r, q := timed(t, g, t0)
	ro := analysed("web")

	// The step's first round, due one interval after it began: the pass that finds it due
	// starts it, and takes its result once woken.
	fc.SetTime(due(ro))
	r.Take(ro)
	recv(t, g.started, "the first round")
	nextWake(t, q)
	res, _ := r.Take(ro)
	if res == nil || !res.Started.Equal(t0.Add(interval)) {
		t.Fatalf("first result = %+v, want one started at %s", res, t0.Add(interval))
	}

	for i := 2; i <= 4; i++ {
		record(ro, res)
		want := res.Started.Add(interval)
		if got := due(ro); !got.Equal(want) {
			t.Fatalf("round %d: the plan says it is due at %s, want the last round's start + the interval, %s", i, got, want)
		}
		r.Schedule(ro, due(ro))
		fc.Step(interval - time.Nanosecond)
		noRoundStarted(t, g, "a nanosecond before it was due")
		fc.Step(time.Nanosecond)
		recv(t, g.started, "the round on its timer")
		if got := nextWake(t, q); got != "web" {
			t.Fatalf("woke %s", got)
		}
		if res, _ = r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed {
			t.Fatalf("round %d: Take = %+v, want the timer's round", i, res)
		}
		if !res.Started.Equal(want) {
			t.Errorf("round %d started at %s, want exactly %s", i, res.Started, want)
		}
	}
	if n := g.callsOf("web"); n != 4 {
		t.Errorf("%d rounds ran, want 4", n)
	}
}

// preStarted is a runner of g's rounds whose timer has started web's round (its first, due
// an interval after the step began), and web as it was when the round was armed.
func preStarted(t *testing.T, g *gate) (*clocktesting.FakeClock, *Runner, workqueue.TypedRateLimitingInterface[reconcile.Request], *rampv1.Rollout) {
	t.Helper()
	fc, r, q := timed(t, g, time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC))
	ro := analysed("web")
	r.Schedule(ro, due(ro))
	fc.SetTime(due(ro))
	recv(t, g.started, "the pre-started round")
	return fc, r, q, ro
}

// A round started on the timer for a Rollout that has since moved on is never handed to it:
// it is dropped (running, cancelled) and the Rollout gets a round of its own.
func TestPreStartedRoundOfAMovedOnRolloutIsDropped(t *testing.T) {
	for _, c := range []struct {
		name  string
		moved func(*rampv1.Rollout)
	}{
		{"next step", func(ro *rampv1.Rollout) {
			ro.Status.CurrentStep = 2
			ro.Status.StageStartedAt = ptrTime(time.Date(2025, 3, 14, 9, 0, 15, 0, time.UTC))
		}},
		{"step begun again (resumed after a pause, retried)", func(ro *rampv1.Rollout) {
			ro.Status.StageStartedAt = ptrTime(time.Date(2025, 3, 14, 9, 0, 5, 0, time.UTC))
		}},
		{"rolled back to a new revision", func(ro *rampv1.Rollout) { ro.Status.CanaryRevision = "r2" }},
		{"spec changed", func(ro *rampv1.Rollout) { ro.Generation = 2 }},
		{"deleted and created again", func(ro *rampv1.Rollout) { ro.UID = "uid-other" }},
		{"another round recorded meanwhile", func(ro *rampv1.Rollout) {
			ro.Status.LastAnalysisTime = ptrTime(time.Date(2025, 3, 14, 9, 0, 12, 0, time.UTC))
		}},
	} {
		for _, finished := range []bool{true, false} {
			name := c.name + "/running"
			if finished {
				name = c.name + "/finished"
			}
			t.Run(name, func(t *testing.T) {
				g := newGate()
				if finished {
					g.verdicts["web"] = rampv1.VerdictFailed
				}
				_, r, q, ro := preStarted(t, g)
				if finished {
					nextWake(t, q)
				}

				c.moved(ro)
				g.verdicts["web"] = rampv1.VerdictPassed
				res, running := r.Take(ro)
				if res != nil {
					t.Fatalf("the pre-started round's result was handed to the moved-on Rollout: %+v", res)
				}
				if !running {
					t.Fatal("no round started for where the Rollout is now")
				}
				recv(t, g.started, "the Rollout's own round")
				nextWake(t, q)
				if !finished {
					// Both rounds end: the pre-started one cancelled, the new one answering.
					a, b := recv(t, g.ended, "a round to end"), recv(t, g.ended, "the other round to end")
					if a != context.Canceled && b != context.Canceled {
						t.Fatalf("rounds ended with %v and %v, want the pre-started one cancelled", a, b)
					}
				}
				if res, _ := r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed {
					t.Fatalf("Take = %+v, want the new round's Passed result", res)
				}
			})
		}
	}
	// Scheduling for where the Rollout is now drops the pre-started result too.
	t.Run("scheduled anew", func(t *testing.T) {
		g := newGate()
		g.verdicts["web"] = rampv1.VerdictFailed
		fc, r, q, ro := preStarted(t, g)
		nextWake(t, q)
		ro.Status.CurrentStep, ro.Status.StageStartedAt = 2, ptrTime(fc.Now())
		r.Schedule(ro, due(ro))
		g.verdicts["web"] = rampv1.VerdictPassed
		fc.SetTime(due(ro))
		recv(t, g.started, "step 2's round")
		nextWake(t, q)
		if res, _ := r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed || !res.Started.Equal(due(ro)) {
			t.Fatalf("Take = %+v, want step 2's Passed round, started when due", res)
		}
	})
}

// Drop stops an armed timer: no round starts when it would have been due.
func TestDropStopsTheTimer(t *testing.T) {
	g := newGate()
	fc, r, _ := timed(t, g, time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC))
	ro := analysed("web")
	r.Schedule(ro, due(ro))
	if n := fc.Waiters(); n != 1 {
		t.Fatalf("%d timers armed, want 1", n)
	}
	r.Drop(types.NamespacedName{Namespace: "shop", Name: "web"})
	if fc.HasWaiters() {
		t.Fatal("the timer still runs after Drop")
	}
	fc.Step(time.Hour)
	noRoundStarted(t, g, "after Drop, past the due time")
	if n := g.callsOf("web"); n != 0 {
		t.Errorf("%d rounds ran after Drop", n)
	}
}

// Schedule keeps the round the runner holds for the Rollout as it is: passes before the due
// time re-arm nothing, a running round is not restarted, and a pass that finds it due starts
// the armed round at once.
func TestScheduleKeepsTheRoundItHolds(t *testing.T) {
	g := newGate()
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	fc, r, q := timed(t, g, t0)
	ro := analysed("web")
	for range 3 {
		r.Schedule(ro, due(ro))
	}
	if n := fc.Waiters(); n != 1 {
		t.Fatalf("%d timers armed, want 1", n)
	}
	// A pass that finds the round due (the reconciler's clock reached it first) starts it.
	fc.SetTime(due(ro).Add(-time.Millisecond))
	if res, running := r.Take(ro); res != nil || !running {
		t.Fatalf("Take of the armed round = %+v, %t; want it started", res, running)
	}
	recv(t, g.started, "the armed round, started by Take")
	if fc.HasWaiters() {
		t.Error("its timer still runs")
	}
	r.Schedule(ro, due(ro)) // a pass while it runs
	fc.Step(time.Hour)
	g.release <- &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
	nextWake(t, q)
	if res, _ := r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed || !res.Started.Equal(due(ro).Add(-time.Millisecond)) {
		t.Fatalf("Take = %+v, want the round Take started", res)
	}
	if n := g.callsOf("web"); n != 1 {
		t.Errorf("%d rounds ran, want 1", n)
	}
}

// A stopping manager (or one that lost its leadership) stops every timer and arms no more.
func TestStopStopsTimers(t *testing.T) {
	g := newGate()
	fc := clocktesting.NewFakeClock(time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC))
	r := New(g.analyze, 4, time.Minute, WithClock(fc))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	r.Schedule(analysed("a"), due(analysed("a")))
	r.Schedule(analysed("b"), due(analysed("b")))
	cancel()
	recv(t, done, "Start to return")
	if fc.HasWaiters() {
		t.Fatalf("%d timers still armed after stopping", fc.Waiters())
	}
	r.Schedule(analysed("c"), due(analysed("c")))
	if fc.HasWaiters() {
		t.Fatal("a stopped runner armed a timer")
	}
	fc.Step(time.Hour)
	noRoundStarted(t, g, "after stopping")
}

// The next round does not wait for a pass to take the last one either: the runner arms it
// from the finished round (its start + the interval), one round ahead at most, and hands the
// results over in order.
func TestNextRoundRunsBeforeAnyPassTookTheLast(t *testing.T) {
	g := newGate()
	g.verdicts["web"] = rampv1.VerdictPassed
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	fc, r, q := timed(t, g, t0)
	ro := analysed("web")
	first := due(ro)
	fc.SetTime(first)
	r.Take(ro)
	recv(t, g.started, "the first round")
	nextWake(t, q)
	waitUntil(t, "the next round armed from the finished one", fc.HasWaiters)

	// No pass takes the first result (every worker busy): the second round still starts an
	// interval after the first began, and no third, which needs the second recorded.
	fc.Step(interval)
	recv(t, g.started, "the second round, before any pass")
	nextWake(t, q)
	fc.Step(interval)
	noRoundStarted(t, g, "two intervals on, the second round not taken")

	res, _ := r.Take(ro)
	if res == nil || !res.Started.Equal(first) {
		t.Fatalf("first Take = %+v, want the first round, started at %s", res, first)
	}
	record(ro, res)
	res, _ = r.Take(ro)
	if res == nil || !res.Started.Equal(first.Add(interval)) {
		t.Fatalf("second Take = %+v, want the second round, started at %s", res, first.Add(interval))
	}
	record(ro, res)
	// The third is armed for the second's start + the interval, already past: a pass that
	// schedules it keeps it, and it starts at once.
	r.Schedule(ro, due(ro))
	if n := fc.Waiters(); n != 1 {
		t.Fatalf("%d timers armed, want the third round's", n)
	}
	fc.SetTime(fc.Now())
	recv(t, g.started, "the third round")
	nextWake(t, q)
	if res, _ = r.Take(ro); res == nil || !res.Started.Equal(first.Add(2*interval)) {
		t.Fatalf("third Take = %+v, want the third round, started at %s", res, first.Add(2*interval))
	}
	if n := g.callsOf("web"); n != 3 {
		t.Errorf("%d rounds ran, want 3", n)
	}
}

// No round is armed past the end of its step: once a round passed, a step whose timed pause
// ends before the next round is due ends then (a controller keeping up would run no further
// round of it). A failed round is followed by another; a pass that may end the step collects
// what runs but starts nothing.
func TestNoRoundArmedPastTheStepsEnd(t *testing.T) {
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	pausedFor := func(d time.Duration) *rampv1.Rollout {
		ro := analysed("web")
		ro.Spec.Strategy.Canary.Steps[0].Pause = &rampv1.Pause{Duration: &metav1.Duration{Duration: d}}
		return ro
	}
	for _, c := range []struct {
		name    string
		ro      *rampv1.Rollout
		verdict string
		armed   bool
	}{
		{"passed; the pause ends before the next round", pausedFor(2*interval - time.Second), rampv1.VerdictPassed, false},
		{"passed; the pause ends as the next round falls due", pausedFor(2 * interval), rampv1.VerdictPassed, false},
		{"passed; the pause runs past the next round", pausedFor(2*interval + time.Microsecond), rampv1.VerdictPassed, true},
		{"failed: the step holds for a passing round", pausedFor(2 * interval), rampv1.VerdictFailed, true},
		{"passed; held until promoted", analysed("web"), rampv1.VerdictPassed, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGate()
			g.verdicts["web"] = c.verdict
			fc, r, q := timed(t, g, t0)
			ro := c.ro
			fc.SetTime(due(ro))
			r.Take(ro)
			recv(t, g.started, "the round")
			nextWake(t, q)
			// The result is stored (and the next round armed, if any) before the wake-up.
			if got := fc.HasWaiters(); got != c.armed {
				t.Errorf("next round armed: %t, want %t", got, c.armed)
			}
		})
	}
	t.Run("collect starts nothing", func(t *testing.T) {
		g := newGate()
		g.verdicts["web"] = rampv1.VerdictPassed
		fc, r, q := timed(t, g, t0)
		ro := analysed("web")
		fc.SetTime(due(ro))
		if res, running := r.Collect(ro); res != nil || running {
			t.Fatalf("Collect with nothing held = %+v, %t; want nothing", res, running)
		}
		noRoundStarted(t, g, "after Collect")
		r.Schedule(ro, due(ro).Add(time.Second))
		if res, running := r.Collect(ro); res != nil || running {
			t.Fatalf("Collect of an armed round = %+v, %t; want nothing", res, running)
		}
		if !fc.HasWaiters() {
			t.Fatal("Collect disarmed the round")
		}
		fc.Step(time.Second)
		recv(t, g.started, "the armed round")
		nextWake(t, q)
		if res, _ := r.Collect(ro); res == nil || res.Verdict != rampv1.VerdictPassed {
			t.Fatalf("Collect = %+v, want the round's result", res)
		}
		// Keep drops what is held for what the Rollout has left.
		r.Schedule(ro, due(ro).Add(time.Hour))
		moved := ro.DeepCopy()
		moved.Status.CurrentStep = 2
		r.Keep(ro)
		if !fc.HasWaiters() {
			t.Fatal("Keep dropped the round of the Rollout as it is")
		}
		r.Keep(moved)
		if fc.HasWaiters() {
			t.Fatal("Keep kept the round of a step the Rollout left")
		}
	})
}

// A round started on the timer judges the Rollout's labels and annotations as the cache has
// them when it starts: an annotation set after the round was armed (it changes no
// generation, so the armed copy has the old ones) reaches the analyzer.
func TestTimedRoundJudgesCurrentMetadata(t *testing.T) {
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	ro := analysed("web")
	ro.UID = "uid-web"
	current := ro.DeepCopy()
	current.Annotations = map[string]string{"bench.ramp.dev/fail": "true"}
	judged := make(chan map[string]string, 1)
	analyze := func(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
		judged <- ro.Annotations
		return &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
	}
	r := New(analyze, 1, time.Minute, WithClock(fc), WithCurrent(func(_ context.Context, key types.NamespacedName) (*rampv1.Rollout, error) {
		if key.Name != "web" {
			t.Errorf("read %s", key)
		}
		return current.DeepCopy(), nil
	}))
	start(t, r)
	r.Schedule(ro, due(ro))
	fc.Step(interval)
	select {
	case a := <-judged:
		if a["bench.ramp.dev/fail"] != "true" {
			t.Errorf("the round judged annotations %v, want the current ones", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no round started")
	}
	if ro.Annotations != nil {
		t.Errorf("the caller's Rollout was changed: %v", ro.Annotations)
	}
}

// An armed round keeps what it judges and what times the next, not the whole Rollout: one is
// armed per Rollout in an analysed step, for an interval each.
func TestArmedRoundKeepsWhatItJudges(t *testing.T) {
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	ro := analysed("web")
	started := metav1.NewTime(t0.Add(-time.Minute))
	ro.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: `{"kind":"Rollout"}`, "team": "shop"}
	ro.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	ro.Status.RolloutStartedAt = &started
	ro.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Message: "step 1/2: 5% to canary"}}
	ro.Status.Message = "step 1/2: 5% to canary"
	ro.Status.LastAnalysis = []rampv1.MetricResult{{Name: "error-rate", Message: "0.1% ≤ 1%"}}
	judged := make(chan *rampv1.Rollout, 1)
	r := New(func(_ context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
		judged <- ro
		return &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
	}, 1, time.Minute, WithClock(fc))
	start(t, r)
	r.Schedule(ro, due(ro))
	fc.Step(interval)
	var got *rampv1.Rollout
	select {
	case got = <-judged:
	case <-time.After(10 * time.Second):
		t.Fatal("no round started")
	}
	if !equality.Semantic.DeepEqual(got.Spec, ro.Spec) || got.Name != ro.Name || got.UID != ro.UID || got.Annotations["team"] != "shop" ||
		got.Status.CurrentStep != ro.Status.CurrentStep || !got.Status.RolloutStartedAt.Equal(ro.Status.RolloutStartedAt) ||
		!got.Status.StageStartedAt.Equal(ro.Status.StageStartedAt) {
		t.Errorf("the round judged %+v, want the Rollout's spec, name, annotations and step", got)
	}
	if got.Status.Conditions != nil || got.Status.Message != "" || got.Status.LastAnalysis != nil || got.ManagedFields != nil ||
		got.Annotations[corev1.LastAppliedConfigAnnotation] != "" {
		t.Errorf("the round kept %+v, %+v", got.ObjectMeta, got.Status)
	}
	if len(ro.Status.Conditions) != 1 || ro.ManagedFields == nil || ro.Annotations[corev1.LastAppliedConfigAnnotation] == "" {
		t.Errorf("the caller's Rollout was changed: %+v", ro)
	}
}
