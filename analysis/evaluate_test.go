package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func val(v float64) Sample                  { return Sample{Value: v} }
func valp(v float64) *Sample                { return &Sample{Value: v} }
func errs(err error) Sample                 { return Sample{Value: math.NaN(), Err: err} }
func errp(err error) *Sample                { s := errs(err); return &s }
func noData() error                         { return fmt.Errorf("%w: query returned an empty vector", ErrNoData) }
func maxR(v float64) *rampv1.ThresholdRange { return &rampv1.ThresholdRange{Max: ptr.To(v)} }

func TestEvaluate(t *testing.T) {
	errRate := rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: maxR(1)}
	cmp := rampv1.Metric{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, CompareToStable: &rampv1.Comparison{Tolerance: 50}}
	both := rampv1.Metric{Name: "p99", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: maxR(500), CompareToStable: &rampv1.Comparison{Tolerance: 20}}
	custom := rampv1.Metric{Name: "success", Query: "x", ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(99.0)}}
	unreachable := fmt.Errorf("%w: dial tcp 127.0.0.1:9: connect: connection refused", ErrUnreachable)
	base := Evidence{MinRequests: 10, CanaryWorkload: "web-canary", StableWorkload: "web", Window: "1m"}
	with := func(f func(*Evidence)) Evidence { e := base; f(&e); return e }

	for _, tt := range []struct {
		name                               string
		m                                  rampv1.Metric
		ev                                 Evidence
		verdict, value, stable, thr, msgIn string
	}{
		{"pass", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = val(0.5), valp(500) }),
			rampv1.VerdictPassed, "0.5", "", "<= 1", ""},
		{"fail", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = val(8.2), valp(500) }),
			rampv1.VerdictFailed, "8.2", "", "<= 1", "8.2 > 1"},
		{"too little traffic", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = val(8.2), valp(3.7) }),
			rampv1.VerdictInconclusive, "8.2", "", "<= 1", "too little traffic: 3 requests < 10 (web-canary in the last 1m)"},
		{"no requests at all", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = errs(noData()), errp(noData()) }),
			rampv1.VerdictInconclusive, "", "", "<= 1", "no traffic: no requests recorded for web-canary in the last 1m"},
		{"zero requests", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = val(0), valp(0) }),
			rampv1.VerdictInconclusive, "0", "", "<= 1", "too little traffic: 0 requests < 10"},
		{"minRequests 0 not checked", errRate, with(func(e *Evidence) { e.Canary, e.MinRequests = val(0.2), 0 }),
			rampv1.VerdictPassed, "0.2", "", "<= 1", ""},
		{"no data", custom, with(func(e *Evidence) { e.Canary = errs(noData()) }),
			rampv1.VerdictInconclusive, "", "", ">= 99", "web-canary: no data: query returned an empty vector"},
		{"NaN", custom, with(func(e *Evidence) { e.Canary = errs(fmt.Errorf("%w: query returned NaN", ErrNotANumber)) }),
			rampv1.VerdictInconclusive, "", "", ">= 99", "web-canary: not a number: query returned NaN"},
		{"NaN value without an error", custom, with(func(e *Evidence) { e.Canary = val(math.NaN()) }),
			rampv1.VerdictInconclusive, "", "", ">= 99", "web-canary: not a number: NaN"},
		{"+Inf stable value without an error", cmp, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(1), valp(math.Inf(1)), valp(100), valp(100)
		}), rampv1.VerdictInconclusive, "1", "", "<= stable +50%", "stable web: not a number: +Inf"},
		{"multiple series", custom, with(func(e *Evidence) { e.Canary = errs(&MultipleSeriesError{Count: 3}) }),
			rampv1.VerdictInconclusive, "", "", ">= 99", "query returned 3 series"},
		{"provider error, messages merge", errRate, with(func(e *Evidence) { e.Canary, e.CanaryRequests = errs(unreachable), errp(unreachable) }),
			rampv1.VerdictInconclusive, "", "", "<= 1", "prometheus unreachable: dial tcp 127.0.0.1:9: connect: connection refused"},
		{"custom min", custom, with(func(e *Evidence) { e.Canary = val(97) }),
			rampv1.VerdictFailed, "97", "", ">= 99", "97 < 99"},
		{"compare pass", cmp, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(0.6), valp(0.5), valp(100), valp(1000)
		}), rampv1.VerdictPassed, "0.6", "0.5", "<= 0.75 (stable +50%)", ""},
		{"compare fail", cmp, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(8), valp(0.5), valp(100), valp(1000)
		}), rampv1.VerdictFailed, "8", "0.5", "<= 0.75 (stable +50%)", "8 > stable 0.5 +50% (0.75)"},
		{"compare: stable no data", cmp, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(0.1), errp(noData()), valp(100), errp(noData())
		}), rampv1.VerdictInconclusive, "0.1", "", "<= stable +50%", "no requests recorded for stable web"},
		{"compare: stable too little traffic", cmp, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(0.1), valp(0), valp(100), valp(2)
		}), rampv1.VerdictInconclusive, "0.1", "0", "<= stable +50%", "too little traffic: 2 requests < 10 (stable web in the last 1m)"},
		{"compare: stable missing", cmp, with(func(e *Evidence) { e.Canary, e.CanaryRequests = val(0.1), valp(100) }),
			rampv1.VerdictInconclusive, "0.1", "", "<= stable +50%", "stable web: not measured"},
		{"both: range fails, compare passes", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(600), valp(550), valp(100), valp(100)
		}), rampv1.VerdictFailed, "600", "550", "<= 500, <= 660 (stable +20%)", "600 > 500"},
		{"both: range passes, compare fails", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(450), valp(75), valp(100), valp(100)
		}), rampv1.VerdictFailed, "450", "75", "<= 500, <= 90 (stable +20%)", "450 > stable 75 +20% (90)"},
		{"both fail", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(900), valp(75), valp(100), valp(100)
		}), rampv1.VerdictFailed, "900", "75", "<= 500, <= 90 (stable +20%)", "900 > 500, 900 > stable 75 +20% (90)"},
		{"both pass", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(80), valp(75), valp(100), valp(100)
		}), rampv1.VerdictPassed, "80", "75", "<= 500, <= 90 (stable +20%)", ""},
		{"both: range fails, stable unknown → still failed", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(900), errp(noData()), valp(100), valp(100)
		}), rampv1.VerdictFailed, "900", "", "<= 500, <= stable +20%", "900 > 500"},
		{"both: range passes, stable unknown → inconclusive", both, with(func(e *Evidence) {
			e.Canary, e.Stable, e.CanaryRequests, e.StableRequests = val(80), errp(noData()), valp(100), valp(100)
		}), rampv1.VerdictInconclusive, "80", "", "<= 500, <= stable +20%", "stable web: no data"},
		{"nothing to judge by", rampv1.Metric{Name: "x", Query: "up"}, with(func(e *Evidence) { e.Canary = val(1) }),
			rampv1.VerdictInconclusive, "1", "", "", "no thresholdRange or compareToStable"},
	} {
		got := Evaluate(&tt.m, tt.ev, testNow)
		if got.Name != tt.m.Name || got.Verdict != tt.verdict || got.Value != tt.value || got.StableValue != tt.stable ||
			got.Threshold != tt.thr || !strings.Contains(got.Message, tt.msgIn) || !got.Time.Time.Equal(testNow) {
			t.Errorf("%s:\n got %+v\nwant verdict=%s value=%q stable=%q threshold=%q message containing %q",
				tt.name, got, tt.verdict, tt.value, tt.stable, tt.thr, tt.msgIn)
		}
		if tt.verdict == rampv1.VerdictPassed && got.Message != "" {
			t.Errorf("%s: passed with message %q", tt.name, got.Message)
		}
		if tt.verdict != rampv1.VerdictPassed && got.Message == "" {
			t.Errorf("%s: %s without a message", tt.name, got.Verdict)
		}
	}
}

func TestEvaluateNeverPassesWithoutEvidence(t *testing.T) {
	// Whatever error the queries hit, a metric that would pass on any value is never Passed.
	lenient := rampv1.Metric{Name: "m", Builtin: rampv1.BuiltinErrorRate,
		ThresholdRange:  &rampv1.ThresholdRange{Min: ptr.To(math.Inf(-1)), Max: ptr.To(math.Inf(1))},
		CompareToStable: &rampv1.Comparison{Tolerance: 1e9, Mode: ModeAbsolute}}
	for _, err := range []error{noData(), ErrNotANumber, &MultipleSeriesError{Count: 2}, ErrUnreachable,
		&HTTPError{Status: 500}, &QueryError{Type: "bad_data"}, ErrBadResponse, errors.New("analysis canceled")} {
		for i, ev := range []Evidence{
			{Canary: errs(err), Stable: valp(1)},
			{Canary: val(1), Stable: errp(err)},
			{Canary: val(1), Stable: valp(1), CanaryRequests: errp(err), MinRequests: 10},
			{Canary: val(1), Stable: valp(1), CanaryRequests: valp(100), StableRequests: errp(err), MinRequests: 10},
		} {
			if got := Evaluate(&lenient, ev, testNow); got.Verdict != rampv1.VerdictInconclusive {
				t.Errorf("%v in evidence %d: verdict %s (%s), want Inconclusive", err, i, got.Verdict, got.Message)
			}
		}
	}
}
