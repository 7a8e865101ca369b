package controllers

import (
	"context"
	"slices"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// targetIndex indexes Rollouts by the Deployment they target, so a change of that
// Deployment wakes its Rollout at once (no polling interval).
const targetIndex = "spec.targetRef.name"

// serviceIndex indexes Rollouts by the Service they route.
const serviceIndex = "ramp.service"

// virtualServiceRefIndex indexes Rollouts by the VirtualService they reference.
const virtualServiceRefIndex = "spec.service.virtualServiceRef.name"

// httpRouteRefIndex indexes Rollouts by the HTTPRoute they reference.
const httpRouteRefIndex = "spec.service.gatewayAPI.httpRouteRef.name"

// SetupWithManager registers the reconciler and its watches.
func (r *RolloutReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.useFreshReads()
	r.indexed = true
	if err := mgr.GetFieldIndexer().IndexField(ctx, &appsv1.ReplicaSet{}, replicaSetOwnerIndex, indexReplicaSetOwner); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rampv1.Rollout{}, targetIndex, func(o client.Object) []string {
		return []string{o.(*rampv1.Rollout).Spec.TargetRef.Name}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rampv1.Rollout{}, serviceIndex, func(o client.Object) []string {
		return []string{o.(*rampv1.Rollout).ServiceName()}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rampv1.Rollout{}, virtualServiceRefIndex, func(o client.Object) []string {
		if ref := o.(*rampv1.Rollout).Spec.Service.VirtualServiceRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rampv1.Rollout{}, httpRouteRefIndex, func(o client.Object) []string {
		if g := o.(*rampv1.Rollout).Spec.Service.GatewayAPI; g != nil && g.HTTPRouteRef != nil {
			return []string{g.HTTPRouteRef.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rampv1.Rollout{}, templateIndex, indexTemplateRefs); err != nil {
		return err
	}
	// Analysis rounds run on their own pool, stopped with the manager; a finished round wakes
	// its Rollout.
	runner := r.roundRunner()
	if err := mgr.Add(runner); err != nil {
		return err
	}
	// So do gate calls.
	gateRunner := r.gateRunner()
	if err := mgr.Add(gateRunner); err != nil {
		return err
	}
	// Status writes are ramp's own: only spec and annotation (request) changes wake it; for a
	// shard, also label changes (a Rollout moved into it, when the cache is not filtered).
	wake := []predicate.Predicate{predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}}
	if r.Selector != nil {
		wake = append(wake, predicate.LabelChangedPredicate{})
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		WithOptions(opts).
		For(&rampv1.Rollout{}, builder.WithPredicates(predicate.Or(wake...))).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForDeployment)).
		// The routes follow the target's ready pods (a recreated target's new pods becoming
		// ready); its ReplicaSets' ready counts may reach the cache after its own status.
		Watches(&appsv1.ReplicaSet{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForReplicaSet), builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, ok1 := e.ObjectOld.(*appsv1.ReplicaSet)
				n, ok2 := e.ObjectNew.(*appsv1.ReplicaSet)
				return ok1 && ok2 && o.Status.ReadyReplicas != n.Status.ReadyReplicas
			},
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		// A Rollout gone wakes the others of its Deployment: the next one takes over.
		Watches(&rampv1.Rollout{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsSharingTarget), builder.WithPredicates(predicate.Funcs{
			CreateFunc:  func(event.CreateEvent) bool { return false },
			UpdateFunc:  func(event.UpdateEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		// A Service created or deleted unblocks or blocks the Rollouts routing it; a change of
		// its ports or selector reaches the Services the Gateway API router copies from it.
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForService), builder.WithPredicates(predicate.Funcs{
			UpdateFunc:  serviceRoutingChanged,
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		// By name, not by owner: a VirtualService or DestinationRule of the Rollout's name that
		// someone else made stalls the Rollout, and its deletion must wake it; a referenced
		// VirtualService wakes the Rollouts referencing it.
		Watches(&networkingv1.VirtualService{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForVirtualService)).
		Watches(&networkingv1.DestinationRule{}, handler.EnqueueRequestsFromMapFunc(r.rolloutOfSameName)).
		// A metric template created, changed or deleted unblocks, changes or blocks the
		// Rollouts referencing it.
		Watches(&rampv1.ClusterMetricTemplate{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForClusterMetricTemplate), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&rampv1.MetricTemplate{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForMetricTemplate), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(runner.Source()).
		WatchesRawSource(gateRunner.Source())
	// HTTPRoutes by name, as VirtualServices, in a cluster that has the Gateway API: a watch of
	// a kind the API server does not serve would keep the manager from starting, and a
	// Rollout that asks for it there stalls (GatewayAPINotInstalled).
	if _, err := mgr.GetRESTMapper().RESTMapping(schema.GroupKind{Group: gwapiv1.GroupName, Kind: "HTTPRoute"}, gwapiv1.GroupVersion.Version); err == nil {
		b = b.Watches(&gwapiv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsForHTTPRoute))
		r.gatewayAPI = true
	} else if !meta.IsNoMatchError(err) {
		return err
	}
	return b.Complete(r)
}

// rolloutOfSameName maps a VirtualService or DestinationRule to the Rollout whose name it has.
func (r *RolloutReconciler) rolloutOfSameName(ctx context.Context, o client.Object) []reconcile.Request {
	return r.ofShard(ctx, client.ObjectKeyFromObject(o))
}

// ofShard wakes Rollout key, unless this manager is a shard (Selector) and key is not one of
// its Rollouts: the objects ramp owns are seen by every shard, and are the concern of the
// shard whose Rollout they belong to. The cache holds only the shard's Rollouts.
func (r *RolloutReconciler) ofShard(ctx context.Context, key types.NamespacedName) []reconcile.Request {
	if r.Selector != nil {
		ro := &rampv1.Rollout{}
		if err := r.Get(ctx, key, ro); err != nil || !r.inShard(ro) {
			return nil
		}
	}
	return []reconcile.Request{{NamespacedName: key}}
}

// rolloutsForVirtualService maps a VirtualService to the Rollout of its name and the Rollouts
// referencing it.
func (r *RolloutReconciler) rolloutsForVirtualService(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.rolloutOfSameName(ctx, o) // none when that Rollout is another shard's
	for _, req := range r.rolloutsBy(ctx, o.GetNamespace(), virtualServiceRefIndex, o.GetName()) {
		if !slices.Contains(reqs, req) {
			reqs = append(reqs, req)
		}
	}
	return reqs
}

// rolloutsForHTTPRoute maps an HTTPRoute to the Rollout of its name and the Rollouts
// referencing it.
func (r *RolloutReconciler) rolloutsForHTTPRoute(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.rolloutOfSameName(ctx, o)
	for _, req := range r.rolloutsBy(ctx, o.GetNamespace(), httpRouteRefIndex, o.GetName()) {
		if !slices.Contains(reqs, req) {
			reqs = append(reqs, req)
		}
	}
	return reqs
}

// rolloutsForDeployment maps a Deployment to the Rollouts it concerns: its owner when it is
// a canary, the Rollouts targeting it otherwise, and for a "<name>-canary" ramp did not create
// also the Rollouts targeting <name> (it stalls them; its deletion must wake them).
func (r *RolloutReconciler) rolloutsForDeployment(ctx context.Context, o client.Object) []reconcile.Request {
	if ro, ok := rolloutOf(o); ok {
		return r.ofShard(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: ro})
	}
	targets := []string{o.GetName()}
	if t, ok := rampv1.TargetOfCanaryName(o.GetName()); ok {
		targets = append(targets, t)
	}
	var reqs []reconcile.Request
	for _, t := range targets {
		reqs = append(reqs, r.rolloutsBy(ctx, o.GetNamespace(), targetIndex, t)...)
	}
	return reqs
}

// rolloutsForReplicaSet maps a ReplicaSet to the Rollouts targeting the Deployment that
// controls it.
func (r *RolloutReconciler) rolloutsForReplicaSet(ctx context.Context, o client.Object) []reconcile.Request {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "Deployment" {
		return nil
	}
	return r.rolloutsBy(ctx, o.GetNamespace(), targetIndex, ref.Name)
}

// rolloutsForService maps a Service to the Rollouts routing its traffic and, for a
// <name>-stable or <name>-canary (the Gateway API router's backends, ramp's or someone
// else's, which stalls them), to the Rollouts routing <name>.
// serviceRoutingChanged reports whether an update changed what ramp copies of a Service: its
// ports or selector (status, labels and annotations it does not read).
func serviceRoutingChanged(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*corev1.Service)
	n, ok2 := e.ObjectNew.(*corev1.Service)
	return ok1 && ok2 && (!equality.Semantic.DeepEqual(o.Spec.Ports, n.Spec.Ports) || !equality.Semantic.DeepEqual(o.Spec.Selector, n.Spec.Selector))
}

func (r *RolloutReconciler) rolloutsForService(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.rolloutsBy(ctx, o.GetNamespace(), serviceIndex, o.GetName())
	for _, suffix := range []string{"-stable", "-canary"} {
		if name, ok := strings.CutSuffix(o.GetName(), suffix); ok {
			for _, req := range r.rolloutsBy(ctx, o.GetNamespace(), serviceIndex, name) {
				if !slices.Contains(reqs, req) {
					reqs = append(reqs, req)
				}
			}
		}
	}
	return reqs
}

// rolloutsBy lists the Rollouts of namespace whose index field has value. The manager's
// cache answers from memory, so an error here means the cache itself is broken: it is logged
// loudly, as the wake-up it would have given is lost.
func (r *RolloutReconciler) rolloutsBy(ctx context.Context, namespace, field, value string) []reconcile.Request {
	var list rampv1.RolloutList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{field: value}); err != nil {
		log.FromContext(ctx).Error(err, "listing Rollouts to wake: a change is missed until their next pass", "namespace", namespace, field, value)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// rolloutsSharingTarget maps a Rollout to the other Rollouts of its Deployment.
func (r *RolloutReconciler) rolloutsSharingTarget(ctx context.Context, o client.Object) []reconcile.Request {
	ro, ok := o.(*rampv1.Rollout)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	for _, req := range r.rolloutsBy(ctx, ro.Namespace, targetIndex, ro.Spec.TargetRef.Name) {
		if req.NamespacedName != client.ObjectKeyFromObject(ro) {
			reqs = append(reqs, req)
		}
	}
	return reqs
}
