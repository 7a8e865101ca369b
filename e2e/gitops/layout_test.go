package gitops

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func readDocs(t testing.TB, rel string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(repoFile(t, rel))), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// The Flux and Argo CD examples hold together and follow docs/gitops.md: the other tests apply
// the app itself.
func TestExamplesFollowTheRules(t *testing.T) {
	flux := readDocs(t, "examples/flux/clusters/prod/podinfo.yaml")
	if len(flux) != 2 || flux[0].GetKind() != "GitRepository" || flux[0].GetAPIVersion() != "source.toolkit.fluxcd.io/v1" ||
		flux[1].GetKind() != "Kustomization" || flux[1].GetAPIVersion() != "kustomize.toolkit.fluxcd.io/v1" {
		t.Fatalf("clusters/prod/podinfo.yaml: want a source.toolkit.fluxcd.io/v1 GitRepository and a kustomize.toolkit.fluxcd.io/v1 Kustomization")
	}
	ks := flux[1].Object
	if wait, _, _ := unstructured.NestedBool(ks, "spec", "wait"); !wait {
		t.Errorf("the Kustomization does not wait for its objects' health")
	}
	if src, _, _ := unstructured.NestedString(ks, "spec", "sourceRef", "name"); src != flux[0].GetName() {
		t.Errorf("the Kustomization's source %q is not the GitRepository %q", src, flux[0].GetName())
	}
	path, _, _ := unstructured.NestedString(ks, "spec", "path")
	if _, err := os.Stat(filepath.Join("..", "..", "examples", "flux", filepath.FromSlash(path), "kustomization.yaml")); err != nil {
		t.Errorf("the Kustomization's path %q: %v", path, err)
	}

	for _, f := range []string{"deployment.yaml", "rollout.yaml"} {
		for _, u := range readDocs(t, "examples/flux/apps/podinfo/"+f) {
			switch u.GetKind() {
			case "Deployment":
				if _, set, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "paused"); set {
					t.Errorf("%s sets spec.paused, which ramp owns", f)
				}
				if d, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "progressDeadlineSeconds"); number(d) != float64(math.MaxInt32) {
					t.Errorf("%s: progressDeadlineSeconds %v; a paused Deployment with a deadline is never Current for kstatus", f, d)
				}
			case "Rollout":
				for k := range u.GetAnnotations() {
					if strings.HasPrefix(k, "ramp.dev/") {
						t.Errorf("%s sets the request annotation %s", f, k)
					}
				}
				if u.GetAnnotations()[fluxSSAPolicy] != "Merge" {
					t.Errorf("%s lacks %s: Merge, so Flux would remove kubectl ramp's requests", f, fluxSSAPolicy)
				}
			}
		}
	}

	apps := readDocs(t, "examples/argocd/application.yaml")
	if len(apps) != 1 || apps[0].GetKind() != "Application" || apps[0].GetAPIVersion() != "argoproj.io/v1alpha1" {
		t.Fatalf("examples/argocd/application.yaml: want one argoproj.io/v1alpha1 Application")
	}
	if p, _, _ := unstructured.NestedString(apps[0].Object, "spec", "source", "path"); p != "apps/podinfo" {
		t.Errorf("the Application syncs %q, not the app's directory apps/podinfo", p)
	}
	if _, set, _ := unstructured.NestedFieldNoCopy(apps[0].Object, "spec", "ignoreDifferences"); set {
		t.Errorf("the Application ignores differences: ramp needs none")
	}
	opts, _, _ := unstructured.NestedStringSlice(apps[0].Object, "spec", "syncPolicy", "syncOptions")
	for _, o := range opts {
		if strings.HasPrefix(o, "Replace=true") {
			t.Errorf("sync option %s drops spec.paused and the request annotations", o)
		}
	}
}
