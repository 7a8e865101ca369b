package analysis

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Sample is the outcome of one query: a value, or the error that kept it from one.
type Sample struct {
	Value float64
	Err   error
}

// Evidence is what a round measured for one metric.
type Evidence struct {
	// Canary is the metric's value for the canary.
	Canary Sample
	// Stable is the value for the stable workload; set for compareToStable.
	Stable *Sample
	// CanaryRequests and StableRequests are the requests served in the window; set for
	// built-in metrics with MinRequests > 0 (StableRequests only when comparing).
	CanaryRequests, StableRequests *Sample
	MinRequests                    int32
	// CanaryWorkload, StableWorkload and Window only word messages.
	CanaryWorkload, StableWorkload, Window string
}

// Evaluate judges one metric: Failed when a check it could make failed (a value outside
// thresholdRange, or worse than stable beyond the tolerance), else Inconclusive when any
// evidence is missing (no data, NaN, too little traffic, a provider error), else Passed.
// With both thresholdRange and compareToStable, both must pass.
func Evaluate(m *rampv1.Metric, ev Evidence, at time.Time) rampv1.MetricResult {
	res := rampv1.MetricResult{Name: m.Name, Time: metav1.NewTime(at)}
	canaryWho := orDefault(ev.CanaryWorkload, "canary")
	stableWho := "stable " + ev.StableWorkload
	if ev.StableWorkload == "" {
		stableWho = "stable"
	}

	ev.Canary = checkNumber(ev.Canary)
	if ev.Stable != nil {
		s := checkNumber(*ev.Stable)
		ev.Stable = &s
	}

	var failures, unknowns []string
	canaryOK := true
	if ev.CanaryRequests != nil {
		if msg := trafficProblem(*ev.CanaryRequests, ev.MinRequests, canaryWho, ev.Window); msg != "" {
			unknowns = append(unknowns, msg)
			canaryOK = false
		}
	}
	if ev.Canary.Err != nil {
		if canaryOK { // too little traffic already explains a missing value
			unknowns = append(unknowns, sampleProblem(ev.Canary.Err, canaryWho))
		}
		canaryOK = false
	} else {
		res.Value = FormatValue(ev.Canary.Value)
	}

	var thresholds []string
	if m.ThresholdRange != nil {
		thresholds = append(thresholds, ThresholdString(m.ThresholdRange))
		if canaryOK {
			if ok, why := CheckRange(ev.Canary.Value, m.ThresholdRange); !ok {
				failures = append(failures, why)
			}
		}
	}
	if c := m.CompareToStable; c != nil {
		stableOK := true
		if ev.Stable == nil {
			unknowns = append(unknowns, stableWho+": not measured")
			stableOK = false
		} else {
			if ev.StableRequests != nil {
				if msg := trafficProblem(*ev.StableRequests, ev.MinRequests, stableWho, ev.Window); msg != "" {
					unknowns = append(unknowns, msg)
					stableOK = false
				}
			}
			if ev.Stable.Err != nil {
				if stableOK {
					unknowns = append(unknowns, sampleProblem(ev.Stable.Err, stableWho))
				}
				stableOK = false
			} else {
				res.StableValue = FormatValue(ev.Stable.Value)
			}
		}
		thresholds = append(thresholds, ComparisonString(c, valueOf(ev.Stable), stableOK))
		if canaryOK && stableOK {
			if ok, why := CompareToStable(ev.Canary.Value, ev.Stable.Value, c); !ok {
				failures = append(failures, why)
			}
		}
	}
	if m.ThresholdRange == nil && m.CompareToStable == nil {
		unknowns = append(unknowns, "no thresholdRange or compareToStable to judge it by")
	}
	res.Threshold = strings.Join(thresholds, ", ")

	switch {
	case len(failures) > 0:
		res.Verdict = rampv1.VerdictFailed
		res.Message = strings.Join(failures, ", ")
	case len(unknowns) > 0:
		res.Verdict = rampv1.VerdictInconclusive
		res.Message = strings.Join(dedupe(unknowns), "; ")
	default:
		res.Verdict = rampv1.VerdictPassed
	}
	return res
}

// checkNumber turns a NaN or infinite value into ErrNotANumber: no evidence, not a failure.
func checkNumber(s Sample) Sample {
	if s.Err == nil && (math.IsNaN(s.Value) || math.IsInf(s.Value, 0)) {
		s.Err = fmt.Errorf("%w: %s", ErrNotANumber, FormatValue(s.Value))
	}
	return s
}

// trafficProblem says why a request count is not enough evidence, or "".
func trafficProblem(s Sample, min int32, who, window string) string {
	in := ""
	if window != "" {
		in = " in the last " + window
	}
	switch {
	case errors.Is(s.Err, ErrNoData):
		return fmt.Sprintf("no traffic: no requests recorded for %s%s", who, in)
	case s.Err != nil:
		// Provider errors read the same as the value query's, so messages merge.
		return sampleProblem(s.Err, who)
	case math.IsNaN(s.Value) || s.Value < float64(min):
		n := "0"
		if s.Value > 0 {
			n = strconv.FormatFloat(math.Floor(s.Value), 'f', -1, 64)
		}
		return fmt.Sprintf("too little traffic: %s requests < %d (%s%s)", n, min, who, in)
	}
	return ""
}

// sampleProblem words a query error; errors about the data name the workload.
func sampleProblem(err error, who string) string {
	if errors.Is(err, ErrNoData) || errors.Is(err, ErrNotANumber) || errors.Is(err, ErrMultipleSeries) {
		return who + ": " + err.Error()
	}
	return err.Error()
}

func valueOf(s *Sample) float64 {
	if s == nil || s.Err != nil {
		return math.NaN()
	}
	return s.Value
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dedupe(in []string) []string {
	out := in[:0:0]
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
