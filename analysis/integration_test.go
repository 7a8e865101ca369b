package analysis_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// One real Prometheus per package, started by the first integration test that needs it and
// stopped by TestMain, scraping an exporter whose rates are exact:
//
//	demo/web-canary  500 req/s, 8% 503, p99 450 ms
//	demo/web        2000 req/s, 0.5% 503, p99 75 ms
//	demo/quiet, demo/quiet-canary: series that never grow (no traffic)
//	demo/idle-canary: no series at all
var shared struct {
	once      sync.Once
	srv       *prometheustest.Server
	exp       *prometheustest.Exporter
	firstData time.Duration
	skip      string
	err       error
}

var (
	// p99 = 250 + (0.99-0.95)/(1-0.95) * 250 = 450 ms
	canaryLatency = []prometheustest.Bucket{{LE: 5, Fraction: 0.5}, {LE: 10, Fraction: 0.6}, {LE: 25, Fraction: 0.7},
		{LE: 50, Fraction: 0.8}, {LE: 100, Fraction: 0.9}, {LE: 250, Fraction: 0.95}, {LE: 500, Fraction: 1}}
	// p99 = 50 + (0.99-0.98)/(1-0.98) * 50 = 75 ms
	stableLatency = []prometheustest.Bucket{{LE: 5, Fraction: 0.3}, {LE: 10, Fraction: 0.5}, {LE: 25, Fraction: 0.9},
		{LE: 50, Fraction: 0.98}, {LE: 100, Fraction: 1}}
)

const window = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Stop()
	}
	if shared.exp != nil {
		_ = shared.exp.Close()
	}
	os.Exit(code)
}

// prometheus returns the shared server once it has data for the window's rate().
func prometheus(t *testing.T) *prometheustest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against a real Prometheus (-short)")
	}
	shared.once.Do(func() {
		bin, err := prometheustest.Binary()
		if err != nil {
			if os.Getenv("RAMP_REQUIRE_PROMETHEUS") == "" {
				shared.skip = err.Error()
				return
			}
			shared.err = err
			return
		}
		shared.exp, err = prometheustest.StartExporter(
			prometheustest.Workload{Namespace: "demo", Name: "web-canary", RPS: 500, ErrorRatio: 0.08, Latency: canaryLatency},
			prometheustest.Workload{Namespace: "demo", Name: "web", RPS: 2000, ErrorRatio: 0.005, Latency: stableLatency},
			prometheustest.Workload{Namespace: "demo", Name: "quiet-canary", Latency: stableLatency},
			prometheustest.Workload{Namespace: "demo", Name: "quiet", Latency: stableLatency},
		)
		if err != nil {
			shared.err = err
			return
		}
		shared.srv, err = prometheustest.Start(prometheustest.Options{Binary: bin, Targets: []string{shared.exp.Addr}})
		if err != nil {
			shared.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared.firstData, shared.err = shared.srv.WaitForData(ctx,
			`sum(rate(istio_requests_total{destination_workload="web-canary"}[10s])) and sum(rate(istio_requests_total{destination_workload="web"}[10s]))`)
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	t.Logf("prometheus had rate() data %s after start", shared.firstData.Round(time.Millisecond))
	return shared.srv
}

func newRollout(address, name string, metrics ...rampv1.Metric) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: name},
			Analysis: &rampv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: window},
				Prometheus: rampv1.PrometheusSpec{Address: address, Timeout: &metav1.Duration{Duration: 5 * time.Second}},
				Metrics:    metrics,
			},
		},
	}
}

func upTo(v float64) *rampv1.ThresholdRange { return &rampv1.ThresholdRange{Max: ptr.To(v)} }

func metric(t *testing.T, r *plan.AnalysisResult, name string) rampv1.MetricResult {
	t.Helper()
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no result for %s in %+v", name, r.Metrics)
	return rampv1.MetricResult{}
}

func near(t *testing.T, what, got string, lo, hi float64) {
	t.Helper()
	v, err := strconv.ParseFloat(got, 64)
	if err != nil || v < lo || v > hi {
		t.Errorf("%s = %q, want within [%v, %v]", what, got, lo, hi)
	}
}

func TestIntegrationBuiltins(t *testing.T) {
	srv := prometheus(t)
	ro := newRollout(srv.URL, "web",
		rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(1)},
		rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(1000)},
		rampv1.Metric{Name: "error-rate-vs-stable", Builtin: rampv1.BuiltinErrorRate, CompareToStable: &rampv1.Comparison{Tolerance: 50}},
		rampv1.Metric{Name: "latency-vs-stable", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(1000),
			CompareToStable: &rampv1.Comparison{Tolerance: 100, Mode: analysis.ModeAbsolute}},
	)
	start := time.Now()
	got := analysis.NewAnalyzer().Analyze(context.Background(), ro)
	t.Logf("round of 4 metrics (6 distinct queries) took %s: %s %q", time.Since(start).Round(time.Millisecond), got.Verdict, got.Reason)
	for _, m := range got.Metrics {
		t.Logf("  %+v", m)
	}
	if got.Verdict != rampv1.VerdictFailed || !strings.HasPrefix(got.Reason, "error-rate ") {
		t.Errorf("round %s %q, want Failed naming error-rate", got.Verdict, got.Reason)
	}

	er := metric(t, got, "error-rate")
	near(t, "canary error-rate", er.Value, 7, 9)
	if er.Verdict != rampv1.VerdictFailed || er.Threshold != "<= 1" || !strings.Contains(er.Message, " > 1") {
		t.Errorf("error-rate %+v", er)
	}
	p99 := metric(t, got, "latency-p99")
	near(t, "canary latency-p99", p99.Value, 400, 500)
	if p99.Verdict != rampv1.VerdictPassed {
		t.Errorf("latency-p99 %+v", p99)
	}
	cmp := metric(t, got, "error-rate-vs-stable")
	near(t, "canary error-rate (compared)", cmp.Value, 7, 9)
	near(t, "stable error-rate", cmp.StableValue, 0.3, 0.7)
	if cmp.Verdict != rampv1.VerdictFailed || !strings.Contains(cmp.Message, "> stable") {
		t.Errorf("error-rate-vs-stable %+v", cmp)
	}
	lat := metric(t, got, "latency-vs-stable")
	near(t, "stable latency-p99", lat.StableValue, 50, 100)
	if lat.Verdict != rampv1.VerdictFailed || !strings.Contains(lat.Message, "> stable") || strings.Contains(lat.Message, "> 1000") {
		t.Errorf("latency-vs-stable %+v (range passes, comparison fails)", lat)
	}
}

// The same error-rate PromQL as a custom template, for the stable workload and the canary:
// a max of 1 passes stable and fails the canary.
func TestIntegrationThresholdOnStableAndCanary(t *testing.T) {
	srv := prometheus(t)
	tmpl := func(w string) string {
		windowed := func(sel string) string {
			m := `istio_requests_total{` + sel + `}`
			return `(increase(` + m + `[{{ .Interval }}]) and ` + m + ` offset {{ .Interval }}) or (last_over_time(` + m + `[{{ .Interval }}]) unless ` + m + ` offset {{ .Interval }})`
		}
		sel := `reporter="source",destination_workload_namespace="{{ .Namespace }}",destination_workload="{{ .` + w + ` }}"`
		return `100 * (sum(` + windowed(sel+`,response_code=~"0|5.."`) + `) or vector(0)) / sum(` + windowed(sel) + `)`
	}
	ro := newRollout(srv.URL, "web",
		rampv1.Metric{Name: "stable-error-rate", Query: tmpl("StableWorkload"), ThresholdRange: upTo(1)},
		rampv1.Metric{Name: "canary-error-rate", Query: tmpl("CanaryWorkload"), ThresholdRange: upTo(1)},
	)
	got := analysis.NewAnalyzer().Analyze(context.Background(), ro)
	st, ca := metric(t, got, "stable-error-rate"), metric(t, got, "canary-error-rate")
	near(t, "stable", st.Value, 0.3, 0.7)
	near(t, "canary", ca.Value, 7, 9)
	if st.Verdict != rampv1.VerdictPassed || ca.Verdict != rampv1.VerdictFailed || got.Verdict != rampv1.VerdictFailed {
		t.Errorf("round %s %q; stable %+v; canary %+v", got.Verdict, got.Reason, st, ca)
	}
	// The template renders the same text as the built-in.
	want, _ := analysis.BuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "10s")
	if r, err := analysis.RenderQuery("x", tmpl("StableWorkload"), analysis.TemplateVars{Namespace: "demo", Name: "web",
		Workload: "web-canary", CanaryWorkload: "web-canary", StableWorkload: "web", Interval: "10s"}); err != nil || r != want {
		t.Errorf("template renders %q (%v), builtin is %q", r, err, want)
	}
}

func TestIntegrationNoTrafficIsInconclusive(t *testing.T) {
	srv := prometheus(t)
	lenient := func() []rampv1.Metric { // would pass any value
		return []rampv1.Metric{
			{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(100)},
			{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(1e9)},
		}
	}
	a := analysis.NewAnalyzer()
	// idle-canary has no series at all.
	got := a.Analyze(context.Background(), newRollout(srv.URL, "idle", lenient()...))
	t.Logf("idle: %s %q", got.Verdict, got.Reason)
	if got.Verdict != rampv1.VerdictInconclusive || got.Reason != "error-rate, latency-p99: no traffic: no requests recorded for idle-canary in the last 10s" {
		t.Errorf("idle: %s %q", got.Verdict, got.Reason)
	}
	// quiet-canary's series exist but never grow.
	got = a.Analyze(context.Background(), newRollout(srv.URL, "quiet", lenient()...))
	t.Logf("quiet: %s %q", got.Verdict, got.Reason)
	if got.Verdict != rampv1.VerdictInconclusive || got.Reason != "error-rate, latency-p99: too little traffic: 0 requests < 10 (quiet-canary in the last 10s)" {
		t.Errorf("quiet: %s %q", got.Verdict, got.Reason)
	}
	// Without the minRequests gate, the values themselves are not numbers: still no pass.
	ms := lenient()
	for i := range ms {
		ms[i].MinRequests = ptr.To[int32](0)
	}
	got = a.Analyze(context.Background(), newRollout(srv.URL, "quiet", ms...))
	t.Logf("quiet, minRequests 0: %s %q", got.Verdict, got.Reason)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "not a number") {
		t.Errorf("quiet without minRequests: %s %q", got.Verdict, got.Reason)
	}
}

func TestIntegrationMinRequests(t *testing.T) {
	srv := prometheus(t)
	ro := newRollout(srv.URL, "web",
		rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(100), MinRequests: ptr.To[int32](1_000_000_000)},
		rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(1000)},
	)
	got := analysis.NewAnalyzer().Analyze(context.Background(), ro)
	er := metric(t, got, "error-rate")
	if got.Verdict != rampv1.VerdictInconclusive || er.Verdict != rampv1.VerdictInconclusive ||
		!strings.Contains(er.Message, "too little traffic: ") || !strings.Contains(er.Message, "< 1000000000 (web-canary in the last 10s)") {
		t.Errorf("round %s %q; error-rate %+v", got.Verdict, got.Reason, er)
	}
	if p := metric(t, got, "latency-p99"); p.Verdict != rampv1.VerdictPassed {
		t.Errorf("latency-p99 %+v", p)
	}
}

func TestIntegrationQueryProblems(t *testing.T) {
	srv := prometheus(t)
	ro := newRollout(srv.URL, "web",
		rampv1.Metric{Name: "syntax", Query: `sum(rate(istio_requests_total{destination_workload="{{ .Workload }}"}[{{ .Interval }}])`, ThresholdRange: upTo(1)},
		rampv1.Metric{Name: "not-aggregated", Query: `istio_requests_total{destination_workload="{{ .Workload }}"}`, ThresholdRange: upTo(1)},
		rampv1.Metric{Name: "range", Query: `istio_requests_total{destination_workload="{{ .Workload }}",response_code="200",reporter="destination"}[{{ .Interval }}]`, ThresholdRange: upTo(1)},
		rampv1.Metric{Name: "scalar", Query: `scalar(sum(rate(istio_requests_total{destination_workload="{{ .Workload }}",reporter="destination"}[{{ .Interval }}])))`, ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(1.0)}},
	)
	got := analysis.NewAnalyzer().Analyze(context.Background(), ro)
	for _, m := range got.Metrics {
		t.Logf("%+v", m)
	}
	for name, want := range map[string]string{
		"syntax":         "query error (bad_data)",
		"not-aggregated": "query returned 4 series",
		"range":          "query error (unexpected_result): query returned a range vector",
	} {
		if m := metric(t, got, name); m.Verdict != rampv1.VerdictInconclusive || !strings.Contains(m.Message, want) {
			t.Errorf("%s: %s %q, want Inconclusive with %q", name, m.Verdict, m.Message, want)
		}
	}
	if m := metric(t, got, "scalar"); m.Verdict != rampv1.VerdictPassed {
		t.Errorf("scalar: %+v", m)
	}
}

// A Prometheus that goes away makes rounds Inconclusive ("unreachable"), never Passed.
func TestIntegrationPrometheusStopped(t *testing.T) {
	prometheus(t) // skips like the others when there is no binary
	start := time.Now()
	srv, err := prometheustest.Start(prometheustest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	t.Logf("second prometheus ready in %s", time.Since(start).Round(time.Millisecond))
	ro := newRollout(srv.URL, "web", rampv1.Metric{Name: "constant", Query: "vector(1)", ThresholdRange: upTo(2)})
	a := analysis.NewAnalyzer()
	if got := a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictPassed {
		t.Fatalf("while running: %s %q", got.Verdict, got.Reason)
	}
	start = time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	got := a.Analyze(context.Background(), ro)
	t.Logf("after stop: %s %q", got.Verdict, got.Reason)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "unreachable") {
		t.Errorf("after stop: %s %q", got.Verdict, got.Reason)
	}
	m := got.Metrics[0]
	if m.Verdict != rampv1.VerdictInconclusive || m.Value != "" {
		t.Errorf("metric after stop: %+v", m)
	}
	var qerr error
	c, _ := analysis.NewClient(srv.URL, nil)
	_, qerr = c.Query(context.Background(), "vector(1)", time.Second)
	if !errors.Is(qerr, analysis.ErrUnreachable) {
		t.Errorf("query after stop: %v", qerr)
	}
}
