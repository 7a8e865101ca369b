package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
)

func TestBatchQuery(t *testing.T) {
	got := batchQuery([]string{`sum(rate(a[1m]))`, "sum(b) # total\n"})
	want := "label_replace((\nsum(rate(a[1m]))\n), \"ramp_dev_batch_query\", \"0\", \"\", \"\")" +
		" or label_replace((\nsum(b) # total\n\n), \"ramp_dev_batch_query\", \"1\", \"\", \"\")"
	if got != want {
		t.Errorf("batchQuery:\n got %q\nwant %q", got, want)
	}
	qs := []string{"sum(a)", "sum(b)\n/ sum(c) # per c", `sum(d{x="), \"y\""})`}
	if back := BatchedQueries(batchQuery(qs)); fmt.Sprint(back) != fmt.Sprint(qs) || len(back) != 3 {
		t.Errorf("BatchedQueries gives %q, want %q", back, qs)
	}
	if back := BatchedQueries("sum(a)"); back != nil {
		t.Errorf("BatchedQueries of a plain query: %q", back)
	}
}

func TestBatchable(t *testing.T) {
	for _, tt := range []struct {
		q    string
		want bool
	}{
		{`sum(rate(x{a="b"}[5m]))`, true},
		{"100 * sum(x) # a comment with ) and (\n / sum(y)", true},
		{`sum(x{a=")"})`, true},
		{`sum(x{a='\')'})`, true},
		{"sum(x{a=`)\\`})", true},
		{`scalar(sum(x))`, true}, // Prometheus refuses the batch: sent alone after
		{`sum(x`, false},
		{`sum(x))`, false},
		{`sum(x]`, false},
		{`a), "ramp_dev_batch_query", "1", "", "") or label_replace((vector(0)`, false},
		{`sum(x{a="b})`, false},      // unterminated string
		{"sum(x{a=\"b\n\"})", false}, // no newline in a string
		{"   ", false},
	} {
		if got := batchable(tt.q); got != tt.want {
			t.Errorf("batchable(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestSplitBatch(t *testing.T) {
	s := func(idx string, v float64, extra ...string) *model.Sample {
		m := model.Metric{}
		if idx != "-" {
			m[BatchLabel] = model.LabelValue(idx)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[model.LabelName(extra[i])] = model.LabelValue(extra[i+1])
		}
		return &model.Sample{Metric: m, Value: model.SampleValue(v)}
	}
	for _, tt := range []struct {
		name string
		val  model.Value
		n    int
		want []string // each sample: its value, or its error
		err  string
	}{
		{name: "one each", val: model.Vector{s("1", 2), s("0", 1.5), s("2", 0, "pod", "p")}, n: 3,
			want: []string{"1.5", "2", "0"}},
		{name: "missing is no data, NaN not a number", val: model.Vector{s("1", math.NaN())}, n: 3,
			want: []string{"no data: query returned an empty vector", "not a number: query returned NaN", "no data: query returned an empty vector"}},
		{name: "several series", val: model.Vector{s("0", 1, "pod", "a"), s("0", 2, "pod", "b"), s("1", 3)}, n: 2,
			want: []string{"multiple series: query returned 2 series, want 1 (aggregate it, e.g. with sum)", "3"}},
		{name: "empty answer", val: model.Vector{}, n: 1, want: []string{"no data: query returned an empty vector"}},
		{name: "untagged series", val: model.Vector{s("-", 1)}, n: 1, err: `a series has ramp_dev_batch_query=""`},
		{name: "index out of range", val: model.Vector{s("2", 1)}, n: 2, err: `ramp_dev_batch_query="2"`},
		{name: "not canonical", val: model.Vector{s("01", 1)}, n: 2, err: `ramp_dev_batch_query="01"`},
		{name: "negative", val: model.Vector{s("-1", 1)}, n: 2, err: `ramp_dev_batch_query="-1"`},
		{name: "scalar", val: &model.Scalar{Value: 1}, n: 1, err: "want a vector"},
		{name: "nil", val: nil, n: 1, err: "want a vector"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitBatch(tt.val, tt.n)
			if tt.err != "" {
				if !errors.Is(err, errBatchFailed) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want errBatchFailed with %q", err, tt.err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for i, w := range tt.want {
				g := FormatValue(got[i].Value)
				if got[i].Err != nil {
					g = got[i].Err.Error()
				}
				if g != w {
					t.Errorf("sample %d: %q, want %q", i, g, w)
				}
			}
		})
	}
}

// A batch that fails as a whole asks for the queries alone only when the failure may be one
// query's fault.
func TestQueryBatchErrors(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
		retry  bool
		whole  string
	}{
		{status: 400, body: promError("bad_data", "parse error"), retry: true},
		{status: 422, body: promError("execution", "many-to-many matching not allowed"), retry: true},
		{status: 200, body: scalarJSON, retry: true},
		{status: 200, body: vectorOf(1), retry: true}, // untagged: cannot be split
		{status: 503, body: promError("timeout", "query timed out"), whole: "prometheus answered HTTP 503"},
		{status: 500, body: "oops", whole: "prometheus answered HTTP 500"},
		{status: 200, body: "<html>", whole: ErrBadResponse.Error()},
	} {
		f := newFakeProm(t, func(string) (int, string) { return tt.status, tt.body })
		f.raw = true
		c, err := NewClient(f.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.queryBatch(t.Context(), []string{"vector(1)", "vector(2)"}, 0)
		if tt.retry != errors.Is(err, errBatchFailed) || (!tt.retry && (err == nil || err.Error() != tt.whole)) {
			t.Errorf("%d %s: err %v, want retry %v / %q", tt.status, tt.body, err, tt.retry, tt.whole)
		}
	}
}

func TestBreaksBatch(t *testing.T) {
	vec := model.Vector{&model.Sample{Value: 1}}
	for _, tt := range []struct {
		name string
		val  model.Value
		err  error
		want bool
	}{
		{"one series", vec, nil, false},
		{"no data", model.Vector{}, fmt.Errorf("%w: empty", ErrNoData), false},
		{"unreachable", nil, fmt.Errorf("%w: timeout", ErrUnreachable), false},
		{"HTTP error", nil, &HTTPError{Status: 503}, false},
		{"scalar", &model.Scalar{Value: 1}, nil, true},
		{"range vector", model.Matrix{}, &QueryError{Type: "unexpected_result"}, true},
		{"refused", nil, &QueryError{Type: "bad_data"}, true},
		{"execution", nil, &QueryError{Type: "execution"}, true},
		{"several series", vec, &MultipleSeriesError{Count: 2}, true},
	} {
		if got := breaksBatch(tt.val, tt.err); got != tt.want {
			t.Errorf("%s: breaksBatch = %v, want %v", tt.name, got, tt.want)
		}
	}
}
