package plan

import (
	"fmt"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func (d *decider) decision() Decision {
	out := Decision{Status: d.st, Summary: d.summarize()}
	switch {
	case d.rescue != nil:
		out.Desired = d.rescue
	case !d.noDesired:
		out.Desired = d.desired()
	}
	if out.Desired != nil && !out.Desired.PauseOnly {
		if note := d.followReadyPods(out.Desired); note != "" && !out.Summary.Stalled {
			out.Summary.Ready = false
			out.Summary.Reconciling = true
			out.Summary.Message += "; " + note
		}
		d.order(out.Desired)
		out.Gates = d.calls
	}
	out.Events = d.events
	if !d.requeue.IsZero() {
		out.RequeueAfter = d.requeue.Sub(d.now)
		if out.RequeueAfter < time.Millisecond {
			out.RequeueAfter = time.Millisecond
		}
	}
	return out
}

// desired derives the managed objects' state from the new status (and the target's size).
func (d *decider) desired() *Desired {
	st := &d.st
	out := &Desired{
		TargetPaused:          true,
		StablePodTemplateHash: st.StablePodTemplateHash,
		CanaryWeight:          st.CanaryWeight,
	}
	if st.StablePodTemplateHash == "" {
		if d.pausing {
			return &Desired{TargetPaused: true, TargetAsObserved: true, PauseOnly: true}
		}
		return nil // not adopted yet: nothing to route to
	}
	switch st.Phase {
	case rampv1.PhaseInitializing, rampv1.PhaseStalled:
		// Adopting a recreated target again (the stable subset already selects its pods): route
		// to them, and leave the Deployment alone until it has rolled out, then pause it.
		out.CanaryWeight = 0
		out.TargetUntouched = !d.pausing
		out.TargetAsObserved = d.pausing
		return out
	case rampv1.PhaseIdle, rampv1.PhaseSucceeded, rampv1.PhaseFailed:
		out.CanaryWeight = 0
		return out
	}
	out.CanaryRevision = st.CanaryRevision
	full := CanaryReplicas(d.obs.Target.Replicas, 100)
	s := d.currentStep()
	switch {
	case d.isPromotionStage():
		out.CanaryReplicas = full
	case st.Phase == rampv1.PhaseRollingBack && (st.Stage == StageScalingCanary || st.Stage == StageWaitingForWindow) && !isBlueGreen(d.spec) && st.CurrentStep > 1:
		// The step never began and never will: keep the canary sized for the traffic it had
		// (the previous step's), instead of growing it (up to full size, when the rollout was
		// waiting for a window before a 100% step) only to scale it to zero.
		out.CanaryReplicas = CanaryReplicas(d.obs.Target.Replicas, d.steps[st.CurrentStep-2].share())
	case d.beforeRolloutPending():
		// BeforeRollout gates have not passed: the canary is not scaled yet.
		out.CanaryReplicas = 0
	case st.Stage == StageWaitingForWindow:
		// Hold before a 100% step without sizing the canary for it yet.
		out.CanaryReplicas = CanaryReplicas(d.obs.Target.Replicas, st.CanaryWeight)
	default:
		out.CanaryReplicas = d.stepReplicas(s)
	}
	if w := out.CanaryWeight; w > 0 {
		// Never fewer pods than the routed weight needs: the steps may have been edited since
		// it was routed (a step of 50% that now says 20% still takes 50% until it ends).
		out.CanaryReplicas = max(out.CanaryReplicas, CanaryReplicas(d.obs.Target.Replicas, w))
	}
	if st.Phase == rampv1.PhaseRollingBack {
		return out // weight 0, no header route, no fault; the canary keeps its size until routed away
	}
	// The header route reaches the canary alone, so only offer it while the canary has pods
	// that serve the current revision: not while the first step is still scaling.
	out.HeaderRoute = st.Stage != StageRoutingToStable && !((st.Stage == StageScalingCanary || st.Stage == StageWaitingForWindow) && st.CurrentStep <= 1)
	// Sticky sessions follow the header route: both send users to the canary alone, so both
	// exist only while the canary has pods of the revision being rolled out.
	out.Sticky = out.HeaderRoute && d.spec.Strategy.Canary != nil && d.spec.Strategy.Canary.StickySessions != nil
	if st.Stage == StageHolding && st.Phase != rampv1.PhasePaused {
		out.Fault = s.fault
	}
	if st.Stage == StageHolding && !d.isPromotionStage() {
		// Mirrored while the step holds, paused or not: what analysis judges.
		out.Mirror = s.mirror
	}
	if st.Stage == StageUpdatingStable && d.obs.Target.Revision == st.CanaryRevision && d.routed(100) {
		// Only while the live routes send the target nothing: they may have gone back to it
		// (followReadyPods) since the stage began.
		out.TargetPaused = false
	}
	// The un-pause is for the analysed revision, the pause after it for the revision the
	// target rolled out and the stable subset now selects.
	out.TargetAsObserved = !out.TargetPaused || st.Stage == StageSwitchingStableSubset
	return out
}

// followReadyPods keeps the routes off a subset with no ready pods while the other subset
// has some: the stable subset's pods gone (a recreated target whose new pods are starting,
// every stable pod failing) sends all traffic to the canary's ready pods, and a canary without
// ready pods during promotion sends it back to stable (before promotion the state machine
// does, CanaryLost). The status keeps the plan's weight; this pass's routing follows the pods.
// It returns what it changed, for the conditions, and records an event when the live routes
// change for it.
func (d *decider) followReadyPods(want *Desired) string {
	t, c := d.obs.Target, d.obs.Canary
	if t.ReadyPods == nil {
		return ""
	}
	stable := t.ReadyPods[want.StablePodTemplateHash]
	canary := int32(0)
	if c.Exists {
		canary = c.ReadyPods
	}
	live := d.obs.Routing
	var reason, note string
	switch {
	case want.CanaryWeight < 100 && stable == 0 && canary > 0:
		want.CanaryWeight = 100
		want.CanaryReplicas = max(want.CanaryReplicas, c.Replicas)
		if want.CanaryRevision != c.Revision {
			want.CanaryRevision = "" // keep the template that has the ready pods
		}
		reason = "StableUnavailable"
		note = fmt.Sprintf("the stable subset (pod-template-hash %s) has no ready pods: all traffic goes to the canary's %d ready pods (revision %s) until it has",
			want.StablePodTemplateHash, canary, c.Revision)
	case want.CanaryWeight > 0 && canary == 0 && stable > 0:
		want.CanaryWeight = 0
		want.TargetPaused = true // its rolling update would take the stable pods away
		want.TargetAsObserved = false
		reason = "CanaryUnavailable"
		note = fmt.Sprintf("canary Deployment %q has no ready pods: all traffic goes to the %d ready pods of the stable subset (pod-template-hash %s) until it has",
			rampv1.CanaryNameFor(d.spec.TargetRef.Name), stable, want.StablePodTemplateHash)
	default:
		return ""
	}
	if live == nil || live.CanaryWeight != want.CanaryWeight {
		d.event(true, reason, note)
	}
	return note
}

// order decides how want is reached from the live objects (see Desired.RouteFirst).
func (d *decider) order(want *Desired) {
	t := d.obs.Target
	want.RenderCanary = want.CanaryRevision != "" && t.Exists && want.CanaryRevision == t.Revision
	live := d.obs.Routing
	if c := d.obs.Canary; want.RenderCanary && c.Exists && c.Selector != t.CanarySelector {
		// The canary's selector is immutable: it is deleted and created again, only while the
		// live routes are known to send it nothing; until then it is left as it is.
		if live != nil && live.CanaryWeight == 0 && !live.HeaderRoute && !d.obs.RoutingUnreadable {
			want.RecreateCanary = true
		} else {
			want.RenderCanary = false
			want.CanaryReplicas = c.Replicas
		}
	}
	want.RouteFirst = d.obs.RoutingUnreadable ||
		(live != nil && (want.CanaryWeight < live.CanaryWeight || (live.HeaderRoute && !want.HeaderRoute) ||
			(live.Sticky && !want.Sticky) || want.Mirror < live.Mirror))
}

func (d *decider) summarize() Summary {
	if d.summary != nil {
		return *d.summary
	}
	st := &d.st
	s := Summary{Reason: st.Phase, Message: st.Message}
	if d.releasedNow() != nil && (st.Phase == rampv1.PhaseInitializing || st.Phase == rampv1.PhaseIdle) {
		s.Reason = ReasonReleasedWithoutCanary
	}
	switch st.Phase {
	case rampv1.PhaseIdle, rampv1.PhaseSucceeded:
		if s.Message == "" {
			s.Message = "revision " + st.StableRevision + " serves all traffic"
		}
		// Ready only once the live objects say so, not when ramp has merely decided it: an
		// apply that failed, or that has not happened yet, leaves ramp's objects missing.
		if d.routed(0) && d.obs.StableSubset == st.StablePodTemplateHash {
			s.Ready = true
			break
		}
		s.Reconciling = true
		s.Message = fmt.Sprintf("%s; waiting for the VirtualService and DestinationRule to route all traffic to the stable subset (pod-template-hash %s)", s.Message, st.StablePodTemplateHash)
	case rampv1.PhaseFailed:
		// Stalled, not merely not Ready: the rollout of Git's revision is over and nothing
		// moves until a new commit (or kubectl ramp retry). With Ready=False alone kstatus says
		// InProgress, and Flux's `wait: true` would hold the Kustomization (and any newer
		// commit) until its timeout; Stalled is kstatus Failed, which Flux reports at once.
		s.Reason = "RolloutFailed"
		s.Stalled = true
	default:
		s.Reconciling = true
	}
	return s
}

// WithApplyFailure is the summary of a pass whose desired state the API server did not take:
// never Ready; Stalled when it rejected the object outright (it will not take it until the
// spec changes), still reconciling when the failure may pass (a conflict, a timeout).
func WithApplyFailure(s Summary, msg string, permanent bool) Summary {
	if msg == "" || s.Stalled {
		return s
	}
	return Summary{Reconciling: !permanent, Stalled: permanent, Reason: ReasonApplyFailed, Message: msg}
}

// ReasonReleasedWithoutCanary is the condition reason while the stable revision is one that
// went live without a canary (status.releasedWithoutCanary says why), until the next rollout.
const ReasonReleasedWithoutCanary = "ReleasedWithoutCanary"

// ReasonApplyFailed is the condition reason of a pass whose desired state was not applied.
const ReasonApplyFailed = "ApplyFailed"

// NextAnalysisAt is when the next analysis round of the current step is due: one interval
// after the step began or after the last round, whichever is later; and the rollout's first
// round not before a full metric window of the canary's traffic, counted from when the step
// that takes it began (its weight routed), not from when the rollout started: the canary
// workload keeps its name from one rollout to the next, so an earlier round would judge the
// new revision partly on its predecessor's traffic (or, with a shortened range, on too few
// samples), and a canary that took long to become ready would have served only a sliver of
// the window.
func NextAnalysisAt(spec *rampv1.RolloutSpec, st *rampv1.RolloutStatus) time.Time {
	if spec.Analysis == nil || st.StageStartedAt == nil {
		return time.Time{}
	}
	from := st.StageStartedAt.Time
	if st.LastAnalysisTime != nil && st.LastAnalysisTime.After(from) {
		from = st.LastAnalysisTime.Time
	}
	due := from.Add(spec.Analysis.IntervalOrDefault())
	if st.LastAnalysisTime == nil {
		if full := st.StageStartedAt.Add(longestWindow(spec.Analysis)); full.After(due) {
			due = full
		}
	}
	return due
}

// longestWindow is the longest range any metric queries (its window, else the interval).
func longestWindow(a *rampv1.AnalysisSpec) time.Duration {
	longest := a.IntervalOrDefault()
	for _, m := range a.Metrics {
		if m.Window != nil && m.Window.Duration > longest {
			longest = m.Window.Duration
		}
	}
	return longest
}

// AnalysisDue reports whether the reconciler should run an analysis round now and hand its
// result to Decide: the rollout holds a step that is analysed, is not paused, and an
// interval has passed.
func AnalysisDue(ro *rampv1.Rollout, paused bool, now time.Time) bool {
	st := &ro.Status
	switch st.Phase {
	case rampv1.PhaseProgressing, rampv1.PhaseWaitingForWindow:
	default:
		return false
	}
	if paused || ro.Spec.Paused || st.Stage != StageHolding {
		return false
	}
	steps := stepsOf(&ro.Spec)
	k := int(st.CurrentStep)
	if k < 1 || k > len(steps) || !steps[k-1].analysis {
		return false
	}
	return !now.Before(NextAnalysisAt(&ro.Spec, st))
}

// RoundDue reports whether the reconciler should run (or collect) an analysis round this pass:
// one is due (AnalysisDue) and nothing stalls the rollout, since a stalled rollout contacts
// nothing (an endpoint the platform did not allow, a Secret not marked for ramp).
func RoundDue(ro *rampv1.Rollout, obs Observation) bool {
	return haltOf(ro.Name, ro.CreationTimestamp.Time, &obs) == haltNone && AnalysisDue(ro, obs.Requests.Paused, obs.Now)
}

// NextRound reports when the next analysis round of ro, as its status stands, falls due, and
// whether RoundDue will then want it if the world stays as obs saw it. The round runner starts
// it on its own timer at that instant, not when a reconcile worker gets to the rollout; the
// pass that collects it still asks RoundDue, so a round for a rollout that changed meanwhile
// (paused, moved on, stalled) is dropped, not counted.
func NextRound(ro *rampv1.Rollout, obs Observation) (time.Time, bool) {
	at := NextAnalysisAt(&ro.Spec, &ro.Status)
	if at.IsZero() {
		return at, false
	}
	obs.Now = at
	return at, RoundDue(ro, obs)
}

// StepEndsAt reports when ro's step, as its status stands, is over but for a pass: its
// analysis passed, so it ends when its timed pause does (at once without one), unless a gate,
// a promotion window or its routing holds it. A round falling due from then on is one a
// controller keeping up would not run: the round runner starts none ahead of the pass that
// decides whether the step goes on (NextRound still says when one is due, RoundDue whether
// it counts).
func StepEndsAt(ro *rampv1.Rollout) (time.Time, bool) {
	st := &ro.Status
	steps := stepsOf(&ro.Spec)
	k := int(st.CurrentStep)
	if !st.StepAnalysisPassed || st.StageStartedAt == nil || k < 1 || k > len(steps) {
		return time.Time{}, false
	}
	switch p := steps[k-1].pause; {
	case p == nil:
		return st.StageStartedAt.Time, true
	case p.Duration == nil:
		return time.Time{}, false // until promoted
	default:
		return st.StageStartedAt.Add(p.Duration.Duration), true
	}
}
