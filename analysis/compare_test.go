package analysis

import (
	"math"
	"testing"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestCompareToStable(t *testing.T) {
	rel := func(tol float64) *rampv1.Comparison { return &rampv1.Comparison{Tolerance: tol, Mode: ModeRelative} }
	relDefault := &rampv1.Comparison{Tolerance: 10} // Mode "" is Relative
	abs := func(tol float64) *rampv1.Comparison { return &rampv1.Comparison{Tolerance: tol, Mode: ModeAbsolute} }
	higher := func(c *rampv1.Comparison) *rampv1.Comparison { c.HigherIsBetter = true; return c }
	for _, tt := range []struct {
		name           string
		canary, stable float64
		c              *rampv1.Comparison
		ok             bool
		why, threshold string
	}{
		{"relative: equal", 0.5, 0.5, rel(10), true, "", "<= 0.55 (stable +10%)"},
		{"relative: at limit", 0.55, 0.5, rel(10), true, "", "<= 0.55 (stable +10%)"},
		{"relative: worse", 8.2, 0.5, rel(10), false, "8.2 > stable 0.5 +10% (0.55)", "<= 0.55 (stable +10%)"},
		{"relative: better", 0.1, 0.5, rel(0), true, "", "<= 0.5 (stable +0%)"},
		{"relative default mode", 110, 100, relDefault, true, "", "<= 110 (stable +10%)"},
		{"relative default mode worse", 111, 100, relDefault, false, "111 > stable 100 +10% (110)", "<= 110 (stable +10%)"},
		{"relative: zero stable, zero canary", 0, 0, rel(50), true, "", "<= 0 (stable +50%)"},
		{"relative: zero stable allows no slack", 0.1, 0, rel(50), false, "0.1 > stable 0 +50% (0)", "<= 0 (stable +50%)"},
		{"relative: negative stable uses |stable|", -9, -10, rel(20), true, "", "<= -8 (stable +20%)"},
		{"absolute: within", 450, 400, abs(50), true, "", "<= 450 (stable +50)"},
		{"absolute: worse", 450.5, 400, abs(50), false, "450.5 > stable 400 +50 (450)", "<= 450 (stable +50)"},
		{"absolute: zero stable", 0.9, 0, abs(1), true, "", "<= 1 (stable +1)"},
		{"higher is better: relative worse", 97, 99.9, higher(rel(1)), false, "97 < stable 99.9 -1% (98.9)", ">= 98.9 (stable -1%)"},
		{"higher is better: relative ok", 99.5, 99.9, higher(rel(1)), true, "", ">= 98.9 (stable -1%)"},
		{"higher is better: much higher", 200, 100, higher(rel(0)), true, "", ">= 100 (stable -0%)"},
		{"higher is better: absolute", 95, 99, higher(abs(2)), false, "95 < stable 99 -2 (97)", ">= 97 (stable -2)"},
		{"higher is better: zero stable", 0, 0, higher(rel(10)), true, "", ">= 0 (stable -10%)"},
		{"NaN canary", math.NaN(), 1, rel(10), false, "NaN is not a number", "<= 1.1 (stable +10%)"},
	} {
		ok, why := CompareToStable(tt.canary, tt.stable, tt.c)
		if ok != tt.ok || why != tt.why {
			t.Errorf("%s: CompareToStable(%v, %v) = %v %q, want %v %q", tt.name, tt.canary, tt.stable, ok, why, tt.ok, tt.why)
		}
		if got := ComparisonString(tt.c, tt.stable, true); got != tt.threshold {
			t.Errorf("%s: ComparisonString = %q, want %q", tt.name, got, tt.threshold)
		}
	}
	if got := ComparisonString(rel(10), 0, false); got != "<= stable +10%" {
		t.Errorf("unknown stable: %q", got)
	}
	if got := ComparisonString(higher(abs(3)), math.NaN(), true); got != ">= stable -3" {
		t.Errorf("NaN stable: %q", got)
	}
}
