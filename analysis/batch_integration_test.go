package analysis_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// recorder is a reverse proxy in front of Prometheus that records each query request
// (method and query) and, with noBatch, answers batched queries with a bad_data error, as
// if Prometheus could not parse them: the round then sends its queries one by one.
type recorder struct {
	*httptest.Server
	noBatch bool

	mu   sync.Mutex
	reqs []string
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		q := req.URL.Query().Get("query") + form.Get("query")
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+q)
		r.mu.Unlock()
		if r.noBatch && strings.Contains(q, analysis.BatchLabel) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"status":"error","errorType":"bad_data","error":"batch refused by the test"}`)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// One round of error-rate, P99 (each with minRequests) and both compared with stable: six
// distinct queries in one POST, with the values they have when sent one by one.
func TestIntegrationRoundIsOneRequest(t *testing.T) {
	srv := prometheus(t)
	metrics := []rampv1.Metric{
		{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(1)},
		{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(1000)},
		{Name: "error-rate-vs-stable", Builtin: rampv1.BuiltinErrorRate, CompareToStable: &rampv1.Comparison{Tolerance: 50}},
		{Name: "latency-vs-stable", Builtin: rampv1.BuiltinLatencyP99, CompareToStable: &rampv1.Comparison{Tolerance: 100, Mode: analysis.ModeAbsolute}},
	}
	batched := newRecorder(t, srv.URL)
	got := analysis.NewAnalyzer().Analyze(context.Background(), newRollout(batched.URL, "web", metrics...))
	reqs := batched.requests()
	if len(reqs) != 1 || !strings.HasPrefix(reqs[0], "POST ") || strings.Count(reqs[0], analysis.BatchLabel) != 6 {
		t.Fatalf("requests %q, want one POST of 6 queries", reqs)
	}

	alone := newRecorder(t, srv.URL)
	alone.noBatch = true
	want := analysis.NewAnalyzer().Analyze(context.Background(), newRollout(alone.URL, "web", metrics...))
	if n := len(alone.requests()); n != 7 {
		t.Errorf("without batching: %d requests, want 7 (the refused batch, then 6)", n)
	}

	if got.Verdict != want.Verdict || got.Reason != want.Reason {
		t.Errorf("batched round %s %q, one by one %s %q", got.Verdict, got.Reason, want.Verdict, want.Reason)
	}
	// The two rounds are evaluated a moment apart: rate()'s extrapolation moves a little.
	close := func(what, a, b string) {
		x, errX := strconv.ParseFloat(a, 64)
		y, errY := strconv.ParseFloat(b, 64)
		if errX != nil || errY != nil || math.Abs(x-y) > 0.1*math.Max(math.Abs(x), math.Abs(y)) {
			t.Errorf("%s: batched %q, one by one %q", what, a, b)
		}
	}
	for i := range metrics {
		g, w := got.Metrics[i], want.Metrics[i]
		t.Logf("batched %+v\none by one %+v", g, w)
		if g.Name != w.Name || g.Verdict != w.Verdict {
			t.Errorf("metric %s %s, one by one %s %s", g.Name, g.Verdict, w.Name, w.Verdict)
		}
		close(g.Name, g.Value, w.Value)
		if metrics[i].CompareToStable != nil {
			close(g.Name+" stable", g.StableValue, w.StableValue)
		}
	}
}

// Queries a batch cannot carry, or that make Prometheus refuse it, still get their own
// answers, and the good ones theirs.
func TestIntegrationBrokenQueryInBatch(t *testing.T) {
	srv := prometheus(t)
	rate := `sum(rate(istio_requests_total{destination_workload="{{ .Workload }}",reporter="destination"}[{{ .Interval }}]))`
	metrics := []rampv1.Metric{
		{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(100)},
		{Name: "rps", Query: rate, ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(1.0)}},
		// Carries the batch label already: overwritten in the batch, the value is the same.
		{Name: "labelled", Query: `label_replace(` + rate + `, "` + analysis.BatchLabel + `", "7", "", "")`,
			ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(1.0)}},
		{Name: "syntax", Query: `sum(rate(istio_requests_total[{{ .Interval }}])`, ThresholdRange: upTo(1)},
		{Name: "escape", Query: `vector(1)), "` + analysis.BatchLabel + `", "0", "", "") or label_replace((vector(0)`, ThresholdRange: upTo(1)},
		{Name: "range", Query: `istio_requests_total{destination_workload="{{ .Workload }}",response_code="200",reporter="destination"}[{{ .Interval }}]`, ThresholdRange: upTo(1)},
		{Name: "scalar", Query: `scalar(` + rate + `)`, ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(1.0)}},
		// Two series that differ only by the batch label: one series each once it is overwritten.
		{Name: "clash", Query: `label_replace(vector(1), "` + analysis.BatchLabel + `", "a", "", "") or label_replace(vector(2), "` + analysis.BatchLabel + `", "b", "", "")`, ThresholdRange: upTo(5)},
	}
	rec := newRecorder(t, srv.URL)
	an := analysis.NewAnalyzer()
	got := an.Analyze(context.Background(), newRollout(rec.URL, "web", metrics...))
	for _, r := range rec.requests() {
		t.Logf("request %.200q", r)
	}
	for _, m := range got.Metrics {
		t.Logf("%+v", m)
	}
	for name, want := range map[string]string{
		"syntax": "query error (bad_data)",
		"escape": "query error (bad_data)",
		"range":  "query error (unexpected_result): query returned a range vector",
		"clash":  "query returned 2 series",
	} {
		if m := metric(t, got, name); m.Verdict != rampv1.VerdictInconclusive || !strings.Contains(m.Message, want) {
			t.Errorf("%s: %s %q, want Inconclusive with %q", name, m.Verdict, m.Message, want)
		}
	}
	first := got
	er := metric(t, got, "error-rate")
	near(t, "error-rate", er.Value, 7, 9)
	for _, name := range []string{"rps", "labelled", "scalar"} {
		if m := metric(t, got, name); m.Verdict != rampv1.VerdictPassed {
			t.Errorf("%s: %+v", name, m)
		}
	}
	// Sent one by one, a moment apart: a 10s rate() moves when a scrape lands.
	rps, _ := strconv.ParseFloat(metric(t, got, "rps").Value, 64)
	near(t, "labelled (the same rate)", metric(t, got, "labelled").Value, 0.8*rps, 1.2*rps)
	// A query that carries the batch label already, batched with another: one request, and
	// (evaluated at the same instant) exactly the other's value.
	rec2 := newRecorder(t, srv.URL)
	got = analysis.NewAnalyzer().Analyze(context.Background(), newRollout(rec2.URL, "web", metrics[1], metrics[2]))
	if n := len(rec2.requests()); n != 1 || got.Verdict != rampv1.VerdictPassed {
		t.Errorf("rps and labelled: %d requests, round %s %q; want 1, Passed", n, got.Verdict, got.Reason)
	}
	if a, b := metric(t, got, "rps").Value, metric(t, got, "labelled").Value; a != b || a == "" {
		t.Errorf("in one batch: rps %q, labelled %q", a, b)
	}

	// syntax and escape alone; one batch of the other 7 distinct queries, refused (range,
	// scalar, clash), then those 7 alone.
	if n := len(rec.requests()); n != 10 {
		t.Errorf("%d requests, want 10", n)
	}

	// The next round knows which queries broke the batch: syntax, escape, range, scalar and
	// clash alone, one batch of the other four, and the same verdicts.
	rec3 := newRecorder(t, srv.URL)
	again := an.Analyze(context.Background(), newRollout(rec3.URL, "web", metrics...))
	reqs := rec3.requests()
	batches := 0
	for _, r := range reqs {
		if qs := analysis.BatchedQueries(strings.TrimPrefix(r, "POST ")); strings.HasPrefix(r, "POST label_replace((\n") {
			batches++
			if len(qs) != 4 {
				t.Errorf("the second round's batch carries %d queries, want 4: %.300q", len(qs), r)
			}
		}
	}
	if len(reqs) != 6 || batches != 1 {
		t.Errorf("second round: %d requests, %d batches; want 6 and 1", len(reqs), batches)
	}
	for i := range first.Metrics {
		if g, a := first.Metrics[i], again.Metrics[i]; g.Name != a.Name || g.Verdict != a.Verdict || g.Message != a.Message {
			t.Errorf("second round %s %s %q, first %s %s %q", a.Name, a.Verdict, a.Message, g.Name, g.Verdict, g.Message)
		}
	}
}
