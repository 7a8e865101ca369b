package dashboard

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// maxPoints bounds each series the dashboard keeps (weights, one metric's samples): a
// dashboard left open for days keeps the latest ones.
const maxPoints = 2000

// WeightPoint is the rollout's state from Time until the next point.
type WeightPoint struct {
	Time   time.Time `json:"t"`
	Weight int32     `json:"weight"`
	Step   int32     `json:"step"`
	Phase  string    `json:"phase"`
	// Revision is the canary revision ("" between rollouts).
	Revision string `json:"revision,omitempty"`
}

// Sample is one analysis round's result for one metric, from status.lastAnalysis.
type Sample struct {
	Time time.Time `json:"t"`
	// Value and Stable are the canary's and stable's values; nil when the round measured none
	// (or status holds something that is not a number).
	Value     *float64 `json:"value,omitempty"`
	Stable    *float64 `json:"stable,omitempty"`
	Verdict   string   `json:"verdict"`
	Threshold string   `json:"threshold,omitempty"`
	Message   string   `json:"message,omitempty"`
}

// history is what the dashboard has seen of one Rollout since it started watching: the
// API server keeps only the current status (the last analysis round), so earlier points
// exist only if the dashboard saw them.
type history struct {
	uid     types.UID
	weights []WeightPoint
	metrics map[string][]Sample
	// order lists the metric names in the order first seen.
	order []string
}

// observe records what a version of the Rollout, seen at now, adds to the history: a weight
// point when weight, step, phase or canary revision changed, and each metric's result of an
// analysis round not recorded yet. A Rollout deleted and created again (another UID) starts
// a fresh history.
func (h *history) observe(ro *rampv1.Rollout, now time.Time) {
	if h.uid != ro.UID {
		*h = history{uid: ro.UID}
	}
	st := &ro.Status
	p := WeightPoint{Time: now, Weight: st.CanaryWeight, Step: st.CurrentStep, Phase: st.Phase, Revision: st.CanaryRevision}
	if n := len(h.weights); n == 0 || !sameState(h.weights[n-1], p) {
		h.weights = trim(append(h.weights, p))
	}
	for _, m := range st.LastAnalysis {
		if h.metrics == nil {
			h.metrics = map[string][]Sample{}
		}
		s, seen := h.metrics[m.Name]
		if !seen {
			h.order = append(h.order, m.Name)
		}
		// Rounds only move forward; a result no newer than the last one is that same round.
		if n := len(s); n > 0 && !m.Time.After(s[n-1].Time) {
			continue
		}
		h.metrics[m.Name] = trim(append(s, Sample{
			Time: m.Time.Time, Value: number(m.Value), Stable: number(m.StableValue),
			Verdict: m.Verdict, Threshold: m.Threshold, Message: m.Message,
		}))
	}
}

func sameState(a, b WeightPoint) bool {
	return a.Weight == b.Weight && a.Step == b.Step && a.Phase == b.Phase && a.Revision == b.Revision
}

func trim[T any](s []T) []T {
	if len(s) > maxPoints {
		return append(s[:0:0], s[len(s)-maxPoints:]...)
	}
	return s
}

// number parses a value as status formats it (analysis.FormatValue); nil if it is not one.
func number(s string) *float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &v
}

// MetricSeries is one analysis metric over time with the range it must stay in (from the
// Rollout's spec.analysis.metrics[].thresholdRange; nil bounds are open).
type MetricSeries struct {
	Name string   `json:"name"`
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
	// CompareToStable: the chart shows stable's values beside the canary's.
	CompareToStable bool     `json:"compareToStable,omitempty"`
	Samples         []Sample `json:"samples"`
}

// series returns the metrics of spec.analysis (in spec order, then metrics seen only in
// status) with the samples recorded for each.
func (h *history) series(ro *rampv1.Rollout) []MetricSeries {
	out := []MetricSeries{}
	inSpec := map[string]bool{}
	if a := ro.Spec.Analysis; a != nil {
		for _, m := range a.Metrics {
			ms := MetricSeries{Name: m.Name, CompareToStable: m.CompareToStable != nil, Samples: clone(h.metrics[m.Name])}
			if r := m.ThresholdRange; r != nil {
				ms.Min, ms.Max = r.Min, r.Max
			}
			inSpec[m.Name] = true
			out = append(out, ms)
		}
	}
	for _, name := range h.order {
		if !inSpec[name] {
			out = append(out, MetricSeries{Name: name, Samples: clone(h.metrics[name])})
		}
	}
	return out
}

func clone[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return append([]T(nil), s...)
}
