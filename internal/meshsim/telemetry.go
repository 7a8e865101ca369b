package meshsim

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// IstioBuckets are the bucket bounds (ms) of istio_request_duration_milliseconds: Envoy's
// default histogram buckets (HistogramSettingsImpl::defaultBuckets), which Istio keeps unless
// a pod sets the sidecar.istio.io/statsHistogramBuckets annotation.
var IstioBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Labels of both metrics: a small subset of Istio's standard labels (enough for ramp's
// queries and for telling what happened), so cardinality stays at a handful of series per
// workload.
var metricLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace",
	"destination_workload", "destination_workload_namespace", "destination_service",
	"response_code", "response_flags",
}

// Telemetry exports Reports as Istio's standard metrics, istio_requests_total and
// istio_request_duration_milliseconds, on its own registry. As in Envoy, a series exists
// from the first request with its labels on (a fresh canary's first 503 creates its 503
// series, which Prometheus first sees already counting), never before. It is safe for
// concurrent use.
type Telemetry struct {
	registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	srcWorkload  string
	srcNamespace string
	mu           sync.Mutex
	series       map[seriesKey]series
	codes        map[int]string
}

type seriesKey struct {
	reporter, workload, namespace, service, flags string
	code                                          int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// NewTelemetry returns telemetry reporting sourceWorkload in sourceNamespace as the client.
func NewTelemetry(sourceWorkload, sourceNamespace string) *Telemetry {
	t := &Telemetry{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests, as Istio's proxies count them (simulated by meshsim).",
		}, metricLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request durations in milliseconds, as Istio's proxies measure them (simulated by meshsim).",
			Buckets: IstioBuckets,
		}, metricLabels),
		srcWorkload:  sourceWorkload,
		srcNamespace: sourceNamespace,
		series:       map[seriesKey]series{},
		codes:        map[int]string{},
	}
	t.registry.MustRegister(t.requests, t.duration)
	return t
}

// Registry holds the metrics.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// Handler serves the metrics in the Prometheus exposition format.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Record counts reports and observes their latencies.
func (t *Telemetry) Record(reports []Report) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range reports {
		rep := &reports[i]
		k := seriesKey{rep.Reporter, rep.Workload, rep.Namespace, rep.Service, rep.Flags, rep.Code}
		s, ok := t.series[k]
		if !ok {
			code, ok := t.codes[rep.Code]
			if !ok {
				code = strconv.Itoa(rep.Code)
				t.codes[rep.Code] = code
			}
			lv := []string{rep.Reporter, t.srcWorkload, t.srcNamespace, rep.Workload, rep.Namespace, rep.Service, code, rep.Flags}
			s = series{t.requests.WithLabelValues(lv...), t.duration.WithLabelValues(lv...)}
			t.series[k] = s
		}
		s.requests.Inc()
		s.duration.Observe(float64(rep.Latency) / 1e6)
	}
}
