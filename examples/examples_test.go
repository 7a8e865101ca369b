// Package examples holds example manifests; its test applies them to a real API server.
package examples

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/internal/release"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// kustomizations lists the directories holding a kustomization.yaml: each is applied with
// `kubectl apply -k DIR` (the Flux layout's apps/podinfo by Flux, which builds it the same way).
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found (%v)", err)
	}
	return dirs
}

// Every example applies as the README says, `kubectl apply -k DIR`, on an empty cluster: it
// brings its own namespace, created before the objects in it. All of them go into one API
// server as they are, namespaces untouched, so they also apply side by side.
func TestExamplesApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartT(ctx, t, testenv.Options{})

	owner := map[string]string{} // object → the example that builds it
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			objs, err := release.Kustomize(dir)
			if err != nil {
				t.Fatal(err)
			}
			var kinds, namespaces []string
			for _, u := range objs {
				kinds = append(kinds, u.GetKind())
				if u.GetKind() == "Namespace" {
					namespaces = append(namespaces, u.GetName())
				}
			}
			for _, k := range []string{"Namespace", "Deployment", "Service", "Rollout"} {
				if !slices.Contains(kinds, k) {
					t.Errorf("builds no %s (%v)", k, kinds)
				}
			}
			for _, u := range objs {
				// On an empty cluster only the namespaces the example brings exist.
				if ns := u.GetNamespace(); ns != "" && !slices.Contains(namespaces, ns) {
					t.Errorf("%s %s goes to namespace %q, which the example does not create", u.GetKind(), u.GetName(), ns)
				}
				// Two examples building the same object would overwrite each other.
				if other, ok := owner[key(u)]; ok {
					t.Errorf("%s is also built by %s: the two examples cannot both be applied", key(u), other)
				}
				owner[key(u)] = dir
			}
			if err := env.Apply(ctx, "kubectl", objs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func key(u *unstructured.Unstructured) string {
	return u.GroupVersionKind().GroupKind().String() + " " + u.GetNamespace() + "/" + u.GetName()
}
