package examples

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/internal/release"
)

// The load generator of podinfo-bluegreen-load runs `manager load` from the image of this
// version (as config/default runs the manager), never latest.
func TestLoadGeneratorRunsThisVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := "ghcr.io/ramp-dev/ramp:v" + strings.TrimSpace(string(v))
	objs, err := release.Kustomize("podinfo-bluegreen-load")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "Deployment" || u.GetName() != "ramp-load" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		if len(cs) != 1 {
			t.Fatalf("ramp-load has %d containers", len(cs))
		}
		c := cs[0].(map[string]any)
		args, _, _ := unstructured.NestedStringSlice(c, "args")
		if c["image"] != want || len(args) == 0 || args[0] != "load" {
			t.Errorf("ramp-load runs %v %q, want %s load …", c["image"], args, want)
		}
		return
	}
	t.Fatal("podinfo-bluegreen-load has no ramp-load Deployment")
}
