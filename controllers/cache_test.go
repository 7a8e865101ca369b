package controllers

import (
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// Rollouts (who wrote the pause annotation) and VirtualServices (does ramp own a referenced
	// one's routes) keep theirs whoever wrote them.
	mf := []metav1.ManagedFieldsEntry{entry("kubectl-annotate", update, "")}
	for _, o := range []client.Object{&rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf}}, &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{ManagedFields: mf}}} {
		if out, _ := TrimManagedFields(o); len(out.(client.Object).GetManagedFields()) != 1 {
			t.Errorf("%T lost its managedFields", o)
		}
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
	if got := replicaSetRevision(live); got != want {
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
	if got := replicaSetRevision(cached); got != want {
		t.Errorf("cached revision %s, want %s", got, want)
	}
	if cached.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "5d8f" || !metav1.IsControlledBy(cached, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}) ||
		cached.Status.ReadyReplicas != 2 {
		t.Errorf("the cached ReplicaSet lost what ramp reads: %+v", cached.ObjectMeta)
	}
}
