// Command ramp-release builds ramp's release artifacts without a container daemon: the
// manager's OCI image as a tarball, and the install manifest pinned to that image. The
// Makefile's image and release-manifests targets run it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/ramp-dev/ramp/internal/grafana"
	"github.com/ramp-dev/ramp/internal/release"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = image(os.Args[2:])
	case "manifests":
		err = manifests(os.Args[2:])
	case "grafana":
		err = grafanaBoard(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ramp-release:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `Usage:
  ramp-release image --binary PATH --tag REGISTRY/REPOSITORY:TAG --out FILE.tar [flags]
      an OCI image (scratch, the binary and a CA bundle, user 65532) as a tarball that
      kind load image-archive, docker load and crane push read
  ramp-release manifests --image REGISTRY/REPOSITORY:TAG [--config DIR] --out FILE.yaml
      one install manifest (CRDs, RBAC, controller) from config/default, pinned to the image
  ramp-release grafana --out FILE.json
      ramp's Grafana dashboard (make generate writes config/grafana/ramp.json)

Run through make: make image, make release-manifests, make generate (see README.md).
`)
	os.Exit(2)
}

func image(args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	binary := fs.String("binary", "", "the static (CGO_ENABLED=0) linux manager binary")
	ca := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to include (the machine's ca-certificates)")
	tag := fs.String("tag", "", "image reference with its tag, e.g. ghcr.io/ramp-dev/ramp:v0.1.0")
	out := fs.String("out", "", "tarball to write")
	arch := fs.String("arch", runtime.GOARCH, "architecture of the binary")
	version := fs.String("version", "", "org.opencontainers.image.version")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (the commit)")
	source := fs.String("source", "https://github.com/ramp-dev/ramp", "org.opencontainers.image.source")
	created := fs.String("created", "", "creation time (RFC 3339; default: the Unix epoch, so equal inputs give equal digests)")
	_ = fs.Parse(args)
	if *binary == "" || *tag == "" || *out == "" {
		return fmt.Errorf("image needs --binary, --tag and --out")
	}
	at := time.Unix(0, 0).UTC()
	if *created != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, *created); err != nil {
			return fmt.Errorf("--created: %w", err)
		}
	}
	img, err := release.Image(*binary, *ca, release.ImageOptions{
		Version: *version, Revision: *revision, Source: *source, Architecture: *arch, Created: at,
	})
	if err != nil {
		return err
	}
	if err := release.WriteTarball(*out, *tag, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s (%s)\n", *out, *tag, digest)
	return nil
}

func manifests(args []string) error {
	fs := flag.NewFlagSet("manifests", flag.ExitOnError)
	img := fs.String("image", "", "the manager's image, registry/repository:tag")
	dir := fs.String("config", "config/default", "kustomization to build")
	out := fs.String("out", "", "install manifest to write")
	_ = fs.Parse(args)
	if *img == "" || *out == "" {
		return fmt.Errorf("manifests needs --image and --out")
	}
	b, err := release.Manifests(*dir, *img)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s\n", *out, *img)
	return nil
}

func grafanaBoard(args []string) error {
	fs := flag.NewFlagSet("grafana", flag.ExitOnError)
	out := fs.String("out", "config/grafana/ramp.json", "dashboard JSON to write")
	_ = fs.Parse(args)
	b, err := grafana.JSON()
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}
