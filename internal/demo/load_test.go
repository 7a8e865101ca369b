package demo

import (
	"math"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Act 4 prints the example's durations as written (1m, not 1m0s) and every round, those
// without a value included.
func TestLoadActText(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Minute: "1m", 30 * time.Second: "30s", 90 * time.Second: "1m30s", 3 * time.Second: "3s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
	rounds := []Round{
		{Metric: "error-rate", Value: math.NaN(), Verdict: "Inconclusive"},
		{Metric: "error-rate", Value: 0.25, Verdict: "Passed"},
	}
	if got, want := roundsText(rounds), "error-rate no data Inconclusive, error-rate 0.25 Passed"; got != want {
		t.Errorf("roundsText = %q, want %q", got, want)
	}
	if got := roundsText(nil); got != "none" {
		t.Errorf("roundsText(nil) = %q, want none", got)
	}
	for _, tc := range []struct {
		r    *rampv1.ThresholdRange
		want string
	}{
		{nil, ""},
		{&rampv1.ThresholdRange{Max: ptr.To(1.0)}, "<= 1"},
		{&rampv1.ThresholdRange{Min: ptr.To(0.5)}, ">= 0.5"},
		{&rampv1.ThresholdRange{Min: ptr.To(0.5), Max: ptr.To(2.0)}, "in [0.5, 2]"},
	} {
		if got := thresholdText(tc.r); got != tc.want {
			t.Errorf("thresholdText(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
