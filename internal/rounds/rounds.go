// Package rounds runs analysis rounds off the reconcile workers. A round asks Prometheus and
// may take as long as its queries' timeouts; run on a reconcile worker, a few slow answers
// would hold every worker and stall every Rollout in the cluster. Here a reconcile asks for a
// round and returns at once; the round runs on a bounded pool, and its result wakes the
// Rollout (a GenericEvent on a source.Channel) for the next reconcile to take.
//
// A result belongs to what it judged: the Rollout (by UID) at one generation, revision, step
// and interval. Asked for by a Rollout that has since moved on, it is dropped, never applied
// to another step. Results live in memory only: a restarted controller runs the round again.
package rounds

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Defaults of a Runner.
const (
	DefaultWorkers = 8
	DefaultTimeout = time.Minute
)

// AnalyzeFunc runs one round. It must return soon after ctx ends (the round's timeout, or the
// Rollout having moved on); provider failures are Inconclusive verdicts, not errors.
type AnalyzeFunc func(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult

// Runner runs analysis rounds on at most Workers goroutines at a time, at most one round per
// Rollout. It is a manager.Runnable: stopping the manager cancels the rounds in flight.
type Runner struct {
	analyze AnalyzeFunc
	timeout time.Duration
	slots   chan struct{}

	mu     sync.Mutex
	rounds map[types.NamespacedName]*round
	wake   chan event.TypedGenericEvent[*rampv1.Rollout] // nil until Source is called
	base   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// round is one Rollout's round in flight, or its result waiting to be taken.
type round struct {
	of     subject
	cancel context.CancelFunc
	result *plan.AnalysisResult
}

// subject is what a round judges. The last round's time makes two successive rounds of one
// step distinct.
type subject struct {
	uid          types.UID
	generation   int64
	revision     string
	step         int32
	stageStarted int64
	lastRound    int64
}

func subjectOf(ro *rampv1.Rollout) subject {
	st := &ro.Status
	s := subject{uid: ro.UID, generation: ro.Generation, revision: st.CanaryRevision, step: st.CurrentStep}
	if st.StageStartedAt != nil {
		s.stageStarted = st.StageStartedAt.UnixNano()
	}
	if st.LastAnalysisTime != nil {
		s.lastRound = st.LastAnalysisTime.UnixNano()
	}
	return s
}

// New returns a Runner of workers goroutines (DefaultWorkers when below 1) whose rounds run
// for at most timeout (DefaultTimeout when not positive) once they have a worker.
func New(analyze AnalyzeFunc, workers int, timeout time.Duration) *Runner {
	if workers < 1 {
		workers = DefaultWorkers
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	base, stop := context.WithCancel(context.Background())
	return &Runner{
		analyze: analyze, timeout: timeout, slots: make(chan struct{}, workers),
		rounds: map[types.NamespacedName]*round{}, base: base, stop: stop,
	}
}

// Source wakes the Rollout whose round has a result. Register it once, on the Rollout
// controller; without it results wait for the Rollout's next reconcile.
func (r *Runner) Source() source.Source {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan event.TypedGenericEvent[*rampv1.Rollout])
	}
	return source.Channel(r.wake, &handler.TypedEnqueueRequestForObject[*rampv1.Rollout]{})
}

// Take hands back the result of ro's round once, when it is ready and judged ro as it is now
// (same revision, step, interval and spec). Otherwise it starts the round, unless one is
// already running for it, and reports running: the result will wake the Rollout. A round
// or result for what ro has left is cancelled or dropped.
func (r *Runner) Take(ro *rampv1.Rollout) (result *plan.AnalysisResult, running bool) {
	key, of := client.ObjectKeyFromObject(ro), subjectOf(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil {
		if rd.of == of {
			if rd.result == nil {
				return nil, true
			}
			delete(r.rounds, key)
			return rd.result, false
		}
		rd.cancel()
		delete(r.rounds, key)
	}
	if r.base.Err() != nil {
		return nil, false // stopping
	}
	ctx, cancel := context.WithCancel(r.base)
	rd := &round{of: of, cancel: cancel}
	r.rounds[key] = rd
	r.wg.Add(1)
	go r.run(ctx, key, rd, ro.DeepCopy())
	return nil, true
}

// Drop cancels the Rollout's round and forgets its result: it no longer wants one (deleted,
// paused, past its analysed steps).
func (r *Runner) Drop(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil {
		rd.cancel()
		delete(r.rounds, key)
	}
}

// run waits for a worker, runs the round with its timeout, and keeps the result for Take
// unless the round was dropped meanwhile.
func (r *Runner) run(ctx context.Context, key types.NamespacedName, rd *round, ro *rampv1.Rollout) {
	defer r.wg.Done()
	defer rd.cancel()
	waiting.Inc()
	select {
	case r.slots <- struct{}{}:
		waiting.Dec()
	case <-ctx.Done():
		waiting.Dec()
		return
	}
	running.Inc()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	res := r.analyze(rctx, ro)
	timedOut := ctx.Err() == nil && rctx.Err() != nil
	cancel()
	<-r.slots
	running.Dec()
	duration.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return // dropped, or the manager is stopping
	}
	if res == nil {
		res = &plan.AnalysisResult{Verdict: rampv1.VerdictInconclusive, Reason: "the analyzer returned no result"}
	}
	if timedOut && res.Verdict == rampv1.VerdictInconclusive {
		res.Reason = fmt.Sprintf("analysis round took longer than %s (--analysis-timeout): %s", r.timeout, res.Reason)
	}

	r.mu.Lock()
	if r.rounds[key] != rd {
		r.mu.Unlock()
		return
	}
	rd.result = res
	wake := r.wake
	r.mu.Unlock()
	if wake == nil {
		return
	}
	ev := event.TypedGenericEvent[*rampv1.Rollout]{Object: &rampv1.Rollout{}}
	ev.Object.Namespace, ev.Object.Name = key.Namespace, key.Name
	select {
	case wake <- ev:
	case <-r.base.Done():
	}
}

// Start holds the rounds' lifetime: when ctx ends, every round in flight is cancelled and
// Start returns once they have.
func (r *Runner) Start(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	r.stop()
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// NeedLeaderElection is false: the runner idles until a reconcile, which only the leader
// runs, asks for a round.
func (r *Runner) NeedLeaderElection() bool { return false }
