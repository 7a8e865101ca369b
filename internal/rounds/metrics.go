package rounds

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ramp_analysis_rounds_in_flight",
		Help: "Analysis rounds asked for and not finished, by state: running on a worker, or waiting for one (all --analysis-workers busy).",
	}, []string{"state"})
	running  = inFlight.WithLabelValues("running")
	waiting  = inFlight.WithLabelValues("waiting")
	duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ramp_analysis_round_duration_seconds",
		Help:    "Time an analysis round ran on a worker (Prometheus queries included; waiting for a worker excluded).",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})
)

func init() {
	metrics.Registry.MustRegister(inFlight, duration)
}
