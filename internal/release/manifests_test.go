package release

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// make release-manifests' install.yaml, applied as `kubectl apply -f install.yaml` would, is
// accepted by a real API server and runs the pinned image.
func TestInstallManifestAppliesToAPIServer(t *testing.T) {
	const image = "registry.example/platform/ramp:v9.9.9"
	b, err := Manifests("../../config/default", image)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(":latest")) {
		t.Error("install.yaml names a :latest image")
	}
	objs := decodeAll(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartT(ctx, t, testenv.Options{})
	if err := env.Apply(ctx, "kubectl", objs); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		d := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(u), d); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image != image {
				t.Errorf("Deployment %s container %s runs %s, want %s", d.Name, c.Name, c.Image, image)
			}
			found = true
		}
	}
	if !found {
		t.Error("install.yaml has no controller Deployment")
	}
}

// config/default, applied as it stands, runs the version in the VERSION file: never latest, and
// never a version other than the one make image and make build stamp.
func TestConfigDefaultRunsTheVersionFile(t *testing.T) {
	v, err := os.ReadFile("../../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := ManagerImage + ":v" + strings.TrimSpace(string(v))
	objs, err := Kustomize("../../config/default")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			if img := c.(map[string]any)["image"]; img != want {
				t.Errorf("config/default runs %v, want %s (VERSION)", img, want)
			}
		}
	}
}

func TestManifestsRefuseUnpinnedImages(t *testing.T) {
	for _, image := range []string{"ghcr.io/ramp-dev/ramp:latest", "ghcr.io/ramp-dev/ramp", "Not/An Image"} {
		if _, err := Manifests("../../config/default", image); err == nil {
			t.Errorf("Manifests accepted %q", image)
		}
	}
}

func decodeAll(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
