package charts

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// The chart, rendered for the defaults and for each option, is accepted by a real API server
// as `helm install` would send it, and the manager's pod is admitted in a namespace that
// enforces the restricted Pod Security profile.
func TestChartAppliesToAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartT(ctx, t, testenv.Options{})
	// prometheus-operator is not installed here: a stand-in CRD lets the API server take a
	// ServiceMonitor (its fields are checked in TestChartOptions).
	if err := env.Apply(ctx, "test", []*unstructured.Unstructured{serviceMonitorCRD(t)}); err != nil {
		t.Fatal(err)
	}
	if err := waitEstablished(ctx, env, "servicemonitors.monitoring.coreos.com"); err != nil {
		t.Fatal(err)
	}

	install := func(t *testing.T, rel Release, values string) {
		t.Helper()
		restricted(ctx, t, env, rel.Namespace)
		objs := render(t, rel, values)
		if err := env.Apply(ctx, "helm", objs); err != nil {
			t.Fatal(err)
		}
		d := &appsv1.Deployment{}
		dep := find(objs, "Deployment", "")
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dep), d); err != nil {
			t.Fatal(err)
		}
		// What the Deployment controller would create: refused outright if it breaks the
		// namespace's restricted profile.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: rel.Namespace, GenerateName: d.Name + "-", Labels: d.Spec.Template.Labels},
			Spec:       d.Spec.Template.Spec,
		}
		if err := env.Client.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Errorf("the manager's pod is refused under the restricted profile: %v", err)
		}
	}

	t.Run("defaults", func(t *testing.T) { install(t, defaultRelease, "") })
	for i, o := range options {
		t.Run(o.name, func(t *testing.T) {
			install(t, Release{Name: fmt.Sprintf("ramp-%d", i), Namespace: fmt.Sprintf("option-%d", i)}, o.values)
		})
	}
}

// restricted creates ns enforcing the restricted Pod Security profile.
func restricted(ctx context.Context, t *testing.T, env *testenv.Env, ns string) {
	t.Helper()
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func serviceMonitorCRD(t *testing.T) *unstructured.Unstructured {
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor", Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve,
				}},
			}},
		},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: u}
}

func waitEstablished(ctx context.Context, env *testenv.Env, name string) error {
	return testenv.WaitFor(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			if c := c.(map[string]any); c["type"] == "Established" && c["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}
