package plan

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// GatePoint is what a gate call concerns: a point of one revision's rollout (the step, at
// EachStep). A result belongs to it and is dropped once the rollout has moved on.
type GatePoint struct {
	At       string
	Step     int32
	Revision string
}

// GateCalls names the gates of a point to call now.
type GateCalls struct {
	GatePoint
	Names []string
}

// GateResult is a finished call of a gate.
type GateResult struct {
	GatePoint
	Name   string
	Passed bool
	// Result is the status code or error class (never the answer's body).
	Result string
	// At is when the call ended.
	At time.Time
}

// ReasonGateFailed is the reason of a rollback by a failing gate.
const ReasonGateFailed = "GateFailed"

// rank orders the points of one revision's rollout.
func rank(p GatePoint) [2]int32 {
	switch p.At {
	case rampv1.GateBeforeRollout:
		return [2]int32{0, 0}
	case rampv1.GateEachStep:
		return [2]int32{1, p.Step}
	case rampv1.GateBeforePromotion:
		return [2]int32{2, 0}
	}
	return [2]int32{3, 0}
}

func gatesAt(spec *rampv1.RolloutSpec, at string) []*rampv1.Gate {
	var out []*rampv1.Gate
	for i := range spec.Gates {
		if spec.Gates[i].At == at {
			out = append(out, &spec.Gates[i])
		}
	}
	return out
}

func pointOf(gs *rampv1.GateStatus) GatePoint {
	return GatePoint{At: gs.At, Step: gs.Step, Revision: gs.Revision}
}

// gatesPassed reports from the status alone whether the gates of p have passed: all of
// them, or the rollout is recorded at a later point of the same revision.
func gatesPassed(spec *rampv1.RolloutSpec, st *rampv1.RolloutStatus, p GatePoint) bool {
	gs := gatesAt(spec, p.At)
	if len(gs) == 0 {
		return true
	}
	rec := st.Gates
	if rec == nil || rec.Revision != p.Revision {
		return false
	}
	if r, q := rank(pointOf(rec)), rank(p); r != q {
		return r[0] > q[0] || (r[0] == q[0] && r[1] > q[1])
	}
	for _, g := range gs {
		if !slices.Contains(rec.Passed, g.Name) {
			return false
		}
	}
	return true
}

// gateOutcome is what checking a point's gates did.
type gateOutcome struct {
	passed bool
	// justPassed: the last of them passed this pass.
	justPassed bool
	rolledBack bool
	// waiting describes the gates still pending.
	waiting string
}

// gates checks the gates of point p: it records the calls that ended, asks for the calls
// due, and rolls back when a RollBack gate failed.
func (d *decider) gates(p GatePoint) gateOutcome {
	gs := gatesAt(d.spec, p.At)
	if gatesPassed(d.spec, &d.st, p) {
		return gateOutcome{passed: true}
	}
	if d.st.Gates == nil || pointOf(d.st.Gates) != p {
		d.st.Gates = &rampv1.GateStatus{At: p.At, Step: p.Step, Revision: p.Revision}
	}
	rec := d.st.Gates
	byName := map[string]*rampv1.Gate{}
	for _, g := range gs {
		byName[g.Name] = g
	}
	rest := d.obs.Gates[:0:0]
	for _, r := range d.obs.Gates {
		g := byName[r.Name]
		if r.GatePoint != p || g == nil || slices.Contains(rec.Passed, r.Name) {
			if r.GatePoint != p {
				rest = append(rest, r)
			}
			continue
		}
		wasHeld := slices.ContainsFunc(rec.Held, func(h rampv1.HeldGate) bool { return h.Name == r.Name })
		rec.Held = slices.DeleteFunc(rec.Held, func(h rampv1.HeldGate) bool { return h.Name == r.Name })
		switch {
		case r.Passed:
			rec.Passed = append(rec.Passed, r.Name)
			d.event(false, "GatePassed", fmt.Sprintf("gate %q (%s) passed: %s", r.Name, d.pointText(p), r.Result))
		case g.RollsBack():
			d.rollback(ReasonGateFailed, fmt.Sprintf("gate %q (%s) failed: %s", r.Name, d.pointText(p), r.Result))
			d.obs.Gates = rest
			return gateOutcome{rolledBack: true}
		default:
			if !wasHeld { // once when it starts holding, not at every call (Slack hears of it too)
				d.event(true, "GateHeld", fmt.Sprintf("gate %q (%s) failed: %s; holding, calling it again every %s", r.Name, d.pointText(p), r.Result, g.IntervalOrDefault()))
			}
			rec.Held = append(rec.Held, rampv1.HeldGate{Name: r.Name, Result: r.Result, At: metav1.NewMicroTime(r.At)})
		}
	}
	d.obs.Gates = rest
	if gatesPassed(d.spec, &d.st, p) {
		return gateOutcome{passed: true, justPassed: true}
	}
	calls := &GateCalls{GatePoint: p}
	var waiting []string
	for _, g := range gs {
		if slices.Contains(rec.Passed, g.Name) {
			continue
		}
		i := slices.IndexFunc(rec.Held, func(h rampv1.HeldGate) bool { return h.Name == g.Name })
		if i < 0 {
			calls.Names = append(calls.Names, g.Name)
			waiting = append(waiting, fmt.Sprintf("gate %q", g.Name))
			continue
		}
		h := rec.Held[i]
		next := h.At.Add(g.IntervalOrDefault())
		waiting = append(waiting, fmt.Sprintf("gate %q (last answer: %s; calling it again every %s)", g.Name, h.Result, g.IntervalOrDefault()))
		if d.now.Before(next) {
			d.wakeAt(next)
		} else {
			calls.Names = append(calls.Names, g.Name)
		}
	}
	if len(calls.Names) > 0 {
		d.calls = calls
	}
	return gateOutcome{waiting: joinAnd(waiting)}
}

// afterRollout calls the AfterRollout gates of the rollout that just ended (once each, whatever
// they answer) and reports what they answered.
func (d *decider) afterRollout() {
	rec := d.st.Gates
	if rec == nil || rec.At != rampv1.GateAfterRollout {
		return
	}
	p := pointOf(rec)
	rest := d.obs.Gates[:0:0]
	for _, r := range d.obs.Gates {
		if r.GatePoint != p {
			rest = append(rest, r)
			continue
		}
		if slices.Contains(rec.Passed, r.Name) {
			continue
		}
		rec.Passed = append(rec.Passed, r.Name)
		if r.Passed {
			d.event(false, "GatePassed", fmt.Sprintf("gate %q (%s) passed: %s", r.Name, d.pointText(p), r.Result))
		} else {
			d.event(true, "GateFailed", fmt.Sprintf("gate %q (%s) failed: %s (reported only)", r.Name, d.pointText(p), r.Result))
		}
	}
	d.obs.Gates = rest
	calls := &GateCalls{GatePoint: p}
	for _, g := range gatesAt(d.spec, rampv1.GateAfterRollout) {
		if !slices.Contains(rec.Passed, g.Name) {
			calls.Names = append(calls.Names, g.Name)
		}
	}
	if len(calls.Names) > 0 {
		d.calls = calls
	}
}

// ended records that the rollout of revision ended, for its AfterRollout gates.
func (d *decider) ended(revision string) {
	if len(gatesAt(d.spec, rampv1.GateAfterRollout)) > 0 {
		d.st.Gates = &rampv1.GateStatus{At: rampv1.GateAfterRollout, Revision: revision}
	}
}

// beforeRolloutPending reports whether the rollout waits for its BeforeRollout gates: the
// canary is neither scaled nor given traffic meanwhile.
func (d *decider) beforeRolloutPending() bool {
	st := &d.st
	return st.CanaryRevision != "" && st.CurrentStep <= 1 && st.CanaryWeight == 0 && st.Stage == StageScalingCanary &&
		!gatesPassed(d.spec, st, GatePoint{At: rampv1.GateBeforeRollout, Revision: st.CanaryRevision})
}

func (d *decider) pointText(p GatePoint) string {
	switch p.At {
	case rampv1.GateEachStep:
		return fmt.Sprintf("step %d/%d of revision %s", p.Step, d.st.Steps, p.Revision)
	case rampv1.GateBeforeRollout:
		return "before the rollout of revision " + p.Revision
	case rampv1.GateBeforePromotion:
		return "before promoting revision " + p.Revision
	}
	return "after the rollout of revision " + p.Revision
}
