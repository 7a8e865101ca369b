// Command istio-validate runs Istio's own configuration validation (the code istiod's
// validating webhook runs) over Kubernetes YAML documents, so ramp's tests can prove that
// every VirtualService and DestinationRule it renders would be admitted by a real mesh.
//
//	istio-validate [FILE...]   (no FILE or "-": standard input)
//
// Each document is reported as "ok <kind> <namespace>/<name>" or "invalid <kind>
// <namespace>/<name>: <Istio's message>"; Istio's warnings follow an ok in parentheses and do
// not fail it. The exit status is 1 when any document is invalid or cannot be decoded, 2 on
// usage or read errors.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
	"istio.io/istio/pkg/config/validation"
)

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		files = []string{"-"}
	}
	invalid := false
	for _, f := range files {
		in, err := open(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "istio-validate:", err)
			os.Exit(2)
		}
		bad, err := validateStream(in, os.Stdout)
		_ = in.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "istio-validate: %s: %v\n", f, err)
			os.Exit(2)
		}
		invalid = invalid || bad
	}
	if invalid {
		os.Exit(1)
	}
}

func open(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

// validateStream validates every YAML (or JSON) document in r, writing one line per
// document to out. It reports whether any document was invalid.
func validateStream(r io.Reader, out io.Writer) (bool, error) {
	reader := yaml.NewYAMLReader(bufio.NewReader(r))
	invalid := false
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return invalid, nil
		}
		if err != nil {
			return invalid, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		id, warnings, err := validate(doc)
		if err != nil {
			invalid = true
			fmt.Fprintf(out, "invalid %s: %s\n", id, strings.TrimSpace(err.Error()))
			continue
		}
		if warnings != nil {
			fmt.Fprintf(out, "ok %s (warnings: %s)\n", id, strings.TrimSpace(warnings.Error()))
			continue
		}
		fmt.Fprintf(out, "ok %s\n", id)
	}
}

// validate mirrors istiod's validation webhook (pkg/webhooks/validation/server): decode
// into an IstioKind, find the schema by group and kind, convert, and ValidateConfig.
func validate(doc []byte) (id string, warnings validation.Warning, err error) {
	js, err := yaml.ToJSON(doc)
	if err != nil {
		return "document", nil, fmt.Errorf("cannot decode: %w", err)
	}
	var obj crd.IstioKind
	if err := json.Unmarshal(js, &obj); err != nil {
		return "document", nil, fmt.Errorf("cannot decode configuration: %w", err)
	}
	gvk := obj.GroupVersionKind()
	id = fmt.Sprintf("%s %s/%s", gvk.Kind, obj.Namespace, obj.Name)
	s, ok := collections.Pilot.FindByGroupKind(resource.FromKubernetesGVK(&gvk))
	if !ok {
		return id, nil, fmt.Errorf("unrecognized type %v", gvk)
	}
	cfg, err := crd.ConvertObject(s, &obj, constants.DefaultClusterLocalDomain)
	if err != nil {
		return id, nil, fmt.Errorf("error decoding configuration: %w", err)
	}
	warnings, err = s.ValidateConfig(*cfg)
	if err != nil {
		return id, nil, fmt.Errorf("configuration is invalid: %w", err)
	}
	return id, warnings, nil
}
