package bench

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMain(m *testing.M) {
	// The smoke test starts the manager by re-executing this test binary.
	if len(os.Args) > 1 && os.Args[1] == ManagerSubcommand {
		os.Exit(RunManager(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestRequestNames(t *testing.T) {
	for _, c := range []struct{ method, url, ctype, want string }{
		{"GET", "/apis/ramp.dev/v1alpha1/namespaces/ns/rollouts/web", "", "get rollouts"},
		{"GET", "/apis/ramp.dev/v1alpha1/namespaces/ns/rollouts", "", "list rollouts"},
		{"GET", "/apis/apps/v1/deployments?watch=true&resourceVersion=5", "", "watch deployments"},
		{"PATCH", "/apis/ramp.dev/v1alpha1/namespaces/ns/rollouts/web/status", "application/merge-patch+json", "patch rollouts/status"},
		{"PATCH", "/apis/networking.istio.io/v1/namespaces/ns/virtualservices/web", "application/apply-patch+yaml", "apply virtualservices"},
		{"POST", "/api/v1/namespaces/ns/events", "", "create events"},
		{"GET", "/api/v1/namespaces/ns", "", "get namespaces"},
		{"GET", "/apis", "", "list discovery"},
	} {
		u, _ := url.Parse(c.url)
		req := &http.Request{Method: c.method, URL: u, Header: http.Header{"Content-Type": {c.ctype}}}
		if got := requestVerb(req) + " " + requestResource(u.Path); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.url, got, c.want)
		}
	}
}

// The histogram arithmetic against a real client_golang histogram with native buckets, as
// controller-runtime's reconcile-time histogram is.
func TestHistogramQuantiles(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "t", Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 100,
	})
	snap := func() Histogram {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			t.Fatal(err)
		}
		return histogramFrom(m.GetHistogram())
	}
	for i := 0; i < 100; i++ {
		h.Observe(0.2) // before the window
	}
	base := snap()
	for i := 1; i <= 1000; i++ {
		h.Observe(float64(i) / 1000 * 0.04) // 0.04ms .. 40ms, uniform
	}
	d := snap().Sub(base)
	if d.Count != 1000 {
		t.Fatalf("count %d", d.Count)
	}
	for _, q := range []float64{0.5, 0.99} {
		want := q * 0.04
		if got := d.Quantile(q); math.Abs(got-want)/want > 0.1 {
			t.Errorf("q%.2f = %.4f, want %.4f ±10%%", q, got, want)
		}
	}
	if got := d.FractionAtMost(0.05); got != 1 {
		t.Errorf("≤50ms: %.3f, want 1", got)
	}
	if got := d.FractionAtMost(0.025); math.Abs(got-0.625) > 0.001 {
		t.Errorf("≤25ms: %.3f, want 0.625", got)
	}
	// A coarser schema later (more buckets than allowed) still subtracts.
	if r := reduceNative(map[int]uint64{-3: 1, -2: 1, 1: 1, 2: 1, 3: 1}, 3, 2); r[-1] != 2 || r[1] != 2 || r[2] != 1 {
		t.Errorf("reduceNative: %v", r)
	}
}

func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	for i := 1; i <= 100; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	s := h.snapshot()
	if p := s.Quantile(0.5); p < 0.045 || p > 0.055 {
		t.Errorf("p50 %.4f", p)
	}
}

// TestSmoke runs the whole benchmark at a tiny size against a real API server. It takes
// about a minute; set RAMP_BENCH_SMOKE=1 to run it.
func TestSmoke(t *testing.T) {
	if os.Getenv("RAMP_BENCH_SMOKE") == "" {
		t.Skip("set RAMP_BENCH_SMOKE=1 to run the benchmark at a tiny size")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Scales: []int{5}, ReactionSamples: 3, RollbackSamples: 2, IsolationSamples: 3, Interval: 2 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	Print(testWriter{t}, r)
	if len(r.Errors) > 0 || r.Reaction.Total.N != 3 || r.Rollback.Total.N != 2 || r.Scale[0].Completed != 5 || r.Isolation.With.N != 3 || r.Isolation.Without.N != 3 {
		t.Errorf("incomplete run: %+v", r.Errors)
	}
	if s := r.Scale[0]; s.Queries == 0 || s.Rounds == 0 || s.Reconcile.Count == 0 || s.Requests == 0 {
		t.Errorf("nothing counted: %+v", s)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
