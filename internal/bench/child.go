package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/controllers"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/plan"
)

// ManagerSubcommand is the hidden first argument that makes the ramp-bench binary run
// RunManager instead of the benchmark: the driver re-executes itself with it, so the
// manager is measured as a process of its own.
const ManagerSubcommand = "__manager"

// readyPrefix starts the line the manager process prints once its caches are synced; the
// stats endpoint's address follows.
const readyPrefix = "RAMP-BENCH-MANAGER-READY "

// Analyzer kinds of the manager process.
const (
	// AnalyzerFake answers Passed, or Failed once the Rollout carries FailAnnotation, and
	// records when it answered Failed.
	AnalyzerFake = "fake"
	// AnalyzerPrometheus is ramp's real analysis.Analyzer (counted).
	AnalyzerPrometheus = "prometheus"
)

// FailAnnotation on a Rollout makes the fake analyzer's next round fail.
const FailAnnotation = "bench.ramp.dev/fail"

// ManagerStats is what the manager process reports; counters are cumulative since it
// started (the driver subtracts a snapshot taken when the measured window began).
type ManagerStats struct {
	At time.Time `json:"at"`
	// Requests counts API requests by "verb resource"; Codes by HTTP status (0: no answer).
	Requests map[string]int64 `json:"requests"`
	Codes    map[int]int64    `json:"codes"`
	// Reconcile is controller-runtime's controller_runtime_reconcile_time_seconds for the
	// rollout controller; ReconcileTotal its reconcile_total by result.
	Reconcile      Histogram        `json:"reconcile"`
	ReconcileTotal map[string]int64 `json:"reconcileTotal"`
	// APILatency is how long the manager's API requests (not watches) took to answer.
	APILatency Histogram `json:"apiLatency"`
	// AnalysisTime is how long analysis rounds took (off the reconcile workers).
	AnalysisTime Histogram     `json:"analysisTime"`
	UserCPU      time.Duration `json:"userCPU"`
	SysCPU       time.Duration `json:"sysCPU"`
	RSS          int64         `json:"rss"`
	// PeakRSS is the highest RSS sampled (every 100ms) since the last mark; HWM is VmHWM
	// (reset at each mark).
	PeakRSS    int64  `json:"peakRSS"`
	HWM        int64  `json:"hwm"`
	HeapInuse  uint64 `json:"heapInuse"`
	PeakHeap   uint64 `json:"peakHeapInuse"`
	GoSys      uint64 `json:"goSys"`
	NumGC      uint32 `json:"numGC"`
	Goroutines int    `json:"goroutines"`
	// Rounds are the analysis rounds run, per Rollout (namespace/name).
	Rounds map[string][]Round `json:"rounds"`
	// Verdicts are when the fake analyzer answered Failed, per Rollout.
	Verdicts map[string]time.Time `json:"verdicts"`
}

// Round is one analysis round: At is when it started (the real analyzer's), or when it
// answered (the fake one's, whose verdict instants time the rollback).
type Round struct {
	At      time.Time `json:"at"`
	Step    int32     `json:"step"`
	Verdict string    `json:"verdict"`
}

// RunManager runs ramp's manager as production does (internal/manager.Setup, client-side
// rate limiting off as ctrl.GetConfig leaves it, no leader election) against the cluster
// KUBECONFIG names, with its API requests counted and a stats endpoint on 127.0.0.1. It
// returns the process exit code.
func RunManager(args []string) int {
	fs := flag.NewFlagSet(ManagerSubcommand, flag.ContinueOnError)
	var (
		kind         = fs.String("analyzer", AnalyzerFake, "fake or prometheus")
		concurrency  = fs.Int("concurrent", 4, "Rollouts reconciled in parallel (the manager's --concurrent)")
		subsetSettle = fs.Duration("subset-settle", plan.DefaultConfig().SubsetSettle, "the manager's --subset-settle")
		cpuProfile   = fs.String("cpuprofile", "", "write a CPU profile of the measured window here")
		memProfile   = fs.String("memprofile", "", "write a heap profile at the end of the measured window here")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		// A flag after it would be ignored: the manager would run with other settings.
		fmt.Fprintf(os.Stderr, "manager: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	zapOpts := zap.Options{}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := runManager(*kind, *concurrency, *subsetSettle, *cpuProfile, *memProfile); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return 0
}

func runManager(kind string, concurrency int, settle time.Duration, cpuProfile, memProfile string) error {
	ctx := ctrl.SetupSignalHandler()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	counter := newRequestCounter()
	cfg.Wrap(counter.wrap)
	scheme, err := manager.Scheme()
	if err != nil {
		return err
	}
	// cmd/manager's cache (all namespaces, every Rollout).
	opts := ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Cache: manager.CacheOptions("", nil)}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	rec := &roundRecorder{rounds: map[string][]Round{}, verdicts: map[string]time.Time{}}
	var an controllers.Analyzer
	switch kind {
	case AnalyzerFake:
		an = &fakeAnalyzer{rec: rec}
	case AnalyzerPrometheus:
		an = &countingAnalyzer{rec: rec, inner: manager.PrometheusAnalyzer(mgr.GetAPIReader(), mgr.GetClient(), time.Now, nil, "")}
	default:
		return fmt.Errorf("unknown analyzer %q", kind)
	}
	if _, err := manager.Setup(ctx, mgr, manager.Options{
		Concurrency: concurrency, Plan: plan.Config{SubsetSettle: settle, RoutingGrace: plan.DefaultConfig().RoutingGrace}, Analyzer: an,
	}); err != nil {
		return err
	}
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return errors.New("caches did not sync")
	}

	s := &statsServer{counter: counter, rec: rec, cpuProfile: cpuProfile, memProfile: memProfile}
	go s.sample(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("POST /mark", s.mark)
	mux.HandleFunc("POST /finish", s.finish)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(readyPrefix + ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-mgrErr:
		if err != nil {
			return err
		}
	}
	s.stopProfile()
	_ = srv.Close()
	return nil
}

type statsServer struct {
	counter                *requestCounter
	rec                    *roundRecorder
	cpuProfile, memProfile string

	mu        sync.Mutex
	peakRSS   int64
	peakHeap  uint64
	profiling *os.File
}

// sample tracks the peak RSS and heap between marks.
func (s *statsServer) sample(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	// runtime/metrics rather than ReadMemStats, which stops the world.
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rss, _ := selfRSS()
		metrics.Read(sample)
		heap := sample[0].Value.Uint64() + sample[1].Value.Uint64()
		s.mu.Lock()
		s.peakRSS = max(s.peakRSS, rss)
		s.peakHeap = max(s.peakHeap, heap)
		s.mu.Unlock()
	}
}

func (s *statsServer) snapshot() ManagerStats {
	st := ManagerStats{At: time.Now()}
	st.Requests, st.Codes = s.counter.snapshot()
	st.APILatency = s.counter.latency.snapshot()
	st.AnalysisTime = s.rec.took.snapshot()
	st.UserCPU, st.SysCPU = cpuTime()
	st.RSS, st.HWM = selfRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapInuse, st.GoSys, st.NumGC, st.Goroutines = ms.HeapInuse, ms.Sys, ms.NumGC, runtime.NumGoroutine()
	s.mu.Lock()
	st.PeakRSS, st.PeakHeap = max(s.peakRSS, st.RSS), max(s.peakHeap, st.HeapInuse)
	s.mu.Unlock()
	st.Rounds, st.Verdicts = s.rec.snapshot()
	st.ReconcileTotal = map[string]int64{}
	if mfs, err := crmetrics.Registry.Gather(); err == nil {
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if !hasLabel(m.GetLabel(), "controller", "rollout") {
					continue
				}
				switch mf.GetName() {
				case "controller_runtime_reconcile_time_seconds":
					st.Reconcile = histogramFrom(m.GetHistogram())
				case "controller_runtime_reconcile_total":
					for _, l := range m.GetLabel() {
						if l.GetName() == "result" {
							st.ReconcileTotal[l.GetValue()] = int64(m.GetCounter().GetValue())
						}
					}
				}
			}
		}
	}
	return st
}

func (s *statsServer) stats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.snapshot())
}

// mark starts the measured window: the peaks restart from now and the CPU profile starts.
func (s *statsServer) mark(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	resetPeakRSS()
	rss, _ := selfRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.mu.Lock()
	s.peakRSS, s.peakHeap = rss, ms.HeapInuse
	if s.cpuProfile != "" && s.profiling == nil {
		if f, err := os.Create(s.cpuProfile); err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				s.profiling = f
			} else {
				f.Close()
			}
		}
	}
	s.mu.Unlock()
	s.stats(w, nil)
}

// finish ends the measured window: the CPU profile stops and the heap profile is written.
func (s *statsServer) finish(w http.ResponseWriter, _ *http.Request) {
	st := s.snapshot()
	s.stopProfile()
	if s.memProfile != "" {
		if f, err := os.Create(s.memProfile); err == nil {
			runtime.GC() // twice: the heap profile lags a cycle behind
			runtime.GC()
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

func (s *statsServer) stopProfile() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.profiling != nil {
		pprof.StopCPUProfile()
		s.profiling.Close()
		s.profiling = nil
	}
}

// roundRecorder keeps the analysis rounds run and the failed verdicts' instants.
type roundRecorder struct {
	took     latencyHistogram
	mu       sync.Mutex
	rounds   map[string][]Round
	verdicts map[string]time.Time
}

func (r *roundRecorder) add(ro *rampv1.Rollout, verdict string, at time.Time) {
	key := ro.Namespace + "/" + ro.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rounds[key] = append(r.rounds[key], Round{At: at, Step: ro.Status.CurrentStep, Verdict: verdict})
	if _, seen := r.verdicts[key]; verdict == rampv1.VerdictFailed && !seen {
		r.verdicts[key] = at
	}
}

func (r *roundRecorder) snapshot() (map[string][]Round, map[string]time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rounds := make(map[string][]Round, len(r.rounds))
	for k, v := range r.rounds {
		rounds[k] = append([]Round(nil), v...)
	}
	verdicts := make(map[string]time.Time, len(r.verdicts))
	for k, v := range r.verdicts {
		verdicts[k] = v
	}
	return rounds, verdicts
}

// fakeAnalyzer passes every round until the Rollout carries FailAnnotation; the instant it
// first answers Failed is the start of the rollback measurement.
type fakeAnalyzer struct{ rec *roundRecorder }

func (f *fakeAnalyzer) Analyze(_ context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	v, value := rampv1.VerdictPassed, "0.1"
	if ro.Annotations[FailAnnotation] == "true" {
		v, value = rampv1.VerdictFailed, "8.3"
	}
	r := &plan.AnalysisResult{Verdict: v, Metrics: []rampv1.MetricResult{{
		Name: "error-rate", Verdict: v, Value: value, Threshold: "<= 1", Time: metav1.Now(),
	}}}
	if v == rampv1.VerdictFailed {
		r.Reason = "error-rate 8.3 > 1"
	}
	f.rec.add(ro, v, time.Now()) // the verdict is known from here on
	return r
}

// countingAnalyzer records the rounds of the real analyzer.
type countingAnalyzer struct {
	rec   *roundRecorder
	inner controllers.Analyzer
}

func (c *countingAnalyzer) Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	start := time.Now()
	r := c.inner.Analyze(ctx, ro)
	c.rec.took.observe(time.Since(start))
	// At its start: when it sends its queries, which the interval spaces (its end also moves
	// with how long Prometheus takes to answer).
	c.rec.add(ro, r.Verdict, start)
	return r
}

func hasLabel(ls []*dto.LabelPair, name, value string) bool {
	for _, l := range ls {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
