package analysis

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// BenchmarkAnalyze is one whole analysis round of a Rollout with the two built-in metrics:
// planning, templating, the HTTP queries to a local Prometheus (httptest, answering at
// once) and the verdict. It also reports the queries a round makes: one, the metrics' and
// the request count the built-ins share for minRequests, batched.
func BenchmarkAnalyze(b *testing.B) {
	var queries atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		var series []string
		for i, q := range BatchedQueries(r.FormValue("query")) {
			v := "0.5"
			switch {
			case strings.Contains(q, "histogram_quantile"):
				v = "100"
			case strings.HasPrefix(q, "sum("): // the request count
				v = "1000"
			}
			series = append(series, fmt.Sprintf(`{"metric":{%q:"%d"},"value":[%d,%q]}`, BatchLabel, i, time.Now().Unix(), v))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(series, ","))
	}))
	defer srv.Close()
	upTo := func(v float64) *rampv1.ThresholdRange { return &rampv1.ThresholdRange{Max: &v} }
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Analysis: &rampv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: time.Minute},
				Prometheus: rampv1.PrometheusSpec{Address: srv.URL},
				Metrics: []rampv1.Metric{
					{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: upTo(1)},
					{Name: "latency", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: upTo(500)},
				},
			},
		},
	}
	a := NewAnalyzer()
	ctx := context.Background()
	if r := a.Analyze(ctx, ro); r.Verdict != rampv1.VerdictPassed {
		b.Fatalf("verdict %s: %s", r.Verdict, r.Reason)
	}
	queries.Store(0)
	b.ReportAllocs()
	for b.Loop() {
		if r := a.Analyze(ctx, ro); r.Verdict != rampv1.VerdictPassed {
			b.Fatalf("verdict %s: %s", r.Verdict, r.Reason)
		}
	}
	b.ReportMetric(float64(queries.Load())/float64(b.N), "queries/round")
}
