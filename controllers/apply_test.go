package controllers

import (
	"context"
	"errors"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
)

// The apply layer writes in the order the state machine chose, and writes nothing that is
// already as desired. A fake client records the writes: no API server needed.
func TestApplyFollowsTheDecidedOrder(t *testing.T) {
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "ro-uid"},
		Spec: rampv1.RolloutSpec{TargetRef: rampv1.TargetReference{Name: "web"}, Service: rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")}}}}}
	lbl := map[string]string{"app": "web"}
	target := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](10), Paused: true, Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "podinfo:2"}}}}}}
	rev := revision.Of(&target.Spec.Template)
	scheme := env.Scheme
	live := func(weight, canaryReplicas int32) *world {
		u, _, err := renderCanary(ro, target, canaryReplicas)
		must(t, err)
		canary := &appsv1.Deployment{}
		must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, canary))
		dr, err := istio.DestinationRule(ro, "h1")
		must(t, err)
		return &world{target: target.DeepCopy(), canary: canary, dr: dr,
			vs: istio.VirtualService(ro, istio.Routing{CanaryWeight: weight, HeaderRoute: true})}
	}
	desired := func(weight, canaryReplicas int32, routeFirst bool) *plan.Desired {
		return &plan.Desired{TargetPaused: true, CanaryRevision: rev, CanaryReplicas: canaryReplicas, StablePodTemplateHash: "h1",
			CanaryWeight: weight, HeaderRoute: true, RenderCanary: true, RouteFirst: routeFirst}
	}
	for _, c := range []struct {
		name  string
		world *world
		want  *plan.Desired
		order []string
	}{
		{"traffic grows: the canary first", live(25, 3), desired(50, 5, false), []string{"Deployment/web-canary", "VirtualService/web"}},
		{"traffic leaves: the routes first", live(25, 3), desired(0, 1, true), []string{"VirtualService/web", "Deployment/web-canary"}},
		{"nothing to change: nothing written", live(25, 3), desired(25, 3, false), nil},
		{"routes first, nothing to change: nothing written", live(25, 3), desired(25, 3, true), nil},
		{"un-pausing the target comes last", live(100, 10), &plan.Desired{CanaryRevision: rev, CanaryReplicas: 10,
			StablePodTemplateHash: "h2", CanaryWeight: 100, HeaderRoute: true, RenderCanary: true}, []string{"DestinationRule/web", "Deployment/web"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var writes []string
			record := func(obj client.Object) {
				gvk, err := apiutil.GVKForObject(obj, scheme)
				must(t, err)
				writes = append(writes, gvk.Kind+"/"+obj.GetName())
			}
			cl := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
				Patch: func(_ context.Context, _ client.WithWatch, obj client.Object, _ client.Patch, _ ...client.PatchOption) error {
					record(obj)
					return nil
				},
				Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
					record(obj)
					return nil
				},
			}).Build()
			r := &RolloutReconciler{Client: cl, Scheme: scheme}
			must(t, r.apply(context.Background(), ro, c.world, c.want))
			if !slices.Equal(writes, c.order) {
				t.Errorf("writes %v, want %v", writes, c.order)
			}
		})
	}
}

// The canary ramp creates has its fields moved under ramp's apply manager; when another writer
// comes first (the Deployment controller), the pass still succeeds and the next one finishes the
// move, so a field ramp stops writing is not kept by the creation's manager.
func TestCreatedCanaryFieldsMoveUnderTheApplyManager(t *testing.T) {
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "ro-uid"},
		Spec: rampv1.RolloutSpec{TargetRef: rampv1.TargetReference{Name: "web"}}}
	lbl := map[string]string{"app": "web"}
	target := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "podinfo:2"}}}}}}
	created := []metav1.ManagedFieldsEntry{{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1",
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}}}
	var upgrades int
	conflict := true
	cl := fake.NewClientBuilder().WithScheme(env.Scheme).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			obj.SetManagedFields(created) // as the API server answers
			obj.SetResourceVersion("1")
			return nil
		},
		Patch: func(_ context.Context, _ client.WithWatch, obj client.Object, p client.Patch, _ ...client.PatchOption) error {
			if p.Type() != types.JSONPatchType {
				return nil
			}
			upgrades++
			if conflict {
				return apierrors.NewConflict(appsv1.Resource("deployments"), obj.GetName(), errors.New("the object has been modified"))
			}
			return nil
		},
	}).Build()
	r := &RolloutReconciler{Client: cl, Scheme: env.Scheme}
	rev := revision.Of(&target.Spec.Template)
	d := &plan.Desired{TargetPaused: true, CanaryRevision: rev, CanaryReplicas: 1, StablePodTemplateHash: "h1", RenderCanary: true}

	// Created; the move loses a race: the pass goes on.
	must(t, r.applyCanary(context.Background(), ro, &world{target: target}, d))
	if upgrades != 1 {
		t.Fatalf("%d field-manager moves after the Create, want 1", upgrades)
	}
	// The next pass reads the canary with the creation's manager still there and moves it.
	conflict = false
	u, _, err := renderCanary(ro, target, 1)
	must(t, err)
	live := &appsv1.Deployment{}
	must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, live))
	live.SetManagedFields(created)
	live.SetResourceVersion("2")
	must(t, r.applyCanary(context.Background(), ro, &world{target: target, canary: live}, d))
	if upgrades != 2 {
		t.Errorf("%d field-manager moves, want 2: the next pass did not finish the move", upgrades)
	}
}

// An apply that lost a race to another writer is tried again at once, silently; any other
// failed apply is on the Rollout (a Warning event and the conditions) for people to see.
func TestApplyFailures(t *testing.T) {
	conflict := apierrors.NewConflict(appsv1.Resource("deployments"), "web-canary", errors.New("the object has been modified"))
	invalid := apierrors.NewInvalid(appsv1.SchemeGroupVersion.WithKind("Deployment").GroupKind(), "web-canary", nil)
	for _, tc := range []struct {
		name         string
		err          error
		wantErr      bool
		wantRequeue  bool
		wantEvent    bool
		wantStatused bool
	}{
		{name: "conflict: again at once, nothing recorded", err: conflict, wantRequeue: true},
		{name: "rejected: an event and Stalled", err: invalid, wantErr: true, wantEvent: true, wantStatused: true},
		{name: "other failure: an event, not Ready, and back-off", err: errors.New("connection refused"), wantErr: true, wantEvent: true, wantStatused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7"}}
			statusPatches := 0
			cl := fake.NewClientBuilder().WithScheme(env.Scheme).WithObjects(ro).WithStatusSubresource(ro).
				WithInterceptorFuncs(interceptor.Funcs{
					SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
						statusPatches++
						return c.SubResource(sub).Patch(ctx, obj, p, opts...)
					},
				}).Build()
			must(t, cl.Get(context.Background(), client.ObjectKeyFromObject(ro), ro))
			evs := &eventLog{}
			r := &RolloutReconciler{Client: cl, Scheme: env.Scheme, Events: evs}
			decided := plan.Summary{Reason: rampv1.PhaseProgressing, Reconciling: true}
			res, err := r.applyFailed(context.Background(), ro, decided, decided, tc.err)
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want error %t", err, tc.wantErr)
			}
			if (res.RequeueAfter == conflictRetry) != tc.wantRequeue {
				t.Errorf("requeue after %s", res.RequeueAfter)
			}
			if got := slices.Contains(evs.reasons, plan.ReasonApplyFailed); got != tc.wantEvent {
				t.Errorf("events %v", evs.reasons)
			}
			if (statusPatches > 0) != tc.wantStatused {
				t.Errorf("%d status patches", statusPatches)
			}
		})
	}
}

type eventLog struct{ reasons []string }

func (l *eventLog) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...interface{}) {
	l.reasons = append(l.reasons, reason)
}
