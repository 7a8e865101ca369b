package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// loadAct is act 4's equipment, made before the cluster starts: examples/podinfo-bluegreen-load
// as kustomize builds it, ramp's load generator in-process with the arguments of the
// example's ramp-load Deployment, its gate endpoint (an address the manager is told to allow,
// as the example asks for ramp-load's), and the /metrics listener of the example namespace's
// mesh simulator (a Prometheus target from the first scrape). The simulator is made in the act.
type loadAct struct {
	ex        *harness.LoadExample
	gen       *harness.LoadGenerator
	gateURL   string // http://127.0.0.1:PORT
	gate      *http.Server
	metricsLn net.Listener
	sim       *meshsim.Sim
	// logf prints the load generator's log (its loads starting and ending) until stop.
	logf     func(format string, args ...any)
	quiet    atomic.Bool
	stopOnce sync.Once
}

// previewBehaviour is v2's in act 4: healthy, without act 2's 0.1% errors. The preview is
// judged on the load's 20 requests/s alone, about 340 a round (previewWindow): at 0.1%, four
// errors (1.2% > 1%) would fail a healthy release about one run in two thousand.
var previewBehaviour = meshsim.Behaviour{LatencyP50: 25 * time.Millisecond, LatencyP99: 150 * time.Millisecond, ErrorCode: 500}

// previewWindow is the window of act 4's rounds (and of the v3 release --keep suggests):
// twice the interval, as in the canary acts, but at least minPreviewWindow. The preview is
// judged on the gate's 20 requests/s alone: a 6s window held about 120 of them, where one
// error of v3's 8% read 0.83% and promoted it (about one run in a thousand, as it did once
// in CI); 20s hold about 340, where v3 passes with a chance of about 1e-9
// (TestRoundsCannotGoWrongByChance).
func previewWindow(interval time.Duration) time.Duration {
	return max(2*interval, minPreviewWindow)
}

const minPreviewWindow = 20 * time.Second

// previewUsersRPS is the request rate of act 4's users, none of which reaches the preview.
const previewUsersRPS = 200

func newLoadAct() (_ *loadAct, err error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	l := &loadAct{}
	l.ex, err = harness.ReadLoadExample(filepath.Join(root, harness.LoadExampleDir))
	if err != nil {
		return nil, err
	}
	if len(l.ex.Rollout.Spec.Gates) == 0 || l.ex.Rollout.Spec.Analysis == nil || len(l.ex.Rollout.Spec.Analysis.Metrics) == 0 {
		return nil, fmt.Errorf("%s: its Rollout has no gate or no metric", harness.LoadExampleDir)
	}
	l.gen, err = harness.NewLoadGenerator(l.ex.LoadArgs, func(format string, args ...any) {
		if !l.quiet.Load() && l.logf != nil {
			l.logf("load generator: "+format, args...)
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.stop()
		}
	}()
	gateLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.gateURL = "http://" + gateLn.Addr().String()
	l.gate = &http.Server{Handler: l.gen, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = l.gate.Serve(gateLn) }()
	if l.metricsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	return l, nil
}

// stop stops the simulator (or closes its listener), the gate endpoint and the loads, once.
func (l *loadAct) stop() { l.stopOnce.Do(l.doStop) }

func (l *loadAct) doStop() {
	l.quiet.Store(true)
	if l.sim != nil {
		l.sim.Stop()
	} else if l.metricsLn != nil {
		_ = l.metricsLn.Close()
	}
	if l.gate != nil {
		_ = l.gate.Close()
	}
	l.gen.Stop()
}

// previewOnLoad is act 4: examples/podinfo-bluegreen-load, a blue/green preview only its
// header reaches, which no user sends; its analysis needs minRequests, so it passes only on
// the requests ramp's load generator sends it, started by the Rollout's load gate.
func (s *story) previewOnLoad(ctx context.Context) error {
	l := s.load
	l.logf = s.p.say
	actStart := time.Now()
	ro := l.ex.Rollout.DeepCopy()
	lns := ro.Namespace
	s.res.Load.Namespace = lns
	gate, metric := &ro.Spec.Gates[0], &ro.Spec.Analysis.Metrics[0]
	header := gate.Metadata["header"]
	s.p.say("")
	s.p.say("== 4. A blue/green preview nobody reaches, judged on the load ramp's load generator sends: kubectl apply -k %s", harness.LoadExampleDir)
	s.p.say("Rollout %s/%s: blue/green; only requests with %q reach the preview, and no user sends it. %s %s (the platform's %s) needs %d requests per window (minRequests):",
		lns, ro.Name, header, metric.Name, thresholdText(metric.ThresholdRange), metric.TemplateRef.Name, ptr.Deref(metric.MinRequests, 0))
	s.p.say("its gate %q (%s, onFailure %s) asks ramp's load generator for %s requests/s with that header once the preview is routed",
		gate.Name, gate.At, gate.OnFailure, gate.Metadata["rps"])
	// As the e2e load test does: only the interval and window are shortened; the gate's URL is
	// the in-process load generator's.
	window := previewWindow(s.o.Interval)
	s.p.say("shortened for the demo, as the e2e load test does: analysis interval %s → %s, window %s → %s (the gate's %s requests/s fill it with enough requests that 8%% errors cannot pass by chance); the gate's URL %s → %s (the load generator runs in this process; the manager allows it as the example asks for ramp-load's)",
		durationText(ro.Spec.Analysis.Interval), shortDuration(s.o.Interval), durationText(metric.Window), shortDuration(window), gate.Metadata["rps"], gate.URL, l.gateURL+"/")
	ro.Spec.Analysis.Interval = &metav1.Duration{Duration: s.o.Interval}
	for i := range ro.Spec.Analysis.Metrics {
		ro.Spec.Analysis.Metrics[i].Window = &metav1.Duration{Duration: window}
	}
	for i := range ro.Spec.Gates {
		ro.Spec.Gates[i].URL = l.gateURL + "/"
	}
	var applied []string
	for _, u := range l.ex.Objects {
		var o client.Object = u.DeepCopy()
		if u.GetKind() == "Rollout" {
			o = ro
		}
		if err := s.c.Create(ctx, o); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		applied = append(applied, u.GetKind()+"/"+u.GetName())
	}
	s.p.say("applied %s (ramp-load's pod is a KWOK fake: its arguments run in this process)", strings.Join(applied, ", "))
	if _, err := s.watchIn(ctx, lns, "bg-v1", func(r *rampv1.Rollout) bool { return r.Status.Phase == rampv1.PhaseIdle }); err != nil {
		return err
	}

	d := &appsv1.Deployment{}
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: lns, Name: appName}, d); err != nil {
		return err
	}
	model, err := s.model.With(Image("v2"), previewBehaviour)
	if err != nil {
		return err
	}
	sim, err := meshsim.New(meshsim.Options{
		Client: s.c, Namespace: lns, Service: appName, Model: model, Seed: 2,
		XDSAddr: s.xdsAddr, MetricsListener: l.metricsLn,
	})
	if err != nil {
		return err
	}
	l.sim = sim
	if err := sim.Start(ctx); err != nil {
		return err
	}
	// Users start once istiod serves the Rollout's routes over all of v1's pods: before, the
	// client's sidecar answers 503s.
	replicas := int(ptr.Deref(d.Spec.Replicas, 1))
	if err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
		r := sim.Router()
		return r.VirtualService() == lns+"/"+appName && len(r.Endpoints()) == replicas, nil
	}); err != nil {
		return fmt.Errorf("the mesh simulator of %s never routed by its VirtualService over %d pods: %w", lns, replicas, err)
	}
	if err := sim.SetTraffic(meshsim.Traffic{RPS: previewUsersRPS}); err != nil {
		return err
	}
	l.gen.ServeSidecar(sim)
	s.p.say("mesh simulator for %s: users send %d requests/s to %s, none with the preview header", lns, previewUsersRPS, appName)
	s.p.say("ramp's load generator: `manager %s` in-process (its gate endpoint on %s instead of the Deployment's port), sending through that simulator as through its sidecar (its HTTP proxy)",
		strings.Join(l.ex.LoadArgs, " "), l.gateURL)

	s.p.say("Git: commit v2 (image %s) in %s: healthy, no errors", Image("v2"), lns)
	if err := s.setImageIn(ctx, lns, "v2"); err != nil {
		return err
	}
	released := time.Now()
	started := false
	end, err := s.watchIn(ctx, lns, LoadRelease, func(r *rampv1.Rollout) bool {
		started = started || r.Status.CanaryRevision != ""
		return started && (r.Status.Phase == rampv1.PhaseFailed || r.Status.Phase == rampv1.PhaseSucceeded)
	})
	if err != nil {
		return err
	}
	st := sim.Stats(time.Since(released) + time.Second)
	c := l.gen.Counts(lns + "/" + ro.Name + "/" + gate.Name)
	res := &s.res.Load
	res.Sent, res.ByCode = c.Sent, c.ByCode
	res.PreviewRoute = st.Sum(func(k meshsim.Key) bool { return k.Reporter == meshsim.ReporterSource && k.Route == istio.RouteCanary })
	res.ToPreview = st.Sum(func(k meshsim.Key) bool {
		return k.Reporter == meshsim.ReporterSource && k.Route == istio.RouteCanary && k.Subset == istio.CanarySubset
	})
	res.Users = st.Total(meshsim.ReporterSource) - res.PreviewRoute
	s.outcome(LoadRelease, end.Status.Phase)
	if end.Status.Phase != rampv1.PhaseSucceeded {
		return fmt.Errorf("%s was not promoted: %s", LoadRelease, end.Status.Message)
	}
	s.p.say("%s promoted on the load alone:", LoadRelease)
	s.p.say("  the preview route (%s) got %d requests, %d of them to v2; ramp's load generator sent %d (answers by status %v)",
		header, res.PreviewRoute, res.ToPreview, res.Sent, res.ByCode)
	s.p.say("  users sent %d requests, none with the header: the preview's requests all came from the load generator", res.Users)
	s.p.say("  analysis rounds: %s", roundsText(res.Rounds))
	s.p.say("  without the gate every round is Inconclusive for want of traffic, and the rollout rolls back (e2e: TestBlueGreenPreviewWithoutLoadRollsBack)")
	s.p.say("act 4 took %s", time.Since(actStart).Round(100*time.Millisecond))
	if res.PreviewRoute == 0 || res.ToPreview != res.PreviewRoute || res.PreviewRoute > res.Sent {
		return errors.New("the preview's requests did not all come from the load generator")
	}
	return nil
}

// roundsText renders analysis rounds as "error-rate no data Inconclusive, error-rate 0.1 Passed".
func roundsText(rs []Round) string {
	var parts []string
	for _, r := range rs {
		v := "no data"
		if !math.IsNaN(r.Value) {
			v = fmt.Sprintf("%.3g", r.Value)
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", r.Metric, v, r.Verdict))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func thresholdText(t *rampv1.ThresholdRange) string {
	switch {
	case t == nil:
		return ""
	case t.Max != nil && t.Min != nil:
		return fmt.Sprintf("in [%g, %g]", *t.Min, *t.Max)
	case t.Max != nil:
		return fmt.Sprintf("<= %g", *t.Max)
	case t.Min != nil:
		return fmt.Sprintf(">= %g", *t.Min)
	}
	return ""
}

// durationText writes 1m, not 1m0s.
func durationText(d *metav1.Duration) string {
	if d == nil {
		return "(default)"
	}
	return shortDuration(d.Duration)
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
