package analysis

import (
	"errors"
	"fmt"
)

// Errors of a Prometheus query. Every one of them makes the metric Inconclusive.
var (
	// ErrUnreachable: Prometheus could not be reached or did not answer in time
	// (connection refused, DNS, TLS handshake, timeout).
	ErrUnreachable = errors.New("prometheus unreachable")
	// ErrBadResponse: Prometheus (or something in front of it) answered 2xx with a body
	// that is not a Prometheus API response.
	ErrBadResponse = errors.New("unreadable prometheus response")
	// ErrNoData: the query returned no series (empty vector). For the built-in metrics this
	// usually means no traffic, or telemetry that does not carry the workload's labels.
	ErrNoData = errors.New("no data")
	// ErrNotANumber: the query returned NaN or ±Inf (e.g. 0/0 when nothing was served).
	ErrNotANumber = errors.New("not a number")
	// ErrMultipleSeries: the query returned more than one series; a metric must aggregate
	// to exactly one sample. The error is a *MultipleSeriesError carrying the count.
	ErrMultipleSeries = errors.New("multiple series")
)

// HTTPError is a non-2xx answer that is not a Prometheus query error (e.g. 500 from the
// server, 401/403 from an auth proxy, 503 while Prometheus starts). Its message is the status
// code alone: what the endpoint answered never reaches status, events or Slack, which people
// who may not read the endpoint's answers can see (Detail is for the controller's log).
type HTTPError struct {
	Status int
	// Detail is Prometheus' error, or the start of the body, with credentials redacted.
	Detail string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("prometheus answered HTTP %d", e.Status) }

// QueryError is Prometheus rejecting or failing the query itself (errorType bad_data,
// execution, timeout, ...), or a result of the wrong type (unexpected_result: a range
// vector or string where one sample was needed).
type QueryError struct {
	// Type is Prometheus' errorType, or "unexpected_result".
	Type string
	// Message is ramp's own explanation ("" for Prometheus' errors: its words stay in Detail).
	Message string
	// Detail is Prometheus' error message, credentials redacted, for the controller's log.
	Detail string
}

func (e *QueryError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("query error (%s)", e.Type)
	}
	return fmt.Sprintf("query error (%s): %s", e.Type, e.Message)
}

// MultipleSeriesError says how many series a query returned when one was needed.
type MultipleSeriesError struct {
	Count int
}

func (e *MultipleSeriesError) Error() string {
	return fmt.Sprintf("%v: query returned %d series, want 1 (aggregate it, e.g. with sum)", ErrMultipleSeries, e.Count)
}

// Is makes errors.Is(err, ErrMultipleSeries) true.
func (e *MultipleSeriesError) Is(target error) bool { return target == ErrMultipleSeries }
