package controllers

import (
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
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
