package analysis

import (
	"math"
	"strconv"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// FormatValue formats a metric value compactly, to 4 significant digits, without an
// exponent in the usual range: 0.25, 8.3, 512, 12350, 0.0001235, NaN, +Inf.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	if a := math.Abs(r); r == 0 || (a >= 1e-4 && a < 1e15) {
		return strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}

// ThresholdString describes a range for status: "<= 1", ">= 99", "10 .. 20".
func ThresholdString(r *rampv1.ThresholdRange) string {
	switch {
	case r == nil || (r.Min == nil && r.Max == nil):
		return ""
	case r.Min == nil:
		return "<= " + FormatValue(*r.Max)
	case r.Max == nil:
		return ">= " + FormatValue(*r.Min)
	}
	return FormatValue(*r.Min) + " .. " + FormatValue(*r.Max)
}

// CheckRange reports whether v lies within r, bounds inclusive; when it does not, why says
// how it misses ("8.2 > 1", "97 < 99"). NaN is never within a range.
func CheckRange(v float64, r *rampv1.ThresholdRange) (ok bool, why string) {
	switch {
	case math.IsNaN(v):
		return false, "NaN is not a number"
	case r == nil:
		return true, ""
	case r.Max != nil && v > *r.Max:
		return false, formatAgainst(v, *r.Max) + " > " + FormatValue(*r.Max)
	case r.Min != nil && v < *r.Min:
		return false, formatAgainst(v, *r.Min) + " < " + FormatValue(*r.Min)
	}
	return true, ""
}

// formatAgainst formats v compactly unless that would make it read the same as the bound it
// missed ("1 > 1"); then it shows every digit.
func formatAgainst(v, bound float64) string {
	if s := FormatValue(v); s != FormatValue(bound) || v == bound {
		return s
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
