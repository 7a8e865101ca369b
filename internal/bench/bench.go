package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Options configure a run.
type Options struct {
	// Quick runs N=100 only with fewer samples (under about two minutes).
	Quick bool
	// Phases to run: "latency" (reaction and rollback), "scale" and "isolation" (reaction
	// beside rollouts whose Prometheus hangs). Default all three.
	Phases []string
	// Scales are the rollout counts of the scale phase. Default 100, 300, 1000 (quick: 100).
	Scales []int
	// ReactionSamples is how many Git changes the reaction measurement makes, one after the
	// other on distinct rollouts. Default 50 (quick: 20).
	ReactionSamples int
	// RollbackSamples is how many rollouts are failed by analysis. Default 20 (quick: 10).
	RollbackSamples int
	// Interval is the analysis interval of the scale phase's rollouts. Default 10s (quick: 3s).
	Interval time.Duration
	// Concurrency is the manager's --concurrent. Default 4 (the manager's default).
	Concurrency int
	// SubsetSettle is the manager's --subset-settle. Default 2s (the manager's default).
	SubsetSettle time.Duration
	// Replicas of each app. Default 2.
	Replicas int32
	// CPUProfile and MemProfile, when set, make the manager write profiles of each scale
	// phase's measured window to these paths with "-<N>" before the extension.
	CPUProfile, MemProfile string
	// MemoryLimit, an experiment, sets the manager's GOMEMLIMIT (e.g. "100MiB"); cmd/manager
	// derives one from its container's limit, which the benchmark's manager has none of.
	MemoryLimit string
	// IsolationSamples is how many releases the isolation phase times with and without
	// hanging rollouts, each. Default 20 (quick: 10). IsolationHanging is how many rollouts
	// analyse against a Prometheus that never answers. Default Concurrency.
	IsolationSamples, IsolationHanging int
	// CompareManager is a ramp-bench binary built from another commit: every phase also runs
	// against the manager it runs (its ManagerSubcommand), and the report prints the ratios.
	CompareManager string
	// LogDir keeps every process' logs; default: a temporary directory removed after a
	// successful run.
	LogDir string
	// ManagerCommand starts this program again with the given arguments; the program must
	// call RunManager when the first is ManagerSubcommand. Default: os.Executable.
	ManagerCommand func(args ...string) *exec.Cmd
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

func (o *Options) defaults() {
	if len(o.Phases) == 0 {
		o.Phases = []string{"latency", "scale", "isolation"}
	}
	def := func(v *int, full, quick int) {
		if *v <= 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	def(&o.ReactionSamples, 50, 20)
	def(&o.RollbackSamples, 20, 10)
	if len(o.Scales) == 0 {
		o.Scales = []int{100, 300, 1000}
		if o.Quick {
			o.Scales = []int{100}
		}
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
		if o.Quick {
			o.Interval = 3 * time.Second
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.SubsetSettle <= 0 {
		o.SubsetSettle = 2 * time.Second
	}
	if o.Replicas <= 0 {
		o.Replicas = 2
	}
	if o.ManagerCommand == nil {
		o.ManagerCommand = selfCommand
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Report is a run's result (the JSON written by --json).
type Report struct {
	Machine  Machine        `json:"machine"`
	Started  time.Time      `json:"started"`
	Took     Seconds        `json:"tookSeconds"`
	Options  ReportOptions  `json:"options"`
	Reaction *LatencyResult `json:"reaction,omitempty"`
	Rollback *LatencyResult `json:"rollback,omitempty"`
	Scale    []ScaleResult  `json:"scale,omitempty"`
	Goals    []Goal         `json:"goals"`
	Errors   []string       `json:"errors,omitempty"`

	// Isolation: reaction latency beside rollouts whose Prometheus hangs.
	Isolation *IsolationResult `json:"isolation,omitempty"`

	// Compare is the same phases run against Options.CompareManager, each right after this
	// manager's run of it.
	Compare *Report `json:"compare,omitempty"`
}

// ReportOptions are the options that shaped the figures.
type ReportOptions struct {
	Quick           bool    `json:"quick"`
	Scales          []int   `json:"scales"`
	ReactionSamples int     `json:"reactionSamples"`
	RollbackSamples int     `json:"rollbackSamples"`
	IntervalSeconds float64 `json:"analysisIntervalSeconds"`
	Concurrency     int     `json:"concurrency"`
	SubsetSettle    string  `json:"subsetSettle"`
	Replicas        int32   `json:"replicas"`
	// Experiments (not cmd/manager's configuration) applied to the manager.
	Experiments []string `json:"experiments,omitempty"`
	// Manager is the binary that ran the manager when not this one (a compared report).
	Manager string `json:"manager,omitempty"`
}

// Seconds marshals a duration as seconds.
type Seconds float64

// Dist summarises samples in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50ms"`
	P90  float64 `json:"p90ms"`
	P99  float64 `json:"p99ms"`
	Max  float64 `json:"maxms"`
	Mean float64 `json:"meanms"`
}

// MinPercentileSamples is the fewest samples the report gives percentiles of: below, a p99
// is the maximum and a p90 one of the two largest, so the report gives the maximum alone.
const MinPercentileSamples = 100

// HasPercentiles reports whether d has enough samples for percentiles.
func (d Dist) HasPercentiles() bool { return d.N >= MinPercentileSamples }

// Tail is d's p99 from MinPercentileSamples samples up, its maximum below, and which.
func (d Dist) Tail() (ms float64, what string) {
	if d.HasPercentiles() {
		return d.P99, "p99"
	}
	return d.Max, "max"
}

// pct formats percentile v of d, "-" when d has too few samples for one.
func (d Dist) pct(v float64) string {
	if !d.HasPercentiles() {
		return "-"
	}
	return ms(v)
}

// String shows percentiles from MinPercentileSamples samples up, the maximum below.
func (d Dist) String() string {
	switch {
	case d.N == 0:
		return "-"
	case d.HasPercentiles():
		return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(d.P50), ms(d.P99), ms(d.Max), d.N)
	}
	return fmt.Sprintf("max %s  (n=%d)", ms(d.Max), d.N)
}

func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return msOf(s[max(i, 0)])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{N: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: msOf(s[len(s)-1]), Mean: msOf(sum / time.Duration(len(s)))}
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// LatencyResult is a latency measurement.
type LatencyResult struct {
	// Total is the figure the goal is about (see docs/performance.md for the endpoints).
	Total Dist `json:"total"`
	// Parts break Total down where the bench can tell (e.g. ramp's own share vs. the fake
	// Deployment controller's).
	Parts    map[string]Dist `json:"parts,omitempty"`
	Failures int             `json:"failures"`
	Load     [2]LoadAvg      `json:"loadStartEnd"`
	// Reconcile are the manager's reconciles during the measurement.
	Reconcile ReconcileFigures `json:"reconcile"`
}

// ReconcileFigures summarise the rollout controller's reconcile-time histogram.
type ReconcileFigures struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50ms"`
	P90   float64 `json:"p90ms"`
	P99   float64 `json:"p99ms"`
	Mean  float64 `json:"meanms"`
	// Within50ms is the share of reconciles that took at most 50ms (an exact bucket).
	Within50ms float64          `json:"within50ms"`
	Results    map[string]int64 `json:"results,omitempty"`
	// API is the latency of the manager's API requests in the same window (they make most
	// of a reconcile's duration); Analysis that of the analysis rounds (run off them).
	API      Quantiles `json:"apiRequests"`
	Analysis Quantiles `json:"analysisRounds"`
}

// Quantiles of a duration histogram, in milliseconds.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50ms"`
	P99   float64 `json:"p99ms"`
	Mean  float64 `json:"meanms"`
}

func quantiles(after, before Histogram) Quantiles {
	h := after.Sub(before)
	if h.Count == 0 {
		return Quantiles{}
	}
	return Quantiles{Count: int64(h.Count), P50: finite(1000 * h.Quantile(0.5)), P99: finite(1000 * h.Quantile(0.99)), Mean: finite(1000 * h.Mean())}
}

// finite keeps NaN and infinities (an empty or overflowing histogram) out of the JSON report.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func reconcileFigures(before, after ManagerStats) ReconcileFigures {
	h := after.Reconcile.Sub(before.Reconcile)
	f := ReconcileFigures{Results: map[string]int64{},
		API: quantiles(after.APILatency, before.APILatency), Analysis: quantiles(after.AnalysisTime, before.AnalysisTime),
	}
	if h.Count > 0 {
		f.Count = int64(h.Count)
		f.P50, f.P90, f.P99 = finite(1000*h.Quantile(0.5)), finite(1000*h.Quantile(0.9)), finite(1000*h.Quantile(0.99))
		f.Mean, f.Within50ms = finite(1000*h.Mean()), finite(h.FractionAtMost(0.05))
	}
	for k, v := range after.ReconcileTotal {
		if d := v - before.ReconcileTotal[k]; d != 0 {
			f.Results[k] = d
		}
	}
	return f
}

// ScaleResult is one scale run: N rollouts released at once in one manager.
type ScaleResult struct {
	Rollouts  int        `json:"rollouts"`
	Completed int        `json:"completed"`
	Load      [2]LoadAvg `json:"loadStartEnd"`
	MaxLoad1  float64    `json:"maxLoad1"`
	// Took is from the first release to the last promotion.
	Took Seconds `json:"tookSeconds"`
	// RolloutTime is each rollout's release → Succeeded; FirstWeight its release → first
	// VirtualService weight write (the reaction latency under a burst of N releases).
	RolloutTime Dist             `json:"rolloutTime"`
	FirstWeight Dist             `json:"firstWeight"`
	Reconcile   ReconcileFigures `json:"reconcile"`
	// Memory of the manager process, MiB: before the releases (all rollouts adopted and
	// idle), the peak sampled during the window, and at its end.
	RSSIdleMiB  float64 `json:"rssIdleMiB"`
	RSSPeakMiB  float64 `json:"rssPeakMiB"`
	RSSEndMiB   float64 `json:"rssEndMiB"`
	HeapPeakMiB float64 `json:"heapPeakMiB"`
	// CPU seconds (user+system) of the manager during the window, and per rollout.
	CPUSeconds      float64 `json:"cpuSeconds"`
	CPUPerRolloutMs float64 `json:"cpuPerRolloutMs"`
	// Other processes' CPU seconds in the window (kube-apiserver, etcd).
	ClusterCPUSeconds map[string]float64 `json:"clusterCPUSeconds"`
	// API requests of the manager during the window.
	Requests           int64            `json:"requests"`
	RequestsPerRollout float64          `json:"requestsPerRollout"`
	RequestsPerStep    float64          `json:"requestsPerStep"`
	RequestsByKind     map[string]int64 `json:"requestsByVerbResource"`
	ResponseCodes      map[int]int64    `json:"responseCodes"`
	// Analysis: rounds run and Prometheus queries made.
	Rounds               int64            `json:"rounds"`
	Queries              int64            `json:"queries"`
	QueriesByKind        map[string]int64 `json:"queriesByKind"`
	QueriesPerRound      float64          `json:"queriesPerRound"`
	QueriesPerMetricRnd  float64          `json:"queriesPerMetricPerRound"`
	MinRoundGapSeconds   float64          `json:"minRoundGapSeconds"`
	RoundsFasterThanIntv int              `json:"roundsSoonerThanInterval"`
	// MaxRoundGapSeconds is the largest gap between two rounds of one step, and
	// RoundsLaterThanIntv counts the gaps over the interval + RoundSlack.
	MaxRoundGapSeconds  float64 `json:"maxRoundGapSeconds"`
	RoundsLaterThanIntv int     `json:"roundsLaterThanInterval"`
	IntervalSeconds     float64 `json:"intervalSeconds"`
	// RequestErrors are the manager's API requests answered with an error other than a 409
	// (a lost optimistic lock, retried), or with none at all.
	RequestErrors int64 `json:"requestErrors"`
	// MissedSteps counts the rollouts whose VirtualService did not route every step's weight,
	// then 0 %, in order.
	MissedSteps int `json:"rolloutsWithMissedSteps"`
}

// RoundSlack is how much later than its interval an analysis round may run (issue 17's goal:
// never closer than the interval, nor later than the interval plus a second).
const RoundSlack = time.Second

// Goal is one of the targets and whether the run met it.
type Goal struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// NotRun: the run measured nothing this goal is about.
	NotRun bool `json:"notRun,omitempty"`
}

// Run runs the benchmark. With Options.CompareManager each phase (each N of the scale phase)
// runs against this manager, then against the compared one, on fresh API servers: the
// compared manager's report is Report.Compare.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	r := &Report{Machine: describeMachine(), Started: time.Now(), Options: ReportOptions{
		Quick: o.Quick, Scales: o.Scales, ReactionSamples: o.ReactionSamples, RollbackSamples: o.RollbackSamples,
		IntervalSeconds: o.Interval.Seconds(), Concurrency: o.Concurrency, SubsetSettle: o.SubsetSettle.String(), Replicas: o.Replicas,
	}}
	if o.MemoryLimit != "" {
		r.Options.Experiments = append(r.Options.Experiments, "GOMEMLIMIT="+o.MemoryLimit)
	}
	b := &runner{o: o}
	removeLogs := false
	if b.o.LogDir == "" {
		dir, err := os.MkdirTemp("", "ramp-bench-")
		if err != nil {
			return nil, err
		}
		b.o.LogDir, removeLogs = dir, true
	} else if err := os.MkdirAll(b.o.LogDir, 0o755); err != nil {
		return nil, err
	}
	b.say("logs in %s", b.o.LogDir)
	if f, err := os.Create(filepath.Join(b.o.LogDir, "driver.log")); err == nil {
		// The fake Deployment controller's and the clients' logs.
		defer f.Close()
		ctrl.SetLogger(zap.New(zap.WriteTo(f)))
	}
	type side struct {
		b      *runner
		r      *Report
		failed bool
	}
	sides := []*side{{b: b, r: r}}
	if o.CompareManager != "" {
		exe, err := filepath.Abs(o.CompareManager)
		if err != nil {
			return nil, err
		}
		co := b.o
		co.ManagerCommand = otherCommand(exe)
		co.LogDir = filepath.Join(b.o.LogDir, "compared")
		co.CPUProfile, co.MemProfile = "", ""
		rc := *r
		rc.Options.Experiments = slices.Clone(r.Options.Experiments)
		rc.Options.Manager = exe
		r.Compare = &rc
		sides = append(sides, &side{b: &runner{o: co, label: "compared: ", start: b.start}, r: &rc})
	}
	// Which manager runs first alternates from one run to the next (a phase, an N): the
	// first of a pair meets another load than the second, and --scales 300,300 evens it out.
	runs := 0
	ordered := func() []*side {
		runs++
		if runs%2 == 0 {
			return []*side{sides[len(sides)-1], sides[0]}[:len(sides)]
		}
		return sides
	}
	fail := func(sd *side, msg string) {
		sd.failed = true
		sd.r.Errors = append(sd.r.Errors, msg)
	}
	for _, ph := range o.Phases {
		switch ph {
		case "latency":
			for _, sd := range ordered() {
				react, rb, err := sd.b.latencyPhase(ctx)
				sd.r.Reaction, sd.r.Rollback = react, rb
				if err != nil {
					fail(sd, "latency: "+err.Error())
				}
			}
		case "scale":
			for _, n := range o.Scales {
				for _, sd := range ordered() {
					res, err := sd.b.scalePhase(ctx, n)
					if res != nil {
						sd.r.Scale = append(sd.r.Scale, *res)
					}
					if err != nil {
						fail(sd, fmt.Sprintf("scale %d: %v", n, err))
					}
				}
				if ctx.Err() != nil {
					break
				}
			}
		case "isolation":
			for _, sd := range ordered() {
				res, err := sd.b.isolationPhase(ctx)
				sd.r.Isolation = res
				if err != nil {
					fail(sd, "isolation: "+err.Error())
				}
			}
		default:
			return nil, fmt.Errorf("unknown phase %q (want latency, scale or isolation)", ph)
		}
		if ctx.Err() != nil {
			break
		}
	}
	failed := false
	for _, sd := range sides {
		sd.r.Took = Seconds(time.Since(r.Started).Seconds())
		sd.r.Goals = goals(sd.r)
		failed = failed || sd.failed
	}
	if failed {
		r.Errors = append(r.Errors, "logs kept in "+b.o.LogDir)
	} else if removeLogs {
		_ = os.RemoveAll(b.o.LogDir)
	}
	return r, ctx.Err()
}

// otherCommand runs the ramp-bench binary exe: startManager's arguments begin with
// ManagerSubcommand, as for this binary.
func otherCommand(exe string) func(args ...string) *exec.Cmd {
	return func(args ...string) *exec.Cmd { return exec.Command(exe, args...) }
}

type runner struct {
	o     Options
	start time.Time
	// label prefixes its progress lines ("compared: ").
	label string
}

func (b *runner) say(format string, args ...any) {
	if b.start.IsZero() {
		b.start = time.Now()
	}
	fmt.Fprintf(b.o.Progress, "[%6.1fs] %s%s\n", time.Since(b.start).Seconds(), b.label, fmt.Sprintf(format, args...))
}

// cluster is a fresh API server with the fake Deployment controller, a driver client and a
// tracker on one namespace.
type cluster struct {
	env  *testenv.Env
	c    client.Client
	fake *FakeDeploymentController
	tr   *tracker
	ns   string
	stop context.CancelFunc
}

func (b *runner) startCluster(ctx context.Context, name, ns string) (*cluster, error) {
	logDir := filepath.Join(b.o.LogDir, name)
	env, err := testenv.Start(ctx, testenv.Options{LogDir: logDir})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	cl := &cluster{env: env, ns: ns, stop: cancel, tr: newTracker()}
	fail := func(err error) (*cluster, error) { cl.close(); return nil, err }
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS = -1 // the driver must never be the bottleneck
	if cl.c, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		return fail(err)
	}
	if cl.fake, err = StartFakeDeploymentController(cctx, cfg); err != nil {
		return fail(fmt.Errorf("fake deployment controller: %w", err))
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	if err := cl.tr.start(cctx, dyn, ns); err != nil {
		return fail(err)
	}
	return cl, nil
}

func (cl *cluster) close() {
	cl.stop()
	_ = cl.env.Stop()
}

func (b *runner) managerArgs(analyzer string, extra ...string) []string {
	args := []string{"--analyzer=" + analyzer, fmt.Sprintf("--concurrent=%d", b.o.Concurrency), "--subset-settle=" + b.o.SubsetSettle.String()}
	return append(args, extra...)
}

func (b *runner) managerCommand(args ...string) *exec.Cmd {
	cmd := b.o.ManagerCommand(args...)
	if b.o.MemoryLimit != "" {
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+b.o.MemoryLimit)
	}
	return cmd
}

// waitPhase waits until every named Rollout's last seen phase is phase, reporting progress.
func (b *runner) waitPhase(ctx context.Context, tr *tracker, names []string, phase string, timeout time.Duration) error {
	last := time.Now()
	return tr.waitEvery(ctx, timeout, bulkCheckEvery, fmt.Sprintf("%d Rollouts to be %s", len(names), phase), func() bool {
		n := 0
		for _, name := range names {
			if tr.phase(name) == phase {
				n++
			}
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			b.say("  %d/%d %s", n, len(names), phase)
		}
		return n == len(names)
	})
}

// latencyPhase measures reaction and rollback latency on a quiet manager.
func (b *runner) latencyPhase(ctx context.Context) (*LatencyResult, *LatencyResult, error) {
	b.say("latency: starting an API server (envtest), the fake Deployment controller and ramp's manager (fake analyzer)")
	cl, err := b.startCluster(ctx, "latency", "bench-latency")
	if err != nil {
		return nil, nil, err
	}
	defer cl.close()
	mp, err := startManager(ctx, b.managerCommand, cl.env.Kubeconfig, filepath.Join(b.o.LogDir, "manager-latency.log"), b.managerArgs(AnalyzerFake)...)
	if err != nil {
		return nil, nil, err
	}
	defer mp.stop()

	react := appNames("react", b.o.ReactionSamples)
	rollback := appNames("fail", b.o.RollbackSamples)
	hold := []rampv1.CanaryStep{{SetWeight: 5, Pause: pause(time.Hour)}, {SetWeight: 100}}
	if err := createApps(ctx, cl.c, cl.ns, react, b.o.Replicas, rolloutSpec{steps: hold}, 8); err != nil {
		return nil, nil, err
	}
	// The fake analyzer ignores the address; a round every second (the minimum interval), and
	// one failed round rolls back.
	failing := rolloutSpec{steps: hold, analysis: builtinAnalysis("http://prometheus.invalid:9090", time.Second, 1)}
	if err := createApps(ctx, cl.c, cl.ns, rollback, b.o.Replicas, failing, 8); err != nil {
		return nil, nil, err
	}
	if err := b.waitPhase(ctx, cl.tr, append(append([]string(nil), react...), rollback...), rampv1.PhaseIdle, 2*time.Minute); err != nil {
		return nil, nil, err
	}

	// Reaction: one release at a time, each on an idle rollout.
	b.say("reaction: %d releases, one after the other", len(react))
	res := &LatencyResult{Load: [2]LoadAvg{loadAvg()}}
	before, err := mp.mark()
	if err != nil {
		return nil, nil, err
	}
	var total, toCanary, readyToWeight []time.Duration
	for _, name := range react {
		t0, err := release(ctx, cl.c, cl.ns, name, "v2")
		if err != nil {
			return nil, nil, err
		}
		var t3 time.Time
		err = cl.tr.wait(ctx, 30*time.Second, "the first weight of "+name, func() bool {
			var ok bool
			t3, ok = cl.tr.firstWeight(name, t0, func(w int32) bool { return w > 0 })
			return ok
		})
		if err != nil {
			res.Failures++
			b.say("  %s: %v", name, err)
			continue
		}
		total = append(total, t3.Sub(t0))
		cl.tr.mu.Lock()
		t1, ok := cl.tr.deployed[name+"-canary"]
		cl.tr.mu.Unlock()
		if ok && t1.After(t0) {
			toCanary = append(toCanary, t1.Sub(t0))
		}
		if t2, ok := cl.fake.readyBetween(types.NamespacedName{Namespace: cl.ns, Name: name + "-canary"}, t0, t3); ok {
			readyToWeight = append(readyToWeight, t3.Sub(t2))
		}
		time.Sleep(100 * time.Millisecond) // let the passes that follow settle
	}
	after, err := mp.stats()
	if err != nil {
		return nil, nil, err
	}
	res.Total = distOf(total)
	res.Parts = map[string]Dist{
		"release → canary Deployment created (ramp)":             distOf(toCanary),
		"canary ready (fake controller) → weight written (ramp)": distOf(readyToWeight),
	}
	res.Reconcile = reconcileFigures(before, after)
	res.Load[1] = loadAvg()
	b.say("reaction: %s", res.Total)

	// Rollback: start every failing rollout, then let analysis fail them all at once; each
	// fails at its own next round.
	b.say("rollback: %d rollouts holding at 5%% with analysis every 1s, then failing", len(rollback))
	for _, name := range rollback {
		t0, err := release(ctx, cl.c, cl.ns, name, "v2")
		if err != nil {
			return res, nil, err
		}
		if err := cl.tr.wait(ctx, 30*time.Second, name+" at 5%", func() bool {
			_, ok := cl.tr.firstWeight(name, t0, func(w int32) bool { return w == 5 })
			return ok
		}); err != nil {
			return res, nil, err
		}
	}
	rb := &LatencyResult{Load: [2]LoadAvg{loadAvg()}}
	before, err = mp.mark()
	if err != nil {
		return res, nil, err
	}
	failAt := time.Now()
	for _, name := range rollback {
		if err := annotateRollout(ctx, cl.c, cl.ns, name, FailAnnotation, "true"); err != nil {
			return res, nil, err
		}
	}
	err = cl.tr.wait(ctx, time.Minute, "the rollbacks", func() bool {
		for _, name := range rollback {
			if _, ok := cl.tr.firstPhase(name, rampv1.PhaseFailed, failAt); !ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		b.say("  %v", err)
	}
	after, err2 := mp.stats()
	if err2 != nil {
		return res, nil, err2
	}
	var toStable, toFailed []time.Duration
	cl.tr.mu.Lock()
	for _, name := range rollback {
		verdict, ok := after.Verdicts[cl.ns+"/"+name]
		if !ok {
			rb.Failures++
			continue
		}
		if t, ok := cl.tr.firstWeight(name, verdict, func(w int32) bool { return w == 0 }); ok {
			toStable = append(toStable, t.Sub(verdict))
		} else {
			rb.Failures++
		}
		if t, ok := cl.tr.firstPhase(name, rampv1.PhaseFailed, verdict); ok {
			toFailed = append(toFailed, t.Sub(verdict))
		}
	}
	cl.tr.mu.Unlock()
	rb.Total = distOf(toStable)
	rb.Parts = map[string]Dist{"verdict → phase Failed (canary scaled to zero)": distOf(toFailed)}
	rb.Reconcile = reconcileFigures(before, after)
	rb.Load[1] = loadAvg()
	b.say("rollback: %s", rb.Total)
	return res, rb, err
}

// scalePhase releases n rollouts at once and measures the manager while they progress.
func (b *runner) scalePhase(ctx context.Context, n int) (*ScaleResult, error) {
	b.say("scale %d: starting an API server (envtest), the fake Deployment controller, a Prometheus stub and ramp's manager (real analyzer)", n)
	cl, err := b.startCluster(ctx, fmt.Sprintf("scale-%d", n), "bench-scale")
	if err != nil {
		return nil, err
	}
	defer cl.close()
	prom := StartPromStub()
	defer prom.Close()
	var extra []string
	if b.o.CPUProfile != "" {
		extra = append(extra, "--cpuprofile="+withSuffix(b.o.CPUProfile, n))
	}
	if b.o.MemProfile != "" {
		extra = append(extra, "--memprofile="+withSuffix(b.o.MemProfile, n))
	}
	mp, err := startManager(ctx, b.managerCommand, cl.env.Kubeconfig, filepath.Join(b.o.LogDir, fmt.Sprintf("manager-scale-%d.log", n)),
		b.managerArgs(AnalyzerPrometheus, extra...)...)
	if err != nil {
		return nil, err
	}
	defer mp.stop()

	names := appNames("app", n)
	// Step 1 holds two and a half intervals: two rounds (one and two intervals in), so their
	// spacing shows, and none due as it ends (a round due then is not run). The others hold
	// one round.
	spec := rolloutSpec{
		steps:    []rampv1.CanaryStep{{SetWeight: 5, Pause: pause(5 * b.o.Interval / 2)}, {SetWeight: 25}, {SetWeight: 100}},
		analysis: builtinAnalysis(prom.URL, b.o.Interval, 2),
	}
	b.say("scale %d: creating %d Deployments and Rollouts", n, n)
	if err := createApps(ctx, cl.c, cl.ns, names, b.o.Replicas, spec, 16); err != nil {
		return nil, err
	}
	if err := b.waitPhase(ctx, cl.tr, names, rampv1.PhaseIdle, 2*time.Minute+time.Duration(n)*200*time.Millisecond); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // let the adoption passes drain

	res := &ScaleResult{Rollouts: n, Load: [2]LoadAvg{loadAvg()}, IntervalSeconds: b.o.Interval.Seconds()}
	before, err := mp.mark()
	if err != nil {
		return nil, err
	}
	res.RSSIdleMiB = mib(before.RSS)
	promBefore, _ := prom.Counts()
	clusterBefore := childCPU()
	stopLoad := make(chan struct{})
	loadDone := make(chan float64)
	go func() {
		m := 0.0
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			m = max(m, loadAvg()[0])
			select {
			case <-stopLoad:
				loadDone <- m
				return
			case <-t.C:
			}
		}
	}()

	b.say("scale %d: releasing all %d apps at once", n, n)
	released := make([]time.Time, n)
	start := time.Now()
	if err := parallel(n, 16, func(i int) error {
		t, err := release(ctx, cl.c, cl.ns, names[i], "v2")
		released[i] = t
		return err
	}); err != nil {
		return nil, err
	}
	timeout := 3*time.Minute + 6*b.o.Interval + time.Duration(n)*600*time.Millisecond
	waitErr := cl.tr.waitEvery(ctx, timeout, bulkCheckEvery, fmt.Sprintf("%d rollouts to succeed", n), func() bool {
		for i, name := range names {
			if _, ok := cl.tr.firstPhase(name, rampv1.PhaseSucceeded, released[i]); !ok {
				return false
			}
		}
		return true
	})
	end := time.Now()
	after, err := mp.finish()
	close(stopLoad)
	res.MaxLoad1 = <-loadDone
	res.Load[1] = loadAvg()
	if err != nil {
		return nil, err
	}
	clusterAfter := childCPU()
	promAfter, _ := prom.Counts()

	var rolloutTimes, firstWeights []time.Duration
	last := start
	routed := []int32{}
	for _, st := range spec.steps {
		routed = append(routed, st.SetWeight)
	}
	routed = append(routed, 0) // promoted: all traffic back to the updated stable
	cl.tr.mu.Lock()
	for i, name := range names {
		if !cl.tr.routedInOrder(name, released[i], routed) {
			res.MissedSteps++
		}
		if t, ok := cl.tr.firstPhase(name, rampv1.PhaseSucceeded, released[i]); ok {
			res.Completed++
			rolloutTimes = append(rolloutTimes, t.Sub(released[i]))
			if t.After(last) {
				last = t
			}
		}
		if t, ok := cl.tr.firstWeight(name, released[i], func(w int32) bool { return w > 0 }); ok {
			firstWeights = append(firstWeights, t.Sub(released[i]))
		}
	}
	cl.tr.mu.Unlock()
	if waitErr != nil {
		last = end
	}
	res.Took = Seconds(last.Sub(start).Seconds())
	res.RolloutTime, res.FirstWeight = distOf(rolloutTimes), distOf(firstWeights)
	res.Reconcile = reconcileFigures(before, after)
	res.RSSPeakMiB, res.RSSEndMiB, res.HeapPeakMiB = mib(after.PeakRSS), mib(after.RSS), mib(int64(after.PeakHeap))
	cpu := (after.UserCPU + after.SysCPU) - (before.UserCPU + before.SysCPU)
	res.CPUSeconds = cpu.Seconds()
	res.CPUPerRolloutMs = msOf(cpu) / float64(n)
	res.ClusterCPUSeconds = map[string]float64{}
	for k, v := range clusterAfter {
		if d := v - clusterBefore[k]; d > 0 && (k == "kube-apiserver" || k == "etcd") {
			res.ClusterCPUSeconds[k] = d.Seconds()
		}
	}
	res.RequestsByKind = map[string]int64{}
	for k, v := range after.Requests {
		if d := v - before.Requests[k]; d > 0 {
			res.RequestsByKind[k] = d
			res.Requests += d
		}
	}
	res.ResponseCodes = map[int]int64{}
	for k, v := range after.Codes {
		if d := v - before.Codes[k]; d > 0 {
			res.ResponseCodes[k] = d
		}
	}
	for code, v := range res.ResponseCodes {
		if code == 0 || (code >= 400 && code != 409) {
			res.RequestErrors += v
		}
	}
	res.RequestsPerRollout = float64(res.Requests) / float64(n)
	res.RequestsPerStep = res.RequestsPerRollout / float64(len(spec.steps)+1) // the steps and the promotion

	res.QueriesByKind = map[string]int64{}
	for k, v := range promAfter {
		if d := v - promBefore[k]; d > 0 {
			res.QueriesByKind[k] = d
			res.Queries += d
		}
	}
	minGap, maxGap := time.Duration(math.MaxInt64), time.Duration(0)
	for key, rounds := range after.Rounds {
		if !strings.HasPrefix(key, cl.ns+"/") {
			continue
		}
		for i, rd := range rounds {
			if rd.At.Before(before.At) {
				continue
			}
			res.Rounds++
			if i > 0 && rounds[i-1].Step == rd.Step && !rounds[i-1].At.Before(before.At) {
				gap := rd.At.Sub(rounds[i-1].At)
				minGap, maxGap = min(minGap, gap), max(maxGap, gap)
				if gap < b.o.Interval-50*time.Millisecond {
					res.RoundsFasterThanIntv++
				}
				if gap > b.o.Interval+RoundSlack {
					res.RoundsLaterThanIntv++
				}
			}
		}
	}
	if minGap != time.Duration(math.MaxInt64) {
		res.MinRoundGapSeconds, res.MaxRoundGapSeconds = minGap.Seconds(), maxGap.Seconds()
	}
	if res.Rounds > 0 {
		res.QueriesPerRound = float64(res.Queries) / float64(res.Rounds)
		res.QueriesPerMetricRnd = res.QueriesPerRound / float64(len(spec.analysis.Metrics))
	}
	b.say("scale %d: %d/%d promoted in %.0fs; reconcile p99 %s; RSS peak %.0f MiB; %.1f requests/rollout; %.2f queries/metric/round",
		n, res.Completed, n, float64(res.Took), ms(res.Reconcile.P99), res.RSSPeakMiB, res.RequestsPerRollout, res.QueriesPerMetricRnd)
	return res, waitErr
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func withSuffix(path string, n int) string {
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(path, ext), n, ext)
}

// Scales the goals are set at: the 1,000-rollout goals judge every smaller run too
// (labelled with its N), the 10,000-rollout ones every run from 10,000 up.
const (
	GoalScale      = 1000
	LargeGoalScale = 10000
)

// goals checks the targets against the report; a scale the goals are set at that the
// run did not measure gets a row saying so.
func goals(r *Report) []Goal {
	var g []Goal
	if r.Reaction != nil && r.Reaction.Total.N > 0 {
		p, what := r.Reaction.Total.Tail()
		g = append(g, Goal{Name: "reaction: release → first VirtualService weight write, " + what, Target: "< 1s", Measured: ms(p), Met: p < 1000 && r.Reaction.Failures == 0})
	}
	if r.Rollback != nil && r.Rollback.Total.N > 0 {
		p, what := r.Rollback.Total.Tail()
		g = append(g, Goal{Name: "rollback: failing verdict → VirtualService 100% stable, " + what, Target: "< 1s", Measured: ms(p), Met: p < 1000 && r.Rollback.Failures == 0})
	}
	ranGoalScale, ranLarge := false, false
	for _, s := range r.Scale {
		ranGoalScale = ranGoalScale || (s.Rollouts >= GoalScale && s.Rollouts < LargeGoalScale)
		ranLarge = ranLarge || s.Rollouts >= LargeGoalScale
		g = append(g, scaleGoals(s)...)
	}
	if !ranGoalScale {
		g = append(g, Goal{Name: fmt.Sprintf("%d rollouts: reconcile p99, RSS peak, queries per metric per round, round spacing, requests per rollout, burst → first weight", GoalScale),
			Target: "< 50ms, < 120 MiB, ≤ 1, interval … interval+1s, ≤ 20, p99 < 10s", Measured: fmt.Sprintf("not run (--scales %d)", GoalScale), NotRun: true})
	}
	if !ranLarge {
		g = append(g, Goal{Name: fmt.Sprintf("%d rollouts: all promoted, RSS peak, request errors, missed steps", LargeGoalScale),
			Target: "all, < 600 MiB, 0, 0", Measured: fmt.Sprintf("not run (--scales %d)", LargeGoalScale), NotRun: true})
	}
	return append(g, isolationGoals(r)...)
}

// scaleGoals are the goals for one scale run.
func scaleGoals(s ScaleResult) []Goal {
	n := fmt.Sprintf("%d rollouts: ", s.Rollouts)
	all := Goal{Name: n + "all promoted", Target: fmt.Sprint(s.Rollouts), Measured: fmt.Sprint(s.Completed), Met: s.Completed == s.Rollouts}
	errs := Goal{Name: n + "API request errors (other than 409)", Target: "0", Measured: fmt.Sprint(s.RequestErrors), Met: s.RequestErrors == 0}
	missed := Goal{Name: n + "rollouts with a step not routed", Target: "0", Measured: fmt.Sprint(s.MissedSteps), Met: s.MissedSteps == 0 && s.Completed > 0}
	if s.Rollouts >= LargeGoalScale {
		return []Goal{all, {Name: n + "manager RSS peak", Target: "< 600 MiB", Measured: fmt.Sprintf("%.0f MiB", s.RSSPeakMiB), Met: s.RSSPeakMiB < 600}, errs, missed}
	}
	reconcile := Goal{Name: n + "reconcile p99", Target: "< 50ms",
		Measured: fmt.Sprintf("fewer than %d reconciles", MinPercentileSamples)}
	if s.Reconcile.Count >= MinPercentileSamples {
		reconcile.Measured = fmt.Sprintf("%s (%.1f%% ≤ 50ms)", ms(s.Reconcile.P99), 100*s.Reconcile.Within50ms)
		reconcile.Met = s.Reconcile.P99 < 50
	}
	interval := time.Duration(s.IntervalSeconds * float64(time.Second))
	spacing := Goal{Name: n + "analysis rounds of a step: gap", Target: fmt.Sprintf("%s … %s", interval, interval+RoundSlack),
		Measured: "no two rounds in one step", Met: s.Rounds > 0}
	if s.MaxRoundGapSeconds > 0 {
		spacing.Measured = fmt.Sprintf("%.1fs … %.1fs; %d sooner, %d later", s.MinRoundGapSeconds, s.MaxRoundGapSeconds, s.RoundsFasterThanIntv, s.RoundsLaterThanIntv)
		spacing.Met = s.RoundsFasterThanIntv == 0 && s.RoundsLaterThanIntv == 0
	}
	tail, what := s.FirstWeight.Tail()
	return []Goal{
		reconcile,
		{Name: n + "manager RSS peak", Target: "< 120 MiB", Measured: fmt.Sprintf("%.0f MiB", s.RSSPeakMiB), Met: s.RSSPeakMiB < 120},
		{Name: n + "Prometheus queries per metric per round", Target: "≤ 1", Measured: fmt.Sprintf("%.2f", s.QueriesPerMetricRnd),
			Met: s.Rounds > 0 && s.QueriesPerMetricRnd <= 1},
		spacing,
		{Name: n + "API requests per rollout", Target: "≤ 20", Measured: fmt.Sprintf("%.1f", s.RequestsPerRollout), Met: s.RequestsPerRollout <= 20},
		{Name: fmt.Sprintf("burst of %d releases: release → first weight, %s", s.Rollouts, what), Target: "< 10s", Measured: ms(tail),
			Met: s.FirstWeight.N == s.Rollouts && tail < 10000},
		all, errs, missed,
	}
}
