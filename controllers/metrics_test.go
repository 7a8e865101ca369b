package controllers

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestMetricsFollowTheRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)

	waitFor(t, "metrics", func(context.Context) (bool, error) {
		return testutil.ToFloat64(phaseGauge.WithLabelValues(ns, "web", rampv1.PhaseSucceeded)) == 1, nil
	})
	for phase, want := range map[string]float64{rampv1.PhaseProgressing: 0, rampv1.PhaseIdle: 0} {
		if got := testutil.ToFloat64(phaseGauge.WithLabelValues(ns, "web", phase)); got != want {
			t.Errorf("ramp_rollout_phase{phase=%q} = %v, want %v", phase, got, want)
		}
	}
	if got := testutil.ToFloat64(transitions.WithLabelValues(ns, "web", "StepStarted")); got != 3 {
		t.Errorf("StepStarted transitions = %v, want 3", got)
	}
	if got := testutil.ToFloat64(transitions.WithLabelValues(ns, "web", "Promoted")); got != 1 {
		t.Errorf("Promoted transitions = %v, want 1", got)
	}
	if got := testutil.ToFloat64(analysisResults.WithLabelValues(ns, "web", "error-rate", rampv1.VerdictPassed)); got < 3 {
		t.Errorf("passed analysis checks = %v, want at least one per step", got)
	}
	if n := testutil.CollectAndCount(durations); n == 0 {
		t.Error("no rollout duration observed")
	}
	if got := testutil.ToFloat64(weightGauge.WithLabelValues(ns, "web")); got != 0 {
		t.Errorf("weight after promotion = %v", got)
	}

	// Deleting the Rollout drops its series.
	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "series dropped", func(context.Context) (bool, error) {
		return seriesFor(ns) == 0, nil
	})
}

// seriesFor counts the series of a namespace across ramp's collectors, without creating any.
func seriesFor(ns string) int {
	n := 0
	for _, c := range []prometheus.Collector{phaseGauge, weightGauge, stepGauge, transitions, analysisResults, analysisValue} {
		ch := make(chan prometheus.Metric, 1024)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if m.Write(&d) != nil {
				continue
			}
			for _, l := range d.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n
}
