package analysis

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProm is an httptest Prometheus whose /api/v1/query answers come from a function of
// the query; it counts queries and the peak number of concurrent requests. It answers a
// batched query (batchQuery) as Prometheus would from each sub-query's answer: their
// vectors tagged and joined, or the first error; a scalar, range vector or string is a
// bad_data error (label_replace takes none of them). counts counts the sub-queries,
// requests the HTTP requests.
type fakeProm struct {
	*httptest.Server
	answer func(q string) (status int, body string)
	delay  time.Duration
	// rejectBatches answers every batched query with a bad_data error.
	rejectBatches bool
	// raw answers a batched query with answer(query), as any other.
	raw bool

	mu       sync.Mutex
	counts   map[string]int
	requests []string // each request's method and query
	headers  []http.Header
	inflight atomic.Int32
	peak     atomic.Int32
}

func newFakeProm(t testing.TB, answer func(q string) (int, string)) *fakeProm {
	f := &fakeProm{answer: answer, counts: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeProm) serve(w http.ResponseWriter, r *http.Request) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	q := r.FormValue("query")
	sub := BatchedQueries(q)
	f.mu.Lock()
	if len(sub) == 0 {
		f.counts[q]++
	}
	for _, s := range sub {
		f.counts[s]++
	}
	f.requests = append(f.requests, r.Method+" "+q)
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	status, body := f.answer(q)
	if len(sub) > 0 && !f.raw {
		status, body = f.answerBatch(sub)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (f *fakeProm) answerBatch(sub []string) (int, string) {
	if f.rejectBatches {
		return 400, promError("bad_data", "batch rejected")
	}
	var all []json.RawMessage
	for i, q := range sub {
		status, body := f.answer(q)
		if status != 200 {
			return status, body
		}
		var r struct {
			Data struct {
				ResultType string
				Result     json.RawMessage
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return status, body
		}
		if r.Data.ResultType != "vector" {
			return 400, promError("bad_data", "expected type instant vector in call to function \"label_replace\", got "+r.Data.ResultType)
		}
		var series []map[string]any
		if err := json.Unmarshal(r.Data.Result, &series); err != nil {
			return status, body
		}
		for _, s := range series {
			labels, _ := s["metric"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
			}
			labels[BatchLabel] = strconv.Itoa(i)
			s["metric"] = labels
			b, _ := json.Marshal(s)
			all = append(all, b)
		}
	}
	res, _ := json.Marshal(all)
	if all == nil {
		res = []byte("[]")
	}
	return 200, `{"status":"success","data":{"resultType":"vector","result":` + string(res) + `}}`
}

// sent is how many HTTP requests were sent.
func (f *fakeProm) sent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// batches is how many batched queries were sent.
func (f *fakeProm) batches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if BatchedQueries(r) != nil {
			n++
		}
	}
	return n
}

func (f *fakeProm) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return n
}

func (f *fakeProm) count(q string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[q]
}

// vectorJSON is a success response with one series per value ("NaN", "+Inf" allowed).
func vectorJSON(vals ...string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprintf(`{"metric":{"pod":"p%d"},"value":[1893553445.123,%q]}`, i, v)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(parts, ",") + `]}}`
}

func vectorOf(v float64) string { return vectorJSON(strconv.FormatFloat(v, 'f', -1, 64)) }

const (
	matrixJSON = `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1893553445,"1"],[1893553446,"2"]]}]}}`
	scalarJSON = `{"status":"success","data":{"resultType":"scalar","result":[1893553445,"42"]}}`
	stringJSON = `{"status":"success","data":{"resultType":"string","result":[1893553445,"hello"]}}`
)

func promError(errType, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, errType, msg)
}
