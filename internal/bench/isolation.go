package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// IsolationResult is the isolation phase: the reaction latency of healthy rollouts (release →
// first VirtualService weight) while Hanging other rollouts wait on a Prometheus that accepts
// queries and never answers, and while that Prometheus answers.
type IsolationResult struct {
	Hanging int  `json:"hangingRollouts"`
	Without Dist `json:"withoutHanging"`
	With    Dist `json:"withHanging"`
	// Failures are releases whose first weight did not come within 30s.
	FailuresWithout int `json:"failuresWithout"`
	FailuresWith    int `json:"failuresWith"`
	// MinHangingAtEnd is the fewest hanging rollouts that still had a query held open when a
	// release measured beside them got its first weight; HungQueries the queries held in all.
	MinHangingAtEnd int   `json:"minHangingAtEnd"`
	HungQueries     int64 `json:"hungQueries"`
	// Reconcile are the manager's reconciles during the whole measurement.
	Reconcile ReconcileFigures `json:"reconcile"`
}

func (o *Options) isolationDefaults() {
	if o.IsolationSamples <= 0 {
		o.IsolationSamples = 20
		if o.Quick {
			o.IsolationSamples = 10
		}
	}
	if o.IsolationHanging <= 0 {
		o.IsolationHanging = o.Concurrency
	}
}

// isolationPhase shows that analysis rounds stuck on a Prometheus do not slow other
// rollouts. As many rollouts as the manager has reconcile workers (by default) analyse
// against a Prometheus that can be made to hang (accept queries, never answer; the default
// 10s query timeout applies): run on the reconcile workers, their rounds would hold all of
// them. Releases of healthy rollouts (analysing against an answering Prometheus) are timed
// one at a time, alternately with that Prometheus hanging and answering, so both series see
// the same background of rollouts in progress and the same machine load.
func (b *runner) isolationPhase(ctx context.Context) (*IsolationResult, error) {
	b.o.isolationDefaults()
	n, k := b.o.IsolationSamples, b.o.IsolationHanging
	b.say("isolation: starting an API server (envtest), the fake Deployment controller, a Prometheus stub, a Prometheus that can hang and ramp's manager (real analyzer)")
	cl, err := b.startCluster(ctx, "isolation", "bench-isolation")
	if err != nil {
		return nil, err
	}
	defer cl.close()
	prom := StartPromStub()
	defer prom.Close()
	hang := startHangingProm(prom)
	defer hang.Close()
	mp, err := startManager(ctx, b.managerCommand, cl.env.Kubeconfig, filepath.Join(b.o.LogDir, "manager-isolation.log"), b.managerArgs(AnalyzerPrometheus)...)
	if err != nil {
		return nil, err
	}
	defer mp.stop() // before the servers close: its queries end with it

	hold := []rampv1.CanaryStep{{SetWeight: 5, Pause: pause(time.Hour)}, {SetWeight: 100}}
	healthy := rolloutSpec{steps: hold, analysis: builtinAnalysis(prom.URL, time.Second, 2)}
	hanging := rolloutSpec{steps: hold, analysis: builtinAnalysis(hang.URL, time.Second, 2)}
	hanging.analysis.InconclusiveLimit = ptr.To[int32](1000) // keeps holding, round after round
	calm, busy, hung := appNames("calm", n), appNames("busy", n), appNames("hang", k)
	if err := createApps(ctx, cl.c, cl.ns, append(append([]string(nil), calm...), busy...), b.o.Replicas, healthy, 8); err != nil {
		return nil, err
	}
	if err := createApps(ctx, cl.c, cl.ns, hung, b.o.Replicas, hanging, 8); err != nil {
		return nil, err
	}
	if err := b.waitPhase(ctx, cl.tr, append(append(append([]string(nil), calm...), busy...), hung...), rampv1.PhaseIdle, 2*time.Minute); err != nil {
		return nil, err
	}
	for _, name := range hung {
		if _, err := release(ctx, cl.c, cl.ns, name, "v2"); err != nil {
			return nil, err
		}
	}
	if err := b.waitPhase(ctx, cl.tr, hung, rampv1.PhaseProgressing, time.Minute); err != nil {
		return nil, err
	}

	b.say("isolation: %d releases with %d rollouts' Prometheus hanging, %d with it answering, alternately", n, k, n)
	res := &IsolationResult{Hanging: k, MinHangingAtEnd: k}
	before, err := mp.mark()
	if err != nil {
		return nil, err
	}
	var with, without []time.Duration
	for i := range n {
		hang.setHanging(true)
		if err := hang.waitHanging(ctx, hung, time.Minute); err != nil {
			return res, err
		}
		d, err := b.reaction(ctx, cl, busy[i])
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res.FailuresWith++
			b.say("  %s: %v", busy[i], err)
		default:
			with = append(with, d)
		}
		res.MinHangingAtEnd = min(res.MinHangingAtEnd, hang.hanging(hung))

		hang.setHanging(false)
		d, err = b.reaction(ctx, cl, calm[i])
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res.FailuresWithout++
			b.say("  %s: %v", calm[i], err)
		default:
			without = append(without, d)
		}
	}
	after, err := mp.stats()
	if err != nil {
		return res, err
	}
	res.With, res.Without = distOf(with), distOf(without)
	res.Reconcile = reconcileFigures(before, after)
	res.HungQueries = hang.held()
	b.say("isolation: reaction with %d hanging %s, without %s", k, res.With, res.Without)
	return res, nil
}

// reaction releases an idle app and times release → first weight.
func (b *runner) reaction(ctx context.Context, cl *cluster, name string) (time.Duration, error) {
	t0, err := release(ctx, cl.c, cl.ns, name, "v2")
	if err != nil {
		return 0, err
	}
	var t1 time.Time
	err = cl.tr.wait(ctx, 30*time.Second, "the first weight of "+name, func() bool {
		var ok bool
		t1, ok = cl.tr.firstWeight(name, t0, func(w int32) bool { return w > 0 })
		return ok
	})
	time.Sleep(100 * time.Millisecond) // let the passes that follow settle
	return t1.Sub(t0), err
}

// hangingProm is a Prometheus that, while hanging, accepts every query and never answers:
// each is held until the client gives up (its query timeout), the server stops hanging (it
// is answered then) or closes. Otherwise the stub answers.
type hangingProm struct {
	URL  string
	srv  *httptest.Server
	stub *PromStub
	stop chan struct{}

	mu      sync.Mutex
	hang    chan struct{}  // closed when the server stops hanging; nil while answering
	open    map[string]int // queries held open, by canary workload
	n       int64
	changed chan struct{}
}

func startHangingProm(stub *PromStub) *hangingProm {
	h := &hangingProm{stub: stub, stop: make(chan struct{}), open: map[string]int{}, changed: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	h.URL = h.srv.URL
	return h
}

// setHanging makes the server hang, or answer (the queries it holds too).
func (h *hangingProm) setHanging(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case on && h.hang == nil:
		h.hang = make(chan struct{})
	case !on && h.hang != nil:
		close(h.hang)
		h.hang = nil
	}
}

func (h *hangingProm) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	h.mu.Lock()
	hang := h.hang
	h.mu.Unlock()
	if hang != nil {
		workload := ""
		if m := workloadRE.FindStringSubmatch(r.Form.Get("query")); m != nil {
			workload = m[1]
		}
		h.update(func() { h.open[workload]++; h.n++ })
		defer h.update(func() { h.open[workload]-- })
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case <-hang:
		}
	}
	h.stub.query(w, r)
}

func (h *hangingProm) update(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
	close(h.changed)
	h.changed = make(chan struct{})
}

// hanging is how many of the apps have a query held open now.
func (h *hangingProm) hanging(apps []string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := 0
	for _, a := range apps {
		if h.open[a+"-canary"] > 0 {
			c++
		}
	}
	return c
}

// held is how many queries were held so far.
func (h *hangingProm) held() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// waitHanging waits until every app has a query held open.
func (h *hangingProm) waitHanging(ctx context.Context, apps []string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if h.hanging(apps) == len(apps) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("timed out after %s waiting for %d rollouts' analysis to hang (%d hanging)", timeout, len(apps), h.hanging(apps))
		}
	}
}

// Close releases every held query and stops the server.
func (h *hangingProm) Close() {
	close(h.stop)
	h.srv.Close()
}

// printIsolation writes the isolation phase's table.
func printIsolation(w io.Writer, r *Report) {
	s := r.Isolation
	if s == nil {
		return
	}
	fmt.Fprintf(w, "\nIsolation (healthy rollouts' reaction beside rollouts whose Prometheus never answers; 10s query timeout; manager --concurrent=%d)\n", r.Options.Concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rollouts analysing against a hanging Prometheus\trelease → first weight write\tfailures")
	fmt.Fprintf(tw, "none\t%s\t%d\n", s.Without, s.FailuresWithout)
	fmt.Fprintf(tw, "%d (each with a round held open)\t%s\t%d\n", s.Hanging, s.With, s.FailuresWith)
	tw.Flush()
	fmt.Fprintf(w, "releases alternate between both rows; the hanging Prometheus held %d queries; at each first weight beside it, at least %d/%d rollouts still had one held; reconciles: %d, p99 %s\n",
		s.HungQueries, s.MinHangingAtEnd, s.Hanging, s.Reconcile.Count, qms(s.Reconcile.Count, s.Reconcile.P99))
}

// isolationGoals: with rollouts hanging, the others react as fast as without (within half
// again and 100ms of the baseline's worst case, or its p99 from 100 samples up).
func isolationGoals(r *Report) []Goal {
	s := r.Isolation
	if s == nil || s.Without.N == 0 || s.With.N == 0 {
		return nil
	}
	base, got, what := s.Without.Max, s.With.Max, "max"
	if s.Without.HasPercentiles() && s.With.HasPercentiles() {
		base, got, what = s.Without.P99, s.With.P99, "p99"
	}
	limit := 1.5*base + 100
	return []Goal{{
		Name:     fmt.Sprintf("isolation: reaction %s beside %d rollouts whose Prometheus hangs", what, s.Hanging),
		Target:   fmt.Sprintf("≤ %s (none hanging: %s)", ms(limit), ms(base)),
		Measured: ms(got),
		Met:      got <= limit && s.FailuresWith == 0,
	}}
}
