package plan

import (
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func gate(name, at, onFailure string) rampv1.Gate {
	return rampv1.Gate{Name: name, At: at, URL: "http://gates.example/" + name, OnFailure: onFailure}
}

func withGates(gs ...rampv1.Gate) roOpt {
	return withSpec(func(s *rampv1.RolloutSpec) { s.Gates = gs })
}

// gateRecord: the status records point (at, step) of r2, with gates passed.
func gateRecord(at string, step int32, passed ...string) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) {
		st.Gates = &rampv1.GateStatus{At: at, Step: step, Revision: newRev, Passed: passed}
	})
}

// heldSince: gate name of the recorded point last answered HTTP 503 at at.
func heldSince(name string, at time.Time) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) {
		st.Gates.Held = append(st.Gates.Held, rampv1.HeldGate{Name: name, Result: "HTTP 503", At: metav1.NewMicroTime(at)})
	})
}

// answered: gate name of point (at, step) of rev answered code.
func answered(at string, step int32, rev, name string, passed bool, result string) obsOpt {
	return func(o *Observation) {
		o.Gates = append(o.Gates, GateResult{GatePoint: GatePoint{At: at, Step: step, Revision: rev}, Name: name,
			Passed: passed, Result: result, At: o.Now})
	}
}

// calls checks the gate calls the decision asks for (none when names is empty).
func calls(at string, step int32, rev string, names ...string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		var want *GateCalls
		if len(names) > 0 {
			want = &GateCalls{GatePoint: GatePoint{At: at, Step: step, Revision: rev}, Names: names}
		}
		if !reflect.DeepEqual(d.Gates, want) {
			t.Errorf("gate calls = %+v, want %+v", d.Gates, want)
		}
	}
}

func noCalls() func(t *testing.T, d Decision) { return calls("", 0, "") }

// gatesRecorded checks status.gates: the point, the gates passed and those held.
func gatesRecorded(at string, step int32, rev string, passed []string, held ...string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		g := d.Status.Gates
		if g == nil {
			t.Fatalf("status.gates is nil, want %s step %d", at, step)
		}
		var h []string
		for _, x := range g.Held {
			h = append(h, x.Name)
		}
		if g.At != at || g.Step != step || g.Revision != rev || !slices.Equal(g.Passed, passed) || !slices.Equal(h, held) {
			t.Errorf("status.gates = %+v, want %s step %d of %s passed %v held %v", g, at, step, rev, passed, held)
		}
	}
}

const (
	before    = rampv1.GateBeforeRollout
	eachStep  = rampv1.GateEachStep
	beforePro = rampv1.GateBeforePromotion
	after     = rampv1.GateAfterRollout
	hold      = rampv1.GateHold
	rollBack  = rampv1.GateRollBack
)

func TestDecideGatesBeforeRollout(t *testing.T) {
	g := withGates(gate("pre", before, hold))
	gRB := withGates(gate("pre", before, rollBack))
	waitingPre := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{g, inRollout(progressing, scaling, 1, 0, ago(time.Hour)), gateRecord(before, 0)}, extra...)...)
	}
	runCases(t, []tcase{
		{
			name: "before rollout: a new revision calls the gate; the canary is not scaled",
			ro:   newRollout(g),
			obs:  observe(t0),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"}, desired: dRun(0, 0, false),
				check: checks(calls(before, 0, newRev, "pre"), gatesRecorded(before, 0, newRev, nil), messageHas(`waiting for gate "pre" before scaling the canary`))},
		},
		{
			name: "before rollout: still waiting: no progress deadline, the call goes on",
			ro:   waitingPre(),
			obs:  observe(t0),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(0, 0, false), check: calls(before, 0, newRev, "pre")},
		},
		{
			name: "before rollout: pass: the canary is scaled, its deadline counted from now",
			ro:   waitingPre(),
			obs:  observe(t0, answered(before, 0, newRev, "pre", true, "HTTP 200")),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"GatePassed"}, desired: dRun(1, 0, false),
				requeue: 10 * time.Minute, check: checks(noCalls(), stageStarted(t0), gatesRecorded(before, 0, newRev, []string{"pre"}))},
		},
		{
			name: "before rollout: hold: said in the status, called again after its interval",
			ro:   waitingPre(),
			obs:  observe(t0, answered(before, 0, newRev, "pre", false, "HTTP 503")),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"GateHeld"}, desired: dRun(0, 0, false),
				requeue: time.Minute, check: checks(noCalls(), warnings(true), gatesRecorded(before, 0, newRev, nil, "pre"), messageHas("last answer: HTTP 503"))},
		},
		{
			name: "before rollout: hold: the interval is over: called again",
			ro:   waitingPre(heldSince("pre", ago(2*time.Minute))),
			obs:  observe(t0),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(0, 0, false),
				check: checks(calls(before, 0, newRev, "pre"), gatesRecorded(before, 0, newRev, nil, "pre"))},
		},
		{
			name: "before rollout: roll back",
			ro:   newRollout(gRB, inRollout(progressing, scaling, 1, 0, ago(time.Minute)), gateRecord(before, 0)),
			obs:  observe(t0, answered(before, 0, newRev, "pre", false, "HTTP 500")),
			// Nothing was routed to the canary: rolled back at once.
			want: want{phase: failedPhase, stage: scaling, step: 1, events: []string{ReasonGateFailed, "RolledBack"}, desired: dSteady(stableHash),
				check: checks(noCalls(), messageHas(`gate "pre" (before the rollout of revision r2) failed: HTTP 500`))},
		},
		{
			name: "before rollout: a result for an earlier revision is dropped",
			ro:   newRollout(gRB, inRollout(progressing, scaling, 1, 0, ago(time.Minute)), gateRecord(before, 0)),
			obs:  observe(t0, answered(before, 0, stableRev, "pre", false, "HTTP 500")),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(0, 0, false), check: calls(before, 0, newRev, "pre")},
		},
		{
			name: "before rollout: a canary lost at step 1 later does not call it again",
			ro:   newRollout(g, inRollout(progressing, holding, 1, 5, ago(time.Minute)), gateRecord(before, 0, "pre")),
			obs:  observe(t0, canaryReady(0), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"CanaryLost"}, desired: dRun(1, 0, false),
				requeue: 10 * time.Minute, check: noCalls()},
		},
	})
}

func TestDecideGatesEachStep(t *testing.T) {
	at := func(gs roOpt, extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{gs, inRollout(progressing, holding, 1, 5, ago(time.Minute))}, extra...)...)
	}
	g := withGates(gate("smoke", eachStep, hold))
	gRB := withGates(gate("smoke", eachStep, rollBack))
	runCases(t, []tcase{
		{
			name: "each step: the weight is routed: the gate is called",
			ro:   at(g),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				check: checks(calls(eachStep, 1, newRev, "smoke"), gatesRecorded(eachStep, 1, newRev, nil), messageHas(`waiting for gate "smoke"`))},
		},
		{
			name: "each step: not routed yet: no call",
			ro:   at(g),
			obs:  observe(t0, canaryReady(1), routing(0)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), check: noCalls()},
		},
		{
			name: "each step: pass: the step ends",
			ro:   at(g, gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5), answered(eachStep, 1, newRev, "smoke", true, "HTTP 200")),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"GatePassed"}, desired: dRun(3, 5, true),
				requeue: 10 * time.Minute, check: checks(noCalls(), gatesRecorded(eachStep, 1, newRev, []string{"smoke"}))},
		},
		{
			name: "each step: pass, with a pause still running: the step waits for it",
			ro:   newRollout(g, pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Minute)), gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5), answered(eachStep, 1, newRev, "smoke", true, "HTTP 200")),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"GatePassed"}, desired: dRun(1, 5, true),
				requeue: 4 * time.Minute, check: checks(noCalls(), messageHas("waiting for pause until"))},
		},
		{
			name: "each step: the next step calls it again",
			ro:   newRollout(g, inRollout(progressing, holding, 2, 25, ago(time.Minute)), gateRecord(eachStep, 1, "smoke")),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true),
				check: checks(calls(eachStep, 2, newRev, "smoke"), gatesRecorded(eachStep, 2, newRev, nil))},
		},
		{
			name: "each step: hold",
			ro:   at(g, gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5), answered(eachStep, 1, newRev, "smoke", false, "HTTP 503")),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"GateHeld"}, desired: dRun(1, 5, true),
				requeue: time.Minute, check: checks(noCalls(), gatesRecorded(eachStep, 1, newRev, nil, "smoke"), messageHas("HTTP 503"))},
		},
		{
			name: "each step: hold again: said once, the status keeps the latest answer",
			ro:   at(g, gateRecord(eachStep, 1), heldSince("smoke", ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), answered(eachStep, 1, newRev, "smoke", false, "HTTP 502")),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: time.Minute, check: checks(noCalls(), gatesRecorded(eachStep, 1, newRev, nil, "smoke"), messageHas("HTTP 502"))},
		},
		{
			name: "each step: roll back",
			ro:   at(gRB, gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5), answered(eachStep, 1, newRev, "smoke", false, "timeout")),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{ReasonGateFailed}, desired: dRun(1, 0, false),
				check: checks(noCalls(), messageHas(`gate "smoke"`), messageHas("timeout"))},
		},
		{
			name: "each step: a failure for an earlier step is dropped",
			ro:   newRollout(gRB, inRollout(progressing, holding, 2, 25, ago(time.Minute)), gateRecord(eachStep, 2)),
			obs:  observe(t0, canaryReady(3), routing(25), answered(eachStep, 1, newRev, "smoke", false, "HTTP 500")),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), check: calls(eachStep, 2, newRev, "smoke")},
		},
		{
			name: "each step: kubectl ramp promote ends the step without the gate",
			ro:   at(g, gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"PromoteRequested"}, desired: dRun(3, 5, true),
				requeue: 10 * time.Minute, check: noCalls()},
		},
		{
			name: "each step: paused: no call",
			ro:   at(g, paused(), gateRecord(eachStep, 1)),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: pausedPhase, stage: holding, step: 1, weight: 5, events: []string{"Paused"}, desired: dRun(1, 5, true), check: noCalls()},
		},
	})
}

func TestDecideGatesBeforePromotion(t *testing.T) {
	at := func(gs roOpt, extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{gs, twoSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))}, extra...)...)
	}
	g := withGates(gate("confirm", beforePro, hold), gate("smoke", eachStep, hold))
	gRB := withGates(gate("confirm", beforePro, rollBack))
	runCases(t, []tcase{
		{
			name: "before promotion: the last step is done: the gate is called",
			ro:   at(g, gateRecord(eachStep, 2, "smoke")),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true),
				check: checks(calls(beforePro, 0, newRev, "confirm"), gatesRecorded(beforePro, 0, newRev, nil), messageHas(`waiting for gate "confirm" before promotion`))},
		},
		{
			name: "before promotion: the last step's gate has not passed: not yet",
			ro:   at(g, gateRecord(eachStep, 2)),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), check: calls(eachStep, 2, newRev, "smoke")},
		},
		{
			name: "before promotion: waiting does not call the step's gate again",
			ro:   at(g, gateRecord(beforePro, 0)),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), check: calls(beforePro, 0, newRev, "confirm")},
		},
		{
			name: "before promotion: pass: promotion starts",
			ro:   at(g, gateRecord(beforePro, 0)),
			obs:  observe(t0, canaryReady(3), routing(25), answered(beforePro, 0, newRev, "confirm", true, "HTTP 204")),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 25, events: []string{"GatePassed", "PromotionStarted"},
				desired: dRun(10, 25, true), requeue: 10 * time.Minute, check: noCalls()},
		},
		{
			name: "before promotion: hold",
			ro:   at(g, gateRecord(beforePro, 0)),
			obs:  observe(t0, canaryReady(3), routing(25), answered(beforePro, 0, newRev, "confirm", false, "HTTP 423")),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"GateHeld"}, desired: dRun(3, 25, true),
				requeue: time.Minute, check: checks(noCalls(), gatesRecorded(beforePro, 0, newRev, nil, "confirm"), messageHas("HTTP 423"))},
		},
		{
			name: "before promotion: roll back",
			ro:   at(gRB, gateRecord(beforePro, 0)),
			obs:  observe(t0, canaryReady(3), routing(25), answered(beforePro, 0, newRev, "confirm", false, "HTTP 500")),
			want: want{phase: rollingBack, stage: holding, step: 2, events: []string{ReasonGateFailed}, desired: dRun(3, 0, false),
				check: checks(noCalls(), messageHas(`gate "confirm"`), messageHas("HTTP 500"))},
		},
		{
			name: "before promotion: promote --full skips it",
			ro:   at(g, gateRecord(beforePro, 0)),
			obs:  observe(t0, canaryReady(3), routing(25), requests(Requests{PromoteFull: "f1"})),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 25, events: []string{"PromoteRequested", "PromotionStarted"},
				desired: dRun(10, 25, true), requeue: 10 * time.Minute, check: noCalls()},
		},
	})
}

func TestDecideGatesAfterRollout(t *testing.T) {
	g := withGates(gate("report", after, rollBack))
	promoted := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{g, withStatus(func(st *rampv1.RolloutStatus) {
			st.Phase, st.StableRevision, st.StablePodTemplateHash = succeeded, newRev, newHash
		}), gateRecord(after, 0)}, extra...)...)
	}
	runCases(t, []tcase{
		{
			name: "after rollout: promoted: the gate is called",
			ro:   newRollout(g, twoSteps, inRollout(promoting, toStable, 2, 0, ago(time.Minute)), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), routing(0), stableSubset(newHash)),
			want: want{phase: succeeded, events: []string{"Promoted"}, desired: dSteady(newHash),
				check: checks(calls(after, 0, newRev, "report"), gatesRecorded(after, 0, newRev, nil))},
		},
		{
			name: "after rollout: rolled back: the gate is called",
			ro: newRollout(g, inRollout(rollingBack, holding, 2, 0, ago(time.Minute)),
				withStatus(func(st *rampv1.RolloutStatus) { st.Message = "analysis failed 2 times" })),
			obs: observe(t0, canaryReady(3), routing(0)),
			want: want{phase: failedPhase, stage: holding, step: 2, events: []string{"RolledBack"}, desired: dSteady(stableHash),
				check: calls(after, 0, newRev, "report")},
		},
		{
			name: "after rollout: a failure is reported only, once",
			ro:   promoted(),
			obs:  observe(t0, targetRolledOut(newRev, newHash), routing(0), stableSubset(newHash), answered(after, 0, newRev, "report", false, "HTTP 500")),
			want: want{phase: succeeded, events: []string{"GateFailed"}, desired: dSteady(newHash),
				check: checks(noCalls(), warnings(true), gatesRecorded(after, 0, newRev, []string{"report"}))},
		},
		{
			name: "after rollout: a pass is reported",
			ro:   promoted(),
			obs:  observe(t0, targetRolledOut(newRev, newHash), routing(0), stableSubset(newHash), answered(after, 0, newRev, "report", true, "HTTP 200")),
			want: want{phase: succeeded, events: []string{"GatePassed"}, desired: dSteady(newHash),
				check: checks(noCalls(), gatesRecorded(after, 0, newRev, []string{"report"}))},
		},
		{
			name: "after rollout: a new revision starts a rollout; the old call is no longer wanted",
			ro:   promoted(),
			obs:  observe(t0, targetAt(newerRev), canaryAt(newRev, 0)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: with(dRun(1, 0, false), func(d *Desired) { d.CanaryRevision = newerRev; d.StablePodTemplateHash = newHash }),
				requeue: 10 * time.Minute, check: checks(noCalls(), func(t *testing.T, d Decision) {
					if d.Status.Gates != nil {
						t.Errorf("status.gates = %+v, want none for the new rollout", d.Status.Gates)
					}
				})},
		},
	})
}

// A stalled rollout calls no gate.
func TestDecideGatesNotCalledWhenStalled(t *testing.T) {
	ro := newRollout(withGates(gate("smoke", eachStep, hold)), inRollout(progressing, holding, 1, 5, ago(time.Minute)))
	d := Decide(DefaultConfig(), ro, observe(t0, canaryReady(1), routing(5), func(o *Observation) {
		o.Blocked = &Blocker{Reason: "GateEndpointNotAllowed", Message: "no"}
	}))
	if d.Gates != nil || !d.Summary.Stalled {
		t.Errorf("stalled %v, gate calls %+v", d.Summary.Stalled, d.Gates)
	}
}
