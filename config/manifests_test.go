// Package config holds ramp's kustomize manifests; its test applies them to a real API server.
package config

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// objects resolves a kustomization's resources (files and directories with their own
// kustomization) into objects. Only what ramp's config uses is supported: plain resources.
func objects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", dir, r, err)
		}
		if st.IsDir() {
			out = append(out, objects(t, p)...)
			continue
		}
		objs, err := testenv.ReadObjects(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, objs...)
	}
	return out
}

func TestDefaultConfigAppliesToAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()

	objs := objects(t, "default")
	// Namespaces first, so the namespaced objects have somewhere to go.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return boolRank(a.GetKind() != "Namespace") - boolRank(b.GetKind() != "Namespace")
	})
	var manager *appsv1.Deployment
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if err := env.Client.Patch(ctx, u, client.Apply, client.FieldOwner("config-test"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
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

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
