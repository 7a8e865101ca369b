// Package controllers holds ramp's reconciler: it observes the cluster, asks the pure state
// machine (internal/plan) what to do, records the decision in status, then makes the world
// match it.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kclock "k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/gates"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/rounds"
)

// conflictRetry is how soon a pass whose status write lost a race runs again.
const conflictRetry = 20 * time.Millisecond

// FieldManager owns the fields ramp writes with server-side apply.
const FieldManager = "ramp"

// Finalizer lets ramp hand the target back (un-paused) when a Rollout is deleted.
const Finalizer = "ramp.dev/finalizer"

// Analyzer runs one analysis round for a rollout. Provider failures are verdicts
// (Inconclusive), not errors: a flaky Prometheus must never promote nor wedge a rollout. It
// must return soon after ctx ends. Rounds run off the reconcile workers (internal/rounds).
type Analyzer interface {
	Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult
}

// EventRecorder is the part of fluxcd/pkg/runtime's events.Recorder ramp uses.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// RolloutReconciler reconciles Rollouts.
type RolloutReconciler struct {
	client.Client
	// APIReader reads from the API server: around the cache when it is older than ramp's own
	// last write of an object (see freshReads), and the Secrets notifications name.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Events    EventRecorder
	Analyzer  Analyzer
	// AnalysisWorkers bounds how many analysis rounds run at once, AnalysisTimeout how long
	// one runs (0: the defaults of internal/rounds).
	AnalysisWorkers int
	AnalysisTimeout time.Duration
	// Notifier sends Slack notifications; nil disables them.
	Notifier Notifier
	// AnalysisEndpoints are the analysis endpoints Rollouts may name; a Rollout naming another
	// is Stalled and no round runs. Nil checks nothing (tests that wire their own analyzer);
	// the manager binary always sets it, from --analysis-allowed-endpoints.
	AnalysisEndpoints *endpoints.List
	// PlatformNamespace is the manager's own namespace: the only one whose Secrets a
	// ClusterMetricTemplate may name ("": none may).
	PlatformNamespace string
	// GateWorkers bounds how many gate calls run at once (0: the default of internal/rounds).
	GateWorkers int
	// DefaultSlackURL is used for Rollouts without spec.notifications.slack ("" for none).
	DefaultSlackURL string
	Config          plan.Config
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Selector is this manager's shard (--watch-label-selector): it reconciles only Rollouts
	// whose labels match, and its cache holds no others. Nil: every Rollout.
	Selector labels.Selector

	roundsOnce sync.Once
	rounds     *rounds.Runner
	gatesOnce  sync.Once
	gates      *gates.Runner
	freshOnce  sync.Once
	// indexed is set when the reconciler reads through the manager's cache and its indexes.
	indexed bool
	// gatewayAPI is set when the cluster served HTTPRoutes at start (the manager watches
	// them): then Istio's router also removes the Gateway API router's objects a Rollout had
	// before it left spec.service.gatewayAPI.
	gatewayAPI bool
}

// inShard reports whether ro belongs to this manager's shard.
func (r *RolloutReconciler) inShard(ro metav1.Object) bool {
	return r.Selector == nil || r.Selector.Matches(labels.Set(ro.GetLabels()))
}

// roundRunner runs the Analyzer's rounds; SetupWithManager also wires its wake-ups.
func (r *RolloutReconciler) roundRunner() *rounds.Runner {
	r.roundsOnce.Do(func() {
		// Without an Analyzer no round is ever asked for; the runner only drops.
		analyze := func(context.Context, *rampv1.Rollout) *plan.AnalysisResult { return nil }
		if r.Analyzer != nil {
			analyze = r.Analyzer.Analyze
		}
		current := func(ctx context.Context, key types.NamespacedName) (*rampv1.Rollout, error) {
			ro := &rampv1.Rollout{}
			if err := r.Get(ctx, key, ro); err != nil {
				return nil, client.IgnoreNotFound(err)
			}
			return ro, nil
		}
		r.rounds = rounds.New(analyze, r.AnalysisWorkers, r.AnalysisTimeout, rounds.WithClock(planClock{now: r.Now}), rounds.WithCurrent(current))
	})
	return r.rounds
}

// planClock times the rounds by the clock the plan reads (Now, which tests may shift), with
// real timers: a round the runner starts on its timer is one the plan finds due.
type planClock struct {
	kclock.RealClock
	now func() time.Time
}

func (c planClock) Now() time.Time {
	if c.now == nil {
		return time.Now()
	}
	return c.now()
}

func (c planClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// analysisRounds tells the round runner what ro, as it stands, wants of analysis rounds. A
// due round is taken (its result, or that it is running, goes into obs) when take is set (the
// pass has yet to decide); the next round is armed on the runner's timer for when it falls
// due (plan.NextRound); a Rollout that wants no round (paused, past its analysed steps,
// stalled) has any it had dropped. No round is started ahead of a pass that may end the step
// (plan.StepEndsAt): a controller keeping up would run none, so none may be counted.
func (r *RolloutReconciler) analysisRounds(ro *rampv1.Rollout, obs *plan.Observation, take bool) {
	runner := r.roundRunner()
	due, next := plan.NextRound(ro, *obs)
	ends, ending := plan.StepEndsAt(ro)
	switch {
	case r.Analyzer == nil || !next:
		runner.Drop(client.ObjectKeyFromObject(ro))
	case take && ending && !obs.Now.Before(ends):
		// This pass may end the step; if a gate or window holds it, the status recorded, the
		// round is scheduled below (due already: it starts at once).
		obs.Analysis, obs.AnalysisRunning = runner.Collect(ro)
	case take && plan.RoundDue(ro, *obs):
		obs.Analysis, obs.AnalysisRunning = runner.Take(ro)
	case ending && obs.Now.Before(ends) && !due.Before(ends):
		// The step ends before the round falls due; the pass at its end decides.
		runner.Keep(ro)
	default:
		runner.Schedule(ro, due)
	}
}

// gateRunner calls the Rollouts' gates; SetupWithManager also wires its wake-ups. Redirects
// are followed only to the endpoints the platform allows.
func (r *RolloutReconciler) gateRunner() *gates.Runner {
	r.gatesOnce.Do(func() {
		var allows func(string) error
		if r.AnalysisEndpoints != nil {
			allows = func(a string) error { return r.AnalysisEndpoints.AllowsAs(endpoints.Gate, a) }
		}
		now := r.Now
		if now == nil {
			now = time.Now
		}
		r.gates = gates.NewRunner(gates.New(allows), r.GateWorkers, now)
	})
	return r.gates
}

// useFreshReads makes the reconciler's reads see its own writes (freshReads), once: in
// SetupWithManager, or on the first pass of a reconciler run without a manager.
func (r *RolloutReconciler) useFreshReads() {
	r.freshOnce.Do(func() {
		if _, ok := r.Client.(*freshReads); !ok && r.APIReader != nil {
			r.Client = newFreshReads(r.Client, r.APIReader)
		}
	})
}

// Least privilege (docs/rbac.md says why each verb is needed): ramp writes with server-side
// apply and merge patches, never update, except the finalizer on its own Rollouts.
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts/status,verbs=patch
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=ramp.dev,resources=clustermetrictemplates;metrictemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile observes, decides, persists the decision, then acts on it. Persisting first
// makes the status a write-ahead record: if ramp stops between the two, the next pass
// derives the same desired state from the status and applies it, so traffic never goes
// back to an earlier step.
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.useFreshReads()
	ro := &rampv1.Rollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.roundRunner().Drop(req.NamespacedName)
			r.gateRunner().Drop(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !r.inShard(ro) {
		// Read live after ramp's own write: the Rollout moved to another shard since. That
		// shard's manager has it now.
		r.roundRunner().Drop(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	// Every line of this pass names the revisions at stake (controller-runtime adds the
	// rollout's name and namespace).
	logger := log.FromContext(ctx).WithValues("stableRevision", ro.Status.StableRevision, "canaryRevision", ro.Status.CanaryRevision)
	ctx = log.IntoContext(ctx, logger)
	if !ro.DeletionTimestamp.IsZero() {
		r.roundRunner().Drop(req.NamespacedName)
		r.gateRunner().Drop(req.NamespacedName)
		return ctrl.Result{}, r.finalize(ctx, ro)
	}
	if !controllerutil.ContainsFinalizer(ro, Finalizer) {
		controllerutil.AddFinalizer(ro, Finalizer)
		if err := r.Update(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
	}

	w, err := r.observe(ctx, ro)
	if err != nil {
		return ctrl.Result{}, err
	}
	// A due round runs off this worker; its result wakes the Rollout and a later pass takes it.
	// One not due yet stays armed on the runner's timer.
	r.analysisRounds(ro, &w.obs, true)
	// Gate calls run off this worker too: the plan takes the results that ended and says
	// which calls are due once the status is recorded.
	w.obs.Gates = r.gateRunner().Take(ro)
	dec := plan.Decide(r.Config, ro, w.obs)

	// A failed apply stays on the conditions until an apply succeeds: the pass that fixes it
	// is the one that clears it.
	summary := dec.Summary
	if dec.Desired != nil {
		summary = plan.WithApplyFailure(summary, w.applyFailure, w.applyFailurePermanent)
	}
	before := ro.Status.Phase
	if err := r.writeStatus(ctx, ro, dec.Status, summary); apierrors.IsConflict(err) {
		// Someone changed the Rollout since this pass read it (a spec edit, a request): decide
		// again on the new version.
		logger.V(1).Info("Rollout changed while deciding; deciding again")
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("recording status: %w", err)
	}
	for _, e := range dec.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		r.Events.Eventf(ro, nil, typ, e.Reason, "Reconcile", "%s", e.Message)
	}
	r.gateRunner().Call(ro, dec.Gates)
	// The status recorded, the next round is armed for when it falls due (a recorded round's
	// start + the interval): it starts then even if every reconcile worker is busy.
	r.analysisRounds(ro, &w.obs, false)
	r.notify(ctx, ro, w, dec.Events)
	record(ro, dec.Events, w.obs.Analysis, w.obs.Now)
	if before != ro.Status.Phase {
		logger.Info("phase changed", "from", before, "to", ro.Status.Phase, "step", ro.Status.CurrentStep, "weight", ro.Status.CanaryWeight, "message", ro.Status.Message)
	}

	if dec.Desired != nil {
		if err := r.apply(ctx, ro, w, dec.Desired); err != nil {
			return r.applyFailed(ctx, ro, dec.Summary, summary, err)
		}
		if summary != dec.Summary {
			if err := r.writeStatus(ctx, ro, ro.Status, dec.Summary); err != nil {
				return ctrl.Result{}, fmt.Errorf("recording status: %w", err)
			}
		}
	}
	return ctrl.Result{RequeueAfter: dec.RequeueAfter}, nil
}

// applyFailed handles an apply that failed after the decision was recorded (summary is what
// the status already says, decided what the decision says).
func (r *RolloutReconciler) applyFailed(ctx context.Context, ro *rampv1.Rollout, decided, summary plan.Summary, err error) (ctrl.Result, error) {
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// The namespace is going away and the Rollout with it: its finalizer runs next.
		return ctrl.Result{}, nil
	case apierrors.IsConflict(err) || errors.Is(err, errWriteRace):
		// An object changed since this pass read it (the Deployment controller writes a canary
		// ramp just created; someone writes a referenced VirtualService): the next pass acts
		// on the new version. A race, not a failure anyone must see or fix.
		log.FromContext(ctx).V(1).Info("an object changed while applying; applying again", "error", err.Error())
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	// The API server's own words, on the Rollout: every failed apply is visible there, and
	// Ready is never True while ramp's objects are missing or stale.
	failed := plan.WithApplyFailure(decided, err.Error(), rejected(err))
	if failed != summary {
		r.Events.Eventf(ro, nil, corev1.EventTypeWarning, plan.ReasonApplyFailed, "Reconcile", "%s", err.Error())
		if werr := r.writeStatus(ctx, ro, ro.Status, failed); werr != nil {
			log.FromContext(ctx).Error(werr, "recording the failed apply")
		}
	}
	return ctrl.Result{}, err
}

// writeStatus records st and the conditions of summary in one merge patch of the status,
// locked to the version ramp read (a concurrent writer makes it fail and the pass start over);
// ro takes the API server's answer, resourceVersion included. A pass that changes nothing
// writes nothing.
func (r *RolloutReconciler) writeStatus(ctx context.Context, ro *rampv1.Rollout, st rampv1.RolloutStatus, summary plan.Summary) error {
	orig := ro.DeepCopy()
	conds := ro.Status.Conditions
	ro.Status = *st.DeepCopy()
	ro.Status.Conditions = conds
	setConditions(ro, summary)
	if equality.Semantic.DeepEqual(orig.Status, ro.Status) {
		return nil
	}
	return r.Status().Patch(ctx, ro, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldManager))
}

// rejected reports whether the API server refused an object as such (invalid, denied by an
// admission webhook or by policy): trying again cannot help until the spec or the cluster
// changes, so the Rollout is Stalled rather than merely not Ready.
func rejected(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err)
}

// setConditions maps the decision's summary onto kstatus conditions.
func setConditions(ro *rampv1.Rollout, s plan.Summary) {
	msg := s.Message
	if msg == "" {
		msg = s.Reason
	}
	if s.Ready {
		conditions.MarkTrue(ro, meta.ReadyCondition, s.Reason, "%s", msg)
	} else {
		conditions.MarkFalse(ro, meta.ReadyCondition, s.Reason, "%s", msg)
	}
	if s.Reconciling {
		conditions.MarkReconciling(ro, s.Reason, "%s", msg)
	} else {
		conditions.Delete(ro, meta.ReconcilingCondition)
	}
	if s.Stalled {
		conditions.MarkStalled(ro, s.Reason, "%s", msg)
	} else {
		conditions.Delete(ro, meta.StalledCondition)
	}
}
