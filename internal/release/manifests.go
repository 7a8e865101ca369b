package release

import (
	"bytes"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ManagerImage is the repository config/ names for the manager; Manifests points it at a
// release's image.
const ManagerImage = "ghcr.io/ramp-dev/ramp"

// Manifests builds the kustomization in dir (config/default) into one install manifest whose
// manager runs image (registry/repository:tag, never latest): CRDs, RBAC, namespace and
// controller, in the order `kubectl apply -f` needs them.
func Manifests(dir, image string) ([]byte, error) {
	ref, err := parseTag(image)
	if err != nil {
		return nil, err
	}
	objs, err := Kustomize(dir)
	if err != nil {
		return nil, err
	}
	pinned := 0
	var out bytes.Buffer
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			n, err := pinImage(u, ref.String())
			if err != nil {
				return nil, err
			}
			pinned += n
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	if pinned == 0 {
		return nil, fmt.Errorf("%s: no container runs %s", dir, ManagerImage)
	}
	return out.Bytes(), nil
}

// pinImage points every container of Deployment u that runs ramp's image at image.
func pinImage(u *unstructured.Unstructured, image string) (int, error) {
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return 0, fmt.Errorf("Deployment %s: %w", u.GetName(), err)
	}
	n := 0
	for i, c := range containers {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		if img, _ := m["image"].(string); repository(img) == ManagerImage {
			m["image"] = image
			containers[i] = m
			n++
		}
	}
	return n, unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// repository is an image reference without its tag or digest ("" when it is no reference).
func repository(image string) string {
	ref, err := name.ParseReference(image)
	if err != nil {
		return ""
	}
	return ref.Context().Name()
}
