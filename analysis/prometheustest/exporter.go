package prometheustest

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bucket is a cumulative latency bucket: Fraction of requests took at most LE milliseconds.
type Bucket struct {
	LE       float64
	Fraction float64
}

// Workload is a destination workload's simulated traffic.
type Workload struct {
	Namespace, Name string
	// RPS is requests per second (0: the series exist but never grow).
	RPS float64
	// ErrorRatio of requests answered 503 (0..1); the rest answer 200.
	ErrorRatio float64
	// Latency buckets, increasing; requests above the last bucket fall in +Inf.
	Latency []Bucket
}

// Exporter serves Istio-style telemetry at /metrics in the Prometheus text format:
// istio_requests_total{reporter,destination_workload,destination_workload_namespace,
// response_code} and istio_request_duration_milliseconds histograms. Counters are derived
// from the time since the exporter started, so their rates are exact whenever Prometheus
// scrapes. For every workload it also serves reporter="source" series that are all 503, so
// a query that forgets reporter="destination" reads a wildly wrong error rate.
type Exporter struct {
	// Addr is host:port to scrape.
	Addr    string
	started time.Time
	loads   []Workload
	srv     *http.Server
}

// StartExporter serves the workloads on a loopback port until Close.
func StartExporter(loads ...Workload) (*Exporter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &Exporter{Addr: l.Addr().String(), started: time.Now(), loads: loads}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(e.Render(time.Since(e.started))))
	})
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return e, nil
}

// Close stops serving.
func (e *Exporter) Close() error { return e.srv.Close() }

// Render is the exposition after elapsed time.
func (e *Exporter) Render(elapsed time.Duration) string {
	var b strings.Builder
	secs := elapsed.Seconds()
	b.WriteString("# TYPE istio_requests_total counter\n")
	for _, w := range e.loads {
		n := math.Floor(w.RPS * secs)
		errs := math.Floor(n * w.ErrorRatio)
		for _, c := range []struct {
			reporter, code string
			v              float64
		}{{"destination", "200", n - errs}, {"destination", "503", errs}, {"source", "503", n}} {
			fmt.Fprintf(&b, "istio_requests_total{%s,response_code=%q} %s\n", labels(c.reporter, w), c.code, num(c.v))
		}
	}
	b.WriteString("# TYPE istio_request_duration_milliseconds histogram\n")
	for _, w := range e.loads {
		n := math.Floor(w.RPS * secs)
		sel := labels("destination", w)
		sum, prevLE, prevFrac := 0.0, 0.0, 0.0
		for _, bk := range w.Latency {
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=%q} %s\n", sel, num(bk.LE), num(math.Floor(n*bk.Fraction)))
			sum += n * (bk.Fraction - prevFrac) * (prevLE + bk.LE) / 2
			prevLE, prevFrac = bk.LE, bk.Fraction
		}
		fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"} %s\n", sel, num(n))
		fmt.Fprintf(&b, "istio_request_duration_milliseconds_sum{%s} %s\n", sel, num(sum))
		fmt.Fprintf(&b, "istio_request_duration_milliseconds_count{%s} %s\n", sel, num(n))
	}
	return b.String()
}

func labels(reporter string, w Workload) string {
	return fmt.Sprintf("reporter=%q,destination_workload=%q,destination_workload_namespace=%q",
		reporter, w.Name, w.Namespace)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
