package analysis_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// lazyExporter serves istio_requests_total series the way Envoy creates counters: a series
// appears when its label set's first request happens, already counting every request since.
type lazyExporter struct {
	addr    string
	started time.Time
	mu      sync.Mutex
	series  []lazySeries
}

type lazySeries struct {
	labels string
	value  func(elapsed time.Duration) float64 // since the exporter started
}

func startLazyExporter(t *testing.T) *lazyExporter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &lazyExporter{addr: ln.Addr().String(), started: time.Now()}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		elapsed := time.Since(e.started)
		var b strings.Builder
		b.WriteString("# TYPE istio_requests_total counter\n")
		for _, s := range e.series {
			fmt.Fprintf(&b, "istio_requests_total{%s} %.0f\n", s.labels, s.value(elapsed))
		}
		_, _ = w.Write([]byte(b.String()))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

func (e *lazyExporter) add(labels string, value func(time.Duration) float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.series = append(e.series, lazySeries{labels, value})
}

// remove drops the series whose labels contain s (a client pod gone with its counters).
func (e *lazyExporter) remove(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.series = slices.DeleteFunc(e.series, func(ls lazySeries) bool { return strings.Contains(ls.labels, s) })
}

// sourceLabels are client's sidecar's labels for a request to workload (Unknown: none).
func sourceLabels(client, workload, code, flags, service string) string {
	ns := "demo"
	if workload == "unknown" {
		ns = "unknown"
	}
	return fmt.Sprintf(`reporter="source",source_workload=%q,destination_workload=%q,destination_workload_namespace=%q,destination_service=%q,response_code=%q,response_flags=%q`,
		client, workload, ns, service, code, flags)
}

// A canary's first failures arrive as new series (a 503 series of the canary, a UH series
// with destination_workload "unknown" once its pods are ejected, the 503s another client saw
// before it went away with its counters), first scraped already at their full count and then
// flat or gone. rate() and increase() see no growth in them: the error rate as ramp computed
// it before read ~0% and passed. The built-in counts a series born inside the window from
// zero, and increase() for the series that existed at its start, so the same canary fails
// its first round while a healthy canary passes.
func TestIntegrationSeriesBornInTheWindowCountFromZero(t *testing.T) {
	prometheus(t) // skips like the others without a binary or with -short
	e := startLazyExporter(t)
	steady := func(rps float64) func(time.Duration) float64 {
		return func(d time.Duration) float64 { return rps * d.Seconds() }
	}
	constant := func(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }
	e.add(sourceLabels("client", "burst-canary", "200", "-", "burst.demo.svc.cluster.local"), steady(20))
	e.add(sourceLabels("client", "ok-canary", "200", "-", "ok.demo.svc.cluster.local"), steady(20))
	srv, err := prometheustest.Start(prometheustest.Options{Targets: []string{e.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const window = 8 * time.Second
	// The 200 series exist from before the window: their count over it is an increase().
	if _, err := srv.WaitForData(ctx, `istio_requests_total{destination_workload="burst-canary"} offset 10s`); err != nil {
		t.Fatal(err)
	}
	// The burst: 60 of the canary's requests answered 503 between two scrapes, then 40 found
	// both canary pods ejected (503 UH, destination unknown). Flat afterwards.
	e.add(sourceLabels("client", "burst-canary", "503", "-", "burst.demo.svc.cluster.local"), constant(60))
	e.add(sourceLabels("client", "unknown", "503", "UH", "burst.demo.svc.cluster.local"), constant(40))
	// A UH of another Service is not the canary's.
	e.add(sourceLabels("client", "unknown", "503", "UH", "other.demo.svc.cluster.local"), constant(1000))
	// Another client saw 200 503s, then went away: its series ends inside the window.
	e.add(sourceLabels("gone", "burst-canary", "503", "-", "burst.demo.svc.cluster.local"), constant(200))
	for _, q := range []string{
		`count_over_time(istio_requests_total{response_flags="UH",destination_service=~"burst.*"}[10s]) >= 2`,
		`count_over_time(istio_requests_total{source_workload="gone"}[10s]) >= 2`,
	} {
		if _, err := srv.WaitForData(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	e.remove(`source_workload="gone"`)
	if _, err := srv.WaitForData(ctx, `absent(istio_requests_total{source_workload="gone"})`); err != nil {
		t.Fatal(err)
	}

	w := &metav1.Duration{Duration: window}
	metrics := []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: w, ThresholdRange: upTo(5)}}
	a := analysis.NewAnalyzer()
	burst := a.Analyze(ctx, newRollout(srv.URL, "burst", metrics...))
	ok := a.Analyze(ctx, newRollout(srv.URL, "ok", metrics...))
	t.Logf("burst: %s %q; ok: %s %q", burst.Verdict, burst.Reason, ok.Verdict, ok.Reason)
	er := metric(t, burst, "error-rate")
	// 300 failures over ~160 successes in 8 s (20/s) + 300.
	near(t, "burst-canary error-rate", er.Value, 58, 72)
	if burst.Verdict != rampv1.VerdictFailed || er.Verdict != rampv1.VerdictFailed {
		t.Errorf("burst canary: round %s, error-rate %+v; want Failed", burst.Verdict, er)
	}
	if m := metric(t, ok, "error-rate"); ok.Verdict != rampv1.VerdictPassed || m.Value != "0" {
		t.Errorf("healthy canary: round %s, error-rate %+v; want Passed at 0", ok.Verdict, m)
	}

	pc, err := analysis.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	query := func(q string) float64 {
		t.Helper()
		v, err := pc.Query(ctx, q, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return v
	}
	// The window's requests: ~160 successes (an increase(), not the 200 series' total of
	// 20/s since the exporter started) plus the 300 failures counted from zero.
	cq, _ := analysis.CanaryRequestCountQuery("demo", "burst", "burst-canary", "8s")
	ok200 := query(`sum(istio_requests_total{destination_workload="burst-canary",response_code="200"})`)
	if n := query(cq); n < 420 || n > 500 || ok200-(n-300) < 100 {
		t.Errorf("canary requests over 8s = %v (the 200 series' total %v), want ~460", n, ok200)
	}
	// rate() alone, as the built-in was: the burst is invisible.
	sel := `reporter="source",destination_workload_namespace="demo",destination_workload="burst-canary"`
	if naive := query(`100 * (sum(rate(istio_requests_total{` + sel + `,response_code=~"5.."}[8s])) or vector(0)) / sum(rate(istio_requests_total{` + sel + `}[8s]))`); naive > 5 {
		t.Errorf("rate() reads %v%%: the test no longer shows what it guards against", naive)
	} else {
		t.Logf("rate() alone reads %.2f%% for the same canary", naive)
	}
}

// With the Gateway API router, a request that found no pod of the canary's backend Service
// (ramp's <service>-canary) carries that Service's name: the canary's error-rate counts it, as
// it counts those of the Rollout's own Service with Istio's subsets.
func TestIntegrationGatewayAPIBackendFailuresAreTheCanarys(t *testing.T) {
	prometheus(t)
	e := startLazyExporter(t)
	e.add(sourceLabels("client", "gw-canary", "200", "-", "gw-canary.demo.svc.cluster.local"), func(d time.Duration) float64 { return 20 * d.Seconds() })
	srv, err := prometheustest.Start(prometheustest.Options{Targets: []string{e.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := srv.WaitForData(ctx, `istio_requests_total{destination_workload="gw-canary"} offset 10s`); err != nil {
		t.Fatal(err)
	}
	// The canary's pods all ejected: 100 requests for its backend Service found no host.
	e.add(sourceLabels("client", "unknown", "503", "UH", "gw-canary.demo.svc.cluster.local"), func(time.Duration) float64 { return 100 })
	if _, err := srv.WaitForData(ctx, `count_over_time(istio_requests_total{response_flags="UH"}[10s]) >= 2`); err != nil {
		t.Fatal(err)
	}
	metrics := []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: &metav1.Duration{Duration: 8 * time.Second}, ThresholdRange: upTo(5)}}
	gw := newRollout(srv.URL, "gw", metrics...)
	gw.Spec.Service.GatewayAPI = &rampv1.GatewayAPIRouting{}
	a := analysis.NewAnalyzer()
	if r := a.Analyze(ctx, gw); r.Verdict != rampv1.VerdictFailed {
		t.Errorf("Gateway API canary with 100 UH on gw-canary: round %s %+v, want Failed", r.Verdict, r.Metrics)
	}
	// The same Rollout with Istio's subsets routes through gw itself: gw-canary's UH are not
	// its Service's, so the test would pass without the backends.
	if r := a.Analyze(ctx, newRollout(srv.URL, "gw", metrics...)); r.Verdict != rampv1.VerdictPassed {
		t.Errorf("Istio-routed canary: round %s %+v, want Passed (gw-canary is not its Service)", r.Verdict, r.Metrics)
	}
}
