package plan

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// fakeWorld is the cluster as the reconciler would see it, reduced to what Decide reads:
//   - the target Deployment runs runningRev; Git sets gitRev; while it is not paused the
//     Deployment controller rolls gitRev out (at once, or after rolloutDelay);
//   - the canary Deployment gets the revision and size Desired asks for; its pods are ready
//     canaryDelay after they were asked for;
//   - the VirtualService takes the desired weight at once (no VirtualService before the
//     first Desired), the DestinationRule's stable subset the desired hash;
//   - Git may recreate the target (recreate): a new UID, maybe a new selector, not paused,
//     its ReplicaSet created a moment later and its pods ready rolloutDelay after that. The
//     canary's selector is immutable: rendering it over another selector fails (errs).
type fakeWorld struct {
	now time.Time

	gitRev       string
	runningRev   string
	replicas     int32
	targetPaused bool
	rolloutAt    time.Time // when the target finishes rolling gitRev out (zero: not rolling)
	rolloutDelay time.Duration

	canaryExists bool
	canaryRev    string
	canaryWant   int32
	canaryReady  int32
	canaryAsked  time.Time
	canaryDelay  time.Duration

	vs        *int32
	vsHistory []int32 // each weight the VirtualService took, in order
	header    bool
	subset    string

	// windowOpensAt: promotion windows are closed before it (zero: always open).
	windowOpensAt time.Time

	// rescued: the last pass routed all traffic to the canary because the target was gone;
	// followed: because a subset had no ready pods (Decider.followReadyPods).
	rescued, followed bool

	uid       int
	selector  string
	canarySel string
	// rsAt is when a recreated target's ReplicaSet appears, readyAt when its pods are ready.
	rsAt, readyAt time.Time
	// errs are what the API server or the Deployment controller would have made of the
	// desired states applied (an immutable field changed, a Deployment paused without pods).
	errs []string
	// conflicts counts the target writes refused because the target changed since the pass
	// observed it (applyOver).
	conflicts int
}

// recreate deletes the target and creates it again from Git at rev with selector, as Flux's
// force does: a new UID, not paused, all its pods on rev at once.
func (w *fakeWorld) recreate(rev, selector string) {
	w.uid++
	w.selector, w.gitRev, w.runningRev = selector, rev, rev
	w.targetPaused, w.rolloutAt = false, time.Time{}
	w.rsAt = w.now.Add(100 * time.Millisecond)
	w.readyAt = w.rsAt.Add(w.rolloutDelay)
}

func (w *fakeWorld) hasRS() bool       { return !w.now.Before(w.rsAt) }
func (w *fakeWorld) targetReady() bool { return w.hasRS() && !w.now.Before(w.readyAt) }

func (w *fakeWorld) canarySelector() string { return w.selector + ",ramp.dev/track=canary" }

func hashOf(rev string) string { return "h" + rev[1:] }

func newWorld() *fakeWorld {
	return &fakeWorld{now: t0, gitRev: stableRev, runningRev: stableRev, replicas: replicas, uid: 1, selector: "app=web"}
}

func (w *fakeWorld) observe() Observation {
	o := Observation{
		Now: w.now,
		Target: Target{Exists: true, Revision: w.gitRev, Replicas: w.replicas, Paused: w.targetPaused, PausedByRamp: w.targetPaused,
			RolledOut: w.runningRev == w.gitRev && w.targetReady(),
			UID:       types.UID(fmt.Sprintf("uid-%d", w.uid)), Selector: w.selector, CanarySelector: w.canarySelector(),
			ReadyPods: map[string]int32{}},
		Canary: Canary{Exists: w.canaryExists, Revision: w.canaryRev, ReadyReplicas: w.canaryReady,
			Replicas: w.canaryWant, ReadyPods: w.canaryReady, Selector: w.canarySel},
		WindowOpen: true,
	}
	if w.runningRev == w.gitRev && w.hasRS() {
		o.Target.PodTemplateHash = hashOf(w.runningRev)
	}
	if w.targetReady() {
		o.Target.ReadyPods[hashOf(w.runningRev)] = w.replicas
	}
	if w.vs != nil {
		o.Routing = &ObservedRouting{CanaryWeight: *w.vs}
	}
	if !w.windowOpensAt.IsZero() && w.now.Before(w.windowOpensAt) {
		o.WindowOpen, o.WindowOpensAt = false, w.windowOpensAt
	}
	return o
}

// applyOver applies d as the reconciler does: its write of the target's spec.paused is
// conditional on the version of the target obs saw (the resourceVersion precondition) when
// Desired.TargetAsObserved says so. When
// Git changed the target since, a pause, applied first, fails and the pass writes nothing
// more; an un-pause, applied last, fails alone.
func (w *fakeWorld) applyOver(d *Desired, obs Observation) {
	if d != nil && !d.TargetUntouched && d.TargetAsObserved && d.TargetPaused != obs.Target.Paused &&
		(obs.Target.Revision != w.gitRev || obs.Target.Paused != w.targetPaused) {
		w.conflicts++
		if d.TargetPaused {
			d = nil
		} else {
			d = ptrTo(*d)
			d.TargetUntouched = true
		}
	}
	w.apply(d)
}

// apply converges the world to d (nil: touch nothing).
func (w *fakeWorld) apply(d *Desired) {
	if d != nil && d.PauseOnly {
		w.targetPaused = true
	} else if d != nil {
		if !d.TargetUntouched {
			if d.TargetPaused && !w.hasRS() {
				w.errs = append(w.errs, "the recreated target paused before its ReplicaSet existed: it gets no pods")
			}
			w.targetPaused = d.TargetPaused
		}
		if d.RecreateCanary {
			if !w.canaryExists || w.canarySel == w.canarySelector() {
				w.errs = append(w.errs, fmt.Sprintf("canary recreated needlessly (exists %t, selector %q)", w.canaryExists, w.canarySel))
			}
			w.canaryExists, w.canaryRev, w.canaryReady, w.canaryWant, w.canarySel = false, "", 0, 0, ""
		}
		if d.RenderCanary && w.canaryExists && w.canarySel != w.canarySelector() {
			w.errs = append(w.errs, fmt.Sprintf("canary rendered with selector %q over its immutable %q", w.canarySelector(), w.canarySel))
		}
		if d.RenderCanary && d.CanaryRevision != w.canaryRev {
			w.canaryExists, w.canaryRev, w.canaryReady, w.canaryWant, w.canarySel = true, d.CanaryRevision, 0, 0, w.canarySelector()
		}
		if d.CanaryReplicas != w.canaryWant {
			if d.CanaryReplicas < w.canaryReady {
				w.canaryReady = d.CanaryReplicas
			}
			w.canaryWant, w.canaryAsked = d.CanaryReplicas, w.now
		}
		if w.vs == nil || *w.vs != d.CanaryWeight {
			v := d.CanaryWeight
			w.vs = &v
			w.vsHistory = append(w.vsHistory, v)
		}
		w.header, w.subset = d.HeaderRoute, d.StablePodTemplateHash
	}
	if !w.targetPaused && w.runningRev != w.gitRev && w.rolloutAt.IsZero() {
		w.rolloutAt = w.now.Add(w.rolloutDelay)
	}
	w.settle()
}

// settle lets what was asked for happen once its delay has passed.
func (w *fakeWorld) settle() {
	if w.canaryReady < w.canaryWant && !w.now.Before(w.canaryAsked.Add(w.canaryDelay)) {
		w.canaryReady = w.canaryWant
	}
	if !w.rolloutAt.IsZero() && !w.now.Before(w.rolloutAt) {
		w.rolloutAt = time.Time{}
		if !w.targetPaused {
			w.runningRev = w.gitRev
		}
	}
}

// nextEvent is when something in the world changes by itself (zero: nothing pending).
func (w *fakeWorld) nextEvent() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(w.now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if w.canaryReady < w.canaryWant {
		consider(w.canaryAsked.Add(w.canaryDelay))
	}
	consider(w.rolloutAt)
	consider(w.rsAt)
	consider(w.readyAt)
	return next
}

// pass is one reconcile: what Decide saw and decided.
type pass struct {
	obs Observation
	d   Decision
}

type driver struct {
	t   *testing.T
	cfg Config
	ro  *rampv1.Rollout
	w   *fakeWorld
	// verdict answers each analysis round that is due.
	verdict string
	// req is what kubectl ramp asks for.
	req Requests
	// hook may change the world (Git, requests) before each pass; race between a pass's
	// decision and its writes (a commit landing after ramp observed the target).
	hook   func(dr *driver)
	race   func(dr *driver, obs Observation, d Decision)
	passes []pass
}

// run reconciles until the rollout reaches phase (or gives up), advancing the clock to the
// next requeue or world event, and checks the invariants of every pass.
func (dr *driver) run(until func(*rampv1.Rollout) bool, maxPasses int) {
	t := dr.t
	t.Helper()
	for i := 0; i < maxPasses; i++ {
		if dr.hook != nil {
			dr.hook(dr)
		}
		obs := dr.w.observe()
		obs.Requests = dr.req
		if AnalysisDue(dr.ro, obs.Requests.Paused, obs.Now) {
			obs.Analysis = &AnalysisResult{Verdict: dr.verdict, Reason: "simulated"}
		}
		d := Decide(dr.cfg, dr.ro, obs)
		dr.passes = append(dr.passes, pass{obs, d})
		checkPass(t, dr.ro, obs, d, dr.w)
		if dr.race != nil {
			dr.race(dr, obs, d)
		}
		dr.w.applyOver(d.Desired, obs)
		for _, e := range dr.w.errs {
			t.Error(e)
		}
		if t.Failed() {
			t.Fatalf("pass %d at %v: %s", i, obs.Now.Sub(t0), dr.trace())
		}
		statusChanged := !reflect.DeepEqual(dr.ro.Status, d.Status)
		dr.ro.Status = d.Status
		if until(dr.ro) {
			return
		}
		// The next pass: the earliest of the requeue timer, a change the world makes by itself,
		// and the watch event of what this pass changed (a second later). With none of them
		// a real controller would wait forever: go on a second later, until maxPasses.
		var next time.Time
		consider := func(t time.Time) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if d.RequeueAfter > 0 {
			consider(dr.w.now.Add(d.RequeueAfter))
		}
		if ev := dr.w.nextEvent(); !ev.IsZero() {
			consider(ev)
		}
		if after := dr.w.observe(); statusChanged || !reflect.DeepEqual(after, obsWithout(obs)) || next.IsZero() {
			consider(dr.w.now.Add(time.Second))
		}
		dr.w.now = next
		dr.w.settle()
	}
	t.Fatalf("not done after %d passes: %s", maxPasses, dr.trace())
}

// obsWithout strips what the driver adds to what the world shows.
func obsWithout(o Observation) Observation {
	o.Analysis, o.Requests = nil, Requests{}
	return o
}

func (dr *driver) trace() string {
	s := ""
	for i, p := range dr.passes {
		st := p.d.Status
		s += fmt.Sprintf("\n  %3d +%-8v %s/%s step %d weight %d events %v msg %q", i, p.obs.Now.Sub(t0), st.Phase, st.Stage,
			st.CurrentStep, st.CanaryWeight, reasons(p.d.Events), st.Message)
	}
	return s
}

// stagesSeen lists the distinct phase/stage pairs the rollout went through, in order.
func (dr *driver) stagesSeen() []string {
	var out []string
	for _, p := range dr.passes {
		s := p.d.Status.Phase + "/" + p.d.Status.Stage
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

func (dr *driver) eventsSeen() []string {
	var out []string
	for _, p := range dr.passes {
		out = append(out, reasons(p.d.Events)...)
	}
	return out
}

func phaseIs(phases ...string) func(*rampv1.Rollout) bool {
	return func(ro *rampv1.Rollout) bool { return slices.Contains(phases, ro.Status.Phase) }
}

// checkPass holds the invariants of one pass against the world it was decided in (before the
// world applies it).
func checkPass(t *testing.T, ro *rampv1.Rollout, obs Observation, d Decision, w *fakeWorld) {
	t.Helper()
	st := d.Status
	if st.CanaryWeight < 0 || st.CanaryWeight > 100 {
		t.Errorf("status weight %d out of range", st.CanaryWeight)
	}
	if d.RequeueAfter < 0 {
		t.Errorf("negative requeue %v", d.RequeueAfter)
	}
	switch st.Phase {
	case "", rampv1.PhaseInitializing, rampv1.PhaseIdle, rampv1.PhaseProgressing, rampv1.PhasePaused, rampv1.PhaseWaitingForWindow,
		rampv1.PhasePromoting, rampv1.PhaseSucceeded, rampv1.PhaseRollingBack, rampv1.PhaseFailed, rampv1.PhaseStalled:
	default:
		t.Errorf("unknown phase %q", st.Phase)
	}
	if st.Phase == rampv1.PhaseIdle || st.Phase == rampv1.PhaseSucceeded {
		if st.CanaryRevision != "" || st.CurrentStep != 0 || st.CanaryWeight != 0 || st.Stage != "" {
			t.Errorf("%s with a rollout left over: %+v", st.Phase, st)
		}
	}
	h := st.HandledRequests
	was := ro.Status.HandledRequests
	for _, f := range []struct{ name, got, was, token string }{
		{"promote", h.Promote, was.Promote, obs.Requests.Promote},
		{"promoteFull", h.PromoteFull, was.PromoteFull, obs.Requests.PromoteFull},
		{"abort", h.Abort, was.Abort, obs.Requests.Abort},
		{"retry", h.Retry, was.Retry, obs.Requests.Retry},
	} {
		if f.got != f.was && f.got != f.token {
			t.Errorf("handled %s = %q: neither the old %q nor the request %q", f.name, f.got, f.was, f.token)
		}
	}

	rescuedBefore, followedBefore := w.rescued, w.followed // until a desired state replaces that routing
	dd := d.Desired
	if dd != nil {
		w.rescued, w.followed = false, false
	}
	var stableReady, canaryReady int32
	if dd != nil {
		// No route carries weight to a subset with no ready pods while the other has some.
		stableReady = obs.Target.ReadyPods[dd.StablePodTemplateHash]
		if obs.Canary.Exists {
			canaryReady = obs.Canary.ReadyPods
		}
		if dd.CanaryWeight > 0 && canaryReady == 0 && stableReady > 0 {
			t.Errorf("%d%% to the canary subset, which has no ready pods, while the stable subset %s has %d", dd.CanaryWeight, dd.StablePodTemplateHash, stableReady)
		}
		if dd.CanaryWeight < 100 && stableReady == 0 && canaryReady > 0 {
			t.Errorf("%d%% to the stable subset %s, which has no ready pods, while the canary has %d", 100-dd.CanaryWeight, dd.StablePodTemplateHash, canaryReady)
		}
	}
	if dd != nil && !obs.Target.Exists {
		// The target is gone mid-rollout: all traffic to the canary, the only pods left, and
		// only when they are ready.
		w.rescued = true
		if d.Summary.Reason != "TargetNotFound" || !d.Summary.Stalled || dd.CanaryWeight != 100 ||
			obs.Canary.Revision != st.CanaryRevision || obs.Canary.ReadyReplicas < 1 || dd.CanaryReplicas < obs.Canary.ReadyReplicas {
			t.Errorf("target missing: desired %+v with canary %+v, summary %+v", *dd, obs.Canary, d.Summary)
		}
		return
	}
	if dd == nil {
		if !d.Summary.Stalled && st.Phase != "" && st.Phase != rampv1.PhaseInitializing && st.Phase != rampv1.PhaseStalled {
			t.Errorf("no desired state in phase %s without a stall", st.Phase)
		}
		return
	}
	if Adopting(ro.Status.Phase) && !Adopting(st.Phase) && !(obs.Target.Paused && obs.Target.PausedByRamp) {
		t.Errorf("adopted (%s, stable %s) before the target was seen paused by ramp", st.Phase, st.StableRevision)
	}
	if st.Phase == "" || st.Phase == rampv1.PhaseInitializing {
		// Before adoption ramp only pauses a rolled-out target at the revision it records (and
		// routes a recreated one's traffic to its pods).
		pausing := dd.PauseOnly || (dd.TargetPaused && !dd.TargetUntouched)
		if pausing && (!obs.Target.RolledOut || obs.Target.Revision != st.StableRevision) {
			t.Errorf("pausing a target not rolled out at the recorded revision %s (%+v)", st.StableRevision, obs.Target)
		}
		if dd.PauseOnly {
			if *dd != (Desired{TargetPaused: true, TargetAsObserved: true, PauseOnly: true}) || st.StablePodTemplateHash != "" {
				t.Errorf("adoption's pause with more: %s, stable subset %q", fmtDesired(dd), st.StablePodTemplateHash)
			}
			return
		}
		if st.StablePodTemplateHash == "" {
			t.Errorf("desired state before adoption: %s", fmtDesired(dd))
		}
	}
	followed := false
	if dd.CanaryWeight != st.CanaryWeight {
		// Only to keep traffic on the subset that has ready pods.
		followed = (dd.CanaryWeight == 100 && stableReady == 0 && canaryReady > 0) || (dd.CanaryWeight == 0 && canaryReady == 0 && stableReady > 0)
		if !followed {
			t.Errorf("desired weight %d != status weight %d (ready pods: stable %d, canary %d)", dd.CanaryWeight, st.CanaryWeight, stableReady, canaryReady)
		}
		w.followed = true
	}
	if dd.RecreateCanary && (!obs.Canary.Exists || obs.Routing == nil || obs.Routing.CanaryWeight != 0 || obs.Routing.HeaderRoute) {
		t.Errorf("canary recreated while it may take traffic (routing %+v)", obs.Routing)
	}
	if dd.CanaryReplicas < 0 || dd.CanaryReplicas > max(obs.Target.Replicas, 1) {
		t.Errorf("canary replicas %d out of range", dd.CanaryReplicas)
	}
	if dd.CanaryReplicas > 0 && dd.CanaryRevision != st.CanaryRevision && !followed {
		t.Errorf("canary scaled to %d at revision %q, rollout of %q", dd.CanaryReplicas, dd.CanaryRevision, st.CanaryRevision)
	}
	if dd.StablePodTemplateHash != st.StablePodTemplateHash || dd.StablePodTemplateHash == "" {
		t.Errorf("stable subset %q, status %q", dd.StablePodTemplateHash, st.StablePodTemplateHash)
	}
	if dd.Fault != nil && (st.Stage != StageHolding || st.Phase == rampv1.PhasePaused || !dd.HeaderRoute) {
		t.Errorf("fault outside holding: %s/%s header %v", st.Phase, st.Stage, dd.HeaderRoute)
	}
	if st.Phase == rampv1.PhaseRollingBack && (dd.HeaderRoute || (dd.CanaryWeight != 0 && !followed)) {
		t.Errorf("rolling back with header route %v, weight %d", dd.HeaderRoute, dd.CanaryWeight)
	}

	// Traffic moves forward along the plan, or back to 0.
	prev := int32(0)
	if w.vs != nil {
		prev = *w.vs
	}
	next := dd.CanaryWeight
	switch {
	case next == prev, rescuedBefore, followed, followedBefore:
	case next == 0:
		ok := slices.Contains([]string{rampv1.PhaseRollingBack, rampv1.PhaseFailed, rampv1.PhaseIdle, rampv1.PhaseSucceeded}, st.Phase) ||
			st.Stage == StageRoutingToStable ||
			slices.Contains(reasons(d.Events), "RolloutRestarted") ||
			// The target was recreated: the rollout is over, its pods serve Git's template.
			slices.Contains(reasons(d.Events), "ReleasedWithoutCanary") || slices.Contains(reasons(d.Events), "TargetRecreated") ||
			(slices.Contains(reasons(d.Events), "CanaryLost") && (!obs.Canary.Exists || obs.Canary.ReadyReplicas == 0))
		if !ok {
			t.Errorf("weight %d → 0 in %s/%s", prev, st.Phase, st.Stage)
		}
	case next < prev:
		t.Errorf("weight moved back %d → %d in %s/%s", prev, next, st.Phase, st.Stage)
	default:
		planned := next == 100
		for _, s := range stepsOf(&ro.Spec) {
			planned = planned || s.weight == next
		}
		if !planned {
			t.Errorf("weight %d → %d is no step of the plan", prev, next)
		}
		// Never more traffic than the canary was seen ready for.
		need := CanaryReplicas(obs.Target.Replicas, next)
		if isBlueGreen(&ro.Spec) {
			need = CanaryReplicas(obs.Target.Replicas, 100)
		}
		if obs.Canary.Revision != st.CanaryRevision || obs.Canary.ReadyReplicas < need {
			t.Errorf("weight %d → %d with %d ready canary pods of %q (need %d of %q)", prev, next,
				obs.Canary.ReadyReplicas, obs.Canary.Revision, need, st.CanaryRevision)
		}
	}

	// The target is un-paused only while the VirtualService sends it nothing.
	if !dd.TargetPaused && (w.vs == nil || *w.vs != 100 || next != 100) {
		t.Errorf("target un-paused while the VirtualService routes %v%% (desired %d) to the canary", w.vs, next)
	}
	// Stable traffic only ever goes to the subset of the pods the target runs (unless no pods
	// are ready anywhere: a recreated target before its ReplicaSet exists).
	if next < 100 && dd.StablePodTemplateHash != hashOf(w.runningRev) && (stableReady > 0 || canaryReady > 0) {
		t.Errorf("%d%% to stable subset %s while the target runs %s", 100-next, dd.StablePodTemplateHash, w.runningRev)
	}
}

// --- simulations ------------------------------------------------------------------------------

// adopt runs the first passes: ramp adopts the rolled-out target at r1.
func (dr *driver) adopt() {
	dr.t.Helper()
	dr.ro.Status = rampv1.RolloutStatus{}
	dr.run(phaseIs(rampv1.PhaseIdle), 3)
	if got := dr.w.vsHistory; !slices.Equal(got, []int32{0}) {
		dr.t.Fatalf("VirtualService after adoption: %v", got)
	}
}

func TestSimulateCanary(t *testing.T) {
	for _, c := range []struct {
		name   string
		opts   []roOpt
		world  func(*fakeWorld)
		stages []string
	}{
		{name: "default steps", opts: nil},
		{name: "pauses and analysis", opts: []roOpt{pausedSteps, analysed}},
		{name: "slow canary and target", opts: []roOpt{pausedSteps, analysed}, world: func(w *fakeWorld) {
			w.canaryDelay, w.rolloutDelay = 40*time.Second, 3*time.Minute
		}},
		{name: "window closed for hours before the 100% step; canary slow", opts: []roOpt{pausedSteps},
			world: func(w *fakeWorld) { w.canaryDelay, w.windowOpensAt = time.Minute, t0.Add(3*time.Hour) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld()
			if c.world != nil {
				c.world(w)
			}
			dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(c.opts...), w: w, verdict: rampv1.VerdictPassed}
			dr.adopt()
			w.gitRev = newRev
			dr.run(phaseIs(rampv1.PhaseSucceeded), 200)

			if got, want := w.vsHistory, []int32{0, 5, 25, 100, 0}; !slices.Equal(got, want) {
				t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
			}
			st := dr.ro.Status
			if st.StableRevision != newRev || st.StablePodTemplateHash != hashOf(newRev) || st.CanaryRevision != "" {
				t.Errorf("final status %+v", st)
			}
			if w.runningRev != newRev || !w.targetPaused || w.canaryWant != 0 || w.subset != hashOf(newRev) || w.header {
				t.Errorf("final world: target %s paused %v, canary ×%d, subset %s, header %v", w.runningRev, w.targetPaused, w.canaryWant, w.subset, w.header)
			}
			seen := dr.stagesSeen()
			// (RoutingToCanary passes within one pass: the last step already routes 100%.)
			for _, s := range []string{"Promoting/UpdatingStable", "Promoting/SwitchingStableSubset", "Promoting/RoutingToStable", "Succeeded/"} {
				if !slices.Contains(seen, s) {
					t.Errorf("never went through %s: %v", s, seen)
				}
			}
			evs := dr.eventsSeen()
			if n := countOf(evs, "StepStarted"); n != 3 {
				t.Errorf("%d StepStarted events, want 3: %v", n, evs)
			}
			for _, r := range []string{"RolloutStarted", "PromotionStarted", "Promoted"} {
				if countOf(evs, r) != 1 {
					t.Errorf("want one %s event: %v", r, evs)
				}
			}
			if !w.windowOpensAt.IsZero() {
				if !slices.Contains(seen, "WaitingForWindow/WaitingForWindow") || countOf(evs, "WaitingForWindow") != 1 {
					t.Errorf("never waited for the window: %v %v", seen, evs)
				}
				for _, p := range dr.passes {
					if p.d.Status.CanaryWeight == 100 && p.obs.Now.Before(w.windowOpensAt) {
						t.Errorf("100%% at %v, before the window opened", p.obs.Now)
					}
				}
			}
		})
	}
}

func TestSimulateBlueGreen(t *testing.T) {
	w := newWorld()
	w.canaryDelay = 30 * time.Second
	dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(withBlueGreen(pauseFor(5*time.Minute)), analysed), w: w, verdict: rampv1.VerdictPassed}
	dr.adopt()
	w.gitRev = newRev
	dr.run(phaseIs(rampv1.PhaseSucceeded), 200)

	if got, want := w.vsHistory, []int32{0, 100, 0}; !slices.Equal(got, want) {
		t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
	}
	// The preview: at full size, on the header route, for the pause, analysed.
	var previewFrom, previewTo time.Time
	for _, p := range dr.passes {
		dd := p.d.Desired
		if p.d.Status.Stage == StageHolding {
			if !dd.HeaderRoute || dd.CanaryWeight != 0 || dd.CanaryReplicas != replicas {
				t.Errorf("preview desired %s", fmtDesired(dd))
			}
			if previewFrom.IsZero() {
				previewFrom = p.obs.Now
			}
		} else if !previewFrom.IsZero() && previewTo.IsZero() {
			previewTo = p.obs.Now
		}
		if p.d.Status.Stage == StageScalingCanary && dd != nil && dd.CanaryReplicas != replicas {
			t.Errorf("blue/green canary scaled to %d, want %d", dd.CanaryReplicas, replicas)
		}
	}
	if previewTo.Sub(previewFrom) < 5*time.Minute {
		t.Errorf("preview lasted %v, want the 5m pause", previewTo.Sub(previewFrom))
	}
	if countOf(dr.eventsSeen(), "StepStarted") != 1 {
		t.Errorf("events %v", dr.eventsSeen())
	}
	if st := dr.ro.Status; st.StableRevision != newRev || st.StablePodTemplateHash != hashOf(newRev) {
		t.Errorf("final status %+v", st)
	}
}

func TestSimulateFailedAnalysis(t *testing.T) {
	for _, c := range []struct {
		name      string
		opts      []roOpt
		weights   []int32
		rounds    int32
		inconcl   bool
		failedVia string
	}{
		{name: "canary, failed rounds", opts: []roOpt{pausedSteps, analysed}, weights: []int32{0, 5, 0}, rounds: 2, failedVia: "AnalysisFailed"},
		{name: "canary, inconclusive rounds", opts: []roOpt{pausedSteps, analysed}, weights: []int32{0, 5, 0}, rounds: 5, inconcl: true, failedVia: "AnalysisInconclusive"},
		{name: "blue/green, failed rounds", opts: []roOpt{withBlueGreen(nil), analysed}, weights: []int32{0}, rounds: 2, failedVia: "AnalysisFailed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld()
			v := rampv1.VerdictFailed
			if c.inconcl {
				v = rampv1.VerdictInconclusive
			}
			dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(c.opts...), w: w, verdict: v}
			dr.adopt()
			w.gitRev = newRev
			dr.run(phaseIs(rampv1.PhaseFailed), 100)

			if !slices.Equal(w.vsHistory, c.weights) {
				t.Errorf("VirtualService weights %v, want %v%s", w.vsHistory, c.weights, dr.trace())
			}
			st := dr.ro.Status
			if got := st.FailedChecks + st.InconclusiveChecks; got != c.rounds || st.CanaryWeight != 0 || st.StableRevision != stableRev {
				t.Errorf("final status %+v", st)
			}
			if w.canaryWant != 0 || !w.targetPaused || w.runningRev != stableRev || w.subset != stableHash || w.header || *w.vs != 0 {
				t.Errorf("final world: canary ×%d, target %s paused %v, subset %s, header %v", w.canaryWant, w.runningRev, w.targetPaused, w.subset, w.header)
			}
			evs := dr.eventsSeen()
			if countOf(evs, c.failedVia) != int(c.rounds)+1 || countOf(evs, "RolledBack") != 1 {
				t.Errorf("events %v", evs)
			}
			last := dr.passes[len(dr.passes)-1].d
			if last.Summary.Ready || last.Summary.Reconciling || !last.Summary.Stalled || last.Summary.Reason != "RolloutFailed" {
				t.Errorf("summary %+v", last.Summary)
			}

			// It stays failed on the same revision.
			dr.passes = nil
			dr.run(func(*rampv1.Rollout) bool { return true }, 1)
			if dr.ro.Status.Phase != rampv1.PhaseFailed || len(dr.passes[0].d.Events) != 0 {
				t.Fatalf("failed rollout moved: %s", dr.trace())
			}
		})
	}
}

func TestSimulateRestartAndRevert(t *testing.T) {
	t.Run("new revision mid-rollout restarts it", func(t *testing.T) {
		w := newWorld()
		dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(pausedSteps), w: w}
		dr.adopt()
		w.gitRev = newRev
		dr.hook = func(dr *driver) {
			if st := dr.ro.Status; st.CurrentStep == 2 && st.Stage == StageHolding && dr.w.gitRev == newRev {
				dr.w.gitRev = newerRev
			}
		}
		dr.run(phaseIs(rampv1.PhaseSucceeded), 200)
		if got, want := w.vsHistory, []int32{0, 5, 25, 0, 5, 25, 100, 0}; !slices.Equal(got, want) {
			t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
		}
		if st := dr.ro.Status; st.StableRevision != newerRev || w.runningRev != newerRev {
			t.Errorf("final status %+v, target runs %s", st, w.runningRev)
		}
		if countOf(dr.eventsSeen(), "RolloutRestarted") != 1 {
			t.Errorf("events %v", dr.eventsSeen())
		}
	})
	t.Run("Git revert mid-rollout", func(t *testing.T) {
		w := newWorld()
		dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(pausedSteps), w: w}
		dr.adopt()
		w.gitRev = newRev
		dr.hook = func(dr *driver) {
			if st := dr.ro.Status; st.CurrentStep == 2 && st.Stage == StageHolding {
				dr.w.gitRev = stableRev
			}
		}
		dr.run(phaseIs(rampv1.PhaseIdle), 100)
		if got, want := w.vsHistory, []int32{0, 5, 25, 0}; !slices.Equal(got, want) {
			t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
		}
		if w.canaryWant != 0 || w.runningRev != stableRev {
			t.Errorf("final world %+v", w)
		}
	})
	t.Run("new revision during the target's update waits for Git to go back", func(t *testing.T) {
		w := newWorld()
		w.rolloutDelay = time.Minute
		dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(), w: w}
		dr.adopt()
		w.gitRev = newRev
		stalls := 0
		dr.hook = func(dr *driver) {
			st := dr.ro.Status
			switch {
			case st.Stage == StageUpdatingStable && dr.w.gitRev == newRev && stalls == 0:
				dr.w.gitRev = newerRev // a commit lands while the target rolls r2 out
			case st.Stage == StageUpdatingStable && dr.w.gitRev == newerRev:
				stalls++
				if stalls == 3 {
					dr.w.gitRev = newRev // the user follows the stall message
				}
			case st.Phase == rampv1.PhaseSucceeded && st.StableRevision == newRev:
				dr.w.gitRev = newerRev // and commits r3 again
			}
		}
		dr.run(func(ro *rampv1.Rollout) bool {
			return ro.Status.Phase == rampv1.PhaseSucceeded && ro.Status.StableRevision == newerRev
		}, 300)
		if got, want := w.vsHistory, []int32{0, 5, 25, 100, 0, 5, 25, 100, 0}; !slices.Equal(got, want) {
			t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
		}
		stalled := 0
		for _, p := range dr.passes {
			if p.d.Summary.Stalled {
				stalled++
				if p.d.Summary.Reason != "NewRevisionDuringPromotion" || p.d.Desired == nil || !p.d.Desired.TargetPaused || p.d.Desired.CanaryWeight != 100 {
					t.Errorf("stall: %+v %s", p.d.Summary, fmtDesired(p.d.Desired))
				}
			}
		}
		if stalled == 0 {
			t.Errorf("never stalled%s", dr.trace())
		}
	})
}

func TestSimulateAbortAndRetry(t *testing.T) {
	w := newWorld()
	dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(pausedSteps), w: w}
	dr.adopt()
	w.gitRev = newRev
	var req Requests
	dr.hook = func(dr *driver) {
		st := dr.ro.Status
		if st.CurrentStep == 2 && st.Stage == StageHolding && req.Abort == "" {
			req.Abort = "a1"
		}
		if st.Phase == rampv1.PhaseFailed && req.Retry == "" {
			req.Retry = "t1"
		}
		dr.req = req
	}
	dr.run(phaseIs(rampv1.PhaseSucceeded), 200)
	if got, want := w.vsHistory, []int32{0, 5, 25, 0, 5, 25, 100, 0}; !slices.Equal(got, want) {
		t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
	}
	evs := dr.eventsSeen()
	for _, r := range []string{"AbortRequested", "RolledBack", "Promoted"} {
		if countOf(evs, r) != 1 {
			t.Errorf("want one %s: %v", r, evs)
		}
	}
	if countOf(evs, "RolloutStarted") != 2 {
		t.Errorf("want the rollout started twice: %v", evs)
	}
	if h := dr.ro.Status.HandledRequests; h.Abort != "a1" || h.Retry != "t1" {
		t.Errorf("handled %+v", h)
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// A Git commit landing between ramp's observation of the target and its pause: the pause
// (conditional on the version observed) fails, and ramp claims nothing it did not hold.
func TestSimulateCommitRacingThePause(t *testing.T) {
	t.Run("adoption: the Deployment rolls the commit out itself; ramp adopts that revision and says it went live without a canary", func(t *testing.T) {
		w := newWorld()
		w.rolloutDelay = time.Minute
		dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{} })), w: w}
		dr.race = func(dr *driver, obs Observation, d Decision) {
			if dd := d.Desired; dd != nil && dd.TargetPaused && !dd.TargetUntouched && !obs.Target.Paused && dr.w.gitRev == stableRev {
				dr.w.gitRev = newRev
			}
		}
		dr.run(phaseIs(rampv1.PhaseIdle), 20)
		st := dr.ro.Status
		if st.StableRevision != newRev || st.StablePodTemplateHash != hashOf(newRev) || st.ReleasedWithoutCanary == nil || st.ReleasedWithoutCanary.Revision != newRev {
			t.Errorf("adopted with status %+v, want r2 released without a canary%s", st, dr.trace())
		}
		if w.conflicts != 1 || !w.targetPaused || w.runningRev != newRev || !slices.Equal(w.vsHistory, []int32{0}) {
			t.Errorf("world: %d conflicts, target paused %t running %s, weights %v%s", w.conflicts, w.targetPaused, w.runningRev, w.vsHistory, dr.trace())
		}
		for _, p := range dr.passes {
			if s := p.d.Status; (s.Phase == rampv1.PhaseIdle && s.StableRevision != newRev) || s.CanaryRevision != "" {
				t.Errorf("a pass claimed what ramp did not hold: %s stable %s canary %q%s", s.Phase, s.StableRevision, s.CanaryRevision, dr.trace())
			}
		}
		if countOf(dr.eventsSeen(), "ReleasedWithoutCanary") != 1 {
			t.Errorf("events %v", dr.eventsSeen())
		}
	})
	t.Run("promotion's re-pause: traffic stays on the canary until Git holds the promoted revision again", func(t *testing.T) {
		w := newWorld()
		w.rolloutDelay = time.Minute
		dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(), w: w}
		dr.adopt()
		w.gitRev = newRev
		dr.race = func(dr *driver, obs Observation, d Decision) {
			if d.Status.Stage == StageSwitchingStableSubset && !obs.Target.Paused && dr.w.gitRev == newRev && dr.w.conflicts == 0 {
				dr.w.gitRev = newerRev
			}
		}
		stalls := 0
		dr.hook = func(dr *driver) {
			if dr.ro.Status.Stage == StageUpdatingStable && dr.w.gitRev == newerRev {
				if stalls++; stalls == 3 {
					dr.w.gitRev = newRev // the user follows the stall message
				}
			}
		}
		dr.run(phaseIs(rampv1.PhaseSucceeded), 300)
		if got, want := w.vsHistory, []int32{0, 5, 25, 100, 0}; !slices.Equal(got, want) {
			t.Errorf("VirtualService weights %v, want %v%s", got, want, dr.trace())
		}
		if st := dr.ro.Status; st.StableRevision != newRev || w.runningRev != newRev || w.conflicts != 1 || stalls < 3 {
			t.Errorf("final status %+v, target runs %s, %d conflicts, %d stalled passes%s", st, w.runningRev, w.conflicts, stalls, dr.trace())
		}
		stalled := false
		for _, p := range dr.passes {
			stalled = stalled || p.d.Summary.Reason == "NewRevisionDuringPromotion"
		}
		if !stalled {
			t.Errorf("never stalled with NewRevisionDuringPromotion%s", dr.trace())
		}
	})
}
