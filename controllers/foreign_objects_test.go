package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/revision"
)

// foreignVirtualService is another team's VirtualService "web", as Flux's kustomize-controller
// applies it: /api/v1 to legacy-api, an extra host, a timeout.
func foreignVirtualService(t *testing.T, ns string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": istio.APIVersion, "kind": istio.KindVirtualService,
		"metadata": map[string]any{"name": "web", "namespace": ns, "labels": map[string]any{"team": "platform"}},
		"spec": map[string]any{
			"hosts": []any{"web", "api.example.com"},
			"http": []any{
				map[string]any{
					"name":  "legacy",
					"match": []any{map[string]any{"uri": map[string]any{"prefix": "/api/v1"}}},
					"route": []any{map[string]any{"destination": map[string]any{"host": "legacy-api"}}},
				},
				map[string]any{
					"name":    "web",
					"route":   []any{map[string]any{"destination": map[string]any{"host": "web"}}},
					"timeout": "7s",
				},
			},
		},
	}}
	must(t, env.Client.Patch(context.Background(), u, client.Apply, client.FieldOwner("kustomize-controller")))
	return u
}

// foreignDestinationRule is a DestinationRule "web" controlled by a ConfigMap and written by
// Argo CD.
func foreignDestinationRule(t *testing.T, ns string) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "platform", Namespace: ns}}
	must(t, env.Client.Create(ctx, owner))
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": istio.APIVersion, "kind": istio.KindDestinationRule,
		"metadata": map[string]any{
			"name": "web", "namespace": ns,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap", "name": owner.Name, "uid": string(owner.UID), "controller": true,
			}},
		},
		"spec": map[string]any{
			"host":          "web",
			"trafficPolicy": map[string]any{"tls": map[string]any{"mode": "ISTIO_MUTUAL"}},
			"subsets":       []any{map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}}},
		},
	}}
	must(t, env.Client.Patch(ctx, u, client.Apply, client.FieldOwner("argocd-controller")))
	return u
}

// waitForeignStall waits for Stalled=True with reason ForeignObject and returns its message.
func waitForeignStall(t *testing.T, ro *rampv1.Rollout) string {
	t.Helper()
	waitRollout(t, ro, "Stalled=True ForeignObject", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.StalledCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "ForeignObject" && ro.Status.ObservedGeneration == ro.Generation
	})
	if c := cond(ro, meta.ReadyCondition); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready while a foreign object stalls the Rollout: %+v", c)
	}
	if c := cond(ro, meta.ReconcilingCondition); c != nil {
		t.Errorf("Reconciling while stalled: %+v", c)
	}
	return cond(ro, meta.StalledCondition).Message
}

// assertUnchanged fails unless the live object is exactly before: same version (nothing
// wrote it), spec, labels, owners and field managers.
func assertUnchanged(t *testing.T, before *unstructured.Unstructured) {
	t.Helper()
	live, err := env.IstioObject(context.Background(), before.GetNamespace(), before.GetKind(), before.GetName())
	must(t, err)
	if live == nil {
		t.Fatalf("%s %q was deleted", before.GetKind(), before.GetName())
	}
	if live.GetUID() != before.GetUID() || live.GetResourceVersion() != before.GetResourceVersion() ||
		!equality.Semantic.DeepEqual(live.Object["spec"], before.Object["spec"]) ||
		!equality.Semantic.DeepEqual(live.GetLabels(), before.GetLabels()) ||
		!equality.Semantic.DeepEqual(live.GetOwnerReferences(), before.GetOwnerReferences()) ||
		!equality.Semantic.DeepEqual(live.GetManagedFields(), before.GetManagedFields()) {
		t.Errorf("%s %q changed:\nbefore %v\nnow    %v", before.GetKind(), before.GetName(), before.Object, live.Object)
	}
}

// assertNothingWritten checks that ramp wrote none of its objects: no canary, no pause on the
// target, and no Istio object of the given kinds.
func assertNothingWritten(t *testing.T, ns string, target *appsv1.Deployment, kinds ...string) {
	t.Helper()
	ctx := context.Background()
	for _, kind := range kinds {
		if u, err := env.IstioObject(ctx, ns, kind, "web"); err != nil || u != nil {
			t.Errorf("%s written (err=%v) while the Rollout is stalled", kind, err)
		}
	}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Deployment while stalled: %v", err)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	if target.Spec.Paused {
		t.Errorf("target paused while the Rollout is stalled")
	}
}

// A VirtualService and a DestinationRule of the Rollout's name that someone else made are
// neither taken over nor deleted: the Rollout stalls naming them and who manages them, and
// deleting it leaves them as they were.
func TestForeignVirtualServiceAndDestinationRuleAreLeftAlone(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	vs := foreignVirtualService(t, ns)
	dr := foreignDestinationRule(t, ns)

	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	msg := waitForeignStall(t, ro)
	for _, want := range []string{
		`VirtualService "web"`, "kustomize-controller",
		`DestinationRule "web"`, `controlled by ConfigMap "platform"`, "argocd-controller",
		"not created by this Rollout",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message %q does not say %q", msg, want)
		}
	}
	assertUnchanged(t, vs)
	assertUnchanged(t, dr)
	assertNothingWritten(t, ns, target)

	// The DestinationRule's owners list the Rollout too, but not as its controller: it is still
	// not ramp's, and deleting the Rollout must not delete it.
	withRollout := dr.DeepCopy()
	withRollout.SetOwnerReferences(append(dr.GetOwnerReferences(), metav1.OwnerReference{
		APIVersion: rampv1.GroupVersion.String(), Kind: "Rollout", Name: ro.Name, UID: ro.UID}))
	withRollout.SetManagedFields(nil)
	must(t, env.Client.Patch(ctx, withRollout, client.Apply, client.FieldOwner("argocd-controller")))

	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	assertUnchanged(t, vs)
	// The garbage collector drops the deleted Rollout from the owners; the rest is as it was.
	waitFor(t, "DestinationRule as it was", func(ctx context.Context) (bool, error) {
		live, err := env.IstioObject(ctx, ns, istio.KindDestinationRule, dr.GetName())
		if err != nil || live == nil {
			return false, fmt.Errorf("DestinationRule gone (err=%v)", err)
		}
		return live.GetUID() == dr.GetUID() && equality.Semantic.DeepEqual(live.Object["spec"], dr.Object["spec"]) &&
			equality.Semantic.DeepEqual(live.GetLabels(), dr.GetLabels()) &&
			equality.Semantic.DeepEqual(live.GetOwnerReferences(), dr.GetOwnerReferences()), nil
	})
}

// Once the foreign VirtualService is gone, the Rollout proceeds: ramp creates its own and the
// Rollout becomes Idle and Ready. ramp's created objects carry its apply manager only.
func TestForeignVirtualServiceStallsUntilDeleted(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	vs := foreignVirtualService(t, ns)

	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	if msg := waitForeignStall(t, ro); !strings.Contains(msg, `VirtualService "web"`) || !strings.Contains(msg, "kustomize-controller") ||
		strings.Contains(msg, "DestinationRule") {
		t.Errorf("Stalled message %q must name the VirtualService and its manager only", msg)
	}
	assertUnchanged(t, vs)
	assertNothingWritten(t, ns, target, istio.KindDestinationRule)

	// The other team removes its VirtualService: the deletion wakes the Rollout.
	must(t, env.Client.Delete(ctx, vs))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitRollout(t, ro, "Ready=True, not stalled", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionTrue && cond(ro, meta.StalledCondition) == nil
	})
	waitRouting(t, ns, ro.Name, 0, false)
	assertTargetPaused(t, target, true)
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		u := mustIstioObject(t, ns, kind, ro.Name)
		if !metav1.IsControlledBy(u, ro) {
			t.Errorf("%s not controlled by the Rollout: %v", kind, u.GetOwnerReferences())
		}
		// Right after its create ramp hands the created fields to its apply manager.
		waitFor(t, kind+" managed by ramp's apply alone", func(ctx context.Context) (bool, error) {
			u, err := env.IstioObject(ctx, ns, kind, ro.Name)
			if err != nil || u == nil {
				return false, err
			}
			mf := u.GetManagedFields()
			return len(mf) == 1 && mf[0].Manager == FieldManager && mf[0].Operation == metav1.ManagedFieldsOperationApply, nil
		})
	}
}

// A "<target>-canary" Deployment ramp did not create stalls the Rollout the same way, and its
// deletion wakes it.
func TestForeignCanaryDeploymentStallsUntilDeleted(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	lbl := map[string]string{"app": "other"}
	other := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "other", Image: "other:1"}}},
			},
		},
	}
	must(t, env.Client.Create(ctx, other, client.FieldOwner("helm")))

	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	if msg := waitForeignStall(t, ro); !strings.Contains(msg, `Deployment "web-canary"`) || !strings.Contains(msg, "helm") {
		t.Errorf("Stalled message %q must name the Deployment and its manager", msg)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(other), other))
	if len(other.OwnerReferences) != 0 || other.Spec.Template.Spec.Containers[0].Image != "other:1" {
		t.Errorf("the foreign Deployment was written: %+v", other.ObjectMeta)
	}
	assertTargetPaused(t, target, false)
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		if u, err := env.IstioObject(ctx, ns, kind, ro.Name); err != nil || u != nil {
			t.Errorf("%s written (err=%v) while the Rollout is stalled", kind, err)
		}
	}

	must(t, env.Client.Delete(ctx, other))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitRouting(t, ns, ro.Name, 0, false)
}

// The act phase creates what observe found missing with a Create: an object someone made in
// between makes it fail and stays as it was (the next pass reports it as foreign).
func TestCreateNeverTakesOverAnObjectMadeMeanwhile(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	vs := foreignVirtualService(t, ns)
	dr := foreignDestinationRule(t, ns)
	must(t, env.Client.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "other"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "other", Image: "other:1"}}},
			},
		},
	}))
	canary := &appsv1.Deployment{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, canary))

	// A Rollout that is not in the cluster: its reconciler is never run, only its act phase.
	ro := canaryRollout(ns)
	ro.UID = "00000000-0000-0000-0000-000000000001"
	r := &RolloutReconciler{Client: env.Client}
	// What observe saw a moment before: nothing of ramp's.
	rev := revision.Of(&target.Spec.Template)
	w := &world{target: target, obs: plan.Observation{Target: plan.Target{Exists: true, Revision: rev, Paused: true}}}
	target.Spec.Paused = true // leave the target alone: this test is about the three objects
	err := r.apply(ctx, ro, w, &plan.Desired{TargetPaused: true, CanaryRevision: rev, CanaryReplicas: 1, StablePodTemplateHash: "abc"})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("apply over objects made meanwhile: %v, want AlreadyExists", err)
	}
	// apply stops at the first failure: try each object.
	if err := r.applyVirtualService(ctx, nil, istio.VirtualService(ro, istio.Routing{})); !apierrors.IsAlreadyExists(err) {
		t.Errorf("VirtualService: %v, want AlreadyExists", err)
	}
	want, err := istio.DestinationRule(ro, "abc")
	must(t, err)
	if err := r.applyDestinationRule(ctx, nil, want); !apierrors.IsAlreadyExists(err) {
		t.Errorf("DestinationRule: %v, want AlreadyExists", err)
	}
	assertUnchanged(t, vs)
	assertUnchanged(t, dr)
	after := &appsv1.Deployment{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(canary), after))
	// The Deployment controller writes its status: compare what ramp would have written.
	if after.Generation != canary.Generation || len(after.OwnerReferences) != 0 || !equality.Semantic.DeepEqual(after.Labels, canary.Labels) ||
		after.Annotations[revision.Annotation] != "" {
		t.Errorf("the foreign canary Deployment was written: %+v", after.ObjectMeta)
	}
}

// Fields ramp wrote when it created its objects and stops writing later are removed: the
// creation's fields belong to ramp's apply manager, not to a separate "Update" entry that
// would keep them.
func TestFieldsRampStopsWritingAreRemoved(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Service.Gateways = []string{"istio-system/public-gateway"}
	ro.Spec.Service.TrafficPolicy = &rampv1.TrafficPolicy{TLS: &rampv1.ClientTLS{Mode: "ISTIO_MUTUAL"}}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	vs := mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
	if g, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways"); len(g) != 1 {
		t.Fatalf("gateways %v", g)
	}

	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		ro.Spec.Service.Gateways = nil
		ro.Spec.Service.TrafficPolicy = nil
		return env.Client.Update(ctx, ro)
	}))
	waitFor(t, "gateways and traffic policy removed", func(ctx context.Context) (bool, error) {
		vs, err := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name)
		if err != nil || vs == nil {
			return false, err
		}
		dr, err := env.IstioObject(ctx, ns, istio.KindDestinationRule, ro.Name)
		if err != nil || dr == nil {
			return false, err
		}
		_, hasGateways, _ := unstructured.NestedFieldNoCopy(vs.Object, "spec", "gateways")
		_, hasPolicy, _ := unstructured.NestedFieldNoCopy(dr.Object, "spec", "trafficPolicy")
		return !hasGateways && !hasPolicy, nil
	})
}

// A Rollout whose target is another Rollout's canary stalls naming spec.targetRef, and
// writes nothing: no pause of that canary, no canary of the canary, no routes.
func TestTargetThatIsARolloutsCanaryStalls(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	owner := canaryRollout(ns)
	owner.Name = "owner"
	owner.Spec.Analysis = nil
	must(t, env.Client.Create(ctx, owner))
	lbl := map[string]string{"app": "web", istio.TrackLabel: istio.TrackCanary}
	canary := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary", Namespace: ns, OwnerReferences: []metav1.OwnerReference{
			*metav1.NewControllerRef(owner, rampv1.GroupVersion.WithKind("Rollout"))}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "podinfo:2"}}},
			},
		},
	}
	must(t, env.Client.Create(ctx, canary))

	ro := canaryRollout(ns)
	ro.Name = "of-the-canary"
	ro.Spec.TargetRef.Name = canary.Name
	ro.Spec.Service.Name = "web"
	must(t, env.Client.Create(ctx, ro))
	stalled := waitStalled(t, ro, "InvalidSpec")
	if ro.Status.ObservedGeneration != ro.Generation {
		t.Errorf("Stalled at observedGeneration %d, generation %d", ro.Status.ObservedGeneration, ro.Generation)
	}
	if msg := stalled.Message; !strings.Contains(msg, "spec.targetRef.name") || !strings.Contains(msg, `Rollout "owner"`) {
		t.Errorf("Stalled message %q must name spec.targetRef.name and the Rollout whose canary it is", msg)
	}
	assertTargetPaused(t, canary, false)
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary-canary"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("a canary of the canary: %v", err)
	}
	if u, err := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name); err != nil || u != nil {
		t.Errorf("VirtualService written (err=%v) while the Rollout is stalled", err)
	}
}

// A target whose pods carry the canary track label stalls naming spec.targetRef.name and
// the label, and is not paused: its pods would be in the canary subset, and its ReplicaSets
// are not in the manager's cache.
func TestTargetLabelledAsCanaryStalls(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(target), target); err != nil {
			return err
		}
		target.Spec.Template.Labels[istio.TrackLabel] = istio.TrackCanary
		return env.Client.Update(ctx, target)
	}))
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	stalled := waitStalled(t, ro, "InvalidSpec")
	if ro.Status.ObservedGeneration != ro.Generation {
		t.Errorf("Stalled at observedGeneration %d, generation %d", ro.Status.ObservedGeneration, ro.Generation)
	}
	if msg := stalled.Message; !strings.Contains(msg, "spec.targetRef.name") || !strings.Contains(msg, istio.TrackLabel) {
		t.Errorf("Stalled message %q must name spec.targetRef.name and the label", msg)
	}
	assertNothingWritten(t, ns, target, istio.KindVirtualService, istio.KindDestinationRule)
}
