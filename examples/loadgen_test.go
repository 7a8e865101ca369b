package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ramp-dev/ramp/internal/harness"
)

// The load generator of podinfo-bluegreen-load runs `manager load` from the image of this
// version (as config/default runs the manager), never latest. The example is read as the
// demo and the e2e load tests read it.
func TestLoadGeneratorRunsThisVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := "ghcr.io/ramp-dev/ramp:v" + strings.TrimSpace(string(v))
	// Fails unless its ramp-load Deployment has one container running `load` and its flags.
	ex, err := harness.ReadLoadExample(filepath.Join("..", harness.LoadExampleDir))
	if err != nil {
		t.Fatal(err)
	}
	if ex.LoadImage != want {
		t.Errorf("ramp-load runs %s %q, want %s load …", ex.LoadImage, ex.LoadArgs, want)
	}
}
