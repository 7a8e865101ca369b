package prometheustest

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parse maps each series line of an exposition to its value.
func parse(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// A workload changed at run time keeps its counters growing from where they were, at the
// new rates, with the bucket bounds of every shape it had.
func TestExporterSet(t *testing.T) {
	e := &Exporter{}
	fast := []Bucket{{LE: 50, Fraction: 0.9}, {LE: 100, Fraction: 1}}
	slow := []Bucket{{LE: 100, Fraction: 0.5}, {LE: 1000, Fraction: 1}}
	e.set(Workload{Namespace: "ns", Name: "web", RPS: 100, ErrorRatio: 0.01, Latency: fast}, 0)
	e.set(Workload{Namespace: "ns", Name: "web", RPS: 100, ErrorRatio: 0.1, Latency: slow}, 10*time.Second)
	e.set(Workload{Namespace: "ns", Name: "late", RPS: 10}, 15*time.Second)

	sel := `reporter="destination",destination_workload="web",destination_workload_namespace="ns"`
	before, at, after := parse(t, e.Render(5*time.Second)), parse(t, e.Render(10*time.Second)), parse(t, e.Render(20*time.Second))
	for k, v := range at {
		if after[k] < v || v < before[k] {
			t.Errorf("%s went down: %v, %v, %v", k, before[k], v, after[k])
		}
	}
	check := func(m map[string]float64, series string, want float64) {
		t.Helper()
		if got := m[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	check(at, `istio_requests_total{`+sel+`,response_code="503"}`, 10)
	check(after, `istio_requests_total{`+sel+`,response_code="503"}`, 10+100)
	check(after, `istio_requests_total{`+sel+`,response_code="200"}`, 990+900)
	check(after, `istio_request_duration_milliseconds_bucket{`+sel+`,le="50"}`, 900)       // only the first 10s
	check(after, `istio_request_duration_milliseconds_bucket{`+sel+`,le="100"}`, 1000+500) // both
	check(after, `istio_request_duration_milliseconds_bucket{`+sel+`,le="1000"}`, 2000)
	check(after, `istio_request_duration_milliseconds_count{`+sel+`}`, 2000)
	src := strings.Replace(sel, "destination", "source", 1) // the callers saw the same answers
	check(after, `istio_requests_total{`+src+`,response_code="503"}`, 10+100)
	check(after, `istio_request_duration_milliseconds_count{`+src+`}`, 2000)
	late := `reporter="destination",destination_workload="late",destination_workload_namespace="ns"`
	check(at, `istio_request_duration_milliseconds_count{`+late+`}`, 0)
	check(after, `istio_request_duration_milliseconds_count{`+late+`}`, 50)
}
