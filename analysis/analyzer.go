package analysis

import (
	"context"
	"errors"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sync"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Defaults of an Analyzer.
const (
	// DefaultConcurrency is how many queries of one round run at a time.
	DefaultConcurrency = 4
	// DefaultClientCacheSize is how many Prometheus clients (address × credentials) are kept.
	DefaultClientCacheSize = 32
)

// Analyzer runs analysis rounds against Prometheus. It satisfies the controller's Analyzer
// interface; provider failures come back as Inconclusive verdicts, never as errors.
// Construct it with NewAnalyzer; it is safe for concurrent use.
type Analyzer struct {
	secrets     SecretGetter
	allowed     *endpoints.List
	now         func() time.Time
	concurrency int
	cacheSize   int

	once    sync.Once
	clients *clientCache
}

// Option configures an Analyzer.
type Option func(*Analyzer)

// WithSecretGetter reads spec.analysis.prometheus.secretRef. Without it, a Rollout that
// names a Secret gets Inconclusive rounds.
func WithSecretGetter(g SecretGetter) Option { return func(a *Analyzer) { a.secrets = g } }

// WithAllowedEndpoints makes the Analyzer contact only addresses the list allows: a round of
// a Rollout naming any other is Inconclusive and opens no connection. (The controller stalls
// such a Rollout before any round; this is the second line.)
func WithAllowedEndpoints(l endpoints.List) Option { return func(a *Analyzer) { a.allowed = &l } }

// WithClock sets the clock stamping MetricResult.Time (default time.Now). Queries are
// evaluated at Prometheus' own current time regardless.
func WithClock(now func() time.Time) Option { return func(a *Analyzer) { a.now = now } }

// WithConcurrency bounds how many queries of one round run at a time (default 4, also used
// for n < 1).
func WithConcurrency(n int) Option { return func(a *Analyzer) { a.concurrency = n } }

// WithClientCacheSize bounds how many Prometheus clients are kept (default 32), one per
// address and credentials Secret contents; the oldest is dropped first.
func WithClientCacheSize(n int) Option { return func(a *Analyzer) { a.cacheSize = n } }

// NewAnalyzer returns an Analyzer.
func NewAnalyzer(opts ...Option) *Analyzer {
	a := &Analyzer{}
	for _, o := range opts {
		o(a)
	}
	a.init()
	return a
}

func (a *Analyzer) init() {
	a.once.Do(func() {
		if a.now == nil {
			a.now = time.Now
		}
		if a.concurrency < 1 {
			a.concurrency = DefaultConcurrency
		}
		if a.cacheSize < 1 {
			a.cacheSize = DefaultClientCacheSize
		}
		a.clients = newClientCache(a.cacheSize)
	})
}

// metricPlan is one metric's queries in a round ("" when not needed).
type metricPlan struct {
	m                                    *rampv1.Metric
	err                                  error
	canary, stable, canaryReq, stableReq string
	minRequests                          int32
	window                               string
}

// Analyze runs one analysis round for ro: it builds every metric's queries, runs the
// distinct ones concurrently (bounded), and judges each metric and the round (see Judge).
func (a *Analyzer) Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	a.init()
	if ro == nil || ro.Spec.Analysis == nil || len(ro.Spec.Analysis.Metrics) == 0 {
		r := Judge(nil)
		r.Reason = "spec.analysis has no metrics to judge"
		return r
	}
	spec := ro.Spec.Analysis
	plans := planRound(ro, a.now())

	// Distinct queries, in a stable order.
	samples := map[string]*Sample{}
	var order []string
	for i := range plans {
		if plans[i].err != nil {
			continue
		}
		for _, q := range []string{plans[i].canary, plans[i].stable, plans[i].canaryReq, plans[i].stableReq} {
			if _, seen := samples[q]; q != "" && !seen {
				samples[q] = &Sample{}
				order = append(order, q)
			}
		}
	}

	if len(order) > 0 {
		client, err := a.client(ctx, ro)
		if err != nil {
			for _, s := range samples {
				s.Err = err
			}
		} else {
			timeout := rampv1.DefaultQueryTimeout
			if spec.Prometheus.Timeout != nil {
				timeout = spec.Prometheus.Timeout.Duration
			}
			a.run(ctx, client, timeout, order, samples)
		}
	}

	at := a.now()
	results := make([]rampv1.MetricResult, len(plans))
	for i := range plans {
		p := &plans[i]
		if p.err != nil {
			results[i] = Evaluate(p.m, Evidence{Canary: Sample{Err: p.err}}, at)
			results[i].Message = p.err.Error()
			results[i].Verdict = rampv1.VerdictInconclusive
			continue
		}
		ev := Evidence{
			Canary:         *samples[p.canary],
			MinRequests:    p.minRequests,
			CanaryWorkload: ro.CanaryName(),
			StableWorkload: ro.Spec.TargetRef.Name,
			Window:         p.window,
		}
		pick := func(q string) *Sample {
			if q == "" {
				return nil
			}
			s := *samples[q]
			return &s
		}
		ev.Stable, ev.CanaryRequests, ev.StableRequests = pick(p.stable), pick(p.canaryReq), pick(p.stableReq)
		results[i] = Evaluate(p.m, ev, at)
	}
	return Judge(results)
}

// run queries each distinct PromQL once, at most a.concurrency at a time. Once Prometheus
// proves unreachable, queries not yet started share that error instead of each waiting
// for their own timeout.
func (a *Analyzer) run(ctx context.Context, c *Client, timeout time.Duration, order []string, samples map[string]*Sample) {
	sem := make(chan struct{}, a.concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var down error
	for _, q := range order {
		s := samples[q]
		sem <- struct{}{}
		mu.Lock()
		d := down
		mu.Unlock()
		if d != nil {
			s.Value, s.Err = 0, d
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.Value, s.Err = c.Query(ctx, q, timeout)
			if errors.Is(s.Err, ErrUnreachable) {
				mu.Lock()
				if down == nil {
					down = s.Err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (a *Analyzer) client(ctx context.Context, ro *rampv1.Rollout) (*Client, error) {
	prom := &ro.Spec.Analysis.Prometheus
	if a.allowed != nil {
		if err := a.allowed.Allows(prom.Address); err != nil {
			return nil, fmt.Errorf("spec.analysis.prometheus.address: %w", err)
		}
	}
	var data map[string][]byte
	if ref := prom.SecretRef; ref != nil {
		if a.secrets == nil {
			return nil, errors.New("spec.analysis.prometheus.secretRef is set but the analyzer cannot read Secrets")
		}
		d, err := a.secrets(ctx, ro.Namespace, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("reading prometheus credentials Secret %s/%s: %w", ro.Namespace, ref.Name, err)
		}
		data = d
	}
	c, err := a.clients.get(prom.Address, data)
	if err != nil {
		if prom.SecretRef != nil {
			return nil, fmt.Errorf("prometheus client (Secret %s/%s): %w", ro.Namespace, prom.SecretRef.Name, err)
		}
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return c, nil
}

// clampWindow keeps a query's range from reaching back before the current rollout began: the
// canary workload keeps its name from one rollout to the next, so a longer range would mix
// the previous revision's traffic into the first rounds of this one (a bad revision could
// pass on its predecessor's numbers). The range is rounded down to whole seconds (at least
// one); one too short for two scrapes yields no data, which is inconclusive, never a pass.
func clampWindow(d time.Duration, startedAt *metav1.Time, now time.Time) time.Duration {
	if startedAt == nil || now.IsZero() {
		return d
	}
	age := now.Sub(startedAt.Time)
	if age >= d {
		return d
	}
	if age = age.Truncate(time.Second); age < time.Second {
		age = time.Second
	}
	return age
}

// planRound builds every metric's queries; a metric whose queries cannot be built carries
// the error and is judged Inconclusive.
func planRound(ro *rampv1.Rollout, now time.Time) []metricPlan {
	spec := ro.Spec.Analysis
	ns, canaryW, stableW := ro.Namespace, ro.CanaryName(), ro.Spec.TargetRef.Name
	plans := make([]metricPlan, len(spec.Metrics))
	for i := range spec.Metrics {
		m := &spec.Metrics[i]
		p := &plans[i]
		p.m = m
		d := spec.IntervalOrDefault()
		if m.Window != nil {
			d = m.Window.Duration
		}
		d = clampWindow(d, ro.Status.RolloutStartedAt, now)
		if p.window, p.err = PromDuration(d); p.err != nil {
			p.err = fmt.Errorf("metric %q: window: %w", m.Name, p.err)
			continue
		}
		p.err = planMetric(p, ns, ro.Name, ro.ServiceName(), canaryW, stableW)
	}
	return plans
}

func planMetric(p *metricPlan, ns, name, svc, canaryW, stableW string) error {
	m := p.m
	var err error
	switch {
	case m.Builtin != "" && m.Query != "":
		return fmt.Errorf("metric %q: set builtin or query, not both", m.Name)
	case m.Builtin != "":
		if p.canary, err = CanaryBuiltinQuery(m.Builtin, ns, svc, canaryW, p.window); err != nil {
			return fmt.Errorf("metric %q: %w", m.Name, err)
		}
		p.minRequests = rampv1.DefaultMinRequests
		if m.MinRequests != nil {
			p.minRequests = *m.MinRequests
		}
		if p.minRequests > 0 {
			if p.canaryReq, err = CanaryRequestCountQuery(ns, svc, canaryW, p.window); err != nil {
				return fmt.Errorf("metric %q: %w", m.Name, err)
			}
		}
		if m.CompareToStable != nil {
			if p.stable, err = BuiltinQuery(m.Builtin, ns, stableW, p.window); err != nil {
				return fmt.Errorf("metric %q: %w", m.Name, err)
			}
			if p.minRequests > 0 {
				if p.stableReq, err = RequestCountQuery(ns, stableW, p.window); err != nil {
					return fmt.Errorf("metric %q: %w", m.Name, err)
				}
			}
		}
	case m.Query != "":
		vars := TemplateVars{Namespace: ns, Name: name, Workload: canaryW, CanaryWorkload: canaryW, StableWorkload: stableW, Interval: p.window}
		if p.canary, err = RenderQuery(m.Name, m.Query, vars); err != nil {
			return err
		}
		if m.CompareToStable != nil {
			vars.Workload = stableW
			text := m.Query
			if m.StableQuery != "" {
				text = m.StableQuery
			}
			if p.stable, err = RenderQuery(m.Name, text, vars); err != nil {
				return err
			}
			if p.stable == p.canary {
				return fmt.Errorf("metric %q: compareToStable needs stableQuery or {{ .Workload }} in query: both sides render the same query", m.Name)
			}
		}
	default:
		return fmt.Errorf("metric %q: set builtin or query", m.Name)
	}
	return nil
}
