package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// gateServer answers the suite's gates (its address is on the suite's allow-list): each path
// answers the status code a test sets, with a body that must never reach ramp's status,
// events or notifications.
var gateServer = newGateServer()

const gateAnswerBody = "password=hunter2"

type gateSrv struct {
	*httptest.Server
	mu     sync.Mutex
	codes  map[string]int
	bodies map[string][]rampv1.GateRequest
}

func newGateServer() *gateSrv {
	g := &gateSrv{codes: map[string]int{}, bodies: map[string][]rampv1.GateRequest{}}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body rampv1.GateRequest
		_ = json.NewDecoder(r.Body).Decode(&body)
		g.mu.Lock()
		g.bodies[r.URL.Path] = append(g.bodies[r.URL.Path], body)
		code := g.codes[r.URL.Path]
		g.mu.Unlock()
		if code == 0 {
			code = http.StatusNotFound
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(gateAnswerBody))
	}))
	return g
}

// answer makes path answer code from now on.
func (g *gateSrv) answer(path string, code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.codes[path] = code
}

// calls returns the bodies path received.
func (g *gateSrv) calls(path string) []rampv1.GateRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.bodies[path])
}

func withGate(ro *rampv1.Rollout, name, at, onFailure, path string) *rampv1.Rollout {
	ro.Spec.Gates = append(ro.Spec.Gates, rampv1.Gate{Name: name, At: at, OnFailure: onFailure, URL: gateServer.URL + path,
		Retries: ptr.To[int32](0), Interval: &metav1.Duration{Duration: time.Second}, Metadata: map[string]string{"suite": "ramp"}})
	return ro
}

// assertNoAnswerCopied: what a gate answered is in no status field and no event of ro.
func assertNoAnswerCopied(t *testing.T, ro *rampv1.Rollout) {
	t.Helper()
	st, err := json.Marshal(ro.Status)
	must(t, err)
	if strings.Contains(string(st), "hunter2") {
		t.Errorf("a gate's answer reached the status: %s", st)
	}
	var list corev1.EventList
	must(t, env.Client.List(context.Background(), &list, client.InNamespace(ro.Namespace)))
	for _, e := range list.Items {
		if strings.Contains(e.Message, "hunter2") {
			t.Errorf("a gate's answer reached event %s: %q", e.Reason, e.Message)
		}
	}
}

// A BeforePromotion gate that holds keeps the rollout at its last step, calling the gate every
// interval and saying so in the status, until the gate answers 2xx: then it promotes.
func TestGateBeforePromotionHoldsUntilItPasses(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	path := "/" + ns + "/confirm"
	gateServer.answer(path, http.StatusServiceUnavailable)
	ro := withGate(withSteps(canaryRollout(ns), rampv1.CanaryStep{SetWeight: 5}, rampv1.CanaryStep{SetWeight: 50}),
		"confirm", rampv1.GateBeforePromotion, rampv1.GateHold, path)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")

	waitRollout(t, ro, "held by gate confirm", func(ro *rampv1.Rollout) bool {
		g := ro.Status.Gates
		return g != nil && g.At == rampv1.GateBeforePromotion && len(g.Held) == 1 && g.Held[0].Result == "HTTP 503"
	})
	if !strings.Contains(ro.Status.Message, `waiting for gate "confirm" (last answer: HTTP 503`) {
		t.Errorf("message %q does not say the gate holds", ro.Status.Message)
	}
	// It holds at the last step, calling the gate again every interval.
	before := len(gateServer.calls(path))
	holdsFor(t, 2500*time.Millisecond, "held at the last step", func(ctx context.Context) (bool, string, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, "", err
		}
		st := ro.Status
		return st.Phase == rampv1.PhaseProgressing && st.CurrentStep == 2 && st.CanaryWeight == 50, fmt.Sprintf("%s step %d weight %d", st.Phase, st.CurrentStep, st.CanaryWeight), nil
	})
	if after := len(gateServer.calls(path)); after < before+1 {
		t.Errorf("the holding gate was not called again: %d calls, then %d", before, after)
	}

	gateServer.answer(path, http.StatusOK)
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	waitEvent(t, ro, "GatePassed")
	assertNoAnswerCopied(t, ro)

	calls := gateServer.calls(path)
	last := calls[len(calls)-1]
	if last.Rollout != ro.Name || last.Namespace != ns || last.Gate != "confirm" || last.At != rampv1.GateBeforePromotion ||
		last.Step != 2 || last.Weight != 50 || last.Phase != rampv1.PhaseProgressing || last.CanaryRevision != ro.Status.StableRevision ||
		last.StableRevision == "" || last.StableRevision == last.CanaryRevision || last.Metadata["suite"] != "ramp" {
		t.Errorf("the gate's body %+v does not describe the rollout (promoted revision %s)", last, ro.Status.StableRevision)
	}
}

// An EachStep gate that rolls back and answers 500 rolls the rollout back with GateFailed,
// naming the gate and the status code, and nothing of the answer; then the AfterRollout gate
// reports the outcome, once.
func TestGateEachStepRollsBack(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	path := "/" + ns + "/smoke"
	gateServer.answer(path, http.StatusInternalServerError)
	report := "/" + ns + "/report"
	gateServer.answer(report, http.StatusOK)
	ro := withGate(withGate(canaryRollout(ns), "smoke", rampv1.GateEachStep, rampv1.GateRollBack, path),
		"report", rampv1.GateAfterRollout, rampv1.GateRollBack, report)
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseFailed)

	if !strings.Contains(ro.Status.Message, `gate "smoke"`) || !strings.Contains(ro.Status.Message, "HTTP 500") {
		t.Errorf("message %q does not name the gate and its status code", ro.Status.Message)
	}
	e := waitEvent(t, ro, "GateFailed")
	if !strings.Contains(e.Message, "HTTP 500") {
		t.Errorf("event %q", e.Message)
	}
	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 0]"; got != want {
		t.Errorf("weights = %s, want %s (rollback at the first step)", got, want)
	}
	if calls := gateServer.calls(path); len(calls) != 1 || calls[0].Step != 1 || calls[0].Weight != 5 {
		t.Errorf("gate calls %+v, want one at step 1, 5%%", calls)
	}
	assertCanaryReplicas(t, ns, 0)

	// The AfterRollout gate is called once the rollback is over, its result only reported.
	waitEvent(t, ro, "GatePassed")
	if calls := gateServer.calls(report); len(calls) != 1 || calls[0].At != rampv1.GateAfterRollout || calls[0].Phase != rampv1.PhaseFailed || calls[0].CanaryRevision == "" {
		t.Errorf("after-rollout calls %+v, want one reporting the failed revision", calls)
	}
	waitRollout(t, ro, "the report recorded", func(ro *rampv1.Rollout) bool {
		return ro.Status.Gates != nil && slices.Equal(ro.Status.Gates.Passed, []string{"report"})
	})
	if ro.Status.Phase != rampv1.PhaseFailed || ro.Status.Gates.At != rampv1.GateAfterRollout {
		t.Errorf("after the report: phase %s, gates %+v", ro.Status.Phase, ro.Status.Gates)
	}
	assertNoAnswerCopied(t, ro)
}

// A gate URL the platform did not allow stalls the Rollout, and nothing connects to it.
func TestGateEndpointNotAllowedIsNeverContacted(t *testing.T) {
	ctx := context.Background()
	addr, accepted := testenv.CountConnections(t)
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Gates = []rampv1.Gate{{Name: "pre", At: rampv1.GateBeforeRollout, URL: "http://" + addr + "/go"}}
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "GateEndpointNotAllowed")
	if !strings.Contains(c.Message, "spec.gates[pre].url") {
		t.Errorf("Stalled message %q does not name the field", c.Message)
	}
	setImage(t, target, "podinfo:2")
	holdsFor(t, 2*time.Second, "stalled, nothing contacted", func(context.Context) (bool, string, error) {
		return accepted.Load() == 0, "a connection", nil
	})
}
