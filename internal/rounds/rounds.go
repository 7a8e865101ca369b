// Package rounds runs analysis rounds off the reconcile workers. A round asks Prometheus and
// may take as long as its queries' timeouts; run on a reconcile worker, a few slow answers
// would hold every worker and stall every Rollout in the cluster. Here a reconcile asks for a
// round and returns at once; the round runs on a bounded pool, and its result wakes the
// Rollout (a GenericEvent on a source.Channel) for the next reconcile to take.
//
// The runner also keeps the rounds' cadence. A recorded round's start is the Rollout's
// status.lastAnalysisTime, so the next round of the step is due one interval later
// (plan.NextRound). A timer starts it at that instant, judging the Rollout as its status will
// then stand, whether or not a reconcile worker is free: armed when the round before it
// finishes (chain: one round ahead of the status at most), or by Schedule from a pass (the
// first round of a step, or after a restart). A backlog of passes (a burst of releases)
// delays when results are recorded, not when rounds run.
//
// A result belongs to what it judged: the Rollout (by UID) at one generation, revision, step,
// stage start and last round. Asked for by a Rollout that has since moved on, it is dropped,
// never applied to another step; the pass that takes a result still asks plan.RoundDue, so a
// round the Rollout no longer wants (paused, past its step, stalled) is dropped, not counted.
// Rounds started on the timer for a step the next pass leaves (its pause ended, a promote)
// are the price of the cadence: they run, and are dropped. Results and timers live in memory
// only: a restarted controller, or a new leader, runs the round when its first pass finds it
// due; a stopping manager (or one that lost its leadership) stops every timer.
package rounds

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
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
// Rollout. It is a manager.Runnable: stopping the manager stops the timers and cancels the
// rounds in flight.
type Runner struct {
	*Pool
	analyze AnalyzeFunc
	timeout time.Duration
	clock   clock.WithDelayedExecution
	current CurrentFunc

	mu      sync.Mutex
	rounds  map[types.NamespacedName]*round
	stopped bool
}

// round is one Rollout's round: armed for later, in flight, or its result waiting to be taken.
type round struct {
	of subject
	// ro is what an armed round will judge, due at due; timer starts it. Both nil once started.
	ro     *rampv1.Rollout
	due    time.Time
	timer  clock.Timer
	cancel context.CancelFunc
	result *plan.AnalysisResult
	// judged is what the round judged, kept with its result until next is armed from it.
	judged *rampv1.Rollout
	// next is the round after this one (see chain), armed once this one has its result.
	next *round
}

// stop stops the round's timer, or cancels it if it runs, and the round after it.
func (rd *round) stop() {
	if rd.timer != nil {
		rd.timer.Stop()
	}
	if rd.cancel != nil {
		rd.cancel()
	}
	if rd.next != nil {
		rd.next.stop()
	}
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
		s.stageStarted = stored(st.StageStartedAt.Time).UnixNano()
	}
	if st.LastAnalysisTime != nil {
		s.lastRound = stored(st.LastAnalysisTime.Time).UnixNano()
	}
	return s
}

// judgeable is the copy of ro a round keeps until it has run and armed the next: what the
// analyzer reads (the spec, the name, the step and when the rollout started) and what the
// plan times the next round by, not the conditions, messages, last results, managedFields or
// client-side apply's copy of the manifest, which every armed round (one per Rollout in an
// analysed step) would otherwise hold.
func judgeable(ro *rampv1.Rollout) *rampv1.Rollout {
	c := &rampv1.Rollout{TypeMeta: ro.TypeMeta, ObjectMeta: *ro.ObjectMeta.DeepCopy(), Spec: *ro.Spec.DeepCopy()}
	c.ManagedFields = nil
	delete(c.Annotations, corev1.LastAppliedConfigAnnotation)
	st := ro.Status
	st.Conditions, st.Message, st.LastAnalysis = nil, "", nil
	st.DeepCopyInto(&c.Status)
	return c
}

// stored is t as the API server stores a MicroTime: the status written with a round's start
// reads back equal to it, and so does the subject of the round the runner arms after it.
func stored(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// Option configures a Runner.
type Option func(*Runner)

// CurrentFunc reads a Rollout as it is now (the manager's cache); nil when it is gone.
type CurrentFunc func(ctx context.Context, key types.NamespacedName) (*rampv1.Rollout, error)

// WithCurrent has a round judge the Rollout's labels and annotations as they are when it
// starts, not as they were when it was armed (an interval earlier: a change of metadata alone
// changes no generation, so the armed copy does not notice it).
func WithCurrent(f CurrentFunc) Option { return func(r *Runner) { r.current = f } }

// WithClock sets the clock rounds are timed by (default: the real one). It must be the clock
// the plan is given (Observation.Now): a round falls due when the plan says it does.
func WithClock(c clock.WithDelayedExecution) Option { return func(r *Runner) { r.clock = c } }

// New returns a Runner of workers goroutines (DefaultWorkers when below 1) whose rounds run
// for at most timeout (DefaultTimeout when not positive) once they have a worker.
func New(analyze AnalyzeFunc, workers int, timeout time.Duration, opts ...Option) *Runner {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	r := &Runner{Pool: NewPool(workers), analyze: analyze, timeout: timeout, clock: clock.RealClock{}, rounds: map[types.NamespacedName]*round{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Take hands back the result of ro's round once, when it is ready and judged ro as it is now
// (same revision, step, interval and spec). Otherwise it starts the round, unless one is
// already running for it (or armed for later: it starts now), and reports running: the result
// will wake the Rollout. A round or result for what ro has left is cancelled or dropped. Call
// it only when plan.RoundDue says a round is due.
func (r *Runner) Take(ro *rampv1.Rollout) (result *plan.AnalysisResult, running bool) {
	return r.take(ro, true)
}

// Collect is Take for a pass that may end ro's step (plan.StepEndsAt): it hands back a
// round the runner already runs or ran for ro as it is (or starts one armed and due), but
// starts no other.
func (r *Runner) Collect(ro *rampv1.Rollout) (result *plan.AnalysisResult, running bool) {
	return r.take(ro, false)
}

// Keep keeps the round the runner holds for ro as it is, dropping any other, and arms none.
func (r *Runner) Keep(ro *rampv1.Rollout) {
	key, of := client.ObjectKeyFromObject(ro), subjectOf(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil && rd.of != of {
		rd.stop()
		delete(r.rounds, key)
	}
}

func (r *Runner) take(ro *rampv1.Rollout, start bool) (result *plan.AnalysisResult, running bool) {
	key, of := client.ObjectKeyFromObject(ro), subjectOf(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil {
		if rd.of == of {
			switch {
			case rd.result != nil:
				if n := rd.next; n != nil {
					r.rounds[key] = n
					if n.result != nil {
						r.chain(key, n)
					}
				} else {
					delete(r.rounds, key)
				}
				return rd.result, false
			case rd.timer != nil && !start && r.clock.Now().Before(rd.due):
				return nil, false
			case rd.timer != nil:
				rd.timer.Stop()
				return nil, r.start(key, rd)
			}
			return nil, true
		}
		rd.stop()
		delete(r.rounds, key)
	}
	if !start {
		return nil, false
	}
	rd := &round{of: of, ro: judgeable(ro)}
	r.rounds[key] = rd
	return nil, r.start(key, rd)
}

// Schedule arms ro's next round to start at due (plan.NextRound) on the runner's own timer,
// judging ro as it is now; a due time already past starts it at once. A round the runner holds
// for ro as it is (armed, running or finished) is kept; one for what ro has left is cancelled
// or dropped.
func (r *Runner) Schedule(ro *rampv1.Rollout, due time.Time) {
	key, of := client.ObjectKeyFromObject(ro), subjectOf(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil {
		if rd.of == of {
			return
		}
		rd.stop()
		delete(r.rounds, key)
	}
	if r.stopped {
		return
	}
	rd := &round{of: of, ro: judgeable(ro), due: due}
	r.rounds[key] = rd
	r.arm(key, rd)
}

// arm sets rd's timer for its due time. r.mu is held.
func (r *Runner) arm(key types.NamespacedName, rd *round) {
	// The callback only hands over: a fake clock runs it holding its own lock, which the round
	// needs (Now) and so may a Schedule holding r.mu (AfterFunc).
	rd.timer = r.clock.AfterFunc(rd.due.Sub(r.clock.Now()), func() { go r.fire(key, rd) })
}

// fire starts an armed round when its timer ends, unless it was dropped, replaced or started
// meanwhile. A timer that ended before the due time (the clock was set back) is armed again.
func (r *Runner) fire(key types.NamespacedName, rd *round) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.holds(key, rd) || rd.timer == nil {
		return
	}
	if r.clock.Now().Before(rd.due) {
		r.arm(key, rd)
		return
	}
	r.start(key, rd)
}

// holds reports whether rd is the round r.rounds holds for key, or the one after it.
func (r *Runner) holds(key types.NamespacedName, rd *round) bool {
	head := r.rounds[key]
	return head != nil && (head == rd || head.next == rd)
}

// chain arms the round after rd, which has its result: the one the Rollout's status asks for
// once a pass records rd (plan.Decide records a round's start as lastAnalysisTime, and
// whether it passed), due an interval after rd began. It starts then even if no pass has
// taken rd yet (every reconcile worker busy), so a backlog of passes does not delay it; one
// round ahead at most, as only the round r.rounds holds chains. None when the step, rd
// recorded, ends before it falls due (plan.StepEndsAt): the pass that finds the step held
// (a gate, a window) schedules it. r.mu is held.
func (r *Runner) chain(key types.NamespacedName, rd *round) {
	ro := rd.judged
	rd.judged = nil
	if ro == nil || rd.next != nil || r.stopped {
		return
	}
	last := metav1.NewMicroTime(rd.result.Started)
	ro.Status.LastAnalysisTime = &last
	ro.Status.StepAnalysisPassed = rd.result.Verdict == rampv1.VerdictPassed
	due := plan.NextAnalysisAt(&ro.Spec, &ro.Status)
	if ends, ok := plan.StepEndsAt(ro); due.IsZero() || ok && !due.Before(ends) {
		return
	}
	rd.next = &round{of: subjectOf(ro), ro: ro, due: due}
	r.arm(key, rd.next)
}

// start runs rd, the round r.rounds holds for key (or the one after it); false, forgetting
// them, when the runner is stopping. r.mu is held.
func (r *Runner) start(key types.NamespacedName, rd *round) bool {
	ro := rd.ro
	rd.ro, rd.timer = nil, nil
	cancel, ok := r.Go(func(ctx context.Context) { r.run(ctx, key, rd, ro) })
	if !ok || r.stopped {
		cancel()
		delete(r.rounds, key)
		return false
	}
	rd.cancel = cancel
	return true
}

// Drop cancels the Rollout's round, armed or running, and forgets its result: it no longer
// wants one (deleted, paused, past its analysed steps).
func (r *Runner) Drop(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.rounds[key]; rd != nil {
		rd.stop()
		delete(r.rounds, key)
	}
}

// Start holds the rounds' lifetime: when ctx ends (the manager stopping, or losing its
// leadership) every timer stops, and Start returns once the rounds in flight have returned.
func (r *Runner) Start(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	r.stopped = true
	for key, rd := range r.rounds {
		rd.stop()
		delete(r.rounds, key)
	}
	r.mu.Unlock()
	return r.Pool.Start(ctx)
}

// run waits for a worker, runs the round with its timeout, and keeps the result for Take
// unless the round was dropped meanwhile. The result says when the round began.
func (r *Runner) run(ctx context.Context, key types.NamespacedName, rd *round, ro *rampv1.Rollout) {
	waiting.Inc()
	ok := r.Acquire(ctx)
	waiting.Dec()
	if !ok {
		return
	}
	if r.current != nil {
		if cur, err := r.current(ctx, key); err == nil && cur != nil && cur.UID == ro.UID {
			ro.Labels, ro.Annotations = cur.Labels, cur.Annotations
		}
	}
	running.Inc()
	started, start := stored(r.clock.Now()), time.Now()
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
	res.Started = started

	r.mu.Lock()
	if !r.holds(key, rd) {
		r.mu.Unlock()
		return
	}
	rd.result, rd.judged = res, ro
	if r.rounds[key] == rd {
		r.chain(key, rd)
	}
	r.mu.Unlock()
	r.Wake(key)
}
