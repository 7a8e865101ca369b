package bench

import (
	"context"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/revision"
)

// FakeDeploymentController plays Kubernetes' Deployment controller and kubelets for plain
// envtest, which runs neither: pods become ready the moment they are asked for.
//
// For every Deployment it sets .status as the real controller would once the rollout is
// done (observedGeneration, replicas, updated, ready, available). An un-paused Deployment
// gets a ReplicaSet owned by it for its template, labelled with a pod-template-hash (ramp
// points the DestinationRule's stable subset at it); a paused one whose template changed
// gets none, and reports updatedReplicas 0 with its old pods still ready, like Kubernetes.
// ReplicaSets of earlier templates are kept (Kubernetes keeps ten).
type FakeDeploymentController struct {
	client client.Client

	mu sync.Mutex
	// ready[name] is when the controller last reported name's ready replicas as they are
	// now (the status write returned).
	ready map[types.NamespacedName][]readyMark
}

type readyMark struct {
	at    time.Time
	ready int32
}

// replicaSetOwnerIndex indexes ReplicaSets by their controller's UID.
const replicaSetOwnerIndex = "bench.controllerUID"

// StartFakeDeploymentController runs the controller until ctx ends.
func StartFakeDeploymentController(ctx context.Context, cfg *rest.Config) (*FakeDeploymentController, error) {
	scheme, err := manager.Scheme()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	// A Deployment's ReplicaSets by their controller's UID: listing the namespace's instead
	// copied every app's ReplicaSets for each pass, quadratic in the apps of one namespace.
	if err := mgr.GetFieldIndexer().IndexField(ctx, &appsv1.ReplicaSet{}, replicaSetOwnerIndex, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil {
			return []string{string(ref.UID)}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	f := &FakeDeploymentController{client: mgr.GetClient(), ready: map[types.NamespacedName][]readyMark{}}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("fake-deployment-controller").
		For(&appsv1.Deployment{}).
		Owns(&appsv1.ReplicaSet{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 8, SkipNameValidation: ptr.To(true)}).
		Complete(f)
	if err != nil {
		return nil, err
	}
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, ctx.Err()
	}
	return f, nil
}

// Reconcile brings one Deployment's status (and ReplicaSet) to what a finished rollout shows.
func (f *FakeDeploymentController) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	d := &appsv1.Deployment{}
	if err := f.client.Get(ctx, req.NamespacedName, d); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if d.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	hash := revision.Of(&d.Spec.Template)
	rsName := d.Name + "-" + hash
	hasRS := true
	if err := f.client.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: rsName}, &appsv1.ReplicaSet{}); apierrors.IsNotFound(err) {
		hasRS = false
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if !hasRS && !d.Spec.Paused {
		// Its pods are ready at once, reported before anyone can pause the Deployment: a pass
		// that lists ReplicaSets only later would find the new template paused and leave this
		// one unready forever.
		rs := replicaSetFor(d, rsName, hash)
		if err := f.client.Create(ctx, rs); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, err
		} else if err == nil {
			rs.Status = appsv1.ReplicaSetStatus{Replicas: replicas, FullyLabeledReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas, ObservedGeneration: rs.Generation}
			if err := f.client.Status().Update(ctx, rs); err != nil && !apierrors.IsConflict(err) {
				return ctrl.Result{}, err
			}
		}
		hasRS = true
	}
	if err := f.replicaSetStatuses(ctx, d, rsName, hasRS, replicas); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	want := appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           replicas,
		ReadyReplicas:      replicas,
		AvailableReplicas:  replicas,
	}
	if hasRS {
		want.UpdatedReplicas = replicas
	}
	st := d.Status
	if st.ObservedGeneration == want.ObservedGeneration && st.Replicas == want.Replicas && st.ReadyReplicas == want.ReadyReplicas &&
		st.AvailableReplicas == want.AvailableReplicas && st.UpdatedReplicas == want.UpdatedReplicas {
		return ctrl.Result{}, nil
	}
	d.Status.ObservedGeneration, d.Status.Replicas, d.Status.ReadyReplicas = want.ObservedGeneration, want.Replicas, want.ReadyReplicas
	d.Status.AvailableReplicas, d.Status.UpdatedReplicas = want.AvailableReplicas, want.UpdatedReplicas
	if err := f.client.Status().Update(ctx, d); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	f.mu.Lock()
	f.ready[req.NamespacedName] = append(f.ready[req.NamespacedName], readyMark{at: time.Now(), ready: want.UpdatedReplicas})
	f.mu.Unlock()
	return ctrl.Result{}, nil
}

// readyBefore is the last time before t the controller reported name with updated, ready
// replicas (at least one), and whether it did after from.
func (f *FakeDeploymentController) readyBetween(name types.NamespacedName, from, t time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, m := range f.ready[name] {
		if m.ready > 0 && !m.at.Before(from) && m.at.Before(t) {
			last = m.at
		}
	}
	return last, !last.IsZero()
}

// replicaSetStatuses reports the pods as a finished rollout has them: all of d's replicas
// ready in the ReplicaSet of its template (current: it exists), none in the others. ramp
// counts ready pods per pod-template-hash from them (what each subset routes to). A paused
// Deployment whose template has no ReplicaSet yet keeps its old pods, as Kubernetes does.
func (f *FakeDeploymentController) replicaSetStatuses(ctx context.Context, d *appsv1.Deployment, current string, hasCurrent bool, replicas int32) error {
	if !hasCurrent {
		return nil // paused before its new template got a ReplicaSet: the old pods keep running
	}
	var list appsv1.ReplicaSetList
	if err := f.client.List(ctx, &list, client.InNamespace(d.Namespace), client.MatchingFields{replicaSetOwnerIndex: string(d.UID)}); err != nil {
		return err
	}
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		n := int32(0)
		if rs.Name == current {
			n = replicas
		}
		if rs.Status.Replicas == n && rs.Status.ReadyReplicas == n && rs.Status.AvailableReplicas == n && rs.Status.ObservedGeneration == rs.Generation {
			continue
		}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
		if err := f.client.Status().Update(ctx, rs); err != nil {
			return err
		}
	}
	return nil
}

func replicaSetFor(d *appsv1.Deployment, name, hash string) *appsv1.ReplicaSet {
	tmpl := d.Spec.Template.DeepCopy()
	labels := map[string]string{}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	tmpl.Labels = labels
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: d.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: sel, Template: *tmpl, MinReadySeconds: d.Spec.MinReadySeconds},
	}
}
