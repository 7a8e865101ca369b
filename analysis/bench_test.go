package analysis

import (
	"fmt"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func BenchmarkBuildQuery(b *testing.B) {
	const custom = `100 * sum(rate(http_requests_total{namespace="{{ .Namespace }}",deployment="{{ .Workload }}",code=~"5.."}[{{ .Interval }}])) / sum(rate(http_requests_total{namespace="{{ .Namespace }}",deployment="{{ .Workload }}"}[{{ .Interval }}]))`
	b.Run("template", func(b *testing.B) {
		v := vars()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := RenderQuery("custom", custom, v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("builtin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := BuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web-canary", "1m"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("round-plan-8-metrics", func(b *testing.B) {
		var ms []rampv1.Metric
		for i := 0; i < 4; i++ {
			ms = append(ms, rampv1.Metric{Name: fmt.Sprintf("b%d", i), Builtin: rampv1.BuiltinErrorRate, ThresholdRange: maxR(1), CompareToStable: &rampv1.Comparison{Tolerance: 10}},
				rampv1.Metric{Name: fmt.Sprintf("c%d", i), Query: custom, ThresholdRange: maxR(1)})
		}
		ro := rollout("http://prometheus:9090", ms...)
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range planRound(ro, mustResolve(ro), time.Time{}) {
				if p.err != nil {
					b.Fatal(p.err)
				}
			}
		}
	})
}

func BenchmarkEvaluate(b *testing.B) {
	m := rampv1.Metric{Name: "p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: maxR(500), CompareToStable: &rampv1.Comparison{Tolerance: 20}}
	ev := Evidence{Canary: val(450), Stable: valp(75), CanaryRequests: valp(1000), StableRequests: valp(10000),
		MinRequests: 10, CanaryWorkload: "web-canary", StableWorkload: "web", Window: "1m"}
	at := time.Now()
	b.Run("metric", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := Evaluate(&m, ev, at); r.Verdict != rampv1.VerdictFailed {
				b.Fatal(r.Verdict)
			}
		}
	})
	b.Run("round-8-metrics", func(b *testing.B) {
		b.ReportAllocs()
		results := make([]rampv1.MetricResult, 8)
		for b.Loop() {
			for i := range results {
				results[i] = Evaluate(&m, ev, at)
			}
			if Judge(results).Verdict != rampv1.VerdictFailed {
				b.Fatal("verdict")
			}
		}
	})
}
