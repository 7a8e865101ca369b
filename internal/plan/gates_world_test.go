package plan

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// gateWorld answers gate calls as the reconciler's runner would: one call per gate and point
// in flight, its result in the next pass. answer decides each call (attempt counts from 1 per
// gate and point).
type gateWorld struct {
	answer  func(name string, p GatePoint, attempt int) bool
	calls   map[string]int // "name@at/step" → calls made
	pending []GateResult
}

func (g *gateWorld) call(now time.Time, c *GateCalls) {
	if c == nil {
		g.pending = nil // the runner cancels what is no longer wanted
		return
	}
	g.pending = slices.DeleteFunc(g.pending, func(r GateResult) bool { return r.GatePoint != c.GatePoint })
	for _, name := range c.Names {
		if slices.ContainsFunc(g.pending, func(r GateResult) bool { return r.Name == name }) {
			continue
		}
		key := fmt.Sprintf("%s@%s/%d", name, c.At, c.Step)
		g.calls[key]++
		passed := g.answer(name, c.GatePoint, g.calls[key])
		result := "HTTP 200"
		if !passed {
			result = "HTTP 503"
		}
		g.pending = append(g.pending, GateResult{GatePoint: c.GatePoint, Name: name, Passed: passed, Result: result, At: now})
	}
}

// A rollout through every gate point, with the world's invariants checked at every pass: the
// canary is not sized before BeforeRollout passes, a step does not end before its gate
// passes (a hold at step 2 is called again each interval), promotion waits for
// BeforePromotion, and AfterRollout is called once.
func TestSimulateGates(t *testing.T) {
	ro := newRollout(withGates(gate("pre", before, hold), gate("smoke", eachStep, hold), gate("confirm", beforePro, rollBack), gate("report", after, rollBack)))
	w := newWorld()
	w.canaryDelay = 5 * time.Second
	g := &gateWorld{calls: map[string]int{}, answer: func(name string, p GatePoint, attempt int) bool {
		switch {
		case name == "pre":
			return attempt >= 2 // holds once
		case name == "smoke" && p.Step == 2:
			return attempt >= 3 // holds twice
		}
		return true
	}}
	dr := &driver{t: t, cfg: DefaultConfig(), ro: ro, w: w}
	dr.adopt()
	w.gitRev = newRev

	var promotedAt, confirmedAt, preAt time.Time
	for i := 0; i < 2000 && !(ro.Status.Phase == rampv1.PhaseSucceeded && len(g.pending) == 0 && ro.Status.Gates != nil && len(ro.Status.Gates.Passed) == 1); i++ {
		obs := w.observe()
		obs.Gates, g.pending = g.pending, nil
		for _, r := range obs.Gates {
			switch {
			case r.Name == "pre" && r.Passed:
				preAt = w.now
			case r.Name == "confirm" && r.Passed:
				confirmedAt = w.now
			}
		}
		d := Decide(dr.cfg, ro, obs)
		dr.passes = append(dr.passes, pass{obs, d})
		checkPass(t, ro, obs, d, w)
		if d.Desired != nil && d.Desired.CanaryReplicas > 0 && preAt.IsZero() {
			t.Fatalf("canary sized before the BeforeRollout gate passed: %s", dr.trace())
		}
		if d.Status.Phase == rampv1.PhasePromoting && promotedAt.IsZero() {
			promotedAt = w.now
		}
		ro.Status = d.Status
		w.apply(d.Desired)
		g.call(w.now, d.Gates)
		w.now = w.now.Add(time.Second)
		w.settle()
	}
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("not promoted: %s", dr.trace())
	}
	if confirmedAt.IsZero() || promotedAt.Before(confirmedAt) {
		t.Errorf("promotion started at %v, the BeforePromotion gate passed at %v", promotedAt.Sub(t0), confirmedAt.Sub(t0))
	}
	if got, want := w.vsHistory, []int32{0, 5, 25, 100, 0}; !slices.Equal(got, want) {
		t.Errorf("VirtualService weights %v, want %v", got, want)
	}
	want := map[string]int{"pre@BeforeRollout/0": 2, "smoke@EachStep/1": 1, "smoke@EachStep/2": 3, "smoke@EachStep/3": 1,
		"confirm@BeforePromotion/0": 1, "report@AfterRollout/0": 1}
	if !maps.Equal(g.calls, want) {
		t.Errorf("gate calls %v, want %v", g.calls, want)
	}
	if n := countOf(dr.eventsSeen(), "GateHeld"); n != 2 {
		t.Errorf("%d GateHeld events, want 2 (pre and smoke, once each however often they fail)", n)
	}
}
