package rounds

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// A Rollout holding step 1 of revision r1.
func rollout(name string) *rampv1.Rollout {
	started := metav1.NewMicroTime(time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC))
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Status:     rampv1.RolloutStatus{CanaryRevision: "r1", CurrentStep: 1, StageStartedAt: &started},
	}
}

// gate is an analyzer whose rounds block until released (or their context ends), counting
// how many run at once.
type gate struct {
	mu       sync.Mutex
	now, max int
	calls    map[string]int
	started  chan string // the Rollout's name, as each round starts
	ended    chan error  // the round's ctx.Err() when it ended
	release  chan *plan.AnalysisResult
	verdicts map[string]string // fixed verdicts answered at once, by Rollout name
}

func newGate() *gate {
	return &gate{calls: map[string]int{}, started: make(chan string, 100), ended: make(chan error, 100),
		release: make(chan *plan.AnalysisResult), verdicts: map[string]string{}}
}

func (g *gate) analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	g.mu.Lock()
	g.calls[ro.Name]++
	g.now++
	g.max = max(g.max, g.now)
	v := g.verdicts[ro.Name]
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.now--
		g.mu.Unlock()
		g.ended <- ctx.Err()
	}()
	g.started <- ro.Name
	if v != "" {
		return &plan.AnalysisResult{Verdict: v}
	}
	select {
	case res := <-g.release:
		return res
	case <-ctx.Done():
		return &plan.AnalysisResult{Verdict: rampv1.VerdictInconclusive, Reason: "analysis canceled: " + ctx.Err().Error()}
	}
}

func (g *gate) callsOf(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[name]
}

// start runs r as the manager would, with its Source feeding a work queue as the Rollout
// controller's.
func start(t *testing.T, r *Runner) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	if err := r.Source().Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; q.ShutDown() })
	return q
}

// nextWake is the next Rollout the runner woke.
func nextWake(t *testing.T, q workqueue.TypedRateLimitingInterface[reconcile.Request]) string {
	t.Helper()
	got := make(chan reconcile.Request, 1)
	go func() {
		req, _ := q.Get()
		q.Done(req)
		got <- req
	}()
	select {
	case req := <-got:
		return req.Name
	case <-time.After(10 * time.Second):
		t.Fatal("no Rollout woken")
		return ""
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestAtMostWorkersRoundsRunAtOnce(t *testing.T) {
	g := newGate()
	r := New(g.analyze, 2, time.Minute)
	q := start(t, r)
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		if res, running := r.Take(rollout(n)); res != nil || !running {
			t.Fatalf("Take(%s) = %v, %t; want a round started", n, res, running)
		}
	}
	recv(t, g.started, "a round to start")
	recv(t, g.started, "a second round to start")
	// The other three wait for a worker.
	waitUntil(t, "three rounds waiting", func() bool { return testutil.ToFloat64(waiting) == 3 })
	if v := testutil.ToFloat64(running); v != 2 {
		t.Fatalf("ramp_analysis_rounds_in_flight{state=running} = %v, want 2", v)
	}
	woken := map[string]bool{}
	for range names {
		g.release <- &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
		woken[nextWake(t, q)] = true
	}
	for _, n := range names {
		if !woken[n] {
			t.Errorf("%s not woken (woken: %v)", n, woken)
		}
		if res, _ := r.Take(rollout(n)); res == nil || res.Verdict != rampv1.VerdictPassed {
			t.Errorf("Take(%s) after its wake-up = %+v, want its Passed result", n, res)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max != 2 {
		t.Errorf("%d rounds ran at once, want at most 2 workers", g.max)
	}
}

func TestOneRoundPerRolloutAndResultTakenOnce(t *testing.T) {
	g := newGate()
	r := New(g.analyze, 4, time.Minute)
	q := start(t, r)
	ro := rollout("web")
	r.Take(ro)
	recv(t, g.started, "the round to start")
	for range 3 { // reconciles while it runs
		if res, running := r.Take(ro); res != nil || !running {
			t.Fatalf("Take while running = %v, %t; want nil, running", res, running)
		}
	}
	g.release <- &plan.AnalysisResult{Verdict: rampv1.VerdictFailed, Reason: "error-rate 8 > 1"}
	if got := nextWake(t, q); got != "web" {
		t.Fatalf("woke %s", got)
	}
	res, running := r.Take(ro)
	if res == nil || res.Verdict != rampv1.VerdictFailed || running {
		t.Fatalf("Take after the wake-up = %+v, %t; want the Failed result", res, running)
	}
	if n := g.callsOf("web"); n != 1 {
		t.Errorf("%d rounds run for one Rollout, want 1", n)
	}
	// Recorded, the round moves the Rollout's last analysis time: the next round is another.
	ro.Status.LastAnalysisTime = ptrTime(time.Date(2025, 3, 14, 9, 1, 0, 0, time.UTC))
	if res, running := r.Take(ro); res != nil || !running {
		t.Fatalf("Take for the next interval = %v, %t; want a new round", res, running)
	}
	recv(t, g.started, "the next round")
	g.release <- &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
	nextWake(t, q)
}

func TestResultForWhatTheRolloutLeftIsDropped(t *testing.T) {
	for _, c := range []struct {
		name  string
		moved func(*rampv1.Rollout)
	}{
		{"next step", func(ro *rampv1.Rollout) {
			ro.Status.CurrentStep = 2
			ro.Status.StageStartedAt = ptrTime(time.Date(2025, 3, 14, 9, 5, 0, 0, time.UTC))
		}},
		{"new revision", func(ro *rampv1.Rollout) { ro.Status.CanaryRevision = "r2" }},
		{"same step begun again (retry)", func(ro *rampv1.Rollout) {
			ro.Status.StageStartedAt = ptrTime(time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC))
		}},
		{"spec changed", func(ro *rampv1.Rollout) { ro.Generation = 2 }},
		{"deleted and created again", func(ro *rampv1.Rollout) { ro.UID = "uid-other" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGate()
			g.verdicts["web"] = rampv1.VerdictFailed
			r := New(g.analyze, 4, time.Minute)
			q := start(t, r)
			ro := rollout("web")
			r.Take(ro)
			nextWake(t, q) // the result of step 1 is ready

			c.moved(ro)
			g.verdicts["web"] = rampv1.VerdictPassed
			res, running := r.Take(ro)
			if res != nil {
				t.Fatalf("a result for what the Rollout left was handed back: %+v", res)
			}
			if !running {
				t.Fatal("no round started for where the Rollout is now")
			}
			nextWake(t, q)
			if res, _ := r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed {
				t.Fatalf("Take = %+v, want the new round's Passed result", res)
			}
		})
	}
}

func TestRoundsAreCancelled(t *testing.T) {
	t.Run("dropped", func(t *testing.T) {
		g := newGate()
		r := New(g.analyze, 4, time.Minute)
		q := start(t, r)
		ro := rollout("web")
		r.Take(ro)
		recv(t, g.started, "the round to start")
		r.Drop(types.NamespacedName{Namespace: "shop", Name: "web"})
		if err := recv(t, g.ended, "the round to end"); err != context.Canceled {
			t.Fatalf("round ended with %v, want its context cancelled", err)
		}
		// Nothing is kept: the next Take starts afresh, and only its result wakes the Rollout.
		g.verdicts["web"] = rampv1.VerdictPassed
		if res, running := r.Take(ro); res != nil || !running {
			t.Fatalf("Take after Drop = %v, %t; want a new round", res, running)
		}
		nextWake(t, q)
		if q.Len() != 0 {
			t.Errorf("the dropped round woke the Rollout too")
		}
		if res, _ := r.Take(ro); res == nil || res.Verdict != rampv1.VerdictPassed {
			t.Errorf("Take = %+v, want the new round's result", res)
		}
	})
	t.Run("the Rollout moved on", func(t *testing.T) {
		g := newGate()
		r := New(g.analyze, 4, time.Minute)
		start(t, r)
		ro := rollout("web")
		r.Take(ro)
		recv(t, g.started, "the round to start")
		ro.Status.CurrentStep = 2
		r.Take(ro) // its round blocks too
		if err := recv(t, g.ended, "the step-1 round to end"); err != context.Canceled {
			t.Fatalf("step-1 round ended with %v, want cancelled", err)
		}
	})
	t.Run("waiting for a worker", func(t *testing.T) {
		g := newGate()
		r := New(g.analyze, 1, time.Minute)
		q := start(t, r)
		r.Take(rollout("a"))
		recv(t, g.started, "a's round")
		r.Take(rollout("b"))
		waitUntil(t, "b waiting", func() bool { return testutil.ToFloat64(waiting) == 1 })
		r.Drop(types.NamespacedName{Namespace: "shop", Name: "b"})
		waitUntil(t, "b no longer waiting", func() bool { return testutil.ToFloat64(waiting) == 0 })
		g.release <- &plan.AnalysisResult{Verdict: rampv1.VerdictPassed}
		if got := nextWake(t, q); got != "a" {
			t.Fatalf("woke %s", got)
		}
		if n := g.callsOf("b"); n != 0 {
			t.Errorf("the dropped round of b ran %d times", n)
		}
	})
	t.Run("manager stopping", func(t *testing.T) {
		g := newGate()
		r := New(g.analyze, 4, time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = r.Start(ctx); close(done) }()
		r.Take(rollout("web"))
		recv(t, g.started, "the round to start")
		cancel()
		recv(t, done, "Start to return")
		if err := recv(t, g.ended, "the round to end"); err != context.Canceled {
			t.Fatalf("round ended with %v, want cancelled", err)
		}
		if res, running := r.Take(rollout("other")); res != nil || running {
			t.Errorf("a stopped runner started a round")
		}
	})
}

func TestRoundTimeoutIsInconclusive(t *testing.T) {
	g := newGate()
	r := New(g.analyze, 4, 50*time.Millisecond)
	q := start(t, r)
	ro := rollout("web")
	r.Take(ro)
	nextWake(t, q)
	res, _ := r.Take(ro)
	if res == nil || res.Verdict != rampv1.VerdictInconclusive || !strings.Contains(res.Reason, "longer than 50ms (--analysis-timeout)") {
		t.Fatalf("result = %+v, want Inconclusive naming the timeout", res)
	}
	if err := recv(t, g.ended, "the round to end"); err != context.DeadlineExceeded {
		t.Errorf("round ended with %v, want its deadline", err)
	}
}

func ptrTime(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
