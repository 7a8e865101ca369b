package controllers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/events"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

var (
	env      *testenv.Env
	verdicts = &fakeAnalyzer{byRollout: map[string]string{}}
	// slack delivers to whatever webhook a Rollout's Secret names (a local receiver in tests).
	slack = notify.NewSender(100, ctrl.Log.WithName("slack"))
)

// fakeAnalyzer answers analysis rounds with a verdict the test sets per Rollout: this issue's
// tests exercise the engine; the Prometheus provider has its own tests.
type fakeAnalyzer struct {
	mu        sync.Mutex
	byRollout map[string]string
	rounds    map[string]int
	// hanging counts the rounds of verdictHang in progress, hangsEnded those that returned.
	hanging, hangsEnded int
	// called receives the reconciler clock's time of each round of the Rollouts watched.
	called map[string]chan time.Time
}

// watch returns the times (the reconciler's clock) at which ro's rounds are called from now on.
func (f *fakeAnalyzer) watch(ro *rampv1.Rollout) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.called == nil {
		f.called = map[string]chan time.Time{}
	}
	ch := make(chan time.Time, 1000)
	f.called[ro.Namespace+"/"+ro.Name] = ch
	return ch
}

// verdictHang makes a Rollout's rounds answer nothing until they are cancelled, as a
// Prometheus that accepts and never answers.
const verdictHang = "hang"

func (f *fakeAnalyzer) hangs() (now, ended int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hanging, f.hangsEnded
}

func (f *fakeAnalyzer) set(ro *rampv1.Rollout, verdict string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byRollout[ro.Namespace+"/"+ro.Name] = verdict
}

func (f *fakeAnalyzer) Analyze(ctx context.Context, ro *rampv1.Rollout) *plan.AnalysisResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rounds == nil {
		f.rounds = map[string]int{}
	}
	f.rounds[ro.Namespace+"/"+ro.Name]++
	if ch := f.called[ro.Namespace+"/"+ro.Name]; ch != nil {
		select {
		case ch <- clock.Now():
		default:
		}
	}
	v := f.byRollout[ro.Namespace+"/"+ro.Name]
	if v == verdictHang {
		f.hanging++
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		f.hanging--
		f.hangsEnded++
		return &plan.AnalysisResult{Verdict: rampv1.VerdictInconclusive, Reason: "analysis canceled: " + ctx.Err().Error()}
	}
	if v == "" {
		v = rampv1.VerdictPassed
	}
	res := rampv1.MetricResult{Name: "error-rate", Verdict: v, Value: "0.1", Threshold: "<= 1", Time: metav1.Now()}
	r := &plan.AnalysisResult{Verdict: v, Metrics: []rampv1.MetricResult{res}}
	if v == rampv1.VerdictFailed {
		res.Value = "8.3"
		r.Metrics[0] = res
		r.Reason = "error-rate 8.3 > 1"
	}
	return r
}

// clock is the reconciler's clock: real time shifted by an offset a test may set (promotion
// windows are tested by placing "now" just before a window opens).
var clock = &shiftedClock{}

type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// shift makes the reconciler's clock read real time + d until the test ends.
func (c *shiftedClock) shift(t *testing.T, d time.Duration) {
	c.offset.Store(int64(d))
	t.Cleanup(func() { c.offset.Store(0) })
}

// platformNamespace is the manager's own namespace in this suite (ClusterMetricTemplate Secrets).
const platformNamespace = "ramp-system"

// reconcileWorkers is the suite's MaxConcurrentReconciles, the manager's default --concurrent.
const reconcileWorkers = 4

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapLevel())))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	var err error
	env, err = testenv.Start(ctx, testenv.Options{LocalCluster: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the local cluster:", err)
		os.Exit(1)
	}
	mctx, stop := context.WithCancel(context.Background())
	if err := startManager(mctx); err != nil {
		fmt.Fprintln(os.Stderr, "starting the manager:", err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	stop()
	_ = env.Stop()
	os.Exit(code)
}

func startManager(ctx context.Context) error {
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// As cmd/manager's cache (internal/manager.CacheOptions).
		Cache: cache.Options{DefaultTransform: CacheTransform,
			ByObject: map[client.Object]cache.ByObject{&appsv1.ReplicaSet{}: {Label: CachedReplicaSets()}}},
	})
	if err != nil {
		return err
	}
	rec, err := events.NewRecorder(ctrl.Log.WithName("events"), "", "ramp-controller", events.WithManager(mgr))
	if err != nil {
		return err
	}
	// The reconciler's live reads go through a transport that records every Secret request,
	// so tests can prove which Secrets ramp read.
	readerCfg := rest.CopyConfig(env.Config)
	readerCfg.Wrap(secretRequests.wrap)
	readerCfg.Wrap(heldReads.wrap)
	apiReader, err := client.New(readerCfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}
	allowed := endpoints.MustParse("http://prometheus.invalid:9090," + gateServer.URL)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: platformNamespace}}); err != nil {
		return err
	}
	r := &RolloutReconciler{
		Client: hookedClient{mgr.GetClient()}, APIReader: apiReader, Scheme: env.Scheme,
		AnalysisEndpoints: &allowed, PlatformNamespace: platformNamespace,
		Events: rec, Analyzer: verdicts, Notifier: slack,
		Config: plan.Config{SubsetSettle: 200 * time.Millisecond, RoutingGrace: plan.DefaultConfig().RoutingGrace},
		Now:    clock.Now,
		// Hanging rounds must outlast the test that hangs them (deleting a Rollout ends them).
		AnalysisTimeout: 10 * time.Minute,
	}
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: reconcileWorkers}); err != nil {
		return err
	}
	slack.Backoff = 50 * time.Millisecond
	if err := mgr.Add(slack); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return nil
}

func zapLevel() zapcore.Level {
	if os.Getenv("RAMP_TEST_VERBOSE") != "" {
		return -1
	}
	return 1 // warnings and errors only: the tests print what they check
}

// secretRequests records the Secret requests of the reconciler's live reads.
var secretRequests = &requestLog{}

type requestLog struct {
	mu   sync.Mutex
	seen []secretRequest
}

type secretRequest struct {
	method, path string
	// metadataOnly: the request asked for the object's metadata alone (PartialObjectMetadata).
	metadataOnly bool
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if strings.Contains(req.URL.Path, "/secrets") {
			l.mu.Lock()
			l.seen = append(l.seen, secretRequest{req.Method, req.URL.Path, strings.Contains(req.Header.Get("Accept"), "as=PartialObjectMetadata")})
			l.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

// of returns the requests for Secret namespace/name.
// onlyMetadataRead fails t unless ramp asked for the Secret, and only for its metadata (the
// label check), never its data.
func onlyMetadataRead(t *testing.T, namespace, name string) {
	t.Helper()
	reqs := secretRequests.of(namespace, name)
	if len(reqs) == 0 {
		t.Fatalf("no request for the Secret recorded: the check did not run through the recorded reader")
	}
	for _, r := range reqs {
		if !r.metadataOnly {
			t.Errorf("ramp read the unmarked Secret: %+v", r)
		}
	}
}

func (l *requestLog) of(namespace, name string) []secretRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []secretRequest
	for _, r := range l.seen {
		if strings.HasSuffix(r.path, "/namespaces/"+namespace+"/secrets/"+name) {
			out = append(out, r)
		}
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
