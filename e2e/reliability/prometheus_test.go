package reliability_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// badPrometheus answers every query with the same misbehaviour and counts them.
type badPrometheus struct {
	*httptest.Server
	queries atomic.Int32
}

func newBadPrometheus(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *badPrometheus {
	p := &badPrometheus{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.queries.Add(1)
		h(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func answer(status int, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func vector(v string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1893553445.1,"` + v + `"]}]}}`
}

// A Prometheus that is slow, fails, answers garbage, nothing or NaN never lets a rollout
// advance: every round is Inconclusive (never Passed) and its message names the problem, for
// custom queries and for the built-in metrics alike.
func TestPrometheusFaultsAreInconclusive(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-r.Context().Done():
		}
		answer(200, vector("0.1"))(w, r)
	}
	for _, tt := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		// what the metric's message must say, for a custom query and for the built-in
		// error-rate (whose request count hits the same fault first)
		custom, builtin string
	}{
		{"slow beyond the query timeout", slow, "no answer within the 300ms query timeout", "no answer within the 300ms query timeout"},
		// The status code only: what the endpoint answered stays out of status (docs/security.md).
		{"HTTP 500", answer(500, "internal error: tsdb unavailable"), "prometheus answered HTTP 500", "HTTP 500"},
		{"malformed JSON", answer(200, `{"status":"success","data":{"resultType":"vector","result":[{`), "unreadable prometheus response", "unreadable prometheus response"},
		{"empty result", answer(200, `{"status":"success","data":{"resultType":"vector","result":[]}}`), "no data", "no traffic"},
		{"NaN", answer(200, vector("NaN")), "not a number", "not a number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newBadPrometheus(t, tt.handler)
			ro := &rampv1.Rollout{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
				Spec: rampv1.RolloutSpec{
					TargetRef: rampv1.TargetReference{Name: "web"},
					Analysis: &rampv1.AnalysisSpec{
						Interval:   &metav1.Duration{Duration: time.Minute},
						Prometheus: rampv1.PrometheusSpec{Address: prom.URL, Timeout: &metav1.Duration{Duration: 300 * time.Millisecond}},
						Metrics: []rampv1.Metric{
							{Name: "errors", Query: `sum(rate(http_errors_total{namespace="{{ .Namespace }}",deployment="{{ .Workload }}"}[{{ .Interval }}]))`,
								ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}},
							{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}},
						},
					},
				},
			}
			start := time.Now()
			res := analysis.NewAnalyzer().Analyze(context.Background(), ro)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("the round took %s (query timeout 300ms)", el)
			}
			if res.Verdict != rampv1.VerdictInconclusive {
				t.Errorf("round verdict %s, want Inconclusive (reason %q)", res.Verdict, res.Reason)
			}
			if prom.queries.Load() == 0 {
				t.Fatalf("Prometheus was never asked")
			}
			want := map[string]string{"errors": tt.custom, "error-rate": tt.builtin}
			for _, m := range res.Metrics {
				if m.Verdict != rampv1.VerdictInconclusive {
					t.Errorf("%s: verdict %s, want Inconclusive", m.Name, m.Verdict)
				}
				if !strings.Contains(m.Message, want[m.Name]) {
					t.Errorf("%s: message %q does not say %q", m.Name, m.Message, want[m.Name])
				}
				if strings.Contains(m.Message, "tsdb unavailable") {
					t.Errorf("%s: message %q copies what the endpoint answered", m.Name, m.Message)
				}
				if !strings.Contains(res.Reason, m.Message) {
					t.Errorf("round reason %q lacks %s's message %q", res.Reason, m.Name, m.Message)
				}
			}
			t.Logf("%s", res.Reason)
		})
	}
}

// A rollout whose Prometheus answers HTTP 500, with the real analyzer (internal/manager Setup):
// it fails after inconclusiveLimit rounds, never having gone past its first step, and says why.
func TestPrometheus500FailsTheRollout(t *testing.T) {
	e := cluster(t)
	t.Parallel()
	ctx := context.Background()
	prom := newBadPrometheus(t, answer(500, "internal error: tsdb unavailable"))
	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := cluster(t).RecordTimeline(t, ns)
	startManager(t, mgrOptions{name: "prom500", ns: ns}) // analyzer nil: the real one
	ro := withAnalysis(canaryRollout(ns, "web",
		rampv1.CanaryStep{SetWeight: 10},
		rampv1.CanaryStep{SetWeight: 50},
		rampv1.CanaryStep{SetWeight: 100}), prom.URL, 2)
	must(t, e.Client.Create(ctx, ro))
	waitFor(t, 30*time.Second, "adoption", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, ro) })
	setImage(t, ns, "podinfo:2")
	waitFor(t, 60*time.Second, "Failed", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseFailed)(ctx, ro) })
	t.Logf("Failed: %s (%d queries)", ro.Status.Message, prom.queries.Load())
	if !strings.Contains(ro.Status.Message, "analysis inconclusive 2 times") || !strings.Contains(ro.Status.Message, "HTTP 500") {
		t.Errorf("message %q does not say the analysis was inconclusive because of HTTP 500", ro.Status.Message)
	}
	if ro.Status.InconclusiveChecks != 2 || ro.Status.FailedChecks != 0 {
		t.Errorf("inconclusive %d, failed %d; want 2, 0", ro.Status.InconclusiveChecks, ro.Status.FailedChecks)
	}
	for _, e := range tl.Versions() {
		if e.Kind != "Rollout" {
			continue
		}
		if step, _, _ := unstructured.NestedInt64(e.Object.Object, "status", "currentStep"); step > 1 {
			t.Errorf("rv %d: the rollout went to step %d", e.RV, step)
		}
	}
	synced(t, tl)
	checkWeightsForward(t, tl, "web", []int32{0, 10, 0})
}
