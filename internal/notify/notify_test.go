package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func failed() Notification {
	return Notification{
		Rollout: "podinfo", Namespace: "shop", Reason: "AnalysisFailed", Warning: true,
		Message: "check 1/2 failed: error-rate 8.3 > 1 <!channel>", Phase: "Progressing", Step: "1/3",
		CanaryWeight: 5, Revision: "dc34638a3d", Image: "ghcr.io/stefanprodan/podinfo:6.8.0",
		Metrics: []rampv1.MetricResult{{Name: "error-rate", Verdict: rampv1.VerdictFailed, Value: "8.3", Threshold: "<= 1"}},
		Time:    time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	}
}

// receiver is a local Slack stand-in: it answers with the given statuses in turn, then 200.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	bodies   []map[string]any
	srv      *httptest.Server
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var m map[string]any
		if req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &m) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.bodies = append(r.bodies, m)
		if len(r.statuses) > 0 {
			st := r.statuses[0]
			r.statuses = r.statuses[1:]
			if st == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "2")
			}
			w.WriteHeader(st)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.bodies) }

func testSender(logs *strings.Builder) (*Sender, *[]time.Duration) {
	var mu sync.Mutex
	s := NewSender(4, funcr.New(func(prefix, args string) { mu.Lock(); logs.WriteString(args + "\n"); mu.Unlock() }, funcr.Options{}))
	var slept []time.Duration
	s.sleep = func(_ context.Context, d time.Duration) bool { slept = append(slept, d); return true }
	return s, &slept
}

func TestSlackPayloadShape(t *testing.T) {
	p := SlackPayload(failed())
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type   string `json:"type"`
			Text   *struct{ Type, Text string }
			Fields []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	types := []string{}
	for _, bl := range m.Blocks {
		types = append(types, bl.Type)
	}
	if got := strings.Join(types, ","); got != "header,section,section,context" {
		t.Fatalf("blocks %s", got)
	}
	if m.Blocks[0].Text.Type != "plain_text" || !strings.Contains(m.Blocks[0].Text.Text, "shop/podinfo: Analysis failed") {
		t.Errorf("header %+v", m.Blocks[0].Text)
	}
	fields := ""
	for _, f := range m.Blocks[1].Fields {
		fields += f.Text + "|"
	}
	for _, want := range []string{"*Canary weight*\n5%", "*Revision*\ndc34638a3d", "*Image*\n`ghcr.io/stefanprodan/podinfo:6.8.0`", "*Step*\n1/3", "*Phase*\nProgressing"} {
		if !strings.Contains(fields, want) {
			t.Errorf("fields lack %q: %s", want, fields)
		}
	}
	if metrics := m.Blocks[2].Text.Text; !strings.Contains(metrics, ":x: *error-rate* 8.3 (threshold &lt;= 1)") {
		t.Errorf("failing metric with value vs threshold missing: %q", metrics)
	}
	if strings.Contains(string(b), "<!channel>") || !strings.Contains(m.Blocks[1].Text.Text, "&lt;!channel&gt;") {
		t.Errorf("user text must be escaped so it cannot ping channels: %s", m.Blocks[1].Text.Text)
	}
	if !strings.HasPrefix(m.Text, ":red_circle:") {
		t.Errorf("fallback text %q", m.Text)
	}
}

func TestSenderRetriesServerErrorsAndRateLimits(t *testing.T) {
	rcv := newReceiver(t, 500, 429, 503)
	var logs strings.Builder
	s, slept := testSender(&logs)
	if err := s.deliver(context.Background(), job{url: rcv.srv.URL + "/services/T/B/secret", n: failed()}); err != nil {
		t.Fatal(err)
	}
	if rcv.count() != 4 {
		t.Fatalf("attempts %d, want 4 (three failures then success)", rcv.count())
	}
	// Exponential backoff 1s, 2s (raised by Retry-After: 2s), 4s.
	if got := *slept; len(got) != 3 || got[0] != time.Second || got[1] != 2*time.Second || got[2] != 4*time.Second {
		t.Errorf("backoff %v", got)
	}
}

func TestSenderGivesUpOnPermanentErrorsWithoutLeakingTheURL(t *testing.T) {
	rcv := newReceiver(t, 404, 404)
	var logs strings.Builder
	s, slept := testSender(&logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Start(ctx); close(done) }()
	secretURL := rcv.srv.URL + "/services/T000/B000/XXXXSECRET"
	s.Enqueue(secretURL, failed())
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "not delivered") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if rcv.count() != 1 || len(*slept) != 0 {
		t.Errorf("a 404 must not be retried: %d attempts, slept %v", rcv.count(), *slept)
	}
	if !strings.Contains(logs.String(), "404") || strings.Contains(logs.String(), "XXXXSECRET") {
		t.Errorf("log must give the status and never the URL: %s", logs.String())
	}
}

func TestSenderUnreachableErrorHidesURL(t *testing.T) {
	var logs strings.Builder
	s, _ := testSender(&logs)
	s.Attempts = 2
	err := s.deliver(context.Background(), job{url: "http://127.0.0.1:1/services/XXXXSECRET", n: failed()})
	if err == nil || strings.Contains(err.Error(), "XXXXSECRET") {
		t.Fatalf("error must exist and hide the URL: %v", err)
	}
}

func TestEnqueueNeverBlocks(t *testing.T) {
	s := NewSender(2, logr.Discard())
	start := time.Now()
	accepted := 0
	for i := 0; i < 10; i++ {
		if s.Enqueue("http://127.0.0.1:1/", failed()) {
			accepted++
		}
	}
	if accepted != 2 || time.Since(start) > time.Second {
		t.Errorf("accepted %d (want the queue size, 2) in %s", accepted, time.Since(start))
	}
}

func TestNotifiedTransitions(t *testing.T) {
	for _, r := range []string{"RolloutStarted", "StepStarted", "WaitingForWindow", "Promoted", "AnalysisFailed", "GateHeld", "GateFailed", "RolledBack"} {
		if !Notifies(r) {
			t.Errorf("%s must be notified", r)
		}
	}
	for _, r := range []string{"Adopted", "RequestIgnored", "ApplyFailed", "GatePassed"} {
		if Notifies(r) {
			t.Errorf("%s must not be notified", r)
		}
	}
}

func TestTruncateKeepsCharactersWhole(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	got := truncate(s, 8)
	if len(got) > 8 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("truncate(%q, 8) = %q (%d bytes)", s, got, len(got))
	}
}
