package analysis

import (
	"strings"
	"testing"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestJudge(t *testing.T) {
	pass := func(n string) rampv1.MetricResult { return rampv1.MetricResult{Name: n, Verdict: rampv1.VerdictPassed} }
	fail := func(n, m string) rampv1.MetricResult {
		return rampv1.MetricResult{Name: n, Verdict: rampv1.VerdictFailed, Message: m}
	}
	unk := func(n, m string) rampv1.MetricResult {
		return rampv1.MetricResult{Name: n, Verdict: rampv1.VerdictInconclusive, Message: m}
	}
	for _, tt := range []struct {
		name    string
		in      []rampv1.MetricResult
		verdict string
		reason  string
	}{
		{"all passed", []rampv1.MetricResult{pass("a"), pass("b")}, rampv1.VerdictPassed, ""},
		{"one failed", []rampv1.MetricResult{pass("latency-p99"), fail("error-rate", "8.2 > 1")},
			rampv1.VerdictFailed, "error-rate 8.2 > 1"},
		{"failed beats inconclusive", []rampv1.MetricResult{unk("latency-p99", "no data"), fail("error-rate", "8.2 > 1")},
			rampv1.VerdictFailed, "error-rate 8.2 > 1"},
		{"two failed", []rampv1.MetricResult{fail("error-rate", "8.2 > 1"), fail("latency-p99", "612 > 500")},
			rampv1.VerdictFailed, "error-rate 8.2 > 1; latency-p99 612 > 500"},
		{"one inconclusive", []rampv1.MetricResult{pass("a"), unk("latency-p99", "too little traffic: 3 requests < 10")},
			rampv1.VerdictInconclusive, "latency-p99: too little traffic: 3 requests < 10"},
		{"all inconclusive, shared cause grouped", []rampv1.MetricResult{
			unk("error-rate", "prometheus unreachable: connection refused"),
			unk("latency-p99", "prometheus unreachable: connection refused"),
			unk("custom", "web-canary: no data")},
			rampv1.VerdictInconclusive,
			"error-rate, latency-p99: prometheus unreachable: connection refused; custom: web-canary: no data"},
		{"no metrics", nil, rampv1.VerdictInconclusive, "no metrics to judge"},
		{"unknown verdict is not a pass", []rampv1.MetricResult{pass("a"), {Name: "b", Verdict: "Maybe"}},
			rampv1.VerdictInconclusive, "b: unknown verdict Maybe"},
		{"empty verdict is not a pass", []rampv1.MetricResult{{Name: "b"}},
			rampv1.VerdictInconclusive, "b: unknown verdict "},
		{"inconclusive without message", []rampv1.MetricResult{unk("b", "")},
			rampv1.VerdictInconclusive, "b: inconclusive"},
	} {
		got := Judge(tt.in)
		if got.Verdict != tt.verdict || got.Reason != tt.reason || len(got.Metrics) != len(tt.in) {
			t.Errorf("%s: Judge = %s %q (%d metrics), want %s %q", tt.name, got.Verdict, got.Reason, len(got.Metrics), tt.verdict, tt.reason)
		}
	}
}

func TestJudgeTruncatesReason(t *testing.T) {
	var in []rampv1.MetricResult
	for i := 0; i < 32; i++ {
		in = append(in, rampv1.MetricResult{Name: strings.Repeat("m", 60) + string(rune('a'+i%26)), Verdict: rampv1.VerdictFailed, Message: strings.Repeat("é", 40)})
	}
	got := Judge(in)
	if len(got.Reason) > MaxReasonLength || !strings.HasSuffix(got.Reason, "…") || !strings.HasPrefix(got.Reason, strings.Repeat("m", 60)) {
		t.Errorf("reason of %d bytes: %q", len(got.Reason), got.Reason)
	}
}
