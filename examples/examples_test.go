// Package examples holds example manifests; its test applies them to a real API server.
package examples

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/internal/testenv"
)

func TestExamplesApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()

	dirs, err := filepath.Glob("*/kustomization.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found (%v)", err)
	}
	for _, k := range dirs {
		dir := filepath.Dir(k)
		t.Run(dir, func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ex-"}}
			if err := env.Client.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			applied := 0
			for _, f := range files {
				if filepath.Base(f) == "kustomization.yaml" {
					continue
				}
				objs, err := testenv.ReadObjects(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range objs {
					u.SetNamespace(ns.Name)
					if err := env.Client.Create(ctx, u); err != nil {
						t.Errorf("%s: %s %s rejected: %v", f, u.GetKind(), u.GetName(), err)
					}
					applied++
				}
			}
			if applied < 3 {
				t.Errorf("%s: only %d objects", dir, applied)
			}
		})
	}
}
