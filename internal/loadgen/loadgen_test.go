package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

func body(md map[string]string) *rampv1.GateRequest {
	return &rampv1.GateRequest{Rollout: "podinfo", Name: "podinfo", Namespace: "shop", Gate: "load", At: rampv1.GateEachStep, Metadata: md}
}

func TestParse(t *testing.T) {
	c := Config{MaxRPS: 50, MaxDuration: 5 * time.Minute}
	for _, tc := range []struct {
		name string
		md   map[string]string
		want Load
		err  string
	}{
		{name: "defaults", want: Load{Key: "shop/podinfo/load", URL: "http://podinfo.shop:80/", RPS: 10, Duration: time.Minute}},
		{name: "all set", md: map[string]string{"service": "web", "port": "9898", "path": "/api?x=1", "header": "x-ramp-preview: true", "rps": "20", "duration": "90s"},
			want: Load{Key: "shop/podinfo/load", URL: "http://web.shop:9898/api?x=1", HeaderName: "x-ramp-preview", HeaderValue: "true", RPS: 20, Duration: 90 * time.Second}},
		{name: "a host is not a service", md: map[string]string{"service": "169.254.169.254"}, err: `metadata.service "169.254.169.254"`},
		{name: "no scheme or host smuggled in", md: map[string]string{"service": "evil.com/x"}, err: "metadata.service"},
		{name: "path", md: map[string]string{"path": "@evil.com/"}, err: "metadata.path"},
		{name: "port", md: map[string]string{"port": "0"}, err: "metadata.port"},
		{name: "header", md: map[string]string{"header": "no colon"}, err: "metadata.header"},
		{name: "too fast", md: map[string]string{"rps": "51"}, err: "at most 50"},
		{name: "too long", md: map[string]string{"duration": "1h"}, err: "at most 5m0s"},
		{name: "every error at once", md: map[string]string{"rps": "0", "duration": "x"}, err: "metadata.rps \"0\": want more than 0, at most 50\nmetadata.duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := c.Parse(body(tc.md))
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %v, want an error with %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case *l != tc.want:
				t.Errorf("got %+v\nwant %+v", *l, tc.want)
			}
		})
	}
}

// A gate call answers 202 at once, and the load then reaches the Service (here through a
// proxy, as through a sidecar) with the header, at the rate asked, until its duration ends.
func TestServerSendsTheLoad(t *testing.T) {
	var mu sync.Mutex
	var hosts, headers []string
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts, headers = append(hosts, r.Host), append(headers, r.Header.Get("x-ramp-preview"))
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer mesh.Close()
	u, _ := url.Parse(mesh.URL)
	s := New(Config{Client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}})
	defer s.Stop()
	srv := httptest.NewServer(s)
	defer srv.Close()

	post := func(md map[string]string) int {
		b, _ := json.Marshal(body(md))
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	start := time.Now()
	if code := post(map[string]string{"port": "9898", "header": "x-ramp-preview: true", "rps": "50", "duration": "400ms"}); code != http.StatusAccepted {
		t.Fatalf("answered %d, want 202", code)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("the call took %s: the load must run in the background", d)
	}
	s.mu.Lock()
	r := s.runs["shop/podinfo/load"]
	s.mu.Unlock()
	if code := post(map[string]string{"rps": "1000"}); code != http.StatusBadRequest {
		t.Errorf("too fast a load answered %d, want 400", code)
	}
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("a load of 400ms still runs after 5s")
	}
	c := s.Counts("shop/podinfo/load")
	// 50/s for 0.4s: about 20 (the first at once).
	if c.Sent < 10 || c.Sent > 25 || c.ByCode[http.StatusTeapot] != c.Sent {
		t.Errorf("sent %+v, want ~20 answered 418", c)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range hosts {
		if hosts[i] != "podinfo.shop:9898" || headers[i] != "true" {
			t.Fatalf("request %d to %q with x-ramp-preview %q", i, hosts[i], headers[i])
		}
	}
}

// A call for the same rollout and gate replaces the load running (the next step's load).
func TestServerReplacesTheLoad(t *testing.T) {
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer mesh.Close()
	u, _ := url.Parse(mesh.URL)
	s := New(Config{Client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}})
	defer s.Stop()
	l, err := s.cfg.Parse(body(map[string]string{"duration": "1m"}))
	if err != nil {
		t.Fatal(err)
	}
	s.start(l)
	s.mu.Lock()
	first := s.runs[l.Key]
	s.mu.Unlock()
	s.start(l)
	select {
	case <-first.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the first load still runs")
	}
	if !s.running(l.Key) {
		t.Error("the second load does not run")
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET / answered %d", rec.Code)
	}
}

// The command: flags parsed, /healthz served, a clean stop when its context ends.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f, err := ParseFlags([]string{"--listen=" + addr, "--max-rps=5", "--max-duration=1m"}, io.Discard)
	if err != nil || f.MaxRPS != 5 || f.MaxDuration != time.Minute {
		t.Fatalf("flags %+v, %v", f, err)
	}
	if _, err := ParseFlags([]string{"stray"}, io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, f) }()
	err = testenv.WaitFor(ctx, 5*time.Second, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
