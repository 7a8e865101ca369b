// Package gates calls a Rollout's gates: an HTTP POST of a JSON body at a named point of a
// rollout, passing on a 2xx answer. What a gate answers is never kept: its status code, or
// the class of error when there is none, is all that reaches status, events and Slack, which
// people who may not read the endpoint's answers can see.
package gates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// maxDrain bounds how much of an answer is read (and discarded) so the connection can be
// reused; a gate streaming a large body does not hold a worker.
const maxDrain = 64 << 10

// maxRedirects bounds the redirects followed, each to an allowed address only.
const maxRedirects = 3

// Outcome is a call's result.
type Outcome struct {
	Passed bool
	// Result is the final HTTP status code ("HTTP 503") or the class of error ("timeout",
	// "connection refused", "unreachable", "redirect not allowed"): never the answer's body.
	Result string
}

// Client calls gates. The zero Client is not usable: use New.
type Client struct {
	http *http.Client
	// Backoff spaces the retries of a failed call; Steps is set per gate from its retries.
	Backoff wait.Backoff
}

// New returns a Client whose redirects are followed only to addresses allows accepts (the
// platform's allow-list; nil allows none).
func New(allows func(address string) error) *Client {
	return &Client{
		http: &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errRedirect
			}
			u := *req.URL
			u.RawQuery, u.Fragment = "", ""
			if allows == nil || allows(u.String()) != nil {
				return errRedirect
			}
			return nil
		}},
		Backoff: wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Cap: 30 * time.Second},
	}
}

var errRedirect = errors.New("redirect not allowed")

// Call POSTs body to the gate's URL, retrying (with back-off) after no answer, a 5xx or a 429,
// at most the gate's retries times. Each attempt is bounded by the gate's timeout.
func (c *Client) Call(ctx context.Context, g *rampv1.Gate, body *rampv1.GateRequest) Outcome {
	payload, err := json.Marshal(body)
	if err != nil {
		return Outcome{Result: "unencodable request"} // a map of strings always encodes
	}
	backoff := c.Backoff
	backoff.Steps = g.RetriesOrDefault() + 1
	var out Outcome
	attempt := func(ctx context.Context) (bool, error) {
		var retry bool
		out, retry = c.once(ctx, g, payload)
		return out.Passed || !retry, nil
	}
	// The first attempt runs at once; the back-off comes between attempts. An attempt cut
	// short by ctx reports its own class (timeout, cancelled).
	_ = wait.ExponentialBackoffWithContext(ctx, backoff, attempt)
	if out.Result == "" {
		out.Result = "cancelled" // ctx ended before the first attempt
	}
	return out
}

// once makes one attempt; retry says whether another may help.
func (c *Client) once(ctx context.Context, g *rampv1.Gate, payload []byte) (out Outcome, retry bool) {
	ctx, cancel := context.WithTimeout(ctx, g.TimeoutOrDefault())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(payload))
	if err != nil {
		return Outcome{Result: "invalid url"}, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ramp")
	resp, err := c.http.Do(req)
	if err != nil {
		class, retry := classify(err)
		return Outcome{Result: class}, retry
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	code := resp.StatusCode
	out = Outcome{Passed: code >= 200 && code < 300, Result: fmt.Sprintf("HTTP %d", code)}
	return out, code >= 500 || code == http.StatusTooManyRequests
}

// classify names a transport error without its text (which may quote the address or what
// the server sent) and says whether retrying may help.
func classify(err error) (string, bool) {
	var nerr net.Error
	switch {
	case errors.Is(err, errRedirect):
		return "redirect not allowed", false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout", true
	case errors.Is(err, context.Canceled):
		return "cancelled", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "unknown host", true
	}
	return "unreachable", true
}
