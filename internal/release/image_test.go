package release

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// The image make image writes, read back as kind or crane would read it: one layer with the
// very binary that was built and the machine's CA bundle, run as 65532, and the binary in it
// runs.
func TestImageTarballHoldsTheBuiltManager(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "manager")
	// Not static and trimmed as make image builds it (CGO_ENABLED=0 and -trimpath would
	// recompile every dependency here, minutes on a cold CI machine): what is tested is the
	// image around the binary, not the binary's flags.
	build := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-s -w -X github.com/ramp-dev/ramp/internal/version.Version=1.2.3 -X github.com/ramp-dev/ramp/internal/version.Commit=deadbeef",
		"../../cmd/manager")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	opts := ImageOptions{Version: "1.2.3", Revision: "deadbeef", Source: "https://github.com/ramp-dev/ramp", Architecture: runtime.GOARCH, Created: created}
	img, err := Image(bin, caBundle, opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ramp.tar")
	const tagName = "registry.example/ramp:v1.2.3"
	if err := WriteTarball(path, tagName, img); err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag(tagName)
	if err != nil {
		t.Fatal(err)
	}
	read, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	// The tarball keeps the config and the layer as written (its manifest is Docker's own
	// format, rebuilt by whoever loads it).
	want, _ := img.Digest()
	wantConfig, _ := img.ConfigName()
	if got, _ := read.ConfigName(); got != wantConfig {
		t.Errorf("config read back %s, wrote %s", got, wantConfig)
	}
	wrote, _ := img.Layers()
	got, _ := read.Layers()
	if len(got) != 1 || len(wrote) != 1 {
		t.Fatalf("%d layers read back, %d written; want 1", len(got), len(wrote))
	}
	if a, b := digestOf(t, got[0]), digestOf(t, wrote[0]); a != b {
		t.Errorf("layer read back %s, wrote %s", a, b)
	}
	cf, err := read.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/manager" || len(c.Cmd) != 0 {
		t.Errorf("config: user %q entrypoint %q cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Time.Equal(created) {
		t.Errorf("config: %s/%s created %s", cf.OS, cf.Architecture, cf.Created)
	}
	for k, v := range map[string]string{"org.opencontainers.image.version": "1.2.3", "org.opencontainers.image.revision": "deadbeef",
		"org.opencontainers.image.source": "https://github.com/ramp-dev/ramp"} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want OCI", mt)
	}
	if m, _ := img.Manifest(); m.Annotations["org.opencontainers.image.revision"] != "deadbeef" {
		t.Errorf("manifest annotations %v", m.Annotations)
	}

	files := filesOf(t, read)
	if len(files) != 2 {
		t.Errorf("image files %v, want /manager and the CA bundle only", keys(files))
	}
	built, _ := os.ReadFile(bin)
	if sha256.Sum256(files["manager"]) != sha256.Sum256(built) {
		t.Errorf("/manager in the image is not the binary built (%d bytes, built %d)", len(files["manager"]), len(built))
	}
	certs, _ := os.ReadFile(caBundle)
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"], certs) {
		t.Errorf("the image's CA bundle is not the machine's")
	}

	// The binary taken out of the image runs (a static linux build on this linux machine).
	extracted := filepath.Join(dir, "from-image")
	if err := os.WriteFile(extracted, files["manager"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(extracted, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("/manager --version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "ramp 1.2.3, commit deadbeef, go") {
		t.Errorf("/manager --version printed %q", out)
	}

	// Equal inputs, equal image: the digest is the binary's and the commit's, not the clock's.
	again, err := Image(bin, caBundle, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("rebuilt image digest %s, first %s", d, want)
	}
}

func TestTarballNeedsAPinnedTag(t *testing.T) {
	img, err := Image(caBundle, caBundle, ImageOptions{Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"ghcr.io/ramp-dev/ramp:latest", "ghcr.io/ramp-dev/ramp", "not a reference"} {
		if err := WriteTarball(filepath.Join(t.TempDir(), "x.tar"), tag, img); err == nil {
			t.Errorf("WriteTarball accepted %q", tag)
		}
	}
}

// filesOf is the image's regular files by path, from its flattened filesystem.
func filesOf(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func digestOf(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
