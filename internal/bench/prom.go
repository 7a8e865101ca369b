package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ramp-dev/ramp/analysis"
)

// Kinds of queries the stub tells apart (ramp's built-in metrics).
const (
	QueryErrorRate    = "error-rate"
	QueryLatencyP99   = "latency-p99"
	QueryRequestCount = "request-count"
	QueryOther        = "other"
	// QueryBatch is a round's queries sent as one (analysis.BatchedQueries).
	QueryBatch = "batch"
)

// PromStub is a Prometheus HTTP API that answers every instant query with one healthy
// sample (0.5% errors, 100 ms P99, 1000 requests), a batched one with one per query it
// carries, and counts the queries (HTTP requests) by kind and by workload.
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
	kind, value := answer(q)
	at := float64(time.Now().UnixMilli()) / 1000
	series := []string{fmt.Sprintf(`{"metric":{},"value":[%.3f,%q]}`, at, value)}
	if batch := analysis.BatchedQueries(q); batch != nil { // a round's queries in one
		kind, series = QueryBatch, nil
		for i, sub := range batch {
			_, value := answer(sub)
			series = append(series, fmt.Sprintf(`{"metric":{%q:"%d"},"value":[%.3f,%q]}`, analysis.BatchLabel, i, at, value))
		}
	}
	workload := "" // a batch's: its first query's
	if m := workloadRE.FindStringSubmatch(q); m != nil {
		workload = m[1]
	}
	p.mu.Lock()
	p.byKind[kind]++
	p.byWorkload[workload]++
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(series, ","))
}

// answer is the kind of a (not batched) query and its healthy value.
func answer(q string) (kind, value string) {
	switch {
	case strings.Contains(q, "histogram_quantile"):
		return QueryLatencyP99, "100"
	case strings.Contains(q, "response_code=~"):
		return QueryErrorRate, "0.5"
	case strings.Contains(q, "increase("):
		return QueryRequestCount, "1000"
	}
	return QueryOther, "1"
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
