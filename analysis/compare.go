package analysis

import (
	"math"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Comparison modes.
const (
	ModeRelative = "Relative"
	ModeAbsolute = "Absolute"
)

// ComparisonLimit is the worst value the canary may have given the stable value: stable plus
// the tolerance (lower is better) or minus it (HigherIsBetter). A Relative tolerance is a
// percentage of |stable|, so a stable value of 0 allows the canary no slack.
func ComparisonLimit(stable float64, c *rampv1.Comparison) float64 {
	slack := c.Tolerance
	if c.Mode != ModeAbsolute {
		slack = math.Abs(stable) * c.Tolerance / 100
	}
	if c.HigherIsBetter {
		return stable - slack
	}
	return stable + slack
}

// CompareToStable reports whether the canary is not worse than stable by more than the
// tolerance; when it is, why says so ("8.2 > stable 0.5 +10% (0.55)").
func CompareToStable(canary, stable float64, c *rampv1.Comparison) (ok bool, why string) {
	if math.IsNaN(canary) || math.IsNaN(stable) {
		return false, "NaN is not a number"
	}
	limit := ComparisonLimit(stable, c)
	if c.HigherIsBetter {
		if canary >= limit {
			return true, ""
		}
		return false, formatAgainst(canary, limit) + " < stable " + FormatValue(stable) + " " + toleranceString(c) + " (" + FormatValue(limit) + ")"
	}
	if canary <= limit {
		return true, ""
	}
	return false, formatAgainst(canary, limit) + " > stable " + FormatValue(stable) + " " + toleranceString(c) + " (" + FormatValue(limit) + ")"
}

// ComparisonString describes a comparison for status: "<= stable +10%", or with the stable
// value known "<= 0.55 (stable +10%)"; ">= 98 (stable -1)" when higher is better.
func ComparisonString(c *rampv1.Comparison, stable float64, known bool) string {
	op := "<= "
	if c.HigherIsBetter {
		op = ">= "
	}
	if !known || math.IsNaN(stable) {
		return op + "stable " + toleranceString(c)
	}
	return op + FormatValue(ComparisonLimit(stable, c)) + " (stable " + toleranceString(c) + ")"
}

func toleranceString(c *rampv1.Comparison) string {
	sign := "+"
	if c.HigherIsBetter {
		sign = "-"
	}
	s := sign + FormatValue(c.Tolerance)
	if c.Mode != ModeAbsolute {
		s += "%"
	}
	return s
}
