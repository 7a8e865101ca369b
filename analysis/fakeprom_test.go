package analysis

import (
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
// the query; it counts queries and the peak number of concurrent requests.
type fakeProm struct {
	*httptest.Server
	answer func(q string) (status int, body string)
	delay  time.Duration

	mu       sync.Mutex
	counts   map[string]int
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
	f.mu.Lock()
	f.counts[q]++
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
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
