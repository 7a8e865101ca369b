package dashboard

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// version is a Rollout's status at some point: phase, step, weight and the last analysis round.
func version(uid, phase string, step, weight int32, rounds ...rampv1.MetricResult) *rampv1.Rollout {
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID(uid)}}
	ro.Spec.Analysis = &rampv1.AnalysisSpec{Metrics: []rampv1.Metric{
		{Name: "latency-p99", ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(500.0)}},
		{Name: "error-rate", ThresholdRange: &rampv1.ThresholdRange{Min: ptr.To(0.0), Max: ptr.To(1.0)}, CompareToStable: &rampv1.Comparison{Tolerance: 10}},
	}}
	ro.Status = rampv1.RolloutStatus{Phase: phase, CurrentStep: step, CanaryWeight: weight, LastAnalysis: rounds}
	if phase == rampv1.PhaseProgressing {
		ro.Status.CanaryRevision = "rev2"
	}
	return ro
}

func round(name, value string, s int, verdict string) rampv1.MetricResult {
	return rampv1.MetricResult{Name: name, Value: value, StableValue: "0.2", Verdict: verdict, Threshold: "<= 1", Time: metav1.NewTime(at(s))}
}

func TestHistoryObserve(t *testing.T) {
	type seen struct {
		at int
		ro *rampv1.Rollout
	}
	for _, tc := range []struct {
		name     string
		versions []seen
		// weights as "weight/step/phase" at second; samples of error-rate as value@second.
		weights, errorRate string
	}{
		{
			name: "a weight point per change of weight, step or phase; none for status writes that change neither",
			versions: []seen{
				{0, version("a", rampv1.PhaseIdle, 0, 0)},
				{1, version("a", rampv1.PhaseProgressing, 1, 0)},
				{2, version("a", rampv1.PhaseProgressing, 1, 10)},
				{3, version("a", rampv1.PhaseProgressing, 1, 10)}, // e.g. the stage moved on
				{4, version("a", rampv1.PhaseProgressing, 2, 40)},
				{5, version("a", rampv1.PhaseSucceeded, 0, 0)},
			},
			weights:   `[[0,0,"Idle",0],[0,1,"Progressing",1],[10,1,"Progressing",2],[40,2,"Progressing",4],[0,0,"Succeeded",5]]`,
			errorRate: `[]`,
		},
		{
			name: "each analysis round once, although status shows it until the next; a value that is no number is kept as none",
			versions: []seen{
				{0, version("a", rampv1.PhaseProgressing, 1, 10, round("error-rate", "0.3", 0, rampv1.VerdictPassed))},
				{1, version("a", rampv1.PhaseProgressing, 1, 10, round("error-rate", "0.3", 0, rampv1.VerdictPassed))},
				{2, version("a", rampv1.PhaseProgressing, 1, 10, round("error-rate", "", 2, rampv1.VerdictInconclusive))},
				{4, version("a", rampv1.PhaseProgressing, 2, 40, round("error-rate", "1.4", 4, rampv1.VerdictFailed))},
			},
			weights:   `[[10,1,"Progressing",0],[40,2,"Progressing",4]]`,
			errorRate: `[["0.3","Passed",0],["none","Inconclusive",2],["1.4","Failed",4]]`,
		},
		{
			name: "a Rollout deleted and created again starts afresh",
			versions: []seen{
				{0, version("a", rampv1.PhaseProgressing, 1, 10, round("error-rate", "0.3", 0, rampv1.VerdictPassed))},
				{5, version("b", rampv1.PhaseIdle, 0, 0)},
			},
			weights:   `[[0,0,"Idle",5]]`,
			errorRate: `[]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h history
			var last *rampv1.Rollout
			for _, v := range tc.versions {
				h.observe(v.ro, at(v.at))
				last = v.ro
			}
			var ws [][]any
			for _, p := range h.weights {
				ws = append(ws, []any{p.Weight, p.Step, p.Phase, int(p.Time.Sub(t0).Seconds())})
			}
			if got := jsonOf(t, ws, "[]"); got != tc.weights {
				t.Errorf("weights %s\nwant    %s", got, tc.weights)
			}
			series := h.series(last)
			if len(series) != 2 || series[0].Name != "latency-p99" || series[1].Name != "error-rate" {
				t.Fatalf("series %+v: want the spec's metrics in its order", series)
			}
			er := series[1]
			if *er.Min != 0 || *er.Max != 1 || !er.CompareToStable || series[0].Min != nil || *series[0].Max != 500 {
				t.Errorf("thresholds: latency %v..%v, error-rate %v..%v compare %t", series[0].Min, series[0].Max, er.Min, er.Max, er.CompareToStable)
			}
			var ss [][]any
			for _, s := range er.Samples {
				v := "none"
				if s.Value != nil {
					v = jsonOf(t, *s.Value, "")
				}
				ss = append(ss, []any{v, s.Verdict, int(s.Time.Sub(t0).Seconds())})
				if s.Stable == nil || *s.Stable != 0.2 {
					t.Errorf("sample %v: stable value %v, want 0.2", s, s.Stable)
				}
			}
			if got := jsonOf(t, ss, "[]"); got != tc.errorRate {
				t.Errorf("error-rate %s\nwant       %s", got, tc.errorRate)
			}
		})
	}
}

// TestHistorySeriesStatusOnly: a metric in status but not in the spec (the spec changed) is
// charted after the spec's, without thresholds.
func TestHistorySeriesStatusOnly(t *testing.T) {
	var h history
	ro := version("a", rampv1.PhaseProgressing, 1, 10, round("old-metric", "7", 1, rampv1.VerdictPassed))
	h.observe(ro, at(1))
	s := h.series(ro)
	if len(s) != 3 || s[2].Name != "old-metric" || s[2].Max != nil || len(s[2].Samples) != 1 || len(s[0].Samples) != 0 {
		t.Fatalf("series %+v", s)
	}
	if s[0].Samples == nil {
		t.Error("a metric without samples must have an empty list, not null: the page reads its length")
	}
}

// TestHistoryBounded: a dashboard left open keeps the latest maxPoints of each series.
func TestHistoryBounded(t *testing.T) {
	var h history
	for i := range maxPoints + 10 {
		h.observe(version("a", rampv1.PhaseProgressing, 1, int32(i%2), round("error-rate", "0.1", i, rampv1.VerdictPassed)), at(i))
	}
	if len(h.weights) != maxPoints || len(h.metrics["error-rate"]) != maxPoints {
		t.Fatalf("kept %d weights, %d samples; want %d each", len(h.weights), len(h.metrics["error-rate"]), maxPoints)
	}
	if got := h.weights[len(h.weights)-1].Time; !got.Equal(at(maxPoints + 9)) {
		t.Errorf("last weight point at %s: want the latest", got)
	}
}

func jsonOf(t *testing.T, v any, null string) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) == "null" {
		return null
	}
	return string(b)
}
