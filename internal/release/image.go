// Package release builds what a platform team installs: the manager's container image, built
// without a container daemon, and the install manifest pinned to that image.
package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the image keeps its two files, and whom it runs as: the distroless "nonroot" user,
// which Kubernetes' restricted Pod Security profile accepts with runAsNonRoot.
const (
	BinaryPath   = "/manager"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	User         = "65532:65532"
)

// ImageOptions describe the image beyond its files.
type ImageOptions struct {
	Version, Revision, Source string
	// Architecture of the binary (GOARCH); the OS is always linux.
	Architecture string
	// Created is the image's creation time, and every file's modification time, so the same
	// inputs give the same image digest (use the commit's time, not the build's).
	Created time.Time
}

// Image is a scratch image holding the static manager binary and a CA bundle, nothing else:
// no shell, no package manager, nothing to patch but ramp.
func Image(binary, caBundle string, o ImageOptions) (v1.Image, error) {
	layer, err := filesLayer(o.Created, []file{
		{path: BinaryPath, src: binary, mode: 0o555},
		{path: CABundlePath, src: caBundle, mode: 0o444},
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":    "ramp",
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Architecture
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"SSL_CERT_FILE=" + CABundlePath}
	cf.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// WriteTarball writes img as a tarball under tag, the format `kind load image-archive`,
// `docker load` and `crane push` read.
func WriteTarball(path, tag string, img v1.Image) error {
	ref, err := parseTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, ref, img)
}

type file struct {
	path, src string
	mode      int64
}

// filesLayer is one layer holding files (and their parent directories), every entry owned by
// root and dated modTime.
func filesLayer(modTime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		for _, d := range parents(f.path) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: modTime, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path[1:], Mode: f.mode, Size: int64(len(data)), ModTime: modTime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// parents are the directories above an absolute path, outermost first, without the leading
// slash: "/etc/ssl/certs/x" gives etc, etc/ssl, etc/ssl/certs.
func parents(path string) []string {
	var out []string
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			out = append(out, path[1:i])
		}
	}
	return out
}

// parseTag accepts a full image reference with an explicit tag (registry/repository:tag): an
// install pinned to "latest", or to whatever a default registry means, is what this avoids.
func parseTag(s string) (name.Tag, error) {
	t, err := name.NewTag(s, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image %q: %w (want registry/repository:tag)", s, err)
	}
	if t.TagStr() == "latest" {
		return name.Tag{}, fmt.Errorf("image %q: a release is pinned to a version, not latest", s)
	}
	return t, nil
}
