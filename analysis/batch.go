package analysis

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// BatchLabel is the label a batched round tags each query's series with, its index in the
// batch: label_replace((Q0), BatchLabel, "0", "", "") or label_replace((Q1), BatchLabel, "1",
// "", "") or ... A series that already carries it has it overwritten; if that leaves two
// series of one query with the same labels, Prometheus refuses the batch and the round's
// queries are sent one by one, so the clash costs queries, never a wrong answer.
const BatchLabel = "ramp_dev_batch_query"

// errBatchFailed: the batch failed as a whole in a way that may be one query's fault (a
// query Prometheus rejects or cannot evaluate, one returning a scalar or range vector, which
// label_replace does not take, or an answer that cannot be split): send the queries one by
// one so each gets its own answer.
var errBatchFailed = errors.New("batched query failed as a whole")

// batchQuery is queries as one instant query, each one's series tagged with its index.
// Each query sits on lines of its own, so a trailing # comment ends where it does alone.
func batchQuery(queries []string) string {
	var b strings.Builder
	for i, q := range queries {
		if i > 0 {
			b.WriteString(" or ")
		}
		fmt.Fprintf(&b, "label_replace((\n%s\n), %q, %q, \"\", \"\")", q, BatchLabel, strconv.Itoa(i))
	}
	return b.String()
}

var batchRE = regexp.MustCompile(`(?s)label_replace\(\(\n(.*?)\n\), "` + BatchLabel + `", "(\d+)", "", ""\)`)

// BatchedQueries returns the queries a batched query (as the Analyzer sends it) carries, in
// order, or nil for any other query: for Prometheus stubs that answer each one.
func BatchedQueries(q string) []string {
	var qs []string
	for _, m := range batchRE.FindAllStringSubmatch(q, -1) {
		qs = append(qs, m[1])
	}
	return qs
}

// splitBatch turns the answer to batchQuery of n queries into each one's Sample, as Query
// would have returned it alone: no series is ErrNoData, several a *MultipleSeriesError.
func splitBatch(val model.Value, n int) ([]Sample, error) {
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%w: answer is a %v, want a vector", errBatchFailed, val)
	}
	parts := make([]model.Vector, n)
	for _, s := range vec {
		l := string(s.Metric[BatchLabel])
		i, err := strconv.Atoi(l)
		if err != nil || i < 0 || i >= n || strconv.Itoa(i) != l {
			return nil, fmt.Errorf("%w: a series has %s=%q", errBatchFailed, BatchLabel, l)
		}
		parts[i] = append(parts[i], s)
	}
	out := make([]Sample, n)
	for i := range parts {
		out[i].Value, out[i].Err = singleSample(parts[i])
	}
	return out, nil
}

// batchable says whether q can sit in a batch: its brackets balance outside string literals
// and comments, so wrapped in parentheses it cannot close them and reach its neighbours
// (a query Prometheus would refuse alone must not parse, and answer for another, in a
// batch). Anything else is sent alone.
func batchable(q string) bool {
	var stack []rune
	closer := map[rune]rune{'(': ')', '[': ']', '{': '}'}
	for i := 0; i < len(q); i++ {
		switch c := rune(q[i]); c {
		case '(', '[', '{':
			stack = append(stack, closer[c])
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return false
			}
			stack = stack[:len(stack)-1]
		case '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case '"', '\'', '`':
			i++
			for ; i < len(q) && rune(q[i]) != c; i++ {
				if q[i] == '\n' {
					return false
				}
				if q[i] == '\\' && c != '`' {
					i++
				}
			}
			if i >= len(q) {
				return false // unterminated
			}
		}
	}
	return len(stack) == 0 && strings.TrimSpace(q) != ""
}

// queryBatch runs queries as one instant query (timeout as for Query) and returns each one's
// Sample as Query would have. An error wrapping errBatchFailed asks for the queries to be
// sent one by one; any other error (unreachable, timeout, HTTP status, unreadable answer)
// is what each of them would have got.
func (c *Client) queryBatch(ctx context.Context, queries []string, timeout time.Duration) ([]Sample, error) {
	val, err := c.query(ctx, batchQuery(queries), timeout)
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) && (qe.Type == string(promv1.ErrBadData) || qe.Type == string(promv1.ErrExec)) {
			return nil, fmt.Errorf("%w: %w", errBatchFailed, err)
		}
		return nil, err
	}
	return splitBatch(val, len(queries))
}
