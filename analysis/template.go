package analysis

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// TemplateVars are the variables of a custom metric's query template.
type TemplateVars struct {
	// Namespace of the Rollout.
	Namespace string
	// Name of the Rollout.
	Name string
	// Workload is the Deployment being judged: the canary, or the stable target when the
	// query is rendered for the stable side of compareToStable.
	Workload string
	// CanaryWorkload is <target>-canary; StableWorkload is <target>.
	CanaryWorkload string
	StableWorkload string
	// Interval is the metric's window (defaulting to the analysis interval) as a PromQL
	// duration, e.g. 1m or 90s.
	Interval string
}

// RenderQuery expands a custom metric's query template. Every variable is validated
// (Kubernetes names: [a-z0-9.-] only; Interval: a PromQL duration) and escaped for a PromQL
// double-quoted string, so a Rollout's name can never inject PromQL; a value that is not
// valid is rejected rather than escaped. A reference to an unknown variable is an error.
// Errors name the metric.
func RenderQuery(metric, text string, v TemplateVars) (string, error) {
	if err := v.validate(); err != nil {
		return "", fmt.Errorf("metric %q: %w", metric, err)
	}
	t, err := template.New(metric).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("metric %q: parsing query template: %w", metric, err)
	}
	if err := onlyVariables(t); err != nil {
		return "", fmt.Errorf("metric %q: query template: %w", metric, err)
	}
	data := map[string]string{
		"Namespace":      escapePromQLString(v.Namespace),
		"Name":           escapePromQLString(v.Name),
		"Workload":       escapePromQLString(v.Workload),
		"CanaryWorkload": escapePromQLString(v.CanaryWorkload),
		"StableWorkload": escapePromQLString(v.StableWorkload),
		"Interval":       escapePromQLString(v.Interval),
	}
	var b strings.Builder
	b.Grow(len(text) + 64)
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("metric %q: rendering query template: %w", metric, err)
	}
	q := strings.TrimSpace(b.String())
	if q == "" {
		return "", fmt.Errorf("metric %q: query template renders to an empty query", metric)
	}
	return q, nil
}

// onlyVariables accepts the template language the API documents: text and variables such as
// {{ .Workload }} (and constants). Control structures, functions and sub-templates are
// refused: `{{ range 1000000000 }}` would hold a reconcile worker for hours (nested, for
// ever) and `{{ printf "%0999999d" 0 }}` take a megabyte per action, so one Rollout could
// stall the controller every namespace shares.
func onlyVariables(t *template.Template) error {
	if len(t.Templates()) > 1 {
		return errors.New("{{ define }} and {{ block }} are not supported: only variables such as {{ .Workload }}")
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	for _, n := range t.Tree.Root.Nodes {
		if a, ok := n.(*parse.ActionNode); ok && len(a.Pipe.Decl) == 0 && len(a.Pipe.Cmds) == 1 && len(a.Pipe.Cmds[0].Args) == 1 {
			switch arg := a.Pipe.Cmds[0].Args[0].(type) {
			case *parse.FieldNode:
				if len(arg.Ident) == 1 {
					continue
				}
			case *parse.StringNode, *parse.NumberNode, *parse.BoolNode:
				continue
			}
		} else if n.Type() == parse.NodeText {
			continue
		}
		s := n.String()
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		return fmt.Errorf("%s is not supported: only variables such as {{ .Workload }}", s)
	}
	return nil
}

func (v *TemplateVars) validate() error {
	if err := validateName("Namespace", v.Namespace, dns1123Label); err != nil {
		return err
	}
	for _, f := range []struct{ name, val string }{
		{"Name", v.Name}, {"Workload", v.Workload},
		{"CanaryWorkload", v.CanaryWorkload}, {"StableWorkload", v.StableWorkload},
	} {
		if err := validateName(f.name, f.val, dns1123Subdomain); err != nil {
			return err
		}
	}
	if err := ValidPromDuration(v.Interval); err != nil {
		return fmt.Errorf("invalid Interval: %w", err)
	}
	return nil
}

var promQLStringEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escapePromQLString escapes s for a PromQL double-quoted string. Validated values have
// nothing to escape; this is defence in depth.
func escapePromQLString(s string) string { return promQLStringEscaper.Replace(s) }
