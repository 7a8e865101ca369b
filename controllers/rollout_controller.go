// Package controllers holds ramp's reconciler: it observes the cluster, asks the pure state
// machine (internal/plan) what to do, records the decision in status, then makes the world
// match it.
package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/runtime/patch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// FieldManager owns the fields ramp writes with server-side apply.
const FieldManager = "ramp"

// Finalizer lets ramp hand the target back (un-paused) when a Rollout is deleted.
const Finalizer = "ramp.dev/finalizer"

// Analyzer runs one analysis round for a rollout. Provider failures are verdicts
// (Inconclusive), not errors: a flaky Prometheus must never promote nor wedge a rollout.
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
	// APIReader reads around the cache when the cached Rollout is older than ramp's last write.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Events    EventRecorder
	Analyzer  Analyzer
	// Notifier sends Slack notifications; nil disables them.
	Notifier Notifier
	// DefaultSlackURL is used for Rollouts without spec.notifications.slack ("" for none).
	DefaultSlackURL string
	Config          plan.Config
	// Now is the clock (tests inject one).
	Now func() time.Time

	written sync.Map // NamespacedName → resourceVersion of ramp's last status write
}

// Least privilege (docs/rbac.md says why each verb is needed): ramp writes with server-side
// apply and merge patches, never update, except the finalizer on its own Rollouts.
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts/status,verbs=patch
// +kubebuilder:rbac:groups=ramp.dev,resources=rollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile observes, decides, persists the decision, then acts on it. Persisting first
// makes the status a write-ahead record: if ramp stops between the two, the next pass
// derives the same desired state from the status and applies it, so traffic never goes
// back to an earlier step.
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ro, err := r.getRollout(ctx, req.NamespacedName)
	if err != nil || ro == nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Every line of this pass names the revisions at stake (controller-runtime adds the
	// rollout's name and namespace).
	logger := log.FromContext(ctx).WithValues("stableRevision", ro.Status.StableRevision, "canaryRevision", ro.Status.CanaryRevision)
	ctx = log.IntoContext(ctx, logger)
	if !ro.DeletionTimestamp.IsZero() {
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
	if r.Analyzer != nil && plan.AnalysisDue(ro, w.obs.Requests.Paused, w.obs.Now) {
		w.obs.Analysis = r.Analyzer.Analyze(ctx, ro)
	}
	dec := plan.Decide(r.Config, ro, w.obs)

	sw := &statusWriteRecorder{Client: r.Client}
	patcher := patch.NewSerialPatcher(ro, sw)
	before := ro.Status.Phase
	conds := ro.Status.Conditions
	ro.Status = *dec.Status.DeepCopy()
	ro.Status.Conditions = conds
	setConditions(ro, dec.Summary)
	if err := patcher.Patch(ctx, ro,
		patch.WithOwnedConditions{Conditions: []string{meta.ReadyCondition, meta.ReconcilingCondition, meta.StalledCondition}},
		patch.WithFieldOwner(FieldManager),
	); err != nil {
		return ctrl.Result{}, fmt.Errorf("recording status: %w", err)
	}
	if sw.resourceVersion != "" {
		ro.ResourceVersion = sw.resourceVersion // the patcher does not copy it back
	}
	r.written.Store(req.NamespacedName, ro.ResourceVersion)
	for _, e := range dec.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		r.Events.Eventf(ro, nil, typ, e.Reason, "Reconcile", "%s", e.Message)
	}
	r.notify(ctx, ro, w, dec.Events)
	record(ro, dec.Events, w.obs.Analysis, w.obs.Now)
	if before != ro.Status.Phase {
		logger.Info("phase changed", "from", before, "to", ro.Status.Phase, "step", ro.Status.CurrentStep, "weight", ro.Status.CanaryWeight, "message", ro.Status.Message)
	}

	if dec.Desired != nil {
		if err := r.apply(ctx, ro, w, dec.Desired); err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				// The namespace is going away and the Rollout with it: its finalizer runs next.
				return ctrl.Result{}, nil
			}
			r.Events.Eventf(ro, nil, corev1.EventTypeWarning, "ApplyFailed", "Reconcile", "%s", err.Error())
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: dec.RequeueAfter}, nil
}

// getRollout reads the Rollout from the cache unless the cache has not yet caught up with
// ramp's own last status write: deciding on a stale status could repeat a step.
func (r *RolloutReconciler) getRollout(ctx context.Context, key types.NamespacedName) (*rampv1.Rollout, error) {
	ro := &rampv1.Rollout{}
	if err := r.Get(ctx, key, ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(key)
			return nil, nil
		}
		return nil, err
	}
	if rv, ok := r.written.Load(key); ok && rv.(string) != ro.ResourceVersion && r.APIReader != nil {
		if err := r.APIReader.Get(ctx, key, ro); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
	}
	return ro, nil
}

// statusWriteRecorder remembers the resourceVersion of the last status write made through
// it: fluxcd's patcher writes copies of the object, so the Rollout it is given keeps the
// version it was read at, and getRollout would take a cache still at that version for one
// that has seen the write.
type statusWriteRecorder struct {
	client.Client
	resourceVersion string
}

func (c *statusWriteRecorder) Status() client.SubResourceWriter {
	return statusWriter{SubResourceWriter: c.Client.Status(), c: c}
}

type statusWriter struct {
	client.SubResourceWriter
	c *statusWriteRecorder
}

func (w statusWriter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	err := w.SubResourceWriter.Patch(ctx, obj, p, opts...)
	if err == nil {
		w.c.resourceVersion = obj.GetResourceVersion()
	}
	return err
}

func (w statusWriter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	err := w.SubResourceWriter.Update(ctx, obj, opts...)
	if err == nil {
		w.c.resourceVersion = obj.GetResourceVersion()
	}
	return err
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
