// Package config holds ramp's kustomize manifests; its test applies them to a real API server.
package config

import (
	"context"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/internal/release"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// `kubectl apply -k config/default`, then `kubectl apply -k config/samples`, work on an empty
// cluster (envtest has ramp's CRD already; the samples need no more than it).
func TestConfigAppliesToAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartT(ctx, t, testenv.Options{})

	t.Run("default", func(t *testing.T) { testDefault(ctx, t, env) })
	t.Run("samples", func(t *testing.T) {
		// The samples bring their namespace; kustomize orders it before the Rollouts.
		objs, err := release.Kustomize("samples")
		if err != nil {
			t.Fatal(err)
		}
		rollouts := 0
		for _, u := range objs {
			if u.GetKind() == "Rollout" {
				rollouts++
			}
		}
		if rollouts != 2 {
			t.Errorf("config/samples builds %d Rollouts, want 2", rollouts)
		}
		if err := env.Apply(ctx, "kubectl", objs); err != nil {
			t.Fatal(err)
		}
	})
}

func testDefault(ctx context.Context, t *testing.T, env *testenv.Env) {
	// As `kubectl apply -k config/default`: kustomize orders Namespaces and CRDs first.
	objs, err := release.Kustomize("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Apply(ctx, "kubectl", objs); err != nil {
		t.Fatal(err)
	}
	var manager *appsv1.Deployment
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if u.GetKind() == "Deployment" {
			manager = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, manager); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Role", "RoleBinding", "Namespace", "Deployment"} {
		if kinds[k] == 0 {
			t.Errorf("config/default has no %s", k)
		}
	}
	if manager == nil {
		t.Fatal("no manager Deployment")
	}

	// The manager runs as non-root, read-only, with no capabilities, and elects a leader.
	pod := manager.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("manager pod must set runAsNonRoot")
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("manager container security context too loose: %+v", sc)
	}
	if !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("leader election must be on: args %v", c.Args)
	}
	if pod.ServiceAccountName != "ramp-controller" {
		t.Errorf("service account %q", pod.ServiceAccountName)
	}
}
