package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// gateCall is a call a gate server received: the body ramp sent, and what it answered.
type gateCall struct {
	body rampv1.GateRequest
	code int
}

func (c gateCall) String() string {
	b := c.body
	return fmt.Sprintf("%s/%s step %d weight %d %s → %d", b.Gate, b.At, b.Step, b.Weight, b.Phase, c.code)
}

// gateServer is one scenario's gate endpoint, under gateBase/<namespace>/<gate>: it records
// every call's JSON body, in order, and answers what answer says (200 when nil).
type gateServer struct {
	t      *testing.T
	ns     string
	mu     sync.Mutex
	calls  []gateCall
	answer func(*rampv1.GateRequest) int
	called chan struct{} // signalled (without blocking) at each call
}

func newGateServer(t *testing.T, ns string) *gateServer {
	g := &gateServer{t: t, ns: ns, called: make(chan struct{}, 1)}
	gateMux.HandleFunc("/allowed/"+ns+"/", func(w http.ResponseWriter, r *http.Request) {
		var b rampv1.GateRequest
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			t.Errorf("gate %s: undecodable body: %v", r.URL.Path, err)
		}
		if want := "/allowed/" + ns + "/" + b.Gate; r.URL.Path != want || r.Method != http.MethodPost {
			t.Errorf("gate %q called with %s %s", b.Gate, r.Method, r.URL.Path)
		}
		g.mu.Lock()
		code := http.StatusOK
		if g.answer != nil {
			code = g.answer(&b)
		}
		g.calls = append(g.calls, gateCall{body: b, code: code})
		g.mu.Unlock()
		select {
		case g.called <- struct{}{}:
		default:
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("secret-answer-body")) // must reach no status, event or message
	})
	return g
}

func (g *gateServer) url(gate string) string { return gateBase + "/" + g.ns + "/" + gate }

func (g *gateServer) setAnswer(f func(*rampv1.GateRequest) int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answer = f
}

func (g *gateServer) recorded() []gateCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// waitCalls waits for a call satisfying cond, woken by the calls themselves.
func (g *gateServer) waitCalls(what string, timeout time.Duration, cond func([]gateCall) bool) {
	g.t.Helper()
	deadline := time.After(timeout)
	for !cond(g.recorded()) {
		select {
		case <-g.called:
		case <-deadline:
			g.t.Fatalf("%s: not within %s; calls: %v", what, timeout, g.recorded())
		}
	}
}

// lenientErrorRate raises the error-rate threshold to 5%: at 10% of the simulated traffic a
// 6 s window holds about 100 requests, and one of v2's rare 500s (0.1%) would be 1%. These
// tests are about gates, not that margin.
func lenientErrorRate(ro *rampv1.Rollout) {
	for i := range ro.Spec.Analysis.Metrics {
		if m := &ro.Spec.Analysis.Metrics[i]; m.Builtin == rampv1.BuiltinErrorRate {
			m.ThresholdRange.Max = ptr.To(5.0)
		}
	}
}

// gate is a gate of the scenario's server, quick to retry and to call again.
func (g *gateServer) gate(name, at, onFailure string) rampv1.Gate {
	return rampv1.Gate{Name: name, At: at, URL: g.url(name), OnFailure: onFailure, Retries: ptr.To[int32](0),
		Timeout: &metav1.Duration{Duration: 5 * time.Second}, Interval: &metav1.Duration{Duration: time.Second},
		Metadata: map[string]string{"suite": "e2e"}}
}

// point is the part of a call a sequence is asserted on.
type point struct {
	gate, at     string
	step, weight int32
	phase        string
}

func points(calls []gateCall) []point {
	var out []point
	for _, c := range calls {
		b := c.body
		p := point{b.Gate, b.At, b.Step, b.Weight, b.Phase}
		if len(out) == 0 || out[len(out)-1] != p { // a holding gate called again
			out = append(out, p)
		}
	}
	return out
}

// checkBodies checks what every call says about the rollout: its name under both keys, the
// namespace, the metadata, and the revisions: stable's (recorded before the release) and the
// release's, which AfterRollout names as the one promoted (then stable) or rolled back.
func checkBodies(t *testing.T, calls []gateCall, ns, stable, release string, promoted bool) {
	t.Helper()
	for _, c := range calls {
		b := c.body
		if b.Rollout != appName || b.Name != appName || b.Namespace != ns || b.Metadata["suite"] != "e2e" {
			t.Errorf("call %v: body %+v", c, b)
		}
		wantStable, wantSteps := stable, int32(3)
		if b.At == rampv1.GateAfterRollout && promoted {
			// Promoted: outside the steps. Rolled back: the step it failed at, of 3.
			wantStable, wantSteps = release, 0
		}
		if b.StableRevision != wantStable || b.CanaryRevision != release || b.Steps != wantSteps {
			t.Errorf("call %v: revisions stable %q canary %q, steps %d; want %q, %q, %d", c, b.StableRevision, b.CanaryRevision, b.Steps, wantStable, release, wantSteps)
		}
	}
}

// noAnswerCopied checks that no gate's answer body reached the Rollout's status or events.
func noAnswerCopied(t *testing.T, a *app) {
	t.Helper()
	for _, ro := range a.tl.Rollouts(appName) {
		if b, _ := json.Marshal(ro.Status); strings.Contains(string(b), "secret-answer-body") {
			t.Errorf("a gate's answer is in status: %s", b)
		}
	}
}

// Gates at every point of a canary rollout, on real Prometheus analysis and the mesh
// simulator: BeforeRollout, EachStep (held at step 2 by a 503 while the analysis rounds keep
// passing, until the gate answers 200), BeforePromotion and AfterRollout, in that order, each
// body naming the rollout, its revisions, step, weight and phase.
func TestGatesAlongARollout(t *testing.T) {
	t.Parallel()
	var g *gateServer
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			g = newGateServer(t, ro.Namespace)
			lenientErrorRate(ro)
			ro.Spec.Gates = []rampv1.Gate{
				g.gate("pre", rampv1.GateBeforeRollout, rampv1.GateRollBack),
				g.gate("step", rampv1.GateEachStep, rampv1.GateHold),
				g.gate("promote", rampv1.GateBeforePromotion, rampv1.GateRollBack),
				g.gate("report", rampv1.GateAfterRollout, ""),
			}
		},
	})
	stable := a.get().Status.StableRevision
	// Step 2's gate answers 503 until the test has seen it hold the rollout.
	hold := make(chan struct{})
	g.setAnswer(func(b *rampv1.GateRequest) int {
		select {
		case <-hold:
		default:
			if b.Gate == "step" && b.Step == 2 {
				return http.StatusServiceUnavailable
			}
		}
		return http.StatusOK
	})
	a.setImage(imgV2)

	// Held at step 2: the status says so, the weight stays at 50 and analysis rounds keep
	// running (and passing) on Prometheus's data.
	var rounds int
	held := a.waitPhase("held by gate step at step 2 through two analysis rounds", 2*time.Minute, func(ro *rampv1.Rollout) bool {
		if gs := ro.Status.Gates; gs == nil || gs.At != rampv1.GateEachStep || gs.Step != 2 || !heldBy(ro, "step") {
			rounds = 0
			return false
		}
		rounds = countRounds(a, 2, ro.ResourceVersion)
		return rounds >= 2
	})
	if held.Status.CanaryWeight != 50 || !strings.Contains(held.Status.Message, `gate "step"`) || !strings.Contains(held.Status.Message, "HTTP 503") {
		t.Errorf("while held: weight %d, message %q", held.Status.CanaryWeight, held.Status.Message)
	}
	for _, m := range held.Status.LastAnalysis {
		if m.Verdict != rampv1.VerdictPassed {
			t.Errorf("while held, analysis %s", metricsText(held.Status.LastAnalysis))
		}
	}
	t.Logf("held at step 2 (%s) through %d passing rounds: %s", held.Status.Message, rounds, metricsText(held.Status.LastAnalysis))
	close(hold)

	end := a.waitEnd(2 * time.Minute)
	if end.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", end.Status.Phase, end.Status.Message)
	}
	g.waitCalls("the AfterRollout gate", 30*time.Second, func(cs []gateCall) bool {
		return slices.ContainsFunc(cs, func(c gateCall) bool { return c.body.Gate == "report" })
	})
	a.settled(a.tl)
	if got := fmt.Sprint(a.tl.Weights(appName)); got != "[0 10 50 100 0]" {
		t.Errorf("weights %s, want [0 10 50 100 0]", got)
	}
	calls := g.recorded()
	t.Logf("gate calls: %v", calls)
	want := []point{
		{"pre", rampv1.GateBeforeRollout, 1, 0, rampv1.PhaseProgressing},
		{"step", rampv1.GateEachStep, 1, 10, rampv1.PhaseProgressing},
		{"step", rampv1.GateEachStep, 2, 50, rampv1.PhaseProgressing},
		{"step", rampv1.GateEachStep, 3, 100, rampv1.PhaseProgressing},
		{"promote", rampv1.GateBeforePromotion, 3, 100, rampv1.PhaseProgressing},
		{"report", rampv1.GateAfterRollout, 0, 0, rampv1.PhaseSucceeded},
	}
	if got := points(calls); !slices.Equal(got, want) {
		t.Errorf("gate calls in order:\n  %v\nwant\n  %v", got, want)
	}
	held2 := 0
	for _, c := range calls {
		if c.body.Gate == "step" && c.body.Step == 2 && c.code == http.StatusServiceUnavailable {
			held2++
		}
	}
	if held2 < 2 {
		t.Errorf("the holding gate was called %d times while holding, want it called again every interval", held2)
	}
	if rel := releaseRevision(t, a); end.Status.StableRevision != rel {
		t.Errorf("stable revision %q after promotion, want the release's %q", end.Status.StableRevision, rel)
	}
	checkBodies(t, calls, a.ns, stable, end.Status.StableRevision, true)
	noAnswerCopied(t, a)
}

// heldBy reports whether the Rollout's status records gate as holding it.
func heldBy(ro *rampv1.Rollout, gate string) bool {
	gs := ro.Status.Gates
	return gs != nil && slices.ContainsFunc(gs.Held, func(h rampv1.HeldGate) bool { return h.Name == gate })
}

// releaseRevision is the canary revision the Rollout recorded for the last commit.
func releaseRevision(t *testing.T, a *app) string {
	t.Helper()
	for _, ro := range a.tl.Rollouts(appName) {
		if rv, _ := strconv.ParseInt(ro.ResourceVersion, 10, 64); rv > a.committed && ro.Status.CanaryRevision != "" {
			return ro.Status.CanaryRevision
		}
	}
	t.Fatal("no canary revision recorded after the release")
	return ""
}

// countRounds counts the analysis rounds recorded at step while the gate "step" held it,
// since the last commit, up to the Rollout's version rv.
func countRounds(a *app, step int32, rv string) int {
	upto, _ := strconv.ParseInt(rv, 10, 64)
	n := 0
	var prev *metav1.MicroTime
	for _, ro := range a.tl.Rollouts(appName) {
		st := ro.Status
		v, _ := strconv.ParseInt(ro.ResourceVersion, 10, 64)
		if v > upto {
			break
		}
		if v > a.committed && st.CurrentStep == step && heldBy(ro, "step") && st.LastAnalysisTime != nil && (prev == nil || !st.LastAnalysisTime.Equal(prev)) {
			n++
		}
		prev = st.LastAnalysisTime
	}
	return n
}

// A RollBack gate that fails at step 1 rolls the rollout back at once, and the AfterRollout
// gate reports the rolled-back revision with phase Failed.
func TestGateFailureRollsBack(t *testing.T) {
	t.Parallel()
	var g *gateServer
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			g = newGateServer(t, ro.Namespace)
			lenientErrorRate(ro)
			ro.Spec.Gates = []rampv1.Gate{
				g.gate("acceptance", rampv1.GateEachStep, rampv1.GateRollBack),
				g.gate("report", rampv1.GateAfterRollout, ""),
			}
		},
	})
	stable := a.get().Status.StableRevision
	g.setAnswer(func(b *rampv1.GateRequest) int {
		if b.Gate == "acceptance" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	a.setImage(imgV2)
	end := a.waitEnd(2 * time.Minute)
	if end.Status.Phase != rampv1.PhaseFailed || !strings.Contains(end.Status.Message, `gate "acceptance"`) || !strings.Contains(end.Status.Message, "HTTP 500") {
		t.Fatalf("phase %s: %s, want Failed by gate acceptance (HTTP 500)", end.Status.Phase, end.Status.Message)
	}
	if msg := rolloutEvent(t, a, plan.ReasonGateFailed); !strings.Contains(msg, "HTTP 500") || strings.Contains(msg, "secret-answer-body") {
		t.Errorf("%s event %q, want the status code and not the answer", plan.ReasonGateFailed, msg)
	}
	g.waitCalls("the AfterRollout gate", 30*time.Second, func(cs []gateCall) bool {
		return slices.ContainsFunc(cs, func(c gateCall) bool { return c.body.Gate == "report" })
	})
	a.settled(a.tl)
	if got := fmt.Sprint(a.tl.Weights(appName)); got != "[0 10 0]" {
		t.Errorf("weights %s, want [0 10 0]", got)
	}
	calls := g.recorded()
	want := []point{
		{"acceptance", rampv1.GateEachStep, 1, 10, rampv1.PhaseProgressing},
		{"report", rampv1.GateAfterRollout, 1, 0, rampv1.PhaseFailed},
	}
	if got := points(calls); !slices.Equal(got, want) {
		t.Errorf("gate calls in order:\n  %v\nwant\n  %v", got, want)
	}
	if end.Status.StableRevision != stable {
		t.Errorf("stable revision %q after the rollback, want %q", end.Status.StableRevision, stable)
	}
	checkBodies(t, calls, a.ns, stable, releaseRevision(t, a), false)
	noAnswerCopied(t, a)
}

// rolloutEvent waits for an Event about the scenario's Rollout with reason and returns its
// message.
func rolloutEvent(t *testing.T, a *app, reason string) string {
	t.Helper()
	var msg string
	err := testenv.WaitFor(t.Context(), 10*time.Second, func(ctx context.Context) (bool, error) {
		var list corev1.EventList
		if err := a.c.List(ctx, &list, client.InNamespace(a.ns)); err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == appName && e.Reason == reason {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s event: %v", reason, err)
	}
	return msg
}

// A gate URL outside the platform's allow-list stalls the Rollout (its field named) and
// nothing connects to it while a release waits; once the Rollout names an allowed URL again,
// the release rolls out through the gate.
func TestGateURLNotAllowed(t *testing.T) {
	t.Parallel()
	addr, accepted := testenv.CountConnections(t)
	var g *gateServer
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			g = newGateServer(t, ro.Namespace)
			lenientErrorRate(ro)
			ro.Spec.Gates = []rampv1.Gate{g.gate("smoke", rampv1.GateBeforePromotion, rampv1.GateRollBack)}
		},
	})
	edit := func(url string) {
		t.Helper()
		ro := a.get()
		ro.Spec.Gates[0].URL = url
		if err := a.c.Update(t.Context(), ro); err != nil {
			t.Fatal(err)
		}
	}
	edit("http://" + addr + "/smoke")
	st := a.waitPhase("stalled", 30*time.Second, func(ro *rampv1.Rollout) bool { return stalledBy(ro, "GateEndpointNotAllowed") != "" })
	msg := stalledBy(st, "GateEndpointNotAllowed")
	if !strings.Contains(msg, "spec.gates[smoke].url: http://"+addr+"/smoke is not a gate endpoint the platform allows") {
		t.Errorf("Stalled message %q does not name the field and the URL as a gate endpoint", msg)
	}
	a.setImage(imgV2)
	waited := a.committed
	// The release waits while the Rollout is stalled; then the URL is allowed again.
	ro := a.get()
	if stalledBy(ro, "GateEndpointNotAllowed") == "" {
		t.Fatalf("not stalled after the release: %s", ro.Status.Message)
	}
	edit(g.url("smoke"))
	end := a.waitEnd(2 * time.Minute)
	if end.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", end.Status.Phase, end.Status.Message)
	}
	// Between the release and the fix, nothing moved: no step, no canary weight.
	for _, v := range a.tl.Rollouts(appName) {
		rv, _ := strconv.ParseInt(v.ResourceVersion, 10, 64)
		if rv > waited && stalledBy(v, "GateEndpointNotAllowed") != "" && (v.Status.CanaryWeight > 0 || v.Status.Phase == rampv1.PhaseProgressing) {
			t.Errorf("stalled, yet phase %s weight %d", v.Status.Phase, v.Status.CanaryWeight)
		}
	}
	if got := points(g.recorded()); len(got) != 1 || got[0].gate != "smoke" {
		t.Errorf("calls %v, want the smoke gate once", got)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the gate that is not allowed got %d connections", n)
	}
}

// stalledBy returns the message of the Rollout's Stalled condition with reason, "" without.
func stalledBy(ro *rampv1.Rollout, reason string) string {
	for _, c := range ro.Status.Conditions {
		if c.Type == "Stalled" && c.Status == metav1.ConditionTrue && c.Reason == reason {
			return c.Message
		}
	}
	return ""
}
