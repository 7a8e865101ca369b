package analysis

import (
	"math"
	"testing"

	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestFormatValue(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.25, "0.25"}, {8.3, "8.3"}, {8.2, "8.2"}, {512, "512"}, {1, "1"},
		{8.012345, "8.012"}, {450.1234, "450.1"}, {99.99, "99.99"}, {12345.6, "12350"},
		{0.0001234567, "0.0001235"}, {1e-7, "1e-07"}, {-3.5, "-3.5"}, {2.5e16, "2.5e+16"},
		{math.NaN(), "NaN"}, {math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"},
	} {
		if got := FormatValue(tt.v); got != tt.want {
			t.Errorf("FormatValue(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func rng(min, max *float64) *rampv1.ThresholdRange { return &rampv1.ThresholdRange{Min: min, Max: max} }

func TestThresholdString(t *testing.T) {
	for _, tt := range []struct {
		r    *rampv1.ThresholdRange
		want string
	}{
		{rng(nil, ptr.To(1.0)), "<= 1"},
		{rng(ptr.To(99.0), nil), ">= 99"},
		{rng(ptr.To(10.0), ptr.To(20.0)), "10 .. 20"},
		{rng(ptr.To(0.25), ptr.To(512.0)), "0.25 .. 512"},
		{nil, ""},
	} {
		if got := ThresholdString(tt.r); got != tt.want {
			t.Errorf("ThresholdString = %q, want %q", got, tt.want)
		}
	}
}

func TestCheckRange(t *testing.T) {
	max1, min99, band := rng(nil, ptr.To(1.0)), rng(ptr.To(99.0), nil), rng(ptr.To(10.0), ptr.To(20.0))
	for _, tt := range []struct {
		name string
		v    float64
		r    *rampv1.ThresholdRange
		ok   bool
		why  string
	}{
		{"below max", 0.5, max1, true, ""},
		{"at max (inclusive)", 1, max1, true, ""},
		{"above max", 8.2, max1, false, "8.2 > 1"},
		{"just above max", 1.0000001, max1, false, "1.0000001 > 1"},
		{"at min (inclusive)", 99, min99, true, ""},
		{"below min", 97, min99, false, "97 < 99"},
		{"above min", 99.9, min99, true, ""},
		{"band low edge", 10, band, true, ""},
		{"band high edge", 20, band, true, ""},
		{"band inside", 15, band, true, ""},
		{"band below", 9.99, band, false, "9.99 < 10"},
		{"band above", 25, band, false, "25 > 20"},
		{"NaN never passes", math.NaN(), max1, false, "NaN is not a number"},
		{"+Inf above max", math.Inf(1), max1, false, "+Inf > 1"},
		{"-Inf below min", math.Inf(-1), min99, false, "-Inf < 99"},
		{"negative ok", -5, max1, true, ""},
	} {
		ok, why := CheckRange(tt.v, tt.r)
		if ok != tt.ok || why != tt.why {
			t.Errorf("%s: CheckRange(%v) = %v %q, want %v %q", tt.name, tt.v, ok, why, tt.ok, tt.why)
		}
	}
}
