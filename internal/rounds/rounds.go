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
// Rollout. It is a manager.Runnable (its Pool): stopping the manager cancels the rounds in
// flight.
type Runner struct {
	*Pool
	analyze AnalyzeFunc
	timeout time.Duration

	mu     sync.Mutex
	rounds map[types.NamespacedName]*round
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
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Runner{Pool: NewPool(workers), analyze: analyze, timeout: timeout, rounds: map[types.NamespacedName]*round{}}
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
	rd := &round{of: of}
	ro = ro.DeepCopy()
	cancel, ok := r.Go(func(ctx context.Context) { r.run(ctx, key, rd, ro) })
	if !ok {
		return nil, false // stopping
	}
	rd.cancel = cancel
	r.rounds[key] = rd
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
	waiting.Inc()
	ok := r.Acquire(ctx)
	waiting.Dec()
	if !ok {
		return
	}
	running.Inc()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	res := r.analyze(rctx, ro)
	timedOut := ctx.Err() == nil && rctx.Err() != nil
	cancel()
	r.Release()
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
	r.mu.Unlock()
	r.Wake(key)
}
