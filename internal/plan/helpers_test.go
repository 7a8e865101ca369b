package plan

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// The fixed world of the tests: Git moved the target "web" from r1 (stable, pods labelled h1)
// to r2; r3 is a later commit. Once rolled out, r2's pods get pod-template-hash h2.
const (
	targetName = "web"
	stableRev  = "r1"
	newRev     = "r2"
	newerRev   = "r3"
	stableHash = "h1"
	newHash    = "h2"
	replicas   = int32(10)
)

// t0 is "now" in table tests.
var t0 = time.Date(2025, time.March, 14, 9, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return t0.Add(-d) }

func mtime(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

func mdur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func i32(v int32) *int32 { return &v }

func pauseFor(d time.Duration) *rampv1.Pause { return &rampv1.Pause{Duration: mdur(d)} }

// untilPromoted is a pause without a duration.
func untilPromoted() *rampv1.Pause { return &rampv1.Pause{} }

func cstep(weight int32, p *rampv1.Pause) rampv1.CanaryStep {
	return rampv1.CanaryStep{SetWeight: weight, Pause: p}
}

var (
	stepFault = &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 50, HTTPStatus: 503}}
	specFault = &rampv1.FaultInjection{Delay: &rampv1.FaultDelay{Percentage: 10, FixedDelay: metav1.Duration{Duration: time.Second}}}
)

// --- rollouts ----------------------------------------------------------------------------

type roOpt func(*rampv1.Rollout)

// newRollout is a canary Rollout (default steps 5 → 25 → 100) of "web", Idle at r1/h1.
// Options apply in order: put spec options before status options (withStatus counts steps).
func newRollout(opts ...roOpt) *rampv1.Rollout {
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: targetName, Namespace: "shop", Generation: 7},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{APIVersion: "apps/v1", Kind: "Deployment", Name: targetName},
			Strategy:  rampv1.Strategy{Canary: &rampv1.CanaryStrategy{}},
		},
		Status: rampv1.RolloutStatus{
			Phase:                 rampv1.PhaseIdle,
			StableRevision:        stableRev,
			StablePodTemplateHash: stableHash,
		},
	}
	for _, o := range opts {
		o(ro)
	}
	return ro
}

func withSteps(steps ...rampv1.CanaryStep) roOpt {
	return func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary = &rampv1.CanaryStrategy{Steps: steps}
	}
}

// withHeaderMatch gives the canary a header route (needed, per the CRD, for faults).
func withHeaderMatch() roOpt {
	return func(ro *rampv1.Rollout) {
		v := "true"
		ro.Spec.Strategy.Canary.HeaderMatch = &rampv1.HeaderMatch{Name: "x-canary", Exact: &v}
	}
}

func withBlueGreen(pause *rampv1.Pause) roOpt {
	return func(ro *rampv1.Rollout) {
		ro.Spec.Strategy = rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{PrePromotionPause: pause}}
	}
}

// withAnalysis adds one metric, checked every interval (0 keeps the default).
func withAnalysis(interval time.Duration, failureLimit, inconclusiveLimit int32) roOpt {
	return func(ro *rampv1.Rollout) {
		a := &rampv1.AnalysisSpec{
			Prometheus: rampv1.PrometheusSpec{Address: "http://prometheus:9090"},
			Metrics:    []rampv1.Metric{{Name: "error-rate"}},
		}
		if interval > 0 {
			a.Interval = mdur(interval)
		}
		if failureLimit > 0 {
			a.FailureLimit = i32(failureLimit)
		}
		if inconclusiveLimit > 0 {
			a.InconclusiveLimit = i32(inconclusiveLimit)
		}
		ro.Spec.Analysis = a
	}
}

func withSpec(f func(*rampv1.RolloutSpec)) roOpt {
	return func(ro *rampv1.Rollout) { f(&ro.Spec) }
}

func withStatus(f func(*rampv1.RolloutStatus)) roOpt {
	return func(ro *rampv1.Rollout) { f(&ro.Status) }
}

// inRollout puts the status in a rollout of r2 (stable r1/h1) at the given phase, stage, step
// and weight, the stage having begun at since.
func inRollout(phase, stage string, step, weight int32, since time.Time) roOpt {
	return func(ro *rampv1.Rollout) {
		st := &ro.Status
		st.Phase = phase
		st.Stage = stage
		st.CurrentStep = step
		st.Steps = int32(len(stepsOf(&ro.Spec)))
		st.CanaryWeight = weight
		st.CanaryRevision = newRev
		st.StageStartedAt = mtime(since)
	}
}

// failed: the rollout of r2 failed its analysis at step 2 and was rolled back.
func failed() roOpt {
	return func(ro *rampv1.Rollout) {
		inRollout(rampv1.PhaseFailed, StageHolding, 2, 0, ago(time.Hour))(ro)
		ro.Status.Message = "analysis failed 2 times: error-rate 8 > 1"
		ro.Status.FailedChecks = 2
	}
}

// --- observations ------------------------------------------------------------------------

type obsOpt func(*Observation)

// observe: Git holds r2 in the (paused by ramp, so not rolled out) target of 10 replicas; the canary
// Deployment exists at r2 with no ready pods; the VirtualService routes 0% to it; promotion
// windows are open.
func observe(now time.Time, opts ...obsOpt) Observation {
	o := Observation{
		Now:          now,
		Target:       Target{Exists: true, Revision: newRev, Replicas: replicas, Paused: true, PausedByRamp: true},
		Canary:       Canary{Exists: true, Revision: newRev},
		Routing:      &ObservedRouting{CanaryWeight: 0},
		StableSubset: stableHash,
		WindowOpen:   true,
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// targetAt: Git changed the target's template to rev; it is paused, so not rolled out.
func targetAt(rev string) obsOpt {
	return func(o *Observation) {
		o.Target.Revision, o.Target.RolledOut, o.Target.PodTemplateHash = rev, false, ""
	}
}

// targetRolledOut: the target runs rev everywhere, in ReplicaSet hash.
func targetRolledOut(rev, hash string) obsOpt {
	return func(o *Observation) {
		o.Target.Revision, o.Target.RolledOut, o.Target.PodTemplateHash = rev, true, hash
	}
}

// stableTarget: the target runs the stable revision (no rollout pending, or Git reverted).
func stableTarget() obsOpt { return targetRolledOut(stableRev, stableHash) }

// targetUnpaused: the target as Git wrote it, before ramp paused it.
func targetUnpaused() obsOpt {
	return func(o *Observation) { o.Target.Paused, o.Target.PausedByRamp = false, false }
}

// targetPausedBy: the target is paused, and ramp's field manager does not own spec.paused
// (Git's sync or a person wrote it, as managers).
func targetPausedBy(managers ...string) obsOpt {
	return func(o *Observation) {
		o.Target.Paused, o.Target.PausedByRamp, o.Target.PausedBy = true, false, managers
	}
}

func targetMissing() obsOpt { return func(o *Observation) { o.Target = Target{} } }

func canaryReady(n int32) obsOpt { return func(o *Observation) { o.Canary.ReadyReplicas = n } }

func canaryAt(rev string, ready int32) obsOpt {
	return func(o *Observation) { o.Canary = Canary{Exists: true, Revision: rev, ReadyReplicas: ready} }
}

func canaryAbsent() obsOpt { return func(o *Observation) { o.Canary = Canary{} } }

func routing(w int32) obsOpt {
	return func(o *Observation) { o.Routing = &ObservedRouting{CanaryWeight: w} }
}

func noRouting() obsOpt { return func(o *Observation) { o.Routing = nil } }

func verdict(v string) obsOpt {
	return func(o *Observation) {
		o.Analysis = &AnalysisResult{Verdict: v, Reason: "error-rate 8 > 1",
			Metrics: []rampv1.MetricResult{{Name: "error-rate", Verdict: v}}}
	}
}

// verdictStarted is a round's result that says when the round began.
func verdictStarted(v string, at time.Time) obsOpt {
	return func(o *Observation) {
		verdict(v)(o)
		o.Analysis.Started = at
	}
}

func windowClosed(opensAt time.Time) obsOpt {
	return func(o *Observation) { o.WindowOpen, o.WindowOpensAt = false, opensAt }
}

func specError(msg string) obsOpt { return func(o *Observation) { o.SpecError = msg } }

func requests(r Requests) obsOpt { return func(o *Observation) { o.Requests = r } }

// --- expected desired states ---------------------------------------------------------------

// dSteady: nothing rolling out: target paused, all traffic on stable subset hash.
func dSteady(hash string) *Desired {
	return &Desired{TargetPaused: true, StablePodTemplateHash: hash}
}

// dRun: a rollout of r2 in progress over stable h1.
func dRun(canaryReplicas, weight int32, header bool) *Desired {
	return &Desired{
		TargetPaused:          true,
		CanaryRevision:        newRev,
		CanaryReplicas:        canaryReplicas,
		StablePodTemplateHash: stableHash,
		CanaryWeight:          weight,
		HeaderRoute:           header,
	}
}

func with(d *Desired, f func(*Desired)) *Desired { f(d); return d }

// --- assertions ----------------------------------------------------------------------------

// want is what one pass must decide. Summary defaults to what the phase implies.
// applyOrder is how a desired state is applied (Desired.RenderCanary, Desired.RouteFirst).
type applyOrder struct{ render, routeFirst bool }

type want struct {
	phase   string
	stage   string
	step    int32
	weight  int32
	events  []string // reasons, in order
	desired *Desired // nil: Desired must be nil; RenderCanary and RouteFirst compared only with order
	order   *applyOrder
	requeue time.Duration
	summary *Summary // only Ready, Reconciling, Stalled and Reason are compared
	check   func(t *testing.T, d Decision)
}

func expect(t *testing.T, ro *rampv1.Rollout, d Decision, w want) {
	t.Helper()
	st := d.Status
	if st.Phase != w.phase || st.Stage != w.stage || st.CurrentStep != w.step || st.CanaryWeight != w.weight {
		t.Errorf("status = %s/%s step %d weight %d, want %s/%s step %d weight %d (message %q)",
			st.Phase, st.Stage, st.CurrentStep, st.CanaryWeight, w.phase, w.stage, w.step, w.weight, st.Message)
	}
	if got := reasons(d.Events); !reflect.DeepEqual(got, w.events) && !(len(got) == 0 && len(w.events) == 0) {
		t.Errorf("events = %v, want %v (%v)", got, w.events, d.Events)
	}
	got := d.Desired
	if got != nil {
		o := applyOrder{render: got.RenderCanary, routeFirst: got.RouteFirst}
		if w.order != nil && o != *w.order {
			t.Errorf("apply order = %+v, want %+v", o, *w.order)
		}
		got = ptrTo(*got)
		got.RenderCanary, got.RouteFirst = false, false
	}
	if !reflect.DeepEqual(got, w.desired) {
		t.Errorf("desired =\n  %s\nwant\n  %s", fmtDesired(got), fmtDesired(w.desired))
	}
	if d.RequeueAfter != w.requeue {
		t.Errorf("requeueAfter = %v, want %v", d.RequeueAfter, w.requeue)
	}
	ws := w.summary
	if ws == nil {
		ws = phaseSummary(w.phase)
	}
	s := d.Summary
	if s.Ready != ws.Ready || s.Reconciling != ws.Reconciling || s.Stalled != ws.Stalled || s.Reason != ws.Reason {
		t.Errorf("summary = %+v, want ready=%v reconciling=%v stalled=%v reason=%q", s, ws.Ready, ws.Reconciling, ws.Stalled, ws.Reason)
	}
	if s.Message == "" {
		t.Errorf("summary has no message")
	}
	if st.ObservedGeneration != ro.Generation {
		t.Errorf("observedGeneration = %d, want %d", st.ObservedGeneration, ro.Generation)
	}
	if len(st.Conditions) != 0 {
		t.Errorf("decision status carries conditions: %v", st.Conditions)
	}
	if w.check != nil {
		w.check(t, d)
	}
}

func phaseSummary(phase string) *Summary {
	switch phase {
	case rampv1.PhaseIdle, rampv1.PhaseSucceeded:
		return &Summary{Ready: true, Reason: phase}
	case rampv1.PhaseFailed:
		// Stalled: kstatus Failed, so Flux's health checks report it instead of waiting.
		return &Summary{Stalled: true, Reason: "RolloutFailed"}
	}
	return &Summary{Reconciling: true, Reason: phase}
}

func stalled(reason string) *Summary { return &Summary{Stalled: true, Reason: reason} }

// notRoutedYet: the phase is decided, but the live objects do not route it yet.
func notRoutedYet(reason string) *Summary { return &Summary{Reconciling: true, Reason: reason} }

func stableSubset(hash string) obsOpt { return func(o *Observation) { o.StableSubset = hash } }

func reasons(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return out
}

func fmtDesired(d *Desired) string {
	if d == nil {
		return "<nil>"
	}
	return fmt.Sprintf("targetPaused=%v asObserved=%v pauseOnly=%v untouched=%v canary=%s×%d recreate=%v stableSubset=%s weight=%d header=%v fault=%v",
		d.TargetPaused, d.TargetAsObserved, d.PauseOnly, d.TargetUntouched, d.CanaryRevision, d.CanaryReplicas, d.RecreateCanary, d.StablePodTemplateHash, d.CanaryWeight, d.HeaderRoute, d.Fault != nil)
}

// Extra checks, composable in want.check.

func checks(fs ...func(t *testing.T, d Decision)) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		for _, f := range fs {
			f(t, d)
		}
	}
}

func counters(failed, inconclusive int32) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.FailedChecks != failed || d.Status.InconclusiveChecks != inconclusive {
			t.Errorf("failed/inconclusive checks = %d/%d, want %d/%d", d.Status.FailedChecks, d.Status.InconclusiveChecks, failed, inconclusive)
		}
	}
}

func revisions(stable, stableHashWant, canary string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		st := d.Status
		if st.StableRevision != stable || st.StablePodTemplateHash != stableHashWant || st.CanaryRevision != canary {
			t.Errorf("stable %s/%s canary %q, want %s/%s canary %q", st.StableRevision, st.StablePodTemplateHash, st.CanaryRevision, stable, stableHashWant, canary)
		}
	}
}

func handled(h rampv1.HandledRequests) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.HandledRequests != h {
			t.Errorf("handledRequests = %+v, want %+v", d.Status.HandledRequests, h)
		}
	}
}

func stageStarted(at time.Time) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.StageStartedAt == nil || !d.Status.StageStartedAt.Time.Equal(at) {
			t.Errorf("stageStartedAt = %v, want %v", d.Status.StageStartedAt, at)
		}
	}
}

func analysisPassed(want bool) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.StepAnalysisPassed != want {
			t.Errorf("stepAnalysisPassed = %v, want %v", d.Status.StepAnalysisPassed, want)
		}
	}
}

func lastAnalysisAt(at time.Time) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.LastAnalysisTime == nil || !d.Status.LastAnalysisTime.Time.Equal(at) {
			t.Errorf("lastAnalysisTime = %v, want %v", d.Status.LastAnalysisTime, at)
		}
	}
}

func messageHas(sub string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if !strings.Contains(d.Status.Message, sub) {
			t.Errorf("message %q does not contain %q", d.Status.Message, sub)
		}
	}
}

func totalSteps(n int32) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.Steps != n {
			t.Errorf("steps = %d, want %d", d.Status.Steps, n)
		}
	}
}

func warnings(ws ...bool) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if len(ws) != len(d.Events) {
			t.Errorf("%d events, want %d", len(d.Events), len(ws))
			return
		}
		for i, w := range ws {
			if d.Events[i].Warning != w {
				t.Errorf("event %d (%s) warning = %v, want %v", i, d.Events[i].Reason, d.Events[i].Warning, w)
			}
		}
	}
}

func messageIs(want string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Status.Message != want {
			t.Errorf("message %q, want %q", d.Status.Message, want)
		}
	}
}
