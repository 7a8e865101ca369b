package controllers

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Metrics operators graph, served on the manager's metrics endpoint next to
// controller-runtime's own (reconcile durations, errors, work queue).
var (
	phaseGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ramp_rollout_phase",
		Help: "1, labelled with the phase each Rollout is in (one series per Rollout).",
	}, []string{"namespace", "name", "phase"})
	weightGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ramp_rollout_canary_weight",
		Help: "Percentage of traffic ramp routes to the canary.",
	}, []string{"namespace", "name"})
	stepGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ramp_rollout_step",
		Help: "Current step (1-based) of the rollout in progress; 0 when none is.",
	}, []string{"namespace", "name"})
	transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ramp_rollout_transitions_total",
		Help: "Rollout transitions by reason (RolloutStarted, StepStarted, Promoted, RolledBack, ...).",
	}, []string{"namespace", "name", "reason"})
	analysisResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ramp_analysis_results_total",
		Help: "Analysis checks by metric and verdict (Passed, Failed, Inconclusive).",
	}, []string{"namespace", "name", "metric", "verdict"})
	durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ramp_rollout_duration_seconds",
		Help:    "Time from a rollout's start to its promotion or rollback, by outcome.",
		Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400},
	}, []string{"outcome"})
	analysisValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ramp_analysis_metric_value",
		Help: "Last value measured for each analysis metric on the canary.",
	}, []string{"namespace", "name", "metric"})
)

var phases = []string{
	rampv1.PhaseInitializing, rampv1.PhaseIdle, rampv1.PhaseProgressing, rampv1.PhasePaused,
	rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting, rampv1.PhaseSucceeded,
	rampv1.PhaseRollingBack, rampv1.PhaseFailed, rampv1.PhaseStalled,
}

func init() {
	metrics.Registry.MustRegister(phaseGauge, weightGauge, stepGauge, transitions, durations, analysisResults, analysisValue)
}

// record publishes one pass: the state gauges, its transitions and the analysis round it ran.
func record(ro *rampv1.Rollout, events []plan.Event, round *plan.AnalysisResult, now time.Time) {
	ns, name := ro.Namespace, ro.Name
	// One series per Rollout, not one per phase at 0 or 1: nine series a Rollout cost ~5 MiB
	// at 1,000 Rollouts. `max by (phase) (ramp_rollout_phase) == 1` reads both alike. A
	// Rollout is reconciled by one worker at a time, so the delete and the set do not race.
	for _, p := range phases {
		if p != ro.Status.Phase {
			phaseGauge.DeleteLabelValues(ns, name, p)
		}
	}
	if ro.Status.Phase != "" {
		phaseGauge.WithLabelValues(ns, name, ro.Status.Phase).Set(1)
	}
	weightGauge.WithLabelValues(ns, name).Set(float64(ro.Status.CanaryWeight))
	stepGauge.WithLabelValues(ns, name).Set(float64(ro.Status.CurrentStep))
	for _, e := range events {
		transitions.WithLabelValues(ns, name, e.Reason).Inc()
		outcome := map[string]string{"Promoted": "promoted", "RolledBack": "rolled_back"}[e.Reason]
		if outcome != "" && ro.Status.RolloutStartedAt != nil {
			durations.WithLabelValues(outcome).Observe(now.Sub(ro.Status.RolloutStartedAt.Time).Seconds())
		}
	}
	if round == nil {
		return
	}
	for _, m := range round.Metrics {
		analysisResults.WithLabelValues(ns, name, m.Name, m.Verdict).Inc()
		if v, err := strconv.ParseFloat(m.Value, 64); err == nil {
			analysisValue.WithLabelValues(ns, name, m.Name).Set(v)
		}
	}
}

// forget drops a deleted Rollout's series.
func forget(ro *rampv1.Rollout) {
	match := prometheus.Labels{"namespace": ro.Namespace, "name": ro.Name}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{phaseGauge, weightGauge, stepGauge, transitions, analysisResults, analysisValue} {
		v.DeletePartialMatch(match)
	}
}
