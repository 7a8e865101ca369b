package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/fieldowners"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
	"github.com/ramp-dev/ramp/internal/schedule"
)

// world is what one pass read: the observation for the state machine plus the objects the
// act phase renders from.
type world struct {
	obs plan.Observation
	// applyFailure is the message of the last pass's failed apply, still on the Ready
	// condition: it stays there until an apply succeeds.
	applyFailure          string
	applyFailurePermanent bool
	target                *appsv1.Deployment
	// canary, vs and dr are the live objects this Rollout controls (nil when absent or not
	// ramp's: ramp acts only on objects it created).
	canary *appsv1.Deployment
	vs     *networkingv1.VirtualService
	dr     *networkingv1.DestinationRule
	// refVS is the VirtualService spec.service.virtualServiceRef names (nil when none or
	// missing): Git's, of which ramp edits only the named routes.
	refVS *networkingv1.VirtualService
	// hr, stableSvc and canarySvc are the Gateway API router's HTTPRoute and backend
	// Services this Rollout controls; svc is the Service in front of the target they copy.
	hr                        *gwapiv1.HTTPRoute
	refHR                     *gwapiv1.HTTPRoute // spec.service.gatewayAPI.httpRouteRef's: Git's
	stableSvc, canarySvc, svc *corev1.Service
}

func (r *RolloutReconciler) observe(ctx context.Context, ro *rampv1.Rollout) (*world, error) {
	var err error
	w := &world{}
	w.obs.Now = r.Now()
	ns := ro.Namespace

	w.obs.Requests = plan.Requests{
		Promote:     ro.Annotations[rampv1.AnnotationPromote],
		PromoteFull: ro.Annotations[rampv1.AnnotationPromoteFull],
		Abort:       ro.Annotations[rampv1.AnnotationAbort],
		Retry:       ro.Annotations[rampv1.AnnotationRetry],
		Paused:      ro.Annotations[rampv1.AnnotationPaused] == "true",
		PausedBy:    pausedBy(ro),
	}

	if w.obs.Peers, err = r.peers(ctx, ro); err != nil {
		return nil, err
	}

	if last := conditions.Get(ro, meta.ReadyCondition); last != nil && last.Reason == plan.ReasonApplyFailed {
		w.applyFailure = last.Message
		w.applyFailurePermanent = conditions.IsStalled(ro)
	}

	windows, err := schedule.Parse(ro.Spec.PromotionWindows)
	if err != nil {
		w.obs.SpecError = err.Error()
	} else {
		s := windows.At(w.obs.Now)
		w.obs.WindowOpen, w.obs.WindowOpensAt = s.Open, s.OpensAt
	}
	// What Istio would reject that admission cannot check (a regex that is not RE2).
	if errs := istio.Validate(&ro.Spec); len(errs) > 0 && w.obs.SpecError == "" {
		w.obs.SpecError = errs.ToAggregate().Error()
	}

	target := &appsv1.Deployment{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ro.Spec.TargetRef.Name}, target); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	case w.obs.SpecError == "" && isRolloutsCanary(target):
		// Another Rollout's canary (or this one's): ramp renders and scales it, and caches it
		// without its pod spec. Pausing it and canarying it would fight that Rollout.
		owner, _ := rolloutOf(target)
		w.obs.SpecError = fmt.Sprintf("spec.targetRef.name: Deployment %q is the canary of Rollout %q (ramp creates, scales and deletes it); point spec.targetRef at the Deployment Git owns",
			target.Name, owner)
	case w.obs.SpecError == "" && target.Spec.Template.Labels[istio.TrackLabel] == istio.TrackCanary:
		// Its pods would be in every canary subset, and the manager caches no ReplicaSet with
		// that label (CachedReplicaSets), so ramp would never see which runs its template.
		w.obs.SpecError = fmt.Sprintf("spec.targetRef.name: Deployment %q labels its pods %s=%s, which ramp reserves for canary pods; remove that label from its pod template in Git",
			target.Name, istio.TrackLabel, istio.TrackCanary)
	default:
		w.target = target
		t, err := r.observeTarget(ctx, target)
		if err != nil {
			return nil, err
		}
		if t.Paused && plan.Adopting(ro.Status.Phase) {
			if t.PausedByRamp, t.PausedBy, err = r.targetPausedBy(ctx, target); err != nil {
				return nil, err
			}
		}
		w.obs.Target = t
	}

	// Objects of the names ramp needs that this Rollout did not create (see foreignObject).
	var foreign []string
	canary := &appsv1.Deployment{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ro.CanaryName()}, canary); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		if !metav1.IsControlledBy(canary, ro) {
			msg, err := r.foreignObject(ctx, "Deployment", canary)
			if err != nil {
				return nil, err
			}
			foreign = append(foreign, msg+": ramp needs that name for the canary; delete or rename that Deployment")
			break
		}
		w.canary = canary
		w.obs.Canary = observeCanary(canary)
	}

	if w.obs.Blocked, err = r.confusedDeputy(ctx, ro); err != nil {
		return nil, err
	}

	// A Service that does not exist gets no traffic from the mesh: routing it would only
	// pretend to roll out.
	svc := &corev1.Service{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ro.ServiceName()}, svc); {
	case apierrors.IsNotFound(err) && w.obs.Blocked == nil: // what the Rollout may not do says more
		field := "spec.service.name"
		if ro.Spec.Service.Name == "" {
			field = "spec.service.name (defaults to spec.targetRef.name)"
		}
		w.obs.Blocked = &plan.Blocker{Reason: "ServiceNotFound", Message: fmt.Sprintf(
			"Service %q not found in namespace %q: ramp routes the traffic of that Service; create it, or set %s to the Service in front of Deployment %q",
			ro.ServiceName(), ns, field, ro.Spec.TargetRef.Name)}
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	}

	routed, err := r.routerFor(ro).observe(ctx, ro, w)
	if err != nil {
		return nil, err
	}
	foreign = append(foreign, routed...)
	if len(foreign) > 0 {
		w.obs.ForeignObject = strings.Join(foreign, "; ") + ". ramp takes over no object it did not create; this Rollout changes nothing until then"
	}
	return w, nil
}

// pluginFieldManager is kubectl ramp's field manager (internal/plugin.FieldManager; a test
// keeps the two equal).
const pluginFieldManager = "ramp-plugin"

// pausedBy names who wrote the annotation ramp.dev/paused when it was not kubectl ramp, for
// the status message ("" when kubectl ramp did, or nobody is recorded).
func pausedBy(ro *rampv1.Rollout) string {
	if ro.Annotations[rampv1.AnnotationPaused] != "true" {
		return ""
	}
	writers := fieldowners.Managers(fieldowners.Annotation(ro.ManagedFields, rampv1.AnnotationPaused))
	if len(writers) == 0 || slices.Contains(writers, pluginFieldManager) {
		return ""
	}
	return fmt.Sprintf("the annotation %s (written by %s)", rampv1.AnnotationPaused, strings.Join(writers, ", "))
}

// targetPausedBy reports whether ramp's field manager owns the target's spec.paused (the pause is
// ramp's), and the other managers that own it. Asked only while adopting, so the live read
// of managedFields the cache does not keep (fieldManagers) is made once per adoption, not
// on every pass.
func (r *RolloutReconciler) targetPausedBy(ctx context.Context, target *appsv1.Deployment) (byRamp bool, others []string, err error) {
	mf, err := r.fieldManagers(ctx, target)
	if err != nil {
		return false, nil, err
	}
	for _, m := range fieldowners.Managers(fieldowners.Entries(mf, "spec", "paused")) {
		if m == FieldManager {
			byRamp = true
		} else {
			others = append(others, m)
		}
	}
	return byRamp, others, nil
}

// foreignObject names an object ramp did not create and who manages it: its controller, if
// any, and the field managers that wrote it.
func (r *RolloutReconciler) foreignObject(ctx context.Context, kind string, o client.Object) (string, error) {
	var by []string
	if ref := metav1.GetControllerOf(o); ref != nil {
		by = append(by, fmt.Sprintf("controlled by %s %q", ref.Kind, ref.Name))
	}
	mf, err := r.fieldManagers(ctx, o)
	if err != nil {
		return "", err
	}
	var managers []string
	for _, m := range mf {
		if m.Subresource == "" && !slices.Contains(managers, m.Manager) { // not status writers
			managers = append(managers, m.Manager)
		}
	}
	if len(managers) > 0 {
		by = append(by, "field managers: "+strings.Join(managers, ", "))
	} else {
		by = append(by, "no field manager recorded")
	}
	return fmt.Sprintf("%s %q exists and was not created by this Rollout (%s)", kind, o.GetName(), strings.Join(by, "; ")), nil
}

// fieldManagers returns o's managedFields. The manager's cache drops them from objects ramp
// did not write (TrimManagedFields), so they are read live then, metadata only: once per pass
// of a Rollout stalled by a foreign object, which only that object's changes wake.
func (r *RolloutReconciler) fieldManagers(ctx context.Context, o client.Object) ([]metav1.ManagedFieldsEntry, error) {
	if mf := o.GetManagedFields(); len(mf) > 0 || r.APIReader == nil {
		return mf, nil
	}
	gvk, err := apiutil.GVKForObject(o, r.Client.Scheme())
	if err != nil {
		return nil, err
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(o), m); apierrors.IsNotFound(err) {
		return nil, nil // gone since: its deletion wakes the Rollout
	} else if err != nil {
		return nil, fmt.Errorf("reading the field managers of %s %q: %w", gvk.Kind, o.GetName(), err)
	}
	return m.ManagedFields, nil
}

func (r *RolloutReconciler) observeTarget(ctx context.Context, d *appsv1.Deployment) (plan.Target, error) {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	t := plan.Target{
		Exists:         true,
		Revision:       revision.Of(&d.Spec.Template),
		Replicas:       replicas,
		Paused:         d.Spec.Paused,
		UID:            d.UID,
		Selector:       metav1.FormatLabelSelector(d.Spec.Selector),
		CanarySelector: metav1.FormatLabelSelector(canarySelector(d)),
		ReadyPods:      map[string]int32{},
		Hashes:         map[string]string{},
	}
	st := d.Status
	t.RolledOut = st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == replicas &&
		st.ReadyReplicas == replicas && st.AvailableReplicas == replicas && st.Replicas == replicas

	// The ReplicaSet running the current template gives the pod-template-hash the stable
	// subset selects.
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return t, fmt.Errorf("target selector: %w", err)
	}
	var rsList appsv1.ReplicaSetList
	if err := r.listReplicaSets(ctx, &rsList, d, sel); err != nil {
		return t, err
	}
	for i := range rsList.Items {
		rs := &rsList.Items[i]
		if !metav1.IsControlledBy(rs, d) || rs.DeletionTimestamp != nil {
			continue
		}
		hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		t.ReadyPods[hash] += rs.Status.ReadyReplicas
		if rev := templateRevision(rs.Annotations, &rs.Spec.Template); t.Hashes[rev] == "" {
			t.Hashes[rev] = hash
		}
	}
	t.PodTemplateHash = t.Hashes[t.Revision]
	return t, nil
}

// observeCanary counts only ready pods of the canary's latest template: while old pods are
// still around it assumes they are the ready ones (a lower bound).
func observeCanary(d *appsv1.Deployment) plan.Canary {
	c := plan.Canary{Exists: true, Revision: d.Annotations[revision.Annotation], Replicas: ptr.Deref(d.Spec.Replicas, 1),
		Selector: metav1.FormatLabelSelector(d.Spec.Selector), ReadyPods: d.Status.ReadyReplicas}
	st := d.Status
	if st.ObservedGeneration < d.Generation {
		c.Unobserved = true
		return c
	}
	ready := st.ReadyReplicas - (st.Replicas - st.UpdatedReplicas)
	if ready > st.UpdatedReplicas {
		ready = st.UpdatedReplicas
	}
	if ready > 0 {
		c.ReadyReplicas = ready
	}
	return c
}

// getIfExists reads obj; found is false when there is no such object.
func (r *RolloutReconciler) getIfExists(ctx context.Context, key client.ObjectKey, obj client.Object) (found bool, err error) {
	if err := r.Get(ctx, key, obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return true, nil
}

// peers lists the other Rollouts of the namespace targeting ro's Deployment: the state
// machine lets the first created manage it.
func (r *RolloutReconciler) peers(ctx context.Context, ro *rampv1.Rollout) ([]plan.Peer, error) {
	var list rampv1.RolloutList
	if err := r.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingFields{targetIndex: ro.Spec.TargetRef.Name}); err != nil {
		return nil, fmt.Errorf("listing the Rollouts of Deployment %q: %w", ro.Spec.TargetRef.Name, err)
	}
	var out []plan.Peer
	for i := range list.Items {
		if o := &list.Items[i]; o.UID != ro.UID && o.Spec.TargetRef.Name == ro.Spec.TargetRef.Name {
			out = append(out, plan.Peer{Name: o.Name, Created: o.CreationTimestamp.Time})
		}
	}
	return out, nil
}

// confusedDeputy refuses what a Rollout may not make ramp do on its behalf: contact an
// analysis endpoint the platform did not allow, or read a Secret not marked for ramp (whoever
// may create a Rollout may not be allowed to read Secrets), itself or through a metric
// template (analysis.Resolve: a MetricTemplate gets what a Rollout gets; only a
// ClusterMetricTemplate speaks for the platform). Nothing is contacted or read before these
// pass (docs/security.md).
func (r *RolloutReconciler) confusedDeputy(ctx context.Context, ro *rampv1.Rollout) (*plan.Blocker, error) {
	type secret struct{ field, namespace, name string }
	var secrets []secret
	if a := ro.Spec.Analysis; a != nil && len(a.Metrics) > 0 {
		metrics, err := analysis.Resolve(ctx, ro, TemplateReader{r.Client}, analysis.Policy{Allowed: r.AnalysisEndpoints, PlatformNamespace: r.PlatformNamespace})
		var refusal *analysis.Refusal
		switch {
		case errors.As(err, &refusal):
			// Templates are watched; the retry only covers a wake-up that was lost.
			return &plan.Blocker{Reason: refusal.Reason, Message: refusal.Message, RetryAfter: time.Minute}, nil
		case err != nil:
			return nil, err
		}
		for _, m := range metrics {
			// A ClusterMetricTemplate's Secret is the platform's, in the manager's namespace.
			if s := m.Source.Secret; s != nil && !s.Platform && !slices.Contains(secrets, secret{s.Field, s.Namespace, s.Name}) {
				secrets = append(secrets, secret{s.Field, s.Namespace, s.Name})
			}
		}
	}
	if blocked := r.gateEndpoints(ro); blocked != nil {
		return blocked, nil
	}
	if n := ro.Spec.Notifications; n != nil && n.Slack != nil {
		secrets = append(secrets, secret{"spec.notifications.slack.secretRef", ro.Namespace, n.Slack.SecretRef.Name})
	}
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	for _, s := range secrets {
		err := credentials.Check(ctx, reader, s.namespace, s.name)
		switch {
		case errors.Is(err, credentials.ErrNotMarked):
			return &plan.Blocker{Reason: "SecretNotMarked", Message: fmt.Sprintf("%s: %v; ramp did not read it", s.field, err),
				RetryAfter: time.Minute}, nil
		case apierrors.IsNotFound(err):
			// Reported where it is used (a round is inconclusive, a message is not sent).
		case err != nil:
			return nil, fmt.Errorf("%s: checking Secret %q: %w", s.field, s.name, err)
		}
	}
	return nil, nil
}

// gateEndpoints refuses a gate URL the platform did not allow, as for analysis addresses.
func (r *RolloutReconciler) gateEndpoints(ro *rampv1.Rollout) *plan.Blocker {
	return gateEndpointsBlocker(r.AnalysisEndpoints, ro.Spec.Gates)
}

// gateEndpointsBlocker names the first gate whose URL allowed refuses, by its field
// (spec.gates[<name>].url); nil allowed allows any.
func gateEndpointsBlocker(allowed *endpoints.List, gs []rampv1.Gate) *plan.Blocker {
	if allowed == nil {
		return nil
	}
	for _, g := range gs {
		if err := allowed.AllowsAs(endpoints.Gate, g.URL); err != nil {
			return &plan.Blocker{Reason: "GateEndpointNotAllowed", Message: fmt.Sprintf(
				"spec.gates[%s].url: %v; ramp contacts no other: use one of those, or ask the platform team to allow it (manager flag --analysis-allowed-endpoints)", g.Name, err)}
		}
	}
	return nil
}
