package prometheustest

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// segment is a stretch of time during which a workload's traffic had one shape.
type segment struct {
	w        Workload
	from, to time.Duration // since the exporter started; to < 0 while it lasts
}

// Exporter serves Istio-style telemetry at /metrics in the Prometheus text format:
// istio_requests_total{reporter,destination_workload,destination_workload_namespace,
// response_code} and istio_request_duration_milliseconds histograms, each for
// reporter="source" (the callers' proxies) and reporter="destination" (the workload's), which
// agree: every request reaches a pod and nothing fails between. Counters are derived from the
// time since the exporter started, so their rates are exact whenever Prometheus scrapes.
//
// Set adds a workload or changes its traffic while the exporter runs; counters carry on from
// where they were, so they never go down.
type Exporter struct {
	// Addr is host:port to scrape.
	Addr    string
	started time.Time
	srv     *http.Server

	mu    sync.Mutex
	loads [][]segment // per workload, in the order first set; segments in time order
}

// StartExporter serves the workloads on a loopback port until Close.
func StartExporter(loads ...Workload) (*Exporter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &Exporter{Addr: l.Addr().String(), started: time.Now()}
	for _, w := range loads {
		e.set(w, 0)
	}
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

// Set gives the workload named by w's Namespace and Name w's traffic from now on, adding it
// when it is new (its counters start at zero now). A rate() over a window that spans the
// change blends the old and the new traffic, as it would for a real workload.
func (e *Exporter) Set(w Workload) { e.set(w, time.Since(e.started)) }

func (e *Exporter) set(w Workload, at time.Duration) {
	w.Latency = slices.Clone(w.Latency)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, segs := range e.loads {
		last := &segs[len(segs)-1]
		if last.w.Namespace != w.Namespace || last.w.Name != w.Name {
			continue
		}
		if at < last.from {
			at = last.from
		}
		last.to = at
		e.loads[i] = append(segs, segment{w: w, from: at, to: -1})
		return
	}
	e.loads = append(e.loads, []segment{{w: w, from: at, to: -1}})
}

// Render is the exposition after elapsed time.
func (e *Exporter) Render(elapsed time.Duration) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	type totals struct {
		w             Workload // the latest shape, for its labels
		ok, errs, sum float64
		n             float64
		les           []float64
		buckets       map[float64]float64
	}
	all := make([]totals, 0, len(e.loads))
	for _, segs := range e.loads {
		t := totals{w: segs[len(segs)-1].w, buckets: map[float64]float64{}}
		for _, s := range segs {
			for _, bk := range s.w.Latency {
				if !slices.Contains(t.les, bk.LE) {
					t.les = append(t.les, bk.LE)
				}
			}
		}
		slices.Sort(t.les)
		for _, s := range segs {
			to := elapsed
			if s.to >= 0 && s.to < to {
				to = s.to
			}
			if to <= s.from {
				continue
			}
			n := s.w.RPS * (to - s.from).Seconds()
			t.n += n
			t.errs += n * s.w.ErrorRatio
			t.ok += n * (1 - s.w.ErrorRatio)
			prevLE, prevFrac := 0.0, 0.0
			for _, bk := range s.w.Latency {
				t.sum += n * (bk.Fraction - prevFrac) * (prevLE + bk.LE) / 2
				prevLE, prevFrac = bk.LE, bk.Fraction
			}
			for _, le := range t.les {
				t.buckets[le] += n * fractionAt(s.w.Latency, le)
			}
		}
		all = append(all, t)
	}

	var b strings.Builder
	b.WriteString("# TYPE istio_requests_total counter\n")
	for _, t := range all {
		for _, c := range []struct {
			reporter, code string
			v              float64
		}{{"source", "200", t.ok}, {"source", "503", t.errs}, {"destination", "200", t.ok}, {"destination", "503", t.errs}} {
			fmt.Fprintf(&b, "istio_requests_total{%s,response_code=%q} %s\n", labels(c.reporter, t.w), c.code, num(math.Floor(c.v)))
		}
	}
	b.WriteString("# TYPE istio_request_duration_milliseconds histogram\n")
	for _, t := range all {
		for _, reporter := range []string{"source", "destination"} {
			sel := labels(reporter, t.w)
			for _, le := range t.les {
				fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=%q} %s\n", sel, num(le), num(math.Floor(t.buckets[le])))
			}
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"} %s\n", sel, num(math.Floor(t.n)))
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_sum{%s} %s\n", sel, num(t.sum))
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_count{%s} %s\n", sel, num(math.Floor(t.n)))
		}
	}
	return b.String()
}

// fractionAt is the share of requests that took at most le milliseconds: that of the largest
// bucket bound not above le.
func fractionAt(buckets []Bucket, le float64) float64 {
	f := 0.0
	for _, bk := range buckets {
		if bk.LE <= le {
			f = bk.Fraction
		}
	}
	return f
}

func labels(reporter string, w Workload) string {
	return fmt.Sprintf("reporter=%q,destination_workload=%q,destination_workload_namespace=%q",
		reporter, w.Name, w.Namespace)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
