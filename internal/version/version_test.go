package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnstampedBuildSaysDevel(t *testing.T) {
	if got := Get(); got.Version != "devel" || got.GoVersion == "" || !strings.HasPrefix(got.String(), "ramp devel, commit ") {
		t.Errorf("Get() = %+v, String() = %q", got, got.String())
	}
}

// The stamps make build uses reach the binary: a test that would fail if the package path in
// the Makefile's -X flags drifted from this package.
func TestLinkerStampsReachTheBinary(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"internal/version.Version=", "internal/version.Commit="} {
		if !strings.Contains(string(makefile), "github.com/ramp-dev/ramp/"+v) {
			t.Errorf("the Makefile does not stamp %s", v)
		}
	}
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X github.com/ramp-dev/ramp/internal/version.Version=9.8.7 -X github.com/ramp-dev/ramp/internal/version.Commit=abc123",
		"../../cmd/manager")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("manager --version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "ramp 9.8.7, commit abc123, go") {
		t.Errorf("manager --version printed %q", got)
	}
}
