package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/demo"
)

// TestStory runs the demo end to end with a short analysis interval and checks its outcome and
// output: v2 walks 5 → 25 → 100 on healthy metrics and is promoted; v3's 8% errors are caught
// at the first step and rolled back; in act 4, examples/podinfo-bluegreen-load's blue/green
// preview, which no user reaches, is promoted on the load generator's requests.
func TestStory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: a local cluster, Prometheus and the mesh simulator")
	}
	if _, err := prometheustest.Binary(); err != nil {
		if os.Getenv("RAMP_REQUIRE_PROMETHEUS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// With --keep, as people run it: the story, then everything left running until ctx ends.
	out := &keepWriter{kept: make(chan struct{})}
	picture := filepath.Join(t.TempDir(), "story.svg")
	type result struct {
		res *demo.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := demo.Run(ctx, out, demo.Options{Interval: 3 * time.Second, Replicas: 3, Picture: picture, Keep: true})
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
		t.Log("\n" + out.String())
		t.Fatalf("the story ended before --keep's wait: %v", r.err)
	case <-out.kept:
		checkKeep(ctx, t, out.String())
		cancel()
		r = <-done
	}
	t.Log("\n" + out.String())
	res, err := r.res, r.err
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome["v2"] != rampv1.PhaseSucceeded || res.Outcome["v3"] != rampv1.PhaseFailed {
		t.Fatalf("outcomes %v: want v2 Succeeded, v3 Failed", res.Outcome)
	}
	if got := weights(res.Rows, "v2"); got != "0 5 25 100 0" {
		t.Errorf("v2 weights %q, want 0 5 25 100 0", got)
	}
	if got := weights(res.Rows, "v3"); got != "0 5 0" {
		t.Errorf("v3 weights %q, want 0 5 0 (rolled back at the first step)", got)
	}
	if last := lastRow(res.Rows, "v3"); !strings.Contains(last.Metrics, "error-rate") || !strings.Contains(last.Metrics, "Failed") {
		t.Errorf("the rollback must show the failing error rate: %q", last.Metrics)
	}
	checkLoad(t, res)
	for _, want := range []string{"Summary", "Platform team: ClusterMetricTemplates istio-error-rate and istio-latency-p99", "VirtualService stable  95% / canary   5%", "analysis: error-rate", "v3 rolled back automatically",
		"== 4. A blue/green preview nobody reaches", "load generator: load podinfo-bluegreen-load/podinfo/load: 20 requests/s", demo.LoadRelease + " promoted on the load alone",
		"istiod validated the routes", "istiod served the routes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkPicture(t, res, picture)
	// Every query of the Grafana board found data in the story's Prometheus (Run fails
	// otherwise); all of them ran.
	if len(res.Board) < 15 {
		t.Errorf("the Grafana board check ran %d queries: %v", len(res.Board), res.Board)
	}
}

// keepWriter collects the demo's output and closes kept once --keep's printout is complete.
type keepWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	kept chan struct{}
	once sync.Once
}

func (w *keepWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if s := w.buf.String(); strings.Contains(s, "--keep:") && strings.Contains(s, "  Prometheus: ") {
		w.once.Do(func() { close(w.kept) })
	}
	return n, err
}

func (w *keepWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// checkKeep: --keep leaves act 4's mesh simulator and load generator running, so its example
// works there: a release of v3 (8% errors) in the example's namespace, as the printout
// suggests, calls the load gate again and is rolled back on the load's requests (its
// error-rate rounds fail on values: the preview, which only the load reaches, had enough
// requests).
func checkKeep(ctx context.Context, t *testing.T, out string) {
	t.Helper()
	const lns = "podinfo-bluegreen-load"
	for _, want := range []string{"both mesh simulators and ramp's load generator", "kubectl -n " + lns + " set image deploy/podinfo podinfo=" + demo.Image("v3")} {
		if !strings.Contains(out, want) {
			t.Errorf("--keep's printout lacks %q", want)
		}
	}
	kubeconfig := ""
	for _, l := range strings.Split(out, "\n") {
		if _, v, ok := strings.Cut(l, "export KUBECONFIG="); ok {
			kubeconfig = strings.TrimSpace(v)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("--keep's kubeconfig %q: %v", kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := rampv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w, err := c.Watch(ctx, &rampv1.RolloutList{}, client.InNamespace(lns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: lns, Name: "podinfo"}, d); err != nil {
		t.Fatal(err)
	}
	base := d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = demo.Image("v3")
	if err := c.Patch(ctx, d, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	started := false
	for ev := range w.ResultChan() {
		ro, ok := ev.Object.(*rampv1.Rollout)
		if !ok {
			continue
		}
		st := ro.Status
		started = started || st.Phase == rampv1.PhaseProgressing
		if !started || (st.Phase != rampv1.PhaseFailed && st.Phase != rampv1.PhaseSucceeded) {
			continue
		}
		if st.Phase != rampv1.PhaseFailed || len(st.LastAnalysis) != 1 || st.LastAnalysis[0].Verdict != rampv1.VerdictFailed || st.LastAnalysis[0].Value == "" {
			t.Errorf("--keep: v3 in %s ended %s (%s), analysis %+v; want rolled back on a failing error rate", lns, st.Phase, st.Message, st.LastAnalysis)
			return
		}
		t.Logf("--keep: v3 in %s rolled back: %s", lns, st.Message)
		return
	}
	t.Errorf("--keep: v3's rollout in %s did not end: %v", lns, ctx.Err())
}

// checkLoad: act 4's blue/green preview, which no user reaches, was promoted on the load
// generator's requests: every request on the preview route came from it (no more than it
// sent), all reached the new version, enough for minRequests, and the rounds passed on them.
func checkLoad(t *testing.T, res *demo.Result) {
	t.Helper()
	l := res.Load
	if res.Outcome[demo.LoadRelease] != rampv1.PhaseSucceeded {
		t.Errorf("act 4: %s ended %q, want Succeeded", demo.LoadRelease, res.Outcome[demo.LoadRelease])
	}
	if got := weights(res.Rows, demo.LoadRelease); got != "0 100 0" {
		t.Errorf("act 4: weights %q, want 0 100 0 (the preview, then the flip)", got)
	}
	if l.Sent < 50 || l.ByCode[http.StatusOK] == 0 {
		t.Errorf("act 4: the load generator sent %d requests (by status %v), want at least minRequests (50) answered", l.Sent, l.ByCode)
	}
	if l.PreviewRoute == 0 || l.ToPreview != l.PreviewRoute || l.PreviewRoute > l.Sent {
		t.Errorf("act 4: preview route %d requests, %d to the new version; the load generator sent %d", l.PreviewRoute, l.ToPreview, l.Sent)
	}
	if l.Users == 0 {
		t.Errorf("act 4: the users sent no request: the preview's isolation shows nothing")
	}
	if n := len(l.Rounds); n == 0 || l.Rounds[n-1].Verdict != rampv1.VerdictPassed || math.IsNaN(l.Rounds[n-1].Value) {
		t.Errorf("act 4: analysis rounds %+v, want the last Passed on a value", l.Rounds)
	}
}

// checkPicture: the picture shows what happened, from Prometheus's own record: v3's canary
// answered errors above the threshold and its round failed, v2's passed.
func checkPicture(t *testing.T, res *demo.Result, path string) {
	t.Helper()
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the picture was not written: %v", err)
	}
	for _, want := range []string{"v2 → Succeeded", "v3 → Failed", `data-verdict="Failed"`, `data-verdict="Passed"`, `data-track="canary"`, `data-track="stable"`} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the picture lacks %s", want)
		}
	}
	pic := res.Picture
	var v3 time.Duration
	for _, r := range pic.Releases {
		if r.Name == "v3" {
			v3 = r.At
		}
	}
	failed, worst := false, 0.0
	for _, r := range pic.Rounds {
		failed = failed || (r.At > v3 && r.Metric == demo.ErrorRateMetric && r.Verdict == rampv1.VerdictFailed)
	}
	for _, pt := range pic.ErrorRate["canary"] {
		if pt.At > v3 {
			worst = max(worst, pt.V)
		}
	}
	if !failed || worst <= pic.Thresholds[demo.ErrorRateMetric] {
		t.Errorf("the picture does not show v3 failing: a failed error-rate round %t, worst canary error rate %.2f%% (v3 at %s; canary error rate %v)", failed, worst, v3, pic.ErrorRate["canary"])
	}
}

// lastRow is the last row of release.
func lastRow(rows []demo.Row, release string) demo.Row {
	var last demo.Row
	for _, r := range rows {
		if r.Release == release {
			last = r
		}
	}
	return last
}

// weights lists the distinct consecutive canary weights a release went through.
func weights(rows []demo.Row, release string) string {
	var ws []int32
	for _, r := range rows {
		if r.Release == release && (len(ws) == 0 || ws[len(ws)-1] != r.Weight) {
			ws = append(ws, r.Weight)
		}
	}
	return strings.Trim(fmt.Sprint(ws), "[]")
}
