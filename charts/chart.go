// Package charts holds ramp's Helm chart (charts/ramp) and renders and packages it with Helm's
// own library, as `helm template --include-crds` and `helm package` do. Only tests and
// cmd/ramp-chart import it: Helm stays out of the manager binary.
package charts

import (
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Release is what `helm install NAME --namespace NAMESPACE` names.
type Release struct{ Name, Namespace string }

// Render renders the chart in dir for rel with values over the chart's values.yaml, as
// `helm template --include-crds` does: values checked against values.schema.json, the
// templates rendered by Helm's engine, the CRDs from crds/ first, then the objects in Helm's
// install order. A fail or required in a template, or a value the schema refuses, is an error.
func Render(dir string, rel Release, values map[string]any) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, err
	}
	caps := chartutil.DefaultCapabilities
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{
		Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("chart %s has hooks; Render does not run them", dir)
	}
	var out []*unstructured.Unstructured
	for _, crd := range ch.CRDObjects() {
		objs, err := decode(crd.Filename, string(crd.File.Data))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	for _, m := range manifests {
		objs, err := decode(m.Name, m.Content)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Package writes the chart in dir as <name>-<version>.tgz into outDir, as `helm package
// --version V --app-version V` does, and returns its path.
func Package(dir, version, outDir string) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "", err
	}
	ch.Metadata.Version, ch.Metadata.AppVersion = version, version
	if err := ch.Validate(); err != nil {
		return "", fmt.Errorf("chart %s: %w", dir, err)
	}
	return chartutil.Save(ch, outDir)
}

// Load is the chart in dir as Helm reads it.
func Load(dir string) (*chart.Chart, error) { return loader.Load(dir) }

func decode(name, content string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range releaseutil.SplitManifests(content) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil { // JSON numbers, as an API client decodes them
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, u)
	}
	return out, nil
}
