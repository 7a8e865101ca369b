package analysis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestQueryErrorTyping(t *testing.T) {
	type check func(t *testing.T, v float64, err error)
	isErr := func(target error, msgIn string) check {
		return func(t *testing.T, _ float64, err error) {
			if !errors.Is(err, target) || !strings.Contains(err.Error(), msgIn) {
				t.Errorf("error %v: want errors.Is %v and message containing %q", err, target, msgIn)
			}
		}
	}
	httpErr := func(status int, msgIn string) check {
		return func(t *testing.T, _ float64, err error) {
			// The body stays in Detail (the log); the message (status, events, Slack) has only
			// the status code.
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != status || !strings.Contains(he.Detail, msgIn) {
				t.Errorf("error %#v: want *HTTPError{Status: %d} with %q", err, status, msgIn)
			} else if err.Error() != fmt.Sprintf("prometheus answered HTTP %d", status) {
				t.Errorf("message %q shows more than the status code", err.Error())
			}
			if errors.Is(err, ErrUnreachable) {
				t.Errorf("HTTP error %v is not unreachable", err)
			}
		}
	}
	queryErr := func(typ, msgIn string) check {
		return func(t *testing.T, _ float64, err error) {
			var qe *QueryError
			if !errors.As(err, &qe) || qe.Type != typ || !strings.Contains(qe.Detail+qe.Message, msgIn) {
				t.Errorf("error %#v: want *QueryError{Type: %q} with %q", err, typ, msgIn)
			} else if qe.Detail != "" && strings.Contains(err.Error(), qe.Detail) {
				t.Errorf("message %q shows Prometheus' answer", err.Error())
			}
		}
	}
	value := func(want float64) check {
		return func(t *testing.T, v float64, err error) {
			if err != nil || v != want {
				t.Errorf("got %v, %v; want %v", v, err, want)
			}
		}
	}
	for _, tt := range []struct {
		name   string
		status int
		body   string
		check  check
	}{
		{"one sample", 200, vectorJSON("8.25"), value(8.25)},
		{"scalar", 200, scalarJSON, value(42)},
		{"500 plain text", 500, "boom\n", httpErr(500, "boom")},
		{"502 from a proxy, HTML", 502, "<html><body>\n<h1>Bad   Gateway</h1></body></html>", httpErr(502, "<h1>Bad Gateway</h1>")},
		{"503 prometheus error", 503, promError("unavailable", "TSDB not ready"), httpErr(503, "unavailable: TSDB not ready")},
		{"401", 401, "Unauthorized", httpErr(401, "Unauthorized")},
		{"400 bad_data", 400, promError("bad_data", `1:5: parse error: unexpected "}"`), queryErr("bad_data", "parse error")},
		{"422 execution", 422, promError("execution", "vector cannot contain metrics with the same labelset"), queryErr("execution", "same labelset")},
		{"400 without JSON", 400, "bad request", httpErr(400, "bad request")},
		{"200 with status error", 200, promError("timeout", "query timed out in expression evaluation"), queryErr("timeout", "timed out")},
		{"malformed JSON", 200, `{"status":"success","data":{"resultType":"vector","result":[{`, isErr(ErrBadResponse, "unreadable prometheus response")},
		{"HTML with 200", 200, "<html>login</html>", isErr(ErrBadResponse, "")},
		{"empty vector", 200, vectorJSON(), isErr(ErrNoData, "empty vector")},
		{"NaN", 200, vectorJSON("NaN"), isErr(ErrNotANumber, "NaN")},
		{"+Inf", 200, vectorJSON("+Inf"), isErr(ErrNotANumber, "+Inf")},
		{"matrix", 200, matrixJSON, queryErr("unexpected_result", "range vector")},
		{"string (client_golang cannot decode it)", 200, stringJSON, isErr(ErrBadResponse, "unreadable prometheus response")},
		{"multiple series", 200, vectorJSON("1", "2", "3"), func(t *testing.T, _ float64, err error) {
			var me *MultipleSeriesError
			if !errors.Is(err, ErrMultipleSeries) || !errors.As(err, &me) || me.Count != 3 || !strings.Contains(err.Error(), "3 series") {
				t.Errorf("error %v: want *MultipleSeriesError{Count: 3}", err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeProm(t, func(string) (int, string) { return tt.status, tt.body })
			c, err := NewClient(f.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.Query(context.Background(), "up", time.Second)
			tt.check(t, v, err)
		})
	}
}

func TestQueryTimeout(t *testing.T) {
	f := newFakeProm(t, func(string) (int, string) { return 200, vectorJSON("1") })
	f.delay = 5 * time.Second
	c, _ := NewClient(f.URL, nil)
	start := time.Now()
	_, err := c.Query(context.Background(), "up", 100*time.Millisecond)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("query took %s despite a 100ms timeout", el)
	}
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "100ms query timeout") {
		t.Errorf("error %v: want ErrUnreachable naming the timeout", err)
	}
}

func TestQueryTimeoutIsSentToPrometheus(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.FormValue("timeout")
		_, _ = w.Write([]byte(vectorJSON("1")))
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, nil)
	if _, err := c.Query(context.Background(), "up", 1500*time.Millisecond); err != nil || got != "1.5s" {
		t.Errorf("timeout parameter %q (%v), want 1.5s", got, err)
	}
}

func TestQueryUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c, _ := NewClient(addr, nil)
	_, err := c.Query(context.Background(), "up", time.Second)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "/api/v1/query") {
		t.Errorf("error %v: want ErrUnreachable with the cause and without the URL", err)
	}
}

func TestQueryCanceledContext(t *testing.T) {
	f := newFakeProm(t, func(string) (int, string) { return 200, vectorJSON("1") })
	f.delay = 5 * time.Second
	c, _ := NewClient(f.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.Query(ctx, "up", 10*time.Second)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Errorf("error %v: want context.Canceled, not unreachable", err)
	}
}

func TestQueryFallsBackToGET(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		_, _ = w.Write([]byte(vectorJSON(r.URL.Query().Get("query"))))
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, nil)
	if v, err := c.Query(context.Background(), "7", time.Second); err != nil || v != 7 {
		t.Errorf("GET fallback: %v, %v", v, err)
	}
}

func TestQueryPathPrefix(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prom/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(vectorJSON("3")))
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL+"/prom/", nil)
	if v, err := c.Query(context.Background(), "up", time.Second); err != nil || v != 3 {
		t.Errorf("path prefix: %v, %v", v, err)
	}
}

func TestNewClientRejectsBadAddress(t *testing.T) {
	for _, a := range []string{"", "prometheus:9090", "ftp://x", "http://", "http://user:hunter22@[::1"} {
		_, err := NewClient(a, nil)
		if err == nil {
			t.Errorf("NewClient(%q) accepted", a)
		} else if strings.Contains(err.Error(), "hunter22") {
			t.Errorf("NewClient(%q) error shows the password: %v", a, err)
		}
	}
}

func TestErrorsRedactCredentials(t *testing.T) {
	const token = "s3cr3t-token-value"
	f := newFakeProm(t, func(string) (int, string) { return 401, "invalid bearer " + token })
	c, _ := NewClient(f.URL, nil, token)
	_, err := c.Query(context.Background(), "up", time.Second)
	var he *HTTPError
	if !errors.As(err, &he) || strings.Contains(err.Error(), token) || strings.Contains(he.Detail, token) || !strings.Contains(he.Detail, "[redacted]") {
		t.Errorf("error %#v should redact the token", err)
	}
}
