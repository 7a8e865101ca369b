// Package grafana builds ramp's Grafana dashboard (config/grafana/ramp.json) with Grafana's
// Go SDK: ramp's own metrics (phase, weight, step, transitions, analysis values and verdicts)
// next to Istio's canary-vs-stable request rate, error rate and P99, with an annotation per
// rollout transition. Being code, every query is also listed for tests to run against a real
// Prometheus.
package grafana

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the board's stable identifier, so imports update it rather than add copies.
const UID = "ramp-rollouts"

var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// The selectors the panels share: the Rollout (ramp's metrics) and its target's two workloads
// as Istio's proxies label them (the target Deployment is stable, <target>-canary the canary).
const (
	rolloutSel = `namespace="$namespace",name="$rollout"`
	// Callers' proxies (reporter="source") see what users see, including failures the
	// workload's own proxy never does (timeouts, ejections, connection failures).
	istioSel = `reporter="source",destination_workload_namespace="$namespace",destination_workload=~"$workload|$workload-canary"`
)

// Board returns ramp's dashboard.
func Board() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("ramp: progressive delivery").
		Uid(UID).
		Tags([]string{"ramp", "istio", "canary"}).
		Description("A ramp Rollout's phase, weight, steps, transitions and analysis, next to Istio's view of its stable and canary workloads.").
		Refresh("10s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")).
		WithVariable(labelValues("namespace", "Namespace", "ramp_rollout_phase", "namespace")).
		WithVariable(labelValues("rollout", "Rollout", `ramp_rollout_phase{namespace="$namespace"}`, "name")).
		WithVariable(labelValues("workload", "Target Deployment", `istio_requests_total{destination_workload_namespace="$namespace"}`, "destination_workload").
			// Both workloads of a target, once: the canary's name without its suffix.
			Regex(`/^(.*?)(-canary)?$/`)).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("ramp transitions").
			Datasource(datasource).
			Enable(true).
			IconColor("#ff7f0e").
			Expr(`sum by (reason) (increase(ramp_rollout_transitions_total{` + rolloutSel + `}[1m])) > 0`).
			Step("15s").
			TitleFormat("{{reason}}").
			TextFormat("ramp: {{reason}}")).
		WithRow(dashboard.NewRowBuilder("ramp")).
		WithPanel(statetimeline.NewPanelBuilder().
			Title("Phase").
			Datasource(datasource).
			Height(5).Span(24).
			WithTarget(query(`max by (phase) (ramp_rollout_phase{`+rolloutSel+`}) == 1`, "{{phase}}"))).
		WithPanel(series("Canary weight", "percent", `ramp_rollout_canary_weight{`+rolloutSel+`}`, "weight").Max(100).Span(8)).
		WithPanel(series("Step", "none", `ramp_rollout_step{`+rolloutSel+`}`, "step").Span(8)).
		WithPanel(series("Transitions", "none", `sum by (reason) (increase(ramp_rollout_transitions_total{`+rolloutSel+`}[$__rate_interval]))`, "{{reason}}").Span(8)).
		WithPanel(series("Analysis: last value per metric", "none", `ramp_analysis_metric_value{`+rolloutSel+`}`, "{{metric}}").Span(12)).
		WithPanel(series("Analysis: checks by verdict", "none", `sum by (metric, verdict) (increase(ramp_analysis_results_total{`+rolloutSel+`}[$__rate_interval]))`, "{{metric}} {{verdict}}").Span(12)).
		WithRow(dashboard.NewRowBuilder("Istio: stable and canary, as callers see them")).
		WithPanel(series("Request rate", "reqps", `sum by (destination_workload) (rate(istio_requests_total{`+istioSel+`}[$__rate_interval]))`, "{{destination_workload}}").Span(8)).
		WithPanel(series("Error rate (5xx and no response)", "percent",
			`100 * (sum by (destination_workload) (rate(istio_requests_total{`+istioSel+`,response_code=~"5..|0"}[$__rate_interval])) or sum by (destination_workload) (rate(istio_requests_total{`+istioSel+`}[$__rate_interval])) * 0) / sum by (destination_workload) (rate(istio_requests_total{`+istioSel+`}[$__rate_interval]))`,
			"{{destination_workload}}").Span(8)).
		WithPanel(series("P99 latency", "ms", `histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket{`+istioSel+`}[$__rate_interval])))`, "{{destination_workload}}").Span(8)).
		WithRow(dashboard.NewRowBuilder("ramp, all Rollouts")).
		WithPanel(series("Rollouts ended, by outcome", "none", `sum by (outcome) (increase(ramp_rollout_duration_seconds_count[$__rate_interval]))`, "{{outcome}}").Span(12)).
		WithPanel(series("Rollout duration p50, by outcome", "s", `histogram_quantile(0.5, sum by (le, outcome) (rate(ramp_rollout_duration_seconds_bucket[$__rate_interval])))`, "{{outcome}}").Span(12))
	return b.Build()
}

// JSON is the board as config/grafana/ramp.json holds it.
func JSON() ([]byte, error) {
	d, err := Board()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func labelValues(name, label, selector, labelName string) *dashboard.QueryVariableBuilder {
	q := fmt.Sprintf("label_values(%s, %s)", selector, labelName)
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

func series(title, unit, expr, legend string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Datasource(datasource).
		Unit(unit).
		Height(8).
		WithTarget(query(expr, legend))
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend)
}

// Query is one PromQL expression of the board and where it is.
type Query struct {
	Where string
	Expr  string
	// LabelValues: a variable's label_values(selector, label); Expr is the selector.
	LabelValues string
}

// Queries lists every query of d: panel targets, variables and annotations.
func Queries(d dashboard.Dashboard) []Query {
	var out []Query
	for _, v := range d.Templating.List {
		if v.Query == nil || v.Query.String == nil {
			continue
		}
		m := labelValuesRE.FindStringSubmatch(*v.Query.String)
		if m == nil {
			continue
		}
		out = append(out, Query{Where: "variable " + v.Name, Expr: m[1], LabelValues: m[2]})
	}
	for _, a := range d.Annotations.List {
		if a.Expr != nil {
			out = append(out, Query{Where: "annotation " + a.Name, Expr: *a.Expr})
		}
	}
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		title := ""
		if p.Panel.Title != nil {
			title = *p.Panel.Title
		}
		for _, t := range p.Panel.Targets {
			switch q := t.(type) {
			case prometheus.Dataquery:
				out = append(out, Query{Where: "panel " + title, Expr: q.Expr})
			case *prometheus.Dataquery:
				out = append(out, Query{Where: "panel " + title, Expr: q.Expr})
			}
		}
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.*), (\w+)\)$`)

// Expand replaces the board's variables in expr with vars, and Grafana's interval variables
// with window, as Grafana does before it sends a query.
func Expand(expr string, vars map[string]string, window string) string {
	r := []string{"$__rate_interval", window, "$__interval", window, "$__range", window}
	for k, v := range vars {
		r = append(r, "$"+k, v)
	}
	return strings.NewReplacer(r...).Replace(expr)
}
