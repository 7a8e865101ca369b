package analysis_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
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

// sourceLabels are a client sidecar's labels for a request to workload (Unknown: none).
func sourceLabels(workload, code, flags, service string) string {
	ns := "demo"
	if workload == "unknown" {
		ns = "unknown"
	}
	return fmt.Sprintf(`reporter="source",source_workload="client",destination_workload=%q,destination_workload_namespace=%q,destination_service=%q,response_code=%q,response_flags=%q`,
		workload, ns, service, code, flags)
}

// A canary's first failures arrive as new series (a 503 series of the canary, a UH series
// with destination_workload "unknown" once its pods are ejected), first scraped already at
// their full count and then flat. rate() and increase() see no growth in them: the error
// rate as ramp computed it before read ~0% and passed. The built-in counts a series born
// inside the window from zero, and increase() for the series that existed at its start, so
// the same canary fails its first round while a healthy canary passes.
func TestIntegrationSeriesBornInTheWindowCountFromZero(t *testing.T) {
	prometheus(t) // skips like the others without a binary or with -short
	e := startLazyExporter(t)
	steady := func(rps float64) func(time.Duration) float64 {
		return func(d time.Duration) float64 { return rps * d.Seconds() }
	}
	constant := func(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }
	e.add(sourceLabels("burst-canary", "200", "-", "burst.demo.svc.cluster.local"), steady(20))
	e.add(sourceLabels("ok-canary", "200", "-", "ok.demo.svc.cluster.local"), steady(20))
	srv, err := prometheustest.Start(prometheustest.Options{Targets: []string{e.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const window = 5 * time.Second
	// The 200 series exist from before the window: their count over it is an increase().
	if _, err := srv.WaitForData(ctx, `istio_requests_total{destination_workload="burst-canary"} offset 7s`); err != nil {
		t.Fatal(err)
	}
	// The burst: 60 of the canary's requests answered 503 between two scrapes, then 40 found
	// both canary pods ejected (503 UH, destination unknown). Flat afterwards.
	e.add(sourceLabels("burst-canary", "503", "-", "burst.demo.svc.cluster.local"), constant(60))
	e.add(sourceLabels("unknown", "503", "UH", "burst.demo.svc.cluster.local"), constant(40))
	// A UH of another Service is not the canary's.
	e.add(sourceLabels("unknown", "503", "UH", "other.demo.svc.cluster.local"), constant(1000))
	if _, err := srv.WaitForData(ctx, `count_over_time(istio_requests_total{response_flags="UH",destination_service=~"burst.*"}[10s]) >= 2`); err != nil {
		t.Fatal(err)
	}

	w := &metav1.Duration{Duration: window}
	metrics := []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: w, ThresholdRange: upTo(5)}}
	a := analysis.NewAnalyzer()
	burst := a.Analyze(ctx, newRollout(srv.URL, "burst", metrics...))
	ok := a.Analyze(ctx, newRollout(srv.URL, "ok", metrics...))
	t.Logf("burst: %s %q; ok: %s %q", burst.Verdict, burst.Reason, ok.Verdict, ok.Reason)
	er := metric(t, burst, "error-rate")
	// 100 failures over ~100 successes in 5 s (20/s) + 100.
	near(t, "burst-canary error-rate", er.Value, 40, 60)
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
	// The window's requests: ~100 successes (an increase(), not the series' total of 20/s
	// since the exporter started) plus the 100 failures counted from zero.
	cq, _ := analysis.CanaryRequestCountQuery("demo", "burst", "burst-canary", "5s")
	total := query(`sum(istio_requests_total{destination_workload=~"burst-canary|unknown",destination_service=~"burst.*"})`)
	if n := query(cq); n < 170 || n > 230 || total < n+100 {
		t.Errorf("canary requests over 5s = %v (the series total %v), want ~200", n, total)
	}
	// rate() alone, as the built-in was: the burst is invisible.
	sel := `reporter="source",destination_workload_namespace="demo",destination_workload="burst-canary"`
	if naive := query(`100 * (sum(rate(istio_requests_total{` + sel + `,response_code=~"5.."}[5s])) or vector(0)) / sum(rate(istio_requests_total{` + sel + `}[5s]))`); naive > 5 {
		t.Errorf("rate() reads %v%%: the test no longer shows what it guards against", naive)
	} else {
		t.Logf("rate() alone reads %.2f%% for the same canary", naive)
	}
}
