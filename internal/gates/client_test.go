package gates

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
)

func testClient(allowed ...string) *Client {
	l := endpoints.MustParse(strings.Join(allowed, ","))
	c := New(l.Allows)
	c.Backoff.Duration = time.Millisecond
	return c
}

func TestCall(t *testing.T) {
	body := &rampv1.GateRequest{Rollout: "podinfo", Namespace: "shop", Gate: "smoke", At: rampv1.GateEachStep,
		StableRevision: "a", CanaryRevision: "b", Step: 2, Steps: 3, Weight: 25, Phase: "Progressing",
		Metadata: map[string]string{"suite": "smoke"}}
	for _, tc := range []struct {
		name     string
		codes    []int // answered in turn; the last one repeats
		retries  int32
		passed   bool
		result   string
		attempts int32
	}{
		{name: "2xx passes", codes: []int{204}, passed: true, result: "HTTP 204", attempts: 1},
		{name: "5xx is retried then fails", codes: []int{500}, retries: 2, result: "HTTP 500", attempts: 3},
		{name: "a retry that passes passes", codes: []int{503, 200}, retries: 2, passed: true, result: "HTTP 200", attempts: 2},
		{name: "429 is retried", codes: []int{429, 202}, retries: 1, passed: true, result: "HTTP 202", attempts: 2},
		{name: "4xx is an answer: not retried", codes: []int{403}, retries: 2, result: "HTTP 403", attempts: 1},
		{name: "no retries", codes: []int{500}, retries: 0, result: "HTTP 500", attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				var got rampv1.GateRequest
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got.CanaryRevision != "b" || got.Step != 2 || got.Weight != 25 || got.Metadata["suite"] != "smoke" || got.At != rampv1.GateEachStep {
					t.Errorf("body %+v (%v)", got, err)
				}
				w.WriteHeader(tc.codes[min(i, len(tc.codes)-1)])
				_, _ = w.Write([]byte("password=hunter2"))
			}))
			defer srv.Close()
			g := &rampv1.Gate{Name: "smoke", URL: srv.URL + "/check", Retries: ptr.To(tc.retries)}
			out := testClient(srv.URL).Call(context.Background(), g, body)
			if out.Passed != tc.passed || out.Result != tc.result || n.Load() != tc.attempts {
				t.Errorf("got %+v after %d attempts, want passed=%v %q after %d", out, n.Load(), tc.passed, tc.result, tc.attempts)
			}
			if strings.Contains(out.Result, "hunter2") {
				t.Errorf("the answer's body reached the result: %q", out.Result)
			}
		})
	}
}

func TestCallTimesOut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // the server notices the client leaving only once the body is read
		<-r.Context().Done()
	}))
	defer srv.Close()
	g := &rampv1.Gate{Name: "slow", URL: srv.URL, Timeout: &metav1.Duration{Duration: 50 * time.Millisecond}, Retries: ptr.To[int32](1)}
	start := time.Now()
	out := testClient(srv.URL).Call(context.Background(), g, &rampv1.GateRequest{})
	if out.Passed || out.Result != "timeout" {
		t.Errorf("got %+v, want a timeout", out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("two attempts of 50ms took %s", d)
	}
}

func TestCallConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	out := testClient(url).Call(context.Background(), &rampv1.Gate{Name: "gone", URL: url, Retries: ptr.To[int32](0)}, &rampv1.GateRequest{})
	if out.Passed || out.Result != "connection refused" {
		t.Errorf("got %+v", out)
	}
}

// A gate may not send ramp elsewhere: a redirect to an address the platform did not allow is
// not followed (and fails the gate); one to an allowed address is.
func TestCallRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(200)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
		case "/here":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		default:
			w.WriteHeader(200)
		}
	}))
	defer srv.Close()
	c := testClient(srv.URL)
	if out := c.Call(context.Background(), &rampv1.Gate{Name: "away", URL: srv.URL + "/away"}, &rampv1.GateRequest{}); out.Passed || out.Result != "redirect not allowed" {
		t.Errorf("redirect elsewhere: %+v", out)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect to another host was followed %d times", n)
	}
	if out := c.Call(context.Background(), &rampv1.Gate{Name: "here", URL: srv.URL + "/here"}, &rampv1.GateRequest{}); !out.Passed {
		t.Errorf("redirect within the allowed address: %+v", out)
	}
}

// An endless answer is read only up to a bound: the call ends.
func TestCallBoundsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		chunk := []byte(strings.Repeat("x", 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	done := make(chan Outcome, 1)
	go func() {
		done <- testClient(srv.URL).Call(context.Background(), &rampv1.Gate{Name: "big", URL: srv.URL}, &rampv1.GateRequest{})
	}()
	select {
	case out := <-done:
		if !out.Passed {
			t.Errorf("got %+v", out)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call read an endless answer")
	}
}
