package analysis

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// FuzzRenderQuery renders arbitrary templates with arbitrary names, namespaces and intervals.
// RenderQuery must never panic nor take long (a Rollout's template runs in the controller);
// its output stays proportional to the template; its errors name the metric; and whenever
// the variables pass
// validation they cannot leave a PromQL label string: none holds a quote, a backslash, a
// newline or a brace, and a probe template with each variable in its own label string renders
// to exactly that selector, values verbatim.
func FuzzRenderQuery(f *testing.F) {
	const custom = `sum(rate(http_errors_total{namespace="{{ .Namespace }}",deployment="{{ .Workload }}"}[{{ .Interval }}]))`
	for _, s := range [][8]string{
		{"errors", custom, "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"p99", `histogram_quantile(0.99, sum by (le) (rate(x_bucket{app="{{ .Name }}"}[{{ .Interval }}])))`, "a", "b.c", "b-canary", "b-canary", "b", "1m30s"},
		{"errors", custom, "shop", `web"}) or vector(1) #`, "web-canary", "web-canary", "web", "1m"},
		{"errors", custom, `shop\`, "web", "web-canary", "web-canary", "web", "1m"},
		{"errors", custom, "shop", "web", "web-canary\n", "web-canary", "web", "1m"},
		{"errors", custom, "shop", "web", "web-canary", "}", "web", "1m"},
		{"errors", custom, "shop", "web", "web-canary", "web-canary", "{", "1m"},
		{"errors", custom, "shop", "web", "web-canary", "web-canary", "web", `1m]) or vector(1) #`},
		{"errors", custom, "Shop", "web", "web-canary", "web-canary", "web", "0s"},
		{"", "{{ .Unknown }}", "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"x", "{{", "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"x", `{{ printf "%q" .Name }} {{ index . "Name" }} {{ len .Workload }}`, "shop", "web", "web-canary", "web-canary", "web", "5m"},
		{"x", "   ", "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"métrique\"", custom, "", "", "", "", "", ""},
		// A Rollout must not be able to stall the controller: loops, output amplification,
		// recursion are refused at once.
		{"loop", `{{ range 1000000000 }}{{ range 1000000000 }}{{ end }}{{ end }}up`, "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"big", `{{ printf "%0999999999d" 0 }}`, "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"rec", `{{ define "a" }}{{ template "a" . }}{{ template "a" . }}{{ end }}{{ template "a" . }}`, "shop", "web", "web-canary", "web-canary", "web", "1m"},
		{"ok", `{{- .Name -}} {{/* comment */}} {{ "const" }} {{ 42 }}`, "shop", "web", "web-canary", "web-canary", "web", "1m"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
	}
	const probe = `m{a="{{ .Namespace }}",b="{{ .Name }}",c="{{ .Workload }}",d="{{ .CanaryWorkload }}",e="{{ .StableWorkload }}"}[{{ .Interval }}]`
	f.Fuzz(func(t *testing.T, metric, text, ns, name, workload, canary, stable, interval string) {
		v := TemplateVars{Namespace: ns, Name: name, Workload: workload, CanaryWorkload: canary, StableWorkload: stable, Interval: interval}
		named := fmt.Sprintf("metric %q", metric)
		type result struct {
			q   string
			err error
		}
		done := make(chan result, 1)
		go func() { q, err := RenderQuery(metric, text, v); done <- result{q, err} }()
		var r result
		select {
		case r = <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("RenderQuery did not return within 2s on %q", text)
		}
		if r.err == nil && len(r.q) > 64*len(text) {
			t.Fatalf("a %d-byte template rendered %d bytes", len(text), len(r.q))
		}
		if err := r.err; err != nil && !strings.Contains(err.Error(), named) {
			t.Fatalf("error %q does not name the %s", err, named)
		}
		q, err := RenderQuery(metric, probe, v)
		if err != nil {
			if !strings.Contains(err.Error(), named) {
				t.Fatalf("error %q does not name the %s", err, named)
			}
			return
		}
		for _, val := range []string{ns, name, workload, canary, stable, interval} {
			if val == "" || strings.ContainsAny(val, "\"\\\n\r{}[]`'") {
				t.Fatalf("%q passed validation (rendered %q)", val, q)
			}
		}
		want := fmt.Sprintf(`m{a="%s",b="%s",c="%s",d="%s",e="%s"}[%s]`, ns, name, workload, canary, stable, interval)
		if q != want {
			t.Fatalf("probe rendered %q, want %q", q, want)
		}
	})
}
