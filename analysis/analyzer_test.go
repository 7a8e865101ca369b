package analysis

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// analyzerIface is the controller's Analyzer interface (controllers.Analyzer), restated so
// this package need not import the controllers.
type analyzerIface interface {
	Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult
}

var _ analyzerIface = (*Analyzer)(nil)

func rollout(address string, metrics ...rampv1.Metric) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Analysis: &rampv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: time.Minute},
				Prometheus: rampv1.PrometheusSpec{Address: address},
				Metrics:    metrics,
			},
		},
	}
}

// mustResolve resolves the metrics of a Rollout without templates.
func mustResolve(ro *rampv1.Rollout) []ResolvedMetric {
	ms, err := Resolve(context.Background(), ro, nil, Policy{})
	if err != nil {
		panic(err)
	}
	return ms
}

func mustQ(q string, err error) string {
	if err != nil {
		panic(err)
	}
	return q
}

func fixedClock() func() time.Time { return func() time.Time { return testNow } }

func TestAnalyzeRound(t *testing.T) {
	errCanary := mustQ(CanaryBuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "web-canary", "1m"))
	p99Canary := mustQ(CanaryBuiltinQuery(rampv1.BuiltinLatencyP99, "demo", "web", "web-canary", "1m"))
	reqCanary := mustQ(CanaryRequestCountQuery("demo", "web", "web-canary", "1m"))
	answers := map[string]string{errCanary: vectorOf(8.2), p99Canary: vectorOf(120), reqCanary: vectorOf(600)}
	f := newFakeProm(t, func(q string) (int, string) {
		if a, ok := answers[q]; ok {
			return 200, a
		}
		return 400, promError("bad_data", "unexpected query")
	})
	a := NewAnalyzer(WithClock(fixedClock()))
	ro := rollout(f.URL,
		rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: maxR(1)},
		rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: maxR(500)},
	)
	got := a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictFailed || got.Reason != "error-rate 8.2 > 1" {
		t.Fatalf("round %s %q, want Failed \"error-rate 8.2 > 1\"; metrics %+v", got.Verdict, got.Reason, got.Metrics)
	}
	want := []rampv1.MetricResult{
		{Name: "error-rate", Verdict: rampv1.VerdictFailed, Value: "8.2", Threshold: "<= 1", Message: "8.2 > 1", Time: metav1.NewTime(testNow)},
		{Name: "latency-p99", Verdict: rampv1.VerdictPassed, Value: "120", Threshold: "<= 500", Time: metav1.NewTime(testNow)},
	}
	for i := range want {
		if fmt.Sprint(got.Metrics[i]) != fmt.Sprint(want[i]) {
			t.Errorf("metric %d:\n got %+v\nwant %+v", i, got.Metrics[i], want[i])
		}
	}
	// The request count is shared by both built-ins: 3 distinct queries, each sent once, in
	// one batched request, POSTed (a batch can outgrow a URL).
	if f.total() != 3 || f.count(reqCanary) != 1 {
		t.Errorf("sent %d queries (request count %d times), want 3 (1)", f.total(), f.count(reqCanary))
	}
	if f.sent() != 1 || f.batches() != 1 || !strings.HasPrefix(f.requests[0], "POST ") {
		t.Errorf("requests %q, want one batched POST", f.requests)
	}

	answers[errCanary] = vectorOf(0.4)
	if got := a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictPassed || got.Reason != "" {
		t.Errorf("healthy round: %s %q", got.Verdict, got.Reason)
	}
}

func TestAnalyzeDeduplicatesQueries(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(50) })
	same := `sum(rate(app_errors_total{deployment="{{ .Workload }}"}[{{ .Interval }}]))`
	a := NewAnalyzer()
	ro := rollout(f.URL,
		rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: maxR(100),
			CompareToStable: &rampv1.Comparison{Tolerance: 10}},
		rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: maxR(100)},
		rampv1.Metric{Name: "latency-vs-stable", Builtin: rampv1.BuiltinLatencyP99, CompareToStable: &rampv1.Comparison{Tolerance: 10}},
		rampv1.Metric{Name: "app-errors", Query: same, ThresholdRange: maxR(100)},
		rampv1.Metric{Name: "app-errors-vs-stable", Query: same, CompareToStable: &rampv1.Comparison{Tolerance: 0}},
		rampv1.Metric{Name: "app-errors-2m", Query: same, ThresholdRange: maxR(100), Window: &metav1.Duration{Duration: 2 * time.Minute}},
	)
	got := a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictPassed {
		t.Fatalf("round %s %q", got.Verdict, got.Reason)
	}
	// error-rate canary+stable, p99 canary+stable, request count canary+stable (shared by
	// all built-ins), app-errors canary+stable over 1m, app-errors canary over 2m.
	if n := len(f.counts); n != 9 {
		t.Errorf("%d distinct queries, want 9: %v", n, f.counts)
	}
	for q, c := range f.counts {
		if c != 1 {
			t.Errorf("query sent %d times: %s", c, q)
		}
	}
	if f.count(`sum(rate(app_errors_total{deployment="web"}[1m]))`) != 1 || f.count(`sum(rate(app_errors_total{deployment="web-canary"}[2m]))`) != 1 {
		t.Errorf("custom queries not rendered per workload and window: %v", f.counts)
	}
}

func TestAnalyzeBoundsConcurrency(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
		f.delay = 30 * time.Millisecond
		f.rejectBatches = true // the queries are sent one by one after the batch
		var metrics []rampv1.Metric
		for i := 0; i < 8; i++ {
			metrics = append(metrics, rampv1.Metric{Name: fmt.Sprintf("m%d", i), Query: fmt.Sprintf("vector(%d)", i), ThresholdRange: maxR(10)})
		}
		got := NewAnalyzer(WithConcurrency(n)).Analyze(context.Background(), rollout(f.URL, metrics...))
		if got.Verdict != rampv1.VerdictPassed {
			t.Fatalf("round %s %q", got.Verdict, got.Reason)
		}
		if p := int(f.peak.Load()); p > n || p < min(n, 2) {
			t.Errorf("concurrency %d: peak of %d requests in flight", n, p)
		}
		if f.total() != 16 || f.sent() != 9 {
			t.Errorf("concurrency %d: %d queries in %d requests, want 16 in 9 (the batch of 8, then each alone)", n, f.total(), f.sent())
		}
	}
}

func TestAnalyzeUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	addr := srv.URL
	srv.Close()
	ro := rollout(addr,
		rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: maxR(1)},
		rampv1.Metric{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: maxR(500)},
	)
	got := NewAnalyzer().Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.HasPrefix(got.Reason, "error-rate, latency-p99: prometheus unreachable: ") {
		t.Errorf("round %s %q, want Inconclusive grouping both metrics as unreachable", got.Verdict, got.Reason)
	}
	for _, m := range got.Metrics {
		if m.Verdict != rampv1.VerdictInconclusive || strings.Count(m.Message, "unreachable") != 1 {
			t.Errorf("metric %+v", m)
		}
	}
}

func TestAnalyzeStopsQueryingOnceUnreachable(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
	f.delay = 3 * time.Second
	var metrics []rampv1.Metric
	for i := 0; i < 8; i++ {
		metrics = append(metrics, rampv1.Metric{Name: fmt.Sprintf("m%d", i), Query: fmt.Sprintf("vector(%d)", i), ThresholdRange: maxR(10)})
	}
	ro := rollout(f.URL, metrics...)
	ro.Spec.Analysis.Prometheus.Timeout = &metav1.Duration{Duration: 100 * time.Millisecond}
	start := time.Now()
	got := NewAnalyzer(WithConcurrency(2)).Analyze(context.Background(), ro)
	if el := time.Since(start); el > time.Second {
		t.Errorf("round took %s: each query waited for its own timeout", el)
	}
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "100ms query timeout") {
		t.Errorf("round %s %q", got.Verdict, got.Reason)
	}
	if n := f.sent(); n != 1 {
		t.Errorf("%d requests, want 1 (the batch timed out, nothing more sent)", n)
	}
}

func TestAnalyzeMetricBuildErrors(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
	ro := rollout(f.URL,
		rampv1.Metric{Name: "ok", Query: "vector(1)", ThresholdRange: maxR(2)},
		rampv1.Metric{Name: "typo", Query: `up{x="{{ .Nmae }}"}`, ThresholdRange: maxR(2)},
		rampv1.Metric{Name: "no-workload", Query: "vector(2)", CompareToStable: &rampv1.Comparison{Tolerance: 1}},
		rampv1.Metric{Name: "neither", ThresholdRange: maxR(2)},
	)
	got := NewAnalyzer().Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive {
		t.Fatalf("round %s %q", got.Verdict, got.Reason)
	}
	wants := []struct{ verdict, msg string }{
		{rampv1.VerdictPassed, ""},
		{rampv1.VerdictInconclusive, `metric "typo": rendering query template: template: typo:1:9: executing "typo" at <.Nmae>: map has no entry for key "Nmae"`},
		{rampv1.VerdictInconclusive, `metric "no-workload": compareToStable needs stableQuery or {{ .Workload }}`},
		{rampv1.VerdictInconclusive, `metric "neither": set builtin or query`},
	}
	for i, w := range wants {
		if m := got.Metrics[i]; m.Verdict != w.verdict || !strings.Contains(m.Message, w.msg) {
			t.Errorf("metric %s: %s %q, want %s %q", m.Name, m.Verdict, m.Message, w.verdict, w.msg)
		}
	}
	if f.total() != 1 {
		t.Errorf("%d queries, want 1 (only the valid metric)", f.total())
	}
}

func TestAnalyzeStableQuery(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) {
		switch q {
		case `canary_success{d="web-canary"}`:
			return 200, vectorOf(97)
		case `stable_success{d="web"}`:
			return 200, vectorOf(99.9)
		}
		return 200, vectorJSON()
	})
	ro := rollout(f.URL, rampv1.Metric{Name: "success-rate",
		Query: `canary_success{d="{{ .Workload }}"}`, StableQuery: `stable_success{d="{{ .Workload }}"}`,
		CompareToStable: &rampv1.Comparison{Tolerance: 1, HigherIsBetter: true}})
	got := NewAnalyzer().Analyze(context.Background(), ro)
	m := got.Metrics[0]
	if got.Verdict != rampv1.VerdictFailed || m.Value != "97" || m.StableValue != "99.9" ||
		got.Reason != "success-rate 97 < stable 99.9 -1% (98.9)" || m.Threshold != ">= 98.9 (stable -1%)" {
		t.Errorf("round %s %q, metric %+v", got.Verdict, got.Reason, m)
	}
}

func TestAnalyzeNoMetrics(t *testing.T) {
	a := NewAnalyzer()
	for _, ro := range []*rampv1.Rollout{nil, {}, rollout("http://127.0.0.1:1")} {
		if got := a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictInconclusive || got.Reason == "" {
			t.Errorf("%v: %s %q", ro, got.Verdict, got.Reason)
		}
	}
}

func TestAnalyzeBadAddressIsInconclusive(t *testing.T) {
	ro := rollout("not a url", rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(2)})
	got := NewAnalyzer().Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "invalid prometheus address") {
		t.Errorf("%s %q", got.Verdict, got.Reason)
	}
}

func TestAnalyzeCanceled(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
	f.delay = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	got := NewAnalyzer().Analyze(ctx, rollout(f.URL, rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(2)}))
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "canceled") {
		t.Errorf("%s %q", got.Verdict, got.Reason)
	}
}

func TestAnalyzeSecrets(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
	metric := rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(2)}
	ro := rollout(f.URL, metric)
	ro.Spec.Analysis.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: "prom-creds"}

	got := NewAnalyzer().Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "cannot read Secrets") {
		t.Errorf("no getter: %s %q", got.Verdict, got.Reason)
	}

	var mu sync.Mutex
	secret := map[string][]byte{"token": []byte("tok-1111\n")}
	var getErr error
	var asked []string
	getter := func(_ context.Context, ns, name string) (map[string][]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, ns+"/"+name)
		return secret, getErr
	}
	a := NewAnalyzer(WithSecretGetter(getter))
	if got := a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictPassed {
		t.Fatalf("with token: %s %q", got.Verdict, got.Reason)
	}
	if h := f.headers[len(f.headers)-1].Get("Authorization"); h != "Bearer tok-1111" {
		t.Errorf("Authorization %q", h)
	}
	if asked[0] != "demo/prom-creds" {
		t.Errorf("asked for %v", asked)
	}
	a.Analyze(context.Background(), ro)
	if a.clients.len() != 1 {
		t.Errorf("%d cached clients after two rounds with the same Secret, want 1", a.clients.len())
	}

	// A rotated Secret gets a new client.
	secret = map[string][]byte{"username": []byte("ramp"), "password": []byte("pw-2222")}
	a.Analyze(context.Background(), ro)
	if u, p, ok := basicAuth(f.headers[len(f.headers)-1].Get("Authorization")); !ok || u != "ramp" || p != "pw-2222" {
		t.Errorf("basic auth after rotation: %q %q %v", u, p, ok)
	}
	if a.clients.len() != 2 {
		t.Errorf("%d cached clients after rotation, want 2", a.clients.len())
	}

	// Bad contents and read errors are Inconclusive and never show a value.
	secret = map[string][]byte{"token": []byte("tok-3333"), "password": []byte("pw-4444")}
	got = a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "both token and username/password") ||
		strings.Contains(got.Reason, "tok-3333") || strings.Contains(got.Reason, "pw-4444") {
		t.Errorf("bad secret: %s %q", got.Verdict, got.Reason)
	}
	getErr = errors.New(`secrets "prom-creds" not found`)
	got = a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, `reading prometheus credentials Secret demo/prom-creds: secrets "prom-creds" not found`) {
		t.Errorf("getter error: %s %q", got.Verdict, got.Reason)
	}
}

func TestClientCacheEvicts(t *testing.T) {
	c := newClientCache(2)
	for i := 0; i < 5; i++ {
		if _, err := c.get(fmt.Sprintf("http://prom-%d:9090", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if c.len() != 2 {
		t.Errorf("%d entries, want 2", c.len())
	}
	if cacheKey("http://a", map[string][]byte{"token": []byte("x")}) == cacheKey("http://a", map[string][]byte{"token": []byte("y")}) {
		t.Error("cache key ignores the secret contents")
	}
	if cacheKey("http://a", map[string][]byte{"ab": []byte("c")}) == cacheKey("http://a", map[string][]byte{"a": []byte("bc")}) {
		t.Error("cache key is ambiguous")
	}
}

func TestAnalyzeWindowDefaultsToInterval(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) { return 200, vectorOf(1) })
	ro := rollout(f.URL, rampv1.Metric{Name: "m", Query: "x[{{ .Interval }}]", ThresholdRange: maxR(2)},
		rampv1.Metric{Name: "n", Query: "y[{{ .Interval }}]", ThresholdRange: maxR(2), Window: &metav1.Duration{Duration: 30 * time.Second}})
	ro.Spec.Analysis.Interval = &metav1.Duration{Duration: 90 * time.Second}
	NewAnalyzer().Analyze(context.Background(), ro)
	if f.count("x[90s]") != 1 || f.count("y[30s]") != 1 {
		t.Errorf("queries %v", f.counts)
	}
	ro.Spec.Analysis.Interval = nil
	ro.Spec.Analysis.Metrics[0].MinRequests = ptr.To[int32](0)
	NewAnalyzer().Analyze(context.Background(), ro)
	if f.count("x[1m]") != 1 {
		t.Errorf("default interval: queries %v", f.counts)
	}
}

// A query whose brackets do not balance goes alone, the others in one batch: it cannot
// close the batch's parentheses and answer for another metric.
func TestAnalyzeUnbalancedQueryGoesAlone(t *testing.T) {
	f := newFakeProm(t, func(q string) (int, string) {
		if q == "sum(x" {
			return 400, promError("bad_data", "unclosed left parenthesis")
		}
		return 200, vectorOf(1)
	})
	ro := rollout(f.URL,
		rampv1.Metric{Name: "a", Query: "vector(1)", ThresholdRange: maxR(2)},
		rampv1.Metric{Name: "broken", Query: "sum(x", ThresholdRange: maxR(2)},
		rampv1.Metric{Name: "b", Query: "vector(2)", ThresholdRange: maxR(2)},
	)
	got := NewAnalyzer().Analyze(context.Background(), ro)
	if f.sent() != 2 || f.batches() != 1 || f.count("sum(x") != 1 {
		t.Errorf("requests %q, want the batch of a and b, and broken alone", f.requests)
	}
	for i, want := range []string{rampv1.VerdictPassed, rampv1.VerdictInconclusive, rampv1.VerdictPassed} {
		if m := got.Metrics[i]; m.Verdict != want || (want == rampv1.VerdictInconclusive) != strings.Contains(m.Message, "query error (bad_data)") {
			t.Errorf("%s: %s %q, want %s", m.Name, m.Verdict, m.Message, want)
		}
	}
}
