package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/revision"
)

func TestTrimManagedFields(t *testing.T) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, sub string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: sub, APIVersion: "apps/v1"}
	}
	apply, update := metav1.ManagedFieldsOperationApply, metav1.ManagedFieldsOperationUpdate
	for _, tc := range []struct {
		name string
		mf   []metav1.ManagedFieldsEntry
		keep bool
	}{
		{"none", nil, false},
		{"someone else's object", []metav1.ManagedFieldsEntry{entry("kustomize-controller", apply, ""), entry("kube-controller-manager", update, "status")}, false},
		{"ramp's, handed over", []metav1.ManagedFieldsEntry{entry(FieldManager, apply, ""), entry("kube-controller-manager", update, "status")}, false},
		{"ramp's status write only", []metav1.ManagedFieldsEntry{entry(FieldManager, update, "status")}, false},
		{"ramp's create, not handed over yet", []metav1.ManagedFieldsEntry{entry(FieldManager, update, ""), entry("kube-controller-manager", update, "status")}, true},
		{"ramp's merge patch after its apply", []metav1.ManagedFieldsEntry{entry(FieldManager, apply, ""), entry(FieldManager, update, "")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", ManagedFields: tc.mf}}
			out, err := TrimManagedFields(d)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*appsv1.Deployment).ManagedFields
			if kept := len(got) == len(tc.mf) && len(got) > 0; kept != tc.keep {
				t.Errorf("kept %v, want %v (%d of %d entries left)", kept, tc.keep, len(got), len(tc.mf))
			}
			if !tc.keep && got != nil {
				t.Errorf("managedFields left: %v", got)
			}
		})
	}
	// A paused Rollout (who wrote the pause annotation) and VirtualServices (does ramp own a
	// referenced one's routes) keep theirs whoever wrote them; a Rollout without the pause
	// annotation keeps none.
	mf := []metav1.ManagedFieldsEntry{entry("kubectl-annotate", update, ""), entry(FieldManager, update, "status")}
	paused := map[string]string{rampv1.AnnotationPaused: "true"}
	for _, o := range []client.Object{&rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf, Annotations: paused}}, &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf}}} {
		if out, _ := TrimManagedFields(o); len(out.(client.Object).GetManagedFields()) != len(mf) {
			t.Errorf("%T lost its managedFields", o)
		}
	}
	// ramp's own VirtualService (controlled by its Rollout) is trimmed as any object: its
	// routes are ramp's by construction.
	own := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf, OwnerReferences: []metav1.OwnerReference{
		{APIVersion: rampv1.GroupVersion.String(), Kind: "Rollout", Name: "web", UID: "u1", Controller: ptr.To(true)}}}}
	if out, _ := TrimManagedFields(own.DeepCopy()); out.(*networkingv1.VirtualService).ManagedFields != nil {
		t.Error("ramp's own VirtualService keeps its managedFields")
	}
	own.ManagedFields = append(own.ManagedFields, entry(FieldManager, update, ""))
	if out, _ := TrimManagedFields(own.DeepCopy()); len(out.(*networkingv1.VirtualService).ManagedFields) != len(own.ManagedFields) {
		t.Error("ramp's own VirtualService lost its managedFields before the hand-over")
	}
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf, Annotations: map[string]string{rampv1.AnnotationPromote: "x"}}}
	if out, _ := TrimManagedFields(ro); out.(*rampv1.Rollout).ManagedFields != nil {
		t.Errorf("a Rollout without the pause annotation keeps its managedFields: %v", ro.ManagedFields)
	}
	// Not an object (a tombstone): left as it is.
	if out, err := TrimManagedFields("x"); err != nil || out != "x" {
		t.Errorf("TrimManagedFields(non-object) = %v, %v", out, err)
	}
}

// A cached ReplicaSet keeps the revision of its pod template, not the template: what ramp
// reads of it (the revision, labels, owner, ready count) is as before, and a revision written
// on the object by anyone else is not believed.
func TestCacheTransformTrimsReplicaSetTemplates(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: "5d8f"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "podinfo:2", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}},
	}
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "u1", Controller: ptr.To(true)}
	live := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f", Labels: tmpl.Labels, OwnerReferences: []metav1.OwnerReference{owner},
			Annotations: map[string]string{cachedRevision: "forged"}},
		Spec:   appsv1.ReplicaSetSpec{Template: tmpl},
		Status: appsv1.ReplicaSetStatus{ReadyReplicas: 2},
	}
	want := revision.Of(&tmpl)
	if got := templateRevision(live.Annotations, &live.Spec.Template); got != want {
		t.Fatalf("a ReplicaSet read whole: revision %s, want %s (not the annotation's)", got, want)
	}
	out, err := CacheTransform(live.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	cached := out.(*appsv1.ReplicaSet)
	if len(cached.Spec.Template.Spec.Containers) != 0 || cached.Spec.Template.Labels != nil {
		t.Errorf("the cached ReplicaSet keeps its template: %+v", cached.Spec.Template)
	}
	if got := templateRevision(cached.Annotations, &cached.Spec.Template); got != want {
		t.Errorf("cached revision %s, want %s", got, want)
	}
	if cached.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "5d8f" || !metav1.IsControlledBy(cached, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}) ||
		cached.Status.ReadyReplicas != 2 {
		t.Errorf("the cached ReplicaSet lost what ramp reads: %+v", cached.ObjectMeta)
	}
}

// Deployments and Services are cached without client-side apply's copy of the manifest, which
// ramp never reads; Rollouts keep it (ramp updates them, which would drop it on the server).
func TestCacheTransformDropsLastApplied(t *testing.T) {
	annotations := func() map[string]string {
		return map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"apps/v1"}`, "team": "shop"}
	}
	for _, tc := range []struct {
		obj  client.Object
		keep bool
	}{
		{&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: annotations()}}, false},
		{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: annotations()}}, false},
		{&rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: annotations()}}, true},
	} {
		out, err := CacheTransform(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(client.Object).GetAnnotations()
		if _, kept := got[corev1.LastAppliedConfigAnnotation]; kept != tc.keep || got["team"] != "shop" {
			t.Errorf("%T: annotations %v, want the last-applied one kept: %t, the others kept", tc.obj, got, tc.keep)
		}
	}
}

// A canary Deployment ramp controls is cached with its template's revision instead of its
// template, which is its target's plus the track label: ramp never reads it back, and judges
// whether it is the one it renders by that revision. Any other Deployment (a target, a foreign
// "-canary", one controlled by another group's Rollout) keeps its template.
func TestCacheTransformTrimsCanaryTemplates(t *testing.T) {
	target := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"prometheus.io/scrape": "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "podinfo:2"}}},
	}
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: rampv1.RolloutSpec{TargetRef: rampv1.TargetReference{Name: "web"}}}
	want, tmpl, err := renderCanary(ro, &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: target}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	templateRev := revision.Of(tmpl)
	rendered := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(want.Object, rendered); err != nil {
		t.Fatal(err)
	}
	edited := rendered.Spec.Template.DeepCopy()
	edited.Spec.Containers[0].Image = "podinfo:evil"
	controller := func(apiVersion, kind string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: "web", UID: "u1", Controller: ptr.To(true)}}
	}
	for _, tc := range []struct {
		name     string
		owners   []metav1.OwnerReference
		template *corev1.PodTemplateSpec
		trim     bool
		upToDate bool
	}{
		{"ramp's canary", controller(rampv1.GroupVersion.String(), "Rollout"), &rendered.Spec.Template, true, true},
		{"ramp's canary, its image edited by hand", controller(rampv1.GroupVersion.String(), "Rollout"), edited, true, false},
		{"a target", nil, &rendered.Spec.Template, false, true},
		{"owned by a Rollout, not controlled", []metav1.OwnerReference{{APIVersion: rampv1.GroupVersion.String(), Kind: "Rollout", Name: "web", UID: "u1"}}, &rendered.Spec.Template, false, true},
		{"a foreign -canary", controller("helm.toolkit.fluxcd.io/v2", "HelmRelease"), &rendered.Spec.Template, false, true},
		{"another group's Rollout", controller("argoproj.io/v1alpha1", "Rollout"), &rendered.Spec.Template, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web-canary", OwnerReferences: tc.owners,
					// A value written on the object is not believed.
					Annotations: map[string]string{revision.Annotation: want.GetAnnotations()[revision.Annotation], cachedRevision: templateRev}},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(2)), Template: *tc.template.DeepCopy(),
					Selector: &metav1.LabelSelector{MatchLabels: tc.template.Labels}},
				Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 2},
			}
			out, err := CacheTransform(live.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			cached := out.(*appsv1.Deployment)
			if !tc.trim {
				if !equality.Semantic.DeepEqual(cached, live) {
					t.Errorf("changed: %+v", cached)
				}
				return
			}
			if !equality.Semantic.DeepEqual(cached.Spec.Template, corev1.PodTemplateSpec{}) {
				t.Errorf("the cached canary keeps its template: %+v", cached.Spec.Template)
			}
			// What ramp reads of its canary is as before.
			if got, want := observeCanary(cached), observeCanary(live); got != want {
				t.Errorf("observeCanary: %+v from the cache, %+v from the live object", got, want)
			}
			if got, gotLive := canaryUpToDate(cached, want, templateRev), canaryUpToDate(live, want, templateRev); got != tc.upToDate || gotLive != tc.upToDate {
				t.Errorf("canaryUpToDate: %t from the cache, %t from the live object, want %t", got, gotLive, tc.upToDate)
			}
		})
	}
}

// ramp reads its canary from a cache without the canary's pod template (TrimCanary): a hand
// edit of what ramp decides on it (its revision, its size, its template) is still seen there
// and taken back.
func TestCanaryHandEditsAreRestored(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns), rampv1.CanaryStep{SetWeight: 20, Pause: untilPromoted()}, rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 20, true)

	c := canaryDeployment(t, ns)
	rev, replicas := c.Annotations[revision.Annotation], ptr.Deref(c.Spec.Replicas, 1)
	edit := fmt.Sprintf(`{"metadata":{"annotations":{%q:"edited"}},"spec":{"replicas":%d}}`, revision.Annotation, replicas+2)
	must(t, env.Client.Patch(ctx, c, client.RawPatch(types.MergePatchType, []byte(edit)), client.FieldOwner("someone")))
	if c.Annotations[revision.Annotation] != "edited" || *c.Spec.Replicas != replicas+2 {
		t.Fatalf("the hand edit did not land: %v, %d replicas", c.Annotations, *c.Spec.Replicas)
	}
	shortWait(t, 10*time.Second, "ramp to restore its canary's revision and size", func(ctx context.Context) (bool, error) {
		live := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), live); err != nil {
			return false, nil
		}
		return live.Annotations[revision.Annotation] == rev && ptr.Deref(live.Spec.Replicas, 1) == replicas, nil
	})

	// The template alone: the canary would run what no revision of the target names, and be
	// judged. An apply takes back the image, a field ramp writes, but not the env var, which
	// only the editor's field manager owns.
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(c), c))
	edit = fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":"podinfo:evil","env":[{"name":"EVIL","value":"1"}]}]}}}}`,
		c.Spec.Template.Spec.Containers[0].Name)
	must(t, env.Client.Patch(ctx, c, client.RawPatch(types.StrategicMergePatchType, []byte(edit)), client.FieldOwner("someone")))
	if got := c.Spec.Template.Spec.Containers[0]; got.Image != "podinfo:evil" || len(got.Env) != 1 {
		t.Fatalf("the template edit did not land: %s, env %v", got.Image, got.Env)
	}
	shortWait(t, 10*time.Second, "ramp to restore its canary", func(ctx context.Context) (bool, error) {
		live := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), live); err != nil {
			return false, nil
		}
		return live.Annotations[revision.Annotation] == rev && ptr.Deref(live.Spec.Replicas, 1) == replicas &&
			live.Spec.Template.Spec.Containers[0].Image == "podinfo:2" && len(live.Spec.Template.Spec.Containers[0].Env) == 0, nil
	})
}

// The cache keeps no managedFields of a Rollout without the pause annotation; the updates
// of that cached copy that add and remove ramp's finalizer leave the stored ones as they were.
func TestRolloutManagedFieldsSurviveTheFinalizer(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	// Another controller's finalizer keeps the deleted Rollout readable after ramp's is gone.
	const hold = "test.ramp.dev/hold"
	ro.Finalizers = []string{hold}
	must(t, env.Client.Create(ctx, ro, client.FieldOwner("gitops")))
	waitPhase(t, ro, rampv1.PhaseIdle)
	check := func(when string, finalizer bool) {
		t.Helper()
		live := &rampv1.Rollout{}
		must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), live))
		var managers []string
		for _, e := range live.ManagedFields {
			managers = append(managers, e.Manager+"/"+e.Subresource)
		}
		if slices.Contains(live.Finalizers, Finalizer) != finalizer || !slices.Contains(managers, "gitops/") || !slices.Contains(managers, FieldManager+"/status") {
			t.Errorf("%s: finalizers %v, field managers %v: want gitops' entry and ramp's status entry", when, live.Finalizers, managers)
		}
	}
	check("adopted", true)

	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "ramp's finalizer removed", func(ctx context.Context) (bool, error) {
		live := &rampv1.Rollout{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), live)
		return err == nil && !slices.Contains(live.Finalizers, Finalizer), err
	})
	check("finalized", false)
	p := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	must(t, env.Client.Patch(ctx, ro, p))
}
