package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Client runs instant queries against one Prometheus HTTP API (/api/v1/query).
// It is safe for concurrent use.
type Client struct {
	api    promv1.API
	http   *http.Client
	redact []string
}

// NewClient returns a Client for the Prometheus at address (http or https URL, optionally
// with a path prefix) using httpClient (nil: a plain client). redact lists credential values
// that must never appear in an error message, should a server or proxy echo them back.
func NewClient(address string, httpClient *http.Client, redact ...string) (*Client, error) {
	u, err := url.Parse(address)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message repeats the address, credentials and all
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid prometheus address: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid prometheus address %q: want an http or https URL", u.Redacted())
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	c := &Client{http: httpClient}
	for _, r := range redact {
		if len(r) >= 4 { // shorter values would blank out ordinary words
			c.redact = append(c.redact, r)
		}
	}
	ac, err := api.NewClient(api.Config{Address: address, Client: httpClient})
	if err != nil {
		return nil, fmt.Errorf("invalid prometheus address: %w", err)
	}
	c.api = promv1.NewAPI(statusClient{Client: ac, c: c})
	return c, nil
}

// CloseIdleConnections releases the client's idle connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Query runs promql as an instant query (evaluated at Prometheus' current time) and returns
// its single sample. timeout > 0 bounds the request (and asks Prometheus to stop evaluating
// after it). Errors are typed: ErrUnreachable (including the timeout), *HTTPError,
// *QueryError, ErrBadResponse, ErrNoData, ErrNotANumber, *MultipleSeriesError; when ctx
// itself ends, the error wraps ctx.Err().
func (c *Client) Query(ctx context.Context, promql string, timeout time.Duration) (float64, error) {
	val, err := c.query(ctx, promql, timeout)
	if err != nil {
		return math.NaN(), err
	}
	return singleSample(val)
}

// query runs promql as an instant query and returns its answer or its classified error.
// The v1 client POSTs it as a form body (GET only if the server refuses POST), so a long
// query (a batched round) is not limited by URL lengths.
func (c *Client) query(ctx context.Context, promql string, timeout time.Duration) (model.Value, error) {
	qctx := ctx
	var opts []promv1.Option
	if timeout > 0 {
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		opts = append(opts, promv1.WithTimeout(timeout))
	}
	val, _, _, err := c.api.Query(qctx, promql, time.Time{}, opts...)
	if err != nil {
		return nil, c.classify(ctx, qctx, err, timeout)
	}
	return val, nil
}

func (c *Client) classify(ctx, qctx context.Context, err error, timeout time.Duration) error {
	var he *HTTPError
	if errors.As(err, &he) {
		return he
	}
	if ctx.Err() != nil {
		return fmt.Errorf("analysis canceled: %w", ctx.Err())
	}
	if errors.Is(qctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within the %s query timeout", ErrUnreachable, timeout)
	}
	var ae *promv1.Error
	if errors.As(err, &ae) {
		if ae.Type == promv1.ErrBadResponse {
			return ErrBadResponse // its message quotes the body
		}
		return &QueryError{Type: string(ae.Type), Detail: c.scrub(ae.Msg)}
	}
	var ue *url.Error
	if errors.As(err, &ue) { // drop "Post <url>:"; the address is in the spec
		err = ue.Err
	}
	return fmt.Errorf("%w: %s", ErrUnreachable, c.scrub(err.Error()))
}

// singleSample extracts the one value an analysis query must produce.
func singleSample(val model.Value) (float64, error) {
	var v float64
	switch r := val.(type) {
	case *model.Scalar:
		v = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return math.NaN(), fmt.Errorf("%w: query returned an empty vector", ErrNoData)
		case 1:
			v = float64(r[0].Value)
		default:
			return math.NaN(), &MultipleSeriesError{Count: len(r)}
		}
	case model.Matrix:
		return math.NaN(), &QueryError{Type: "unexpected_result",
			Message: fmt.Sprintf("query returned a range vector (%d series); want an instant vector or scalar, e.g. sum(rate(x[1m]))", len(r))}
	case nil:
		return math.NaN(), fmt.Errorf("%w: query returned no result", ErrNoData)
	default:
		return math.NaN(), &QueryError{Type: "unexpected_result",
			Message: fmt.Sprintf("query returned a %s; want an instant vector or scalar", val.Type())}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v, fmt.Errorf("%w: query returned %s", ErrNotANumber, FormatValue(v))
	}
	return v, nil
}

// statusClient turns non-2xx answers that are not Prometheus API errors into *HTTPError,
// keeping the status code the v1 client would otherwise fold into a string.
type statusClient struct {
	api.Client
	c *Client
}

func (s statusClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := s.Client.Do(ctx, req)
	if err != nil || resp.StatusCode/100 == 2 {
		return resp, body, err
	}
	eType, eMsg, isAPI := apiErrorBody(body)
	if isAPI && (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity) {
		return resp, body, nil // the v1 client decodes it into a *promv1.Error → *QueryError
	}
	msg := eType + ": " + eMsg
	if !isAPI {
		msg = snippet(body)
	}
	return resp, body, &HTTPError{Status: resp.StatusCode, Detail: s.c.scrub(msg)}
}

func apiErrorBody(body []byte) (eType, eMsg string, ok bool) {
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}
	if json.Unmarshal(body, &r) != nil || r.Status != "error" || r.ErrorType == "" {
		return "", "", false
	}
	return r.ErrorType, r.Error, true
}

// snippet is the start of a body, on one line, printable only.
func snippet(body []byte) string {
	const max = 200
	s := strings.ToValidUTF8(string(body), "?")
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

func (c *Client) scrub(s string) string {
	for _, r := range c.redact {
		s = strings.ReplaceAll(s, r, "[redacted]")
	}
	return s
}
