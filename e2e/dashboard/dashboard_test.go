package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/plugin"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Images and their behaviour in the simulated mesh: both healthy.
const (
	imgV1 = "ghcr.io/stefanprodan/podinfo:6.7.0"
	imgV2 = "ghcr.io/stefanprodan/podinfo:6.7.1"
)

// TestDashboard runs kubectl ramp dashboard -A in-process and drives it with headless
// Chromium during two real rollouts:
//   - web walks 10% → 40% (held until promoted) → 100%, analysed on the mesh simulator's
//     traffic: the list shows its weight move without a reload, its page charts the weight and
//     the analysis rounds, and its promote button promotes it as kubectl ramp promote does;
//   - api holds at 20% until aborted: its abort button asks first (cancel changes nothing),
//     then aborts it as kubectl ramp abort does.
func TestDashboard(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	start := time.Now()
	web := deploy(t, "shop", "web", func(ro *rampv1.Rollout) {
		interval, window := metav1.Duration{Duration: 2 * time.Second}, metav1.Duration{Duration: 4 * time.Second}
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 40, Pause: &rampv1.Pause{}}, {SetWeight: 100}}
		ro.Spec.Analysis = &rampv1.AnalysisSpec{
			Interval: &interval, FailureLimit: ptr.To[int32](2), InconclusiveLimit: ptr.To[int32](5),
			Prometheus: rampv1.PrometheusSpec{Address: prom.URL},
			Metrics: []rampv1.Metric{
				{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, Window: &window, MinRequests: ptr.To[int32](10),
					ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(5.0)}},
				{Name: "latency-p99", Builtin: rampv1.BuiltinLatencyP99, Window: &window, MinRequests: ptr.To[int32](10),
					ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(500.0)}},
			},
		}
	})
	api := deploy(t, "payments", "api", func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 20, Pause: &rampv1.Pause{}}, {SetWeight: 100}}
	})
	sendTraffic(t, web)
	t.Logf("apps ready after %s", time.Since(start).Round(time.Millisecond))

	url := startDashboard(t)
	b := startBrowser(t)
	b.do("open the dashboard", chromedp.Navigate(url))
	b.waitFor("both rollouts listed, Idle", fmt.Sprintf(`[%q, %q].every((k) => {
		const tr = document.querySelector('tr[data-rollout="' + k + '"]');
		return tr && tr.querySelector('td.phase').textContent === 'Idle';
	})`, web.key(), api.key()))
	// Record every value the page shows, from now on, of what the test follows. The page is
	// never reloaded: the record (and the marker) would be lost.
	b.eval(fmt.Sprintf(`window.loadedOnce = true; window.seen = {}; window.follow = {
		web: 'tr[data-rollout="%s"] td.weight .wtext', api: 'tr[data-rollout="%s"] td.weight .wtext',
		weight: '#weight', phase: '.title .badge'};
	const record = () => { for (const [k, sel] of Object.entries(window.follow)) {
		const el = document.querySelector(sel); if (!el) continue;
		const s = (window.seen[k] = window.seen[k] || []);
		if (s[s.length - 1] !== el.textContent) s.push(el.textContent);
	} };
	new MutationObserver(record).observe(document.getElementById('view'), {childList: true, subtree: true, characterData: true});
	record(); true`, web.key(), api.key()))

	web.release(imgV2)
	api.release(imgV2)
	b.waitFor("web at 40% and api at 20% in the list", `(window.seen.web || []).includes('40%') && (window.seen.api || []).includes('20%')`)
	b.expectSeen("web", "0%", "10%", "40%")
	b.expectSeen("api", "0%", "20%")

	// web's page: where it is, its timeline and its charts.
	b.click("web's link", fmt.Sprintf(`tr[data-rollout="%s"] td.name a`, web.key()))
	b.waitFor("web's page at step 2/3, 40%", `document.querySelector('#weight')?.textContent === '40%' &&
		document.querySelector('#steps li.current')?.dataset.label === '2/3' &&
		document.querySelector('#position')?.textContent === 'step 2/3'`)
	b.waitFor("the weight chart and three analysis rounds of each metric, charted against the threshold", `
		+(document.querySelector('#weight-chart')?.dataset.points ?? 0) >= 3 &&
		['error-rate', 'latency-p99'].every((m) => {
			const c = document.querySelector('svg.metric-chart[data-metric="' + m + '"]');
			return c && c.querySelectorAll('circle.sample.Passed:not(.novalue)').length >= 3 && c.querySelector('line.threshold[data-bound="max"]');
		})`)
	if p := screenshotPath(); p != "" {
		// The README's picture: a few more rounds on the charts.
		b.waitFor("six analysis rounds", `document.querySelectorAll('svg.metric-chart[data-metric="error-rate"] circle.sample').length >= 6`)
		if !filepath.IsAbs(p) {
			p = filepath.Join("..", "..", p) // relative to the repository root; the test runs in e2e/dashboard
		}
		b.screenshot(p)
	}
	b.click("promote", `button[data-action="promote"]`)
	answer := b.waitText("promote's answer", `#outcome[data-action="promote"]`)
	if !strings.Contains(answer, "promoted: step 2/3 → 3/3") {
		t.Errorf("promote answered %q, want kubectl ramp promote's 'promoted: step 2/3 → 3/3'", answer)
	}
	b.waitFor("web at 100% after promote", `(window.seen.weight || []).includes('100%')`)
	b.expectSeen("weight", "40%", "100%")
	web.acknowledged(rampv1.AnnotationPromote, func(h rampv1.HandledRequests) string { return h.Promote })

	// api's page: abort asks first.
	b.click("back to the list", `a.back`)
	b.waitFor("the list", `document.querySelector('#rollouts') !== null`)
	b.click("api's link", fmt.Sprintf(`tr[data-rollout="%s"] td.name a`, api.key()))
	b.waitFor("api's page at 20%", `document.querySelector('#title')?.textContent === '`+api.key()+`' && document.querySelector('#weight')?.textContent === '20%'`)
	b.click("abort", `button[data-action="abort"]`)
	b.waitFor("the confirmation", `document.getElementById('confirm').open`)
	b.click("cancel", `#confirm-cancel`)
	b.waitFor("the confirmation closed", `!document.getElementById('confirm').open`)
	if ro := api.get(); ro.Annotations[rampv1.AnnotationAbort] != "" || ro.Status.Phase != rampv1.PhasePaused && ro.Status.Phase != rampv1.PhaseProgressing {
		t.Fatalf("cancelled abort changed the rollout: annotation %q, phase %s", ro.Annotations[rampv1.AnnotationAbort], ro.Status.Phase)
	}
	b.click("abort", `button[data-action="abort"]`)
	b.waitFor("the confirmation", `document.getElementById('confirm').open`)
	b.click("confirm", `#confirm-ok`)
	answer = b.waitText("abort's answer", `#outcome[data-action="abort"]`)
	if !strings.Contains(answer, "abort acknowledged") {
		t.Errorf("abort answered %q, want kubectl ramp abort's 'abort acknowledged: ...'", answer)
	}
	b.waitFor("api rolled back on the page", `['RollingBack', 'Failed'].includes(document.querySelector('.title .badge')?.textContent) &&
		document.querySelector('#weight')?.textContent === '0%'`)
	api.acknowledged(rampv1.AnnotationAbort, func(h rampv1.HandledRequests) string { return h.Abort })
	if ro := api.get(); ro.Status.Phase != rampv1.PhaseRollingBack && ro.Status.Phase != rampv1.PhaseFailed {
		t.Errorf("api after abort: phase %s, want RollingBack or Failed", ro.Status.Phase)
	}
	if !b.eval(`window.loadedOnce === true`) {
		t.Error("the page was reloaded: every change must come over its event stream")
	}
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}

// app is a Deployment with its Service and Rollout in a namespace of its own.
type app struct {
	t        *testing.T
	ns, name string
}

func (a *app) key() string { return a.ns + "/" + a.name }

// screenshotPath is where RAMP_DASHBOARD_SCREENSHOT asks for the README's picture; "" when
// the run takes none.
func screenshotPath() string { return os.Getenv("RAMP_DASHBOARD_SCREENSHOT") }

// deploy creates the Deployment name running imgV1 (3 replicas), its Service and a canary
// Rollout edited by edit, and returns once ramp has adopted it. Its namespace is a fresh one
// (t-…); for the README's picture it is readableNS, which only the screenshot run, alone on
// the cluster it starts, creates (an existing one fails the test: nothing is taken over).
func deploy(t *testing.T, readableNS, name string, edit func(*rampv1.Rollout)) *app {
	t.Helper()
	ns := ""
	if screenshotPath() == "" {
		ns = env.Namespace(t)
	} else {
		ns = namedNamespace(t, readableNS)
	}
	a := &app{t: t, ns: ns, name: name}
	env.App(t, a.ns, name, imgV1, 3)
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: name},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy:  rampv1.Strategy{Canary: &rampv1.CanaryStrategy{}},
		},
	}
	edit(ro)
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	err := testenv.WaitFor(context.Background(), time.Minute, func(ctx context.Context) (bool, error) {
		return a.get().Status.Phase == rampv1.PhaseIdle, nil
	})
	if err != nil {
		t.Fatalf("%s adopted: %v", a.key(), err)
	}
	return a
}

// namedNamespace creates the namespace name, deleted when the test ends.
func namedNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s for the screenshot: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.Client.Delete(ctx, ns) // best effort: the cluster may be stopping too
	})
	return name
}

func (a *app) get() *rampv1.Rollout {
	a.t.Helper()
	ro := &rampv1.Rollout{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: a.ns, Name: a.name}, ro); err != nil {
		a.t.Fatal(err)
	}
	return ro
}

// release commits a new image: ramp starts a rollout.
func (a *app) release(image string) {
	a.t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: a.name}, d); err != nil {
		a.t.Fatal(err)
	}
	base := d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = image
	if err := env.Client.Patch(ctx, d, client.MergeFrom(base)); err != nil {
		a.t.Fatal(err)
	}
}

// acknowledged checks that the Rollout carries the request annotation as kubectl ramp writes
// it (owned by its field manager through server-side apply) and that the controller
// acknowledged that token.
func (a *app) acknowledged(annotation string, handled func(rampv1.HandledRequests) string) {
	a.t.Helper()
	ro := a.get()
	token := ro.Annotations[annotation]
	if token == "" {
		a.t.Fatalf("%s: no %s annotation", a.key(), annotation)
	}
	if got := handled(ro.Status.HandledRequests); got != token {
		a.t.Errorf("%s: the controller acknowledged %q, not the request %s=%s", a.key(), got, annotation, token)
	}
	owned := false
	for _, mf := range ro.ManagedFields {
		if mf.Manager == plugin.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply && mf.FieldsV1 != nil &&
			bytes.Contains(mf.FieldsV1.Raw, []byte(`"f:`+annotation+`"`)) {
			owned = true
		}
	}
	if !owned {
		a.t.Errorf("%s: %s is not owned by field manager %s (server-side apply): %v", a.key(), annotation, plugin.FieldManager, ro.ManagedFields)
	}
}

// sendTraffic starts the mesh simulator sending a's Service traffic, routed as istiod tells a
// sidecar, with Istio's telemetry for Prometheus (ramp's analysis reads it).
func sendTraffic(t *testing.T, a *app) {
	t.Helper()
	// 0.2% errors: a few hundred requests per window keep the error rate far below its 5% limit.
	healthy := meshsim.Behaviour{ErrorRate: 0.002, LatencyP50: 20 * time.Millisecond, LatencyP99: 120 * time.Millisecond, ErrorCode: 500}
	sim, err := meshsim.New(meshsim.Options{
		Client: env.Client, Namespace: a.ns, Service: a.name, Seed: 1, XDSAddr: env.Istiod.GRPCAddr,
		Model:           meshsim.MustModel(meshsim.DefaultBehaviour, map[string]meshsim.Behaviour{imgV1: healthy, imgV2: healthy}),
		Traffic:         meshsim.Traffic{RPS: 200},
		MetricsListener: metricsLn,
		Refresh:         300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	if err := sim.Start(ctx); err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); sim.Stop() })
}

// startDashboard runs kubectl ramp dashboard -A in-process until the test ends and returns the
// URL it printed.
func startDashboard(t *testing.T) string {
	t.Helper()
	out, w := io.Pipe()
	cmd := plugin.NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: w, ErrOut: logWriter{t}})
	cmd.SetArgs([]string{"dashboard", "-A", "--address", "127.0.0.1:0", "--kubeconfig", env.Kubeconfig})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		w.Close()
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("kubectl ramp dashboard: %v", err)
		}
	})
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("kubectl ramp dashboard printed no URL: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+/\?token=[0-9a-f]+`).FindString(line)
	if url == "" {
		t.Fatalf("kubectl ramp dashboard printed %q, want a URL with a token", line)
	}
	t.Logf("kubectl ramp dashboard: %s", strings.TrimSpace(line))
	return url
}

// logWriter logs what the dashboard writes to stderr (the buttons' requests, watch errors).
type logWriter struct{ t *testing.T }

func (l logWriter) Write(p []byte) (int, error) {
	l.t.Logf("dashboard: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// browser is a headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	n   int // screenshots taken
	dir string
	// thrown are the page's uncaught JavaScript exceptions.
	thrown []string
}

func (b *browser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.thrown...)
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	// The flags that work on a closed network: no background requests, updates or sync.
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	// The first run starts the browser, which lives as long as ctx: no timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting %s: %v", chromium, err)
	}
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Runs before the browser stops (cleanups run last-registered first).
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot("")
		}
		if thrown := b.exceptions(); len(thrown) > 0 {
			t.Errorf("the page threw:\n%s", strings.Join(thrown, "\n"))
		}
	})
	go func() {
		for ev, err := range chromedp.Events(ctx, cdpruntime.ExceptionThrown) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.thrown = append(b.thrown, (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs actions, with a minute for all of them.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// click clicks an element with the mouse. The page redraws on every event from the server, so
// the node found may be replaced before the click lands: then it finds the new one.
func (b *browser) click(what, sel string) {
	b.t.Helper()
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		err = chromedp.Do(ctx, chromedp.Click(sel))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "No node with given id") && !strings.Contains(err.Error(), "box model") {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("clicking %s (%s): %v", what, sel, err)
	}
}

// eval evaluates a JavaScript expression to a boolean.
func (b *browser) eval(js string) bool {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor waits until the page makes the JavaScript expression true: it re-evaluates it on
// every change of the page's DOM, so it returns once the server's events have redrawn the
// page so.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	start := time.Now()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
		b.t.Fatalf("%s: not on the page within 2m: %v\nexceptions: %q\npage: %s", what, err, b.exceptions(), b.pageText())
	}
	b.t.Logf("page: %s (after %s)", what, time.Since(start).Round(time.Millisecond))
}

// waitText waits for an element and returns its text, read in the same evaluation (the page
// redraws its elements on every event, so a node found first may be gone when read).
func (b *browser) waitText(what, sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Poll[string](fmt.Sprintf(`document.querySelector(%q)?.textContent`, sel),
		chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		b.t.Fatalf("%s: not on the page within 2m: %v\nexceptions: %q\npage: %s", what, err, b.exceptions(), b.pageText())
	}
	b.t.Logf("page: %s: %s", what, s)
	return s
}

// expectSeen checks that the page showed want, in this order, among what it showed for key.
func (b *browser) expectSeen(key string, want ...string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	seen, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`window.seen[%q] || []`, key)))
	if err != nil {
		b.t.Fatalf("reading what the page showed: %v", err)
	}
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i < len(want) {
		b.t.Errorf("the page showed %s as %q: want %q in this order", key, seen, want)
	}
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return err.Error()
	}
	return s
}

// screenshot saves a PNG of the whole page to path, or, when path is "", to a directory it
// logs.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	if path == "" {
		if b.dir == "" {
			if b.dir, err = os.MkdirTemp("", "ramp-dashboard-"); err != nil {
				b.t.Logf("screenshot: %v", err)
				return
			}
		}
		b.n++
		path = filepath.Join(b.dir, fmt.Sprintf("failure-%d.png", b.n))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot of the page: %s", path)
}
