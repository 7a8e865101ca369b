package bench

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The hanging Prometheus holds each query, knowing whose it is, until the client gives up or
// it stops hanging; then it answers.
func TestHangingPromHoldsQueries(t *testing.T) {
	stub := StartPromStub()
	defer stub.Close()
	h := startHangingProm(stub)
	defer h.Close()
	apps := []string{"hang-0000"}
	query := func(ctx context.Context, done chan<- error) {
		q := url.Values{"query": {`sum(rate(istio_requests_total{destination_workload="hang-0000-canary"}[1m]))`}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/api/v1/query", strings.NewReader(q.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		done <- err
	}
	waitNone := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for h.hanging(apps) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("a query is still counted as held")
			}
			time.Sleep(time.Millisecond)
		}
	}

	h.setHanging(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go query(ctx, done)
	if err := h.waitHanging(context.Background(), apps, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the query was answered: %v", err)
	default:
	}
	cancel() // the client's query timeout
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("query ended with %v, want the client's cancellation", err)
	}
	waitNone()

	// Held, then answered once the server stops hanging; answered at once after.
	go query(context.Background(), done)
	if err := h.waitHanging(context.Background(), apps, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h.setHanging(false)
	if err := <-done; err != nil {
		t.Fatalf("held query after the hang ended: %v", err)
	}
	go query(context.Background(), done)
	if err := <-done; err != nil {
		t.Fatalf("query while answering: %v", err)
	}
	waitNone()
	if h.held() != 2 {
		t.Errorf("%d queries held, want 2", h.held())
	}
	if byKind, _ := stub.Counts(); byKind[QueryOther] != 2 {
		t.Errorf("stub answered %v, want the 2 queries not held to the end", byKind)
	}
}

func TestIsolationSummaries(t *testing.T) {
	small := Dist{N: 20, P50: 300, P99: 700, Max: 800}
	if got := small.String(); got != "max 800ms  (n=20)" {
		t.Errorf("under 100 samples: %q, want the maximum only", got)
	}
	big := Dist{N: 100, P50: 300, P99: 700, Max: 800}
	if got := big.String(); !strings.HasPrefix(got, "p50 300ms  p99 700ms") {
		t.Errorf("from 100 samples: %q, want percentiles", got)
	}
	r := &Report{Isolation: &IsolationResult{Hanging: 4, Without: small, With: Dist{N: 20, Max: 1400}}}
	if g := isolationGoals(r); len(g) != 1 || g[0].Met {
		t.Errorf("a reaction 1.4s against 800ms: %+v, want missed", g)
	}
	r.Isolation.With.Max = 900
	if g := isolationGoals(r); len(g) != 1 || !g[0].Met {
		t.Errorf("a reaction 900ms against 800ms: %+v, want met", g)
	}
}
