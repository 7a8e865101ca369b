package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/lru"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/mesh/gatewayapi"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Defaults of an Analyzer.
const (
	// DefaultConcurrency is how many requests of one round (a batch per Prometheus, or a
	// query sent alone) are in flight at a time.
	DefaultConcurrency = 4
	// DefaultClientCacheSize is how many Prometheus clients (address × credentials) are kept.
	DefaultClientCacheSize = 32
	// aloneCacheSize is how many queries known to break a batch are remembered: one per
	// Rollout whose custom query does (a scalar, say) at 4,096 Rollouts.
	aloneCacheSize = 4096
)

// Analyzer runs analysis rounds against Prometheus. It satisfies the controller's Analyzer
// interface; provider failures come back as Inconclusive verdicts, never as errors.
// Construct it with NewAnalyzer; it is safe for concurrent use.
type Analyzer struct {
	secrets         SecretGetter
	platformSecrets SecretGetter
	templates       TemplateGetter
	policy          Policy
	now             func() time.Time
	concurrency     int
	cacheSize       int

	once    sync.Once
	clients *clientCache
	// alone holds the queries that made Prometheus refuse a batch (see breaksBatch): later
	// rounds send them alone from the start, so a Rollout with a scalar custom query costs
	// one request more per round, not a refused batch and every query again.
	alone *lru.Cache
}

// Option configures an Analyzer.
type Option func(*Analyzer)

// WithSecretGetter reads spec.analysis.prometheus.secretRef. Without it, a Rollout that
// names a Secret gets Inconclusive rounds.
func WithSecretGetter(g SecretGetter) Option { return func(a *Analyzer) { a.secrets = g } }

// WithAllowedEndpoints makes the Analyzer contact only addresses the list allows: a round of
// a Rollout naming any other is Inconclusive and opens no connection. (The controller stalls
// such a Rollout before any round; this is the second line.)
func WithAllowedEndpoints(l endpoints.List) Option {
	return func(a *Analyzer) { a.policy.Allowed = &l }
}

// WithTemplates reads the metric templates metrics reference (templateRef). Without it, a
// metric with a templateRef is Inconclusive.
func WithTemplates(g TemplateGetter) Option { return func(a *Analyzer) { a.templates = g } }

// WithPlatformSecrets names the manager's own namespace, the only one whose Secrets a
// ClusterMetricTemplate may reference, and reads them with g (which needs no label: they are
// platform configuration). Without it, a ClusterMetricTemplate naming a Secret is refused.
func WithPlatformSecrets(namespace string, g SecretGetter) Option {
	return func(a *Analyzer) { a.policy.PlatformNamespace, a.platformSecrets = namespace, g }
}

// WithClock sets the clock stamping MetricResult.Time (default time.Now). Queries are
// evaluated at Prometheus' own current time regardless.
func WithClock(now func() time.Time) Option { return func(a *Analyzer) { a.now = now } }

// WithConcurrency bounds how many requests of one round are in flight at a time (default 4,
// also used for n < 1). A round's queries to one Prometheus go as one batched request.
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
		a.alone = lru.New(aloneCacheSize)
	})
}

// metricPlan is one metric's queries in a round ("" when not needed), sent to src.
type metricPlan struct {
	m                                    *rampv1.Metric
	src                                  *Source
	err                                  error
	canary, stable, canaryReq, stableReq string
	minRequests                          int32
	window                               string
}

// Analyze runs one analysis round for ro: it applies the metrics' templates, builds every
// metric's queries, sends the distinct ones (batched per Prometheus, see run), and judges
// each metric and the round (see Judge). Nothing is contacted or read that the policy refuses (Resolve).
func (a *Analyzer) Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	a.init()
	if ro == nil || ro.Spec.Analysis == nil || len(ro.Spec.Analysis.Metrics) == 0 {
		r := Judge(nil)
		r.Reason = "spec.analysis has no metrics to judge"
		return r
	}
	var plans []metricPlan
	if resolved, err := Resolve(ctx, ro, a.templates, a.policy); err != nil {
		// Refused, or a template unreadable: every metric is inconclusive, nothing is contacted.
		plans = make([]metricPlan, len(ro.Spec.Analysis.Metrics))
		for i := range plans {
			plans[i] = metricPlan{m: &ro.Spec.Analysis.Metrics[i], err: err}
		}
	} else {
		plans = planRound(ro, resolved, a.now())
	}

	// Distinct queries of each Prometheus client (address and credentials), in a stable order:
	// identical queries run once.
	type key struct {
		c *Client
		q string
	}
	samples := map[key]*Sample{}
	var order []query
	clients := map[sourceKey]*Client{} // metrics of one Prometheus share its client
	used := make([]*Client, len(plans))
	for i := range plans {
		p := &plans[i]
		if p.err != nil {
			continue
		}
		c, ok := clients[p.src.key()]
		if !ok {
			var err error
			if c, err = a.client(ctx, p.src); err != nil {
				p.err = err
				continue
			}
			clients[p.src.key()] = c
		}
		used[i] = c
		for _, q := range []string{p.canary, p.stable, p.canaryReq, p.stableReq} {
			k := key{c, q}
			if _, seen := samples[k]; q != "" && !seen {
				samples[k] = &Sample{}
				order = append(order, query{q: q, client: c, timeout: p.src.Timeout, sample: samples[k]})
			}
		}
	}
	if len(order) > 0 {
		a.run(ctx, order)
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
			Canary:         *samples[key{used[i], p.canary}],
			MinRequests:    p.minRequests,
			CanaryWorkload: ro.CanaryName(),
			StableWorkload: ro.Spec.TargetRef.Name,
			Window:         p.window,
		}
		pick := func(q string) *Sample {
			if q == "" {
				return nil
			}
			s := *samples[key{used[i], q}]
			return &s
		}
		ev.Stable, ev.CanaryRequests, ev.StableRequests = pick(p.stable), pick(p.canaryReq), pick(p.stableReq)
		results[i] = Evaluate(p.m, ev, at)
	}
	return Judge(results)
}

// sourceKey is a Source as a comparable value: its Secret's reference, not its pointer.
type sourceKey struct {
	address string
	secret  SecretRef // Field cleared
}

func (s *Source) key() sourceKey {
	k := sourceKey{address: s.Address}
	if s.Secret != nil {
		k.secret = *s.Secret
		k.secret.Field = ""
	}
	return k
}

// query is one distinct PromQL of a round and where its answer goes.
type query struct {
	q       string
	client  *Client
	timeout time.Duration
	sample  *Sample
}

// run sends each query once. The batchable queries of one client go as one batched query
// (see batchQuery) with the largest of their timeouts; the others alone; at most
// a.concurrency requests at a time. A batch that fails as a whole for what may be one
// query's fault is sent again one query at a time, so each gets its own answer. Once a
// Prometheus proves unreachable, its requests not yet started share that error instead of
// each waiting for its own timeout.
func (a *Analyzer) run(ctx context.Context, order []query) {
	var mu sync.Mutex
	down := map[*Client]error{}
	var retry [][]query // failed batches' queries, one request each
	a.send(ctx, a.batches(order), &mu, down, func(b []query) {
		mu.Lock()
		defer mu.Unlock()
		for _, q := range b {
			retry = append(retry, []query{q})
		}
	})
	if len(retry) > 0 {
		a.send(ctx, retry, &mu, down, nil)
	}
}

// batches groups order into requests: per client, its batchable queries together (when
// there are two or more), each other query alone, as is each query that broke a batch before.
func (a *Analyzer) batches(order []query) [][]query {
	var reqs [][]query
	batch := map[*Client]int{} // index in reqs of the client's batch
	for _, q := range order {
		if _, broke := a.alone.Get(q.q); broke || !batchable(q.q) {
			reqs = append(reqs, []query{q})
			continue
		}
		if i, ok := batch[q.client]; ok {
			reqs[i] = append(reqs[i], q)
			continue
		}
		batch[q.client] = len(reqs)
		reqs = append(reqs, []query{q})
	}
	return reqs
}

// send sends reqs, at most a.concurrency at a time; failed gets a batch that failed as a
// whole (errBatchFailed) and its samples are left unset.
func (a *Analyzer) send(ctx context.Context, reqs [][]query, mu *sync.Mutex, down map[*Client]error, failed func([]query)) {
	sem := make(chan struct{}, a.concurrency)
	var wg sync.WaitGroup
	for _, r := range reqs {
		c := r[0].client
		sem <- struct{}{}
		mu.Lock()
		d := down[c]
		mu.Unlock()
		if d != nil {
			for _, q := range r {
				q.sample.Value, q.sample.Err = 0, d
			}
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if len(r) == 1 {
				s := r[0].sample
				val, qerr := c.query(ctx, r[0].q, r[0].timeout)
				if s.Value, s.Err = math.NaN(), qerr; qerr == nil {
					s.Value, s.Err = singleSample(val)
				}
				if breaksBatch(val, s.Err) {
					a.alone.Add(r[0].q, nil)
				}
				err = s.Err
			} else {
				qs := make([]string, len(r))
				var timeout time.Duration
				for i, q := range r {
					qs[i], timeout = q.q, max(timeout, q.timeout)
				}
				var got []Sample
				if got, err = c.queryBatch(ctx, qs, timeout); errors.Is(err, errBatchFailed) {
					failed(r)
					return
				}
				for i, q := range r {
					if err != nil {
						q.sample.Value, q.sample.Err = math.NaN(), err
					} else {
						*q.sample = got[i]
					}
				}
			}
			if errors.Is(err, ErrUnreachable) {
				mu.Lock()
				if down[c] == nil {
					down[c] = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// breaksBatch says whether a query that got this answer alone makes Prometheus refuse any
// batch it sits in: Prometheus refused or could not evaluate it (bad_data, execution), it
// answered something other than an instant vector (label_replace takes only those), or its
// series may clash once tagged. No data, an unreachable server or an HTTP error say nothing
// about the query.
func breaksBatch(val model.Value, err error) bool {
	var qe *QueryError
	var me *MultipleSeriesError
	if errors.As(err, &qe) || errors.As(err, &me) {
		return true
	}
	_, vector := val.(model.Vector)
	return err == nil && !vector
}

// client returns the Prometheus client of src, reading its Secret as the policy says: a
// platform Secret (a ClusterMetricTemplate's) through the platform getter, any other through
// the getter that reads only Secrets marked for ramp.
func (a *Analyzer) client(ctx context.Context, src *Source) (*Client, error) {
	var data map[string][]byte
	if ref := src.Secret; ref != nil {
		get := a.secrets
		if ref.Platform {
			get = a.platformSecrets
			if ref.Namespace != a.policy.PlatformNamespace { // Resolve refused it already
				return nil, fmt.Errorf("%s: Secret %s/%s is not in the manager's namespace", ref.Field, ref.Namespace, ref.Name)
			}
		}
		if get == nil {
			return nil, fmt.Errorf("%s is set but the analyzer cannot read Secrets", ref.Field)
		}
		d, err := get(ctx, ref.Namespace, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("reading prometheus credentials Secret %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		data = d
	}
	c, err := a.clients.get(src.Address, data)
	if err != nil {
		if src.Secret != nil {
			return nil, fmt.Errorf("prometheus client (Secret %s/%s): %w", src.Secret.Namespace, src.Secret.Name, err)
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

// planRound builds every resolved metric's queries; a metric whose queries cannot be built
// carries the error and is judged Inconclusive.
func planRound(ro *rampv1.Rollout, metrics []ResolvedMetric, now time.Time) []metricPlan {
	spec := ro.Spec.Analysis
	ns, canaryW, stableW := ro.Namespace, ro.CanaryName(), ro.Spec.TargetRef.Name
	plans := make([]metricPlan, len(metrics))
	for i := range metrics {
		m := &metrics[i].Metric
		p := &plans[i]
		p.m, p.src = m, &metrics[i].Source
		d := spec.IntervalOrDefault()
		if m.Window != nil {
			d = m.Window.Duration
		}
		d = clampWindow(d, ro.Status.RolloutStartedAt, now)
		if p.window, p.err = PromDuration(d); p.err != nil {
			p.err = fmt.Errorf("metric %q: window: %w", m.Name, p.err)
			continue
		}
		p.err = planMetric(p, ns, ro.Name, ro.ServiceName(), backends(ro), canaryW, stableW, plan.MirrorsAt(&ro.Spec, ro.Status.CurrentStep))
	}
	return plans
}

// backends are the Services ro's route sends its Service's traffic to, if not the Service
// itself: the Gateway API router's stable and canary Services.
func backends(ro *rampv1.Rollout) []string {
	if ro.Spec.Service.GatewayAPI == nil {
		return nil
	}
	return []string{gatewayapi.StableServiceName(ro), gatewayapi.CanaryServiceName(ro)}
}

// planMetric builds p's queries. mirrored: the canary gets copies of live requests, which
// only its own proxy reports, so the built-ins read what the workloads' proxies saw.
func planMetric(p *metricPlan, ns, name, svc string, backends []string, canaryW, stableW string, mirrored bool) error {
	m := p.m
	var err error
	builtin, requestCount := BuiltinQuery, RequestCountQuery
	canaryBuiltin := func(b, ns, w, window string) (string, error) {
		return CanaryBuiltinQuery(b, ns, svc, w, window, backends...)
	}
	canaryRequests := func(ns, w, window string) (string, error) {
		return CanaryRequestCountQuery(ns, svc, w, window, backends...)
	}
	if mirrored {
		builtin, requestCount = DestinationBuiltinQuery, DestinationRequestCountQuery
		canaryBuiltin, canaryRequests = DestinationBuiltinQuery, DestinationRequestCountQuery
	}
	switch {
	case m.Builtin != "" && m.Query != "":
		return fmt.Errorf("metric %q: set builtin or query, not both", m.Name)
	case m.Builtin != "":
		if p.canary, err = canaryBuiltin(m.Builtin, ns, canaryW, p.window); err != nil {
			return fmt.Errorf("metric %q: %w", m.Name, err)
		}
		p.minRequests = rampv1.DefaultMinRequests
		if m.MinRequests != nil {
			p.minRequests = *m.MinRequests
		}
		if p.minRequests > 0 {
			if p.canaryReq, err = canaryRequests(ns, canaryW, p.window); err != nil {
				return fmt.Errorf("metric %q: %w", m.Name, err)
			}
		}
		if m.CompareToStable != nil {
			if p.stable, err = builtin(m.Builtin, ns, stableW, p.window); err != nil {
				return fmt.Errorf("metric %q: %w", m.Name, err)
			}
			if p.minRequests > 0 {
				if p.stableReq, err = requestCount(ns, stableW, p.window); err != nil {
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
