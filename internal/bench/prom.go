package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Kinds of queries the stub tells apart (ramp's built-in metrics).
const (
	QueryErrorRate    = "error-rate"
	QueryLatencyP99   = "latency-p99"
	QueryRequestCount = "request-count"
	QueryOther        = "other"
)

// PromStub is a Prometheus HTTP API that answers every instant query with one healthy
// sample (0.5% errors, 100 ms P99, 1000 requests) and counts the queries by kind and by
// workload.
type PromStub struct {
	URL string
	srv *httptest.Server

	mu         sync.Mutex
	byKind     map[string]int64
	byWorkload map[string]int64
}

var workloadRE = regexp.MustCompile(`destination_workload="([^"]+)"`)

// StartPromStub starts the stub on a local port.
func StartPromStub() *PromStub {
	p := &PromStub{byKind: map[string]int64{}, byWorkload: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", p.query)
	p.srv = httptest.NewServer(mux)
	p.URL = p.srv.URL
	return p
}

// Close stops the stub.
func (p *PromStub) Close() { p.srv.Close() }

func (p *PromStub) query(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.Form.Get("query")
	kind, value := QueryOther, "1"
	switch {
	case strings.Contains(q, "histogram_quantile"):
		kind, value = QueryLatencyP99, "100"
	case strings.Contains(q, "response_code=~"):
		kind, value = QueryErrorRate, "0.5"
	case strings.Contains(q, "increase("):
		kind, value = QueryRequestCount, "1000"
	}
	workload := ""
	if m := workloadRE.FindStringSubmatch(q); m != nil {
		workload = m[1]
	}
	p.mu.Lock()
	p.byKind[kind]++
	p.byWorkload[workload]++
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%.3f,%q]}]}}`,
		float64(time.Now().UnixMilli())/1000, value)
}

// Counts returns the queries so far by kind and by workload.
func (p *PromStub) Counts() (byKind, byWorkload map[string]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byKind, byWorkload = map[string]int64{}, map[string]int64{}
	for k, v := range p.byKind {
		byKind[k] = v
	}
	for k, v := range p.byWorkload {
		byWorkload[k] = v
	}
	return byKind, byWorkload
}
