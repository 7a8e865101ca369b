package analysis

import (
	"strings"
	"testing"
)

func vars() TemplateVars {
	return TemplateVars{Namespace: "demo", Name: "web", Workload: "web-canary",
		CanaryWorkload: "web-canary", StableWorkload: "web", Interval: "1m"}
}

func TestRenderQuery(t *testing.T) {
	q := `sum(rate(http_requests_total{namespace="{{ .Namespace }}",rollout="{{ .Name }}",deployment="{{ .Workload }}",canary="{{ .CanaryWorkload }}",stable="{{ .StableWorkload }}"}[{{ .Interval }}]))`
	got, err := RenderQuery("rps", q, vars())
	want := `sum(rate(http_requests_total{namespace="demo",rollout="web",deployment="web-canary",canary="web-canary",stable="web"}[1m]))`
	if err != nil || got != want {
		t.Fatalf("RenderQuery = %q, %v\nwant %q", got, err, want)
	}
	v := vars()
	v.Workload, v.Interval = "web", "90s"
	got, _ = RenderQuery("rps", `up{d="{{ .Workload }}"}[{{ .Interval }}]`, v)
	if got != `up{d="web"}[90s]` {
		t.Errorf("stable side: %q", got)
	}
}

func TestRenderQueryRejectsInjection(t *testing.T) {
	evil := []string{
		`x"} or vector(1) #`,
		`web"`,
		`web\`,
		"web\nor vector(1)",
		`Web`,
		`web canary`,
		`web}`,
		"",
		strings.Repeat("a", 254),
	}
	for _, name := range evil {
		for _, field := range []string{"Name", "Workload", "CanaryWorkload", "StableWorkload", "Namespace"} {
			v := vars()
			switch field {
			case "Name":
				v.Name = name
			case "Workload":
				v.Workload = name
			case "CanaryWorkload":
				v.CanaryWorkload = name
			case "StableWorkload":
				v.StableWorkload = name
			case "Namespace":
				v.Namespace = name
			}
			got, err := RenderQuery("m", `up{x="{{ .`+field+` }}"}`, v)
			if err == nil {
				t.Errorf("%s=%q rendered %q, want rejection", field, name, got)
				continue
			}
			if !strings.Contains(err.Error(), `metric "m"`) || !strings.Contains(err.Error(), "invalid "+field) {
				t.Errorf("%s=%q: error %q should name the metric and the variable", field, name, err)
			}
		}
	}
	for _, iv := range []string{`1m] or vector(1) #`, "", "1", `1m"`} {
		v := vars()
		v.Interval = iv
		if got, err := RenderQuery("m", `rate(x[{{ .Interval }}])`, v); err == nil {
			t.Errorf("Interval=%q rendered %q, want rejection", iv, got)
		}
	}
	// A namespace is a DNS label: no dots.
	v := vars()
	v.Namespace = "a.b"
	if _, err := RenderQuery("m", `up`, v); err == nil {
		t.Error("namespace a.b accepted")
	}
}

func TestRenderQueryErrors(t *testing.T) {
	for _, tt := range []struct{ q, want string }{
		{`up{x="{{ .Nmae }}"}`, `map has no entry for key "Nmae"`},
		{`up{x="{{ .Name }"}`, "parsing query template"},
		{`{{ if .Name }}`, "parsing query template"},
		{`   `, "empty query"},
		{`{{ "" }}`, "empty query"},
	} {
		_, err := RenderQuery("my-metric", tt.q, vars())
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `metric "my-metric"`) {
			t.Errorf("RenderQuery(%q) error = %v, want it to name the metric and contain %q", tt.q, err, tt.want)
		}
	}
}

func TestEscapePromQLString(t *testing.T) {
	if got := escapePromQLString("a\\b\"c\nd"); got != `a\\b\"c\nd` {
		t.Errorf("escape = %s", got)
	}
}
