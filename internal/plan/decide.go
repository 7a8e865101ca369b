package plan

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// maxTransitions bounds the transitions chained in one pass (e.g. a step whose canary is
// already large enough starts at once instead of waiting for an event that never comes).
const maxTransitions = 8

// Decide is the state machine. It is pure: everything it needs is in its arguments.
func Decide(cfg Config, ro *rampv1.Rollout, obs Observation) Decision {
	d := &decider{cfg: cfg, spec: &ro.Spec, obs: obs, now: obs.Now, name: ro.Name, created: ro.CreationTimestamp.Time}
	d.st = *ro.Status.DeepCopy()
	d.st.Conditions = nil
	d.st.ObservedGeneration = ro.Generation
	d.prevPhase = d.st.Phase
	d.steps = stepsOf(d.spec)
	d.run(ro.Spec.TargetRef.Name)
	return d.decision()
}

type decider struct {
	cfg  Config
	spec *rampv1.RolloutSpec
	name string // the Rollout's: its VirtualService and DestinationRule have it too
	// created is the Rollout's creationTimestamp, which arbitrates between Rollouts of one
	// Deployment.
	created time.Time
	st      rampv1.RolloutStatus
	obs     Observation
	now     time.Time
	steps   []step

	prevPhase string
	events    []Event
	requeue   time.Time
	summary   *Summary // set when a pass must report something other than the phase default
	noDesired bool
	// rescue replaces the desired state derived from the status when the world lost what the
	// status routes to (the target deleted mid-rollout).
	rescue *Desired
	// calls are the gate calls due where the rollout stands.
	calls *GateCalls
	// pausing: adoption pauses the target at the revision it runs this pass (Desired).
	pausing bool
}

// Adopting reports whether a Rollout in phase has not adopted its target yet (or adopts a
// recreated one again): the reconciler then reads who paused the target (Target.PausedByRamp).
func Adopting(phase string) bool {
	switch phase {
	case "", rampv1.PhaseInitializing, rampv1.PhaseStalled:
		return true
	}
	return false
}

// halt is what stops a rollout before the state machine runs.
type halt int

const (
	haltNone halt = iota
	haltDuplicate
	haltSpec
	haltForeign
	haltTargetGone
	haltBlocked
)

// haltOf is the first halt of the Rollout named name, created at created, in the order run
// reports them. RoundDue asks it too, so no analysis round runs for a rollout that stalls
// (it would contact what the rollout may not make ramp contact).
func haltOf(name string, created time.Time, obs *Observation) halt {
	switch {
	case FirstPeer(name, created, obs.Peers) != nil:
		return haltDuplicate
	case obs.SpecError != "":
		return haltSpec
	case obs.ForeignObject != "":
		return haltForeign
	case !obs.Target.Exists:
		return haltTargetGone
	case obs.Blocked != nil:
		return haltBlocked
	}
	return haltNone
}

func (d *decider) run(target string) {
	switch haltOf(d.name, d.created, &d.obs) {
	case haltDuplicate:
		d.stall("InvalidSpec", duplicateMessage(target, FirstPeer(d.name, d.created, d.obs.Peers).Name))
		return
	case haltSpec:
		d.stall("InvalidSpec", d.obs.SpecError)
		return
	case haltForeign:
		d.stall("ForeignObject", d.obs.ForeignObject)
		return
	case haltTargetGone:
		d.targetGone(target)
		return
	case haltBlocked:
		b := d.obs.Blocked
		d.stall(b.Reason, b.Message)
		if b.RetryAfter > 0 {
			d.wakeAt(d.now.Add(b.RetryAfter))
		}
		return
	}
	if d.recreated() {
		d.targetRecreated(target)
	} else if d.st.Target == nil && d.st.StablePodTemplateHash != "" && d.obs.Target.UID != "" {
		// Adopted before the status recorded the target's identity.
		d.st.Target = d.targetStatus()
	}
	for i := 0; i < maxTransitions; i++ {
		before := d.position()
		d.calls = nil
		switch {
		case Adopting(d.st.Phase):
			d.adopt(target)
		case d.st.Phase == rampv1.PhaseIdle || d.st.Phase == rampv1.PhaseSucceeded || d.st.Phase == rampv1.PhaseFailed:
			d.steady()
		case d.st.Phase == rampv1.PhaseRollingBack:
			d.rollingBack()
		default:
			d.active()
		}
		// The analysis round was run for the stage the status held when the pass began: it
		// must not be counted again, nor for a step entered later in this pass.
		d.obs.Analysis = nil
		if d.noDesired || d.position() == before {
			return
		}
	}
	// Still moving after maxTransitions: nothing in the world may change to trigger the next
	// pass (e.g. many steps without pauses whose canary is already big enough), so come back
	// at once.
	d.wakeAt(d.now)
}

// position is where the rollout stands: a pass that leaves it unchanged has nothing more
// to chain.
type position struct {
	phase, stage string
	step, weight int32
}

func (d *decider) position() position {
	return position{d.st.Phase, d.st.Stage, d.st.CurrentStep, d.st.CanaryWeight}
}

// --- adoption --------------------------------------------------------------------------

// adopt takes over a target ramp does not manage yet (a new Rollout, or a recreated target)
// in three moves, each recorded before it is acted on:
//
//  1. wait for the Deployment to finish rolling out;
//  2. record the revision it runs as stable and pause it there. The pause is applied only
//     over the version of the Deployment observed rolled out (its resourceVersion as a
//     precondition): a commit landing in between makes it fail, and the next pass sees it;
//  3. once the Deployment is observed paused by ramp's field manager, record Idle: stable is
//     the revision it was paused at (its pods), and rollouts start from there.
//
// Until the pause is observed nothing is routed (a recreated target's stable subset aside) and
// no commit is claimed as a release: one that lands before the pause took effect is rolled
// out by the Deployment itself, and ramp says it went live without a canary.
func (d *decider) adopt(target string) {
	t := d.obs.Target
	// A recreated target is adopted again: its pods are the stable subset at once, and ramp
	// routes to them while it waits for the rollout to finish.
	readopt := d.st.StablePodTemplateHash != ""
	if t.Paused {
		if t.PausedByRamp {
			d.adopted(target)
			return
		}
		// Git (or a human) paused it: a Deployment created paused never rolls out, and one Git
		// keeps paused would fight ramp's promotions.
		by := ""
		if len(t.PausedBy) > 0 {
			by = " (set by " + strings.Join(t.PausedBy, ", ") + ")"
		}
		d.stall("TargetPaused", fmt.Sprintf("Deployment %q has spec.paused: true%s, so ramp cannot adopt it: remove spec.paused from its manifest in Git (ramp pauses and resumes the Deployment itself)", target, by))
		return
	}
	if rev := d.st.StableRevision; rev != "" && t.Revision != rev {
		d.releasedBeforePause(target, rev)
	}
	if !t.RolledOut || t.PodTemplateHash == "" {
		d.st.Phase = rampv1.PhaseInitializing
		r := d.releasedNow()
		if readopt {
			if t.PodTemplateHash != "" {
				d.st.StablePodTemplateHash = t.PodTemplateHash
			}
			d.st.Message = fmt.Sprintf("Deployment %q was recreated: the stable subset selects its pods (pod-template-hash %s); waiting for it to finish rolling out before pausing it",
				target, d.st.StablePodTemplateHash)
		} else {
			d.st.Message = fmt.Sprintf("waiting for Deployment %q to finish rolling out before adopting it", target)
			d.noDesired = true
		}
		if r != nil {
			d.st.Message = fmt.Sprintf("revision %s went live without a canary: %s; waiting for the Deployment to finish rolling out before pausing it", r.Revision, r.Reason)
		}
		return
	}
	// Rolled out and not paused: pause it at this revision, and adopt it once that is seen.
	d.st.StableRevision = t.Revision
	if readopt {
		d.st.StablePodTemplateHash = t.PodTemplateHash
	}
	d.pausing = true
	d.st.Phase = rampv1.PhaseInitializing
	d.st.Message = fmt.Sprintf("pausing Deployment %q at revision %s; ramp adopts it once the pause took effect", target, t.Revision)
	if r := d.releasedNow(); r != nil {
		d.st.Message = fmt.Sprintf("revision %s went live without a canary: %s; pausing the Deployment at it before ramp manages it", r.Revision, r.Reason)
	}
}

// adopted records the adoption of a target ramp's pause took effect on: stable is the
// revision ramp paused it at, whose pods it runs even if Git changed its template since (then
// this pass starts the rollout of that template).
func (d *decider) adopted(target string) {
	t := d.obs.Target
	rev := d.st.StableRevision
	if rev == "" && t.RolledOut {
		// ramp's pause, with no revision recorded (the status was lost): its pods all run its
		// template, so that is what it was paused at.
		rev = t.Revision
	}
	hash := t.hashOf(rev)
	if rev == "" || hash == "" {
		d.stall("TargetPaused", fmt.Sprintf("Deployment %q is paused by ramp's field manager, but this Rollout recorded no revision to adopt it at and its pods do not all run its template: resume it (kubectl rollout resume deployment/%s) so it rolls out; ramp then pauses and adopts it", target, target))
		return
	}
	d.st.StableRevision, d.st.StablePodTemplateHash = rev, hash
	d.st.CanaryRevision = ""
	d.st.Target = d.targetStatus()
	msg := fmt.Sprintf("managing Deployment %q at revision %s", target, rev)
	if r := d.releasedNow(); r != nil {
		msg = fmt.Sprintf("revision %s went live without a canary: %s; ramp manages the Deployment now", r.Revision, r.Reason)
	}
	d.setPhase(rampv1.PhaseIdle, msg)
	d.event(false, "Adopted", fmt.Sprintf("paused Deployment %q at revision %s; all traffic to stable", target, rev))
}

// releasedBeforePause records that Git changed the template (from the revision ramp recorded
// as stable) while the target was not paused: the Deployment rolls the new revision out
// itself, before ramp adopted it, so it goes live without a canary.
func (d *decider) releasedBeforePause(target, from string) {
	t := d.obs.Target
	why := fmt.Sprintf("Git changed Deployment %q from revision %s to %s before ramp's pause took effect, so the Deployment rolled it out itself", target, from, t.Revision)
	d.st.ReleasedWithoutCanary = &rampv1.Release{Revision: t.Revision, Reason: why, Time: metav1.NewTime(d.now)}
	d.event(true, "ReleasedWithoutCanary", fmt.Sprintf("revision %s went live without a canary: %s", t.Revision, why))
	d.st.StableRevision = t.Revision
}

// hashOf is the pod-template-hash of the target's ReplicaSet of revision rev ("" when none).
func (t *Target) hashOf(rev string) string {
	if rev == t.Revision && t.PodTemplateHash != "" {
		return t.PodTemplateHash
	}
	return t.Hashes[rev]
}

// targetStatus is the identity of the observed target, or nil when it has none (unit tests).
func (d *decider) targetStatus() *rampv1.TargetStatus {
	if d.obs.Target.UID == "" {
		return nil
	}
	return &rampv1.TargetStatus{UID: d.obs.Target.UID, Selector: d.obs.Target.Selector}
}

// recreated reports that the target is not the Deployment ramp adopted but one of the same
// name created since.
func (d *decider) recreated() bool {
	t := d.obs.Target
	return d.st.Target != nil && t.UID != "" && t.UID != d.st.Target.UID
}

// releasedNow is the record of the stable revision going live without a canary, if it did.
func (d *decider) releasedNow() *rampv1.Release {
	if r := d.st.ReleasedWithoutCanary; r != nil && r.Revision == d.st.StableRevision {
		return r
	}
	return nil
}

// targetRecreated handles a target Deployment deleted and created again under its name (Flux's
// force: true does that for a change of its immutable selector). The new Deployment is not
// paused: Kubernetes starts all its pods on Git's template at once, whatever ramp was doing.
// The pods ramp routed to as stable are going away with the old Deployment, so the stable
// subset follows the new Deployment's pods at once, a rollout in progress ends (its canary
// revision was not promoted and is not what Git holds), and ramp says plainly which revision
// went live without a canary and why. It adopts the Deployment again (pausing it) once it has
// rolled out; the canary Deployment is recreated when its selector must change (Desired.RecreateCanary).
func (d *decider) targetRecreated(target string) {
	st, t := &d.st, d.obs.Target
	why := fmt.Sprintf("Deployment %q was deleted and created again (UID %s, was %s)", target, t.UID, st.Target.UID)
	if st.Target.Selector != t.Selector {
		why += fmt.Sprintf(" because its selector changed from %q to %q, which Kubernetes allows only by recreating it (Flux does with force: true)", st.Target.Selector, t.Selector)
	}
	why += ", so Kubernetes started all its pods on Git's template at once"
	var ended string
	switch {
	case st.CanaryRevision != "" && st.Phase == rampv1.PhaseFailed:
		ended = fmt.Sprintf("; the rollout of revision %s had failed and been rolled back", st.CanaryRevision)
	case st.CanaryRevision != "":
		ended = fmt.Sprintf("; the rollout of revision %s (step %d/%d, %d%% to canary) ended unpromoted", st.CanaryRevision, st.CurrentStep, st.Steps, st.CanaryWeight)
	}
	if t.Revision != st.StableRevision {
		st.ReleasedWithoutCanary = &rampv1.Release{Revision: t.Revision, Reason: why + ended, Time: metav1.NewTime(d.now)}
		d.event(true, "ReleasedWithoutCanary", fmt.Sprintf("revision %s went live without a canary: %s%s", t.Revision, why, ended))
	} else {
		d.event(true, "TargetRecreated", fmt.Sprintf("%s; it runs the stable revision %s%s", why, t.Revision, ended))
	}
	st.Target = d.targetStatus()
	st.StableRevision = t.Revision
	if t.PodTemplateHash != "" {
		st.StablePodTemplateHash = t.PodTemplateHash
	}
	st.CanaryRevision = ""
	d.clearProgress()
	d.st.Phase = rampv1.PhaseInitializing
}

// targetGone reports a missing target. Before adoption ramp has written nothing; after it,
// the VirtualService, DestinationRule and canary stay (deleting them would send traffic to
// whatever the Service selects), and traffic goes to the only pods left: the canary's, when a
// rollout had them serving.
func (d *decider) targetGone(target string) {
	st := &d.st
	if st.StablePodTemplateHash == "" {
		d.stall("TargetNotFound", fmt.Sprintf("Deployment %q not found: create it (or fix spec.targetRef.name); ramp has touched nothing", target))
		return
	}
	c := d.obs.Canary
	kept := fmt.Sprintf("ramp keeps VirtualService %q and DestinationRule %q", d.name, d.name)
	if c.Exists {
		kept += fmt.Sprintf(" and canary Deployment %q", rampv1.CanaryNameFor(target))
	}
	next := "recreate the Deployment from Git to go on, or delete the Rollout to remove what ramp created"
	if st.CanaryRevision != "" && st.Phase != rampv1.PhaseFailed && c.Exists && c.Revision == st.CanaryRevision && c.ReadyReplicas > 0 {
		d.stall("TargetNotFound", fmt.Sprintf("Deployment %q was deleted during the rollout of revision %s (step %d/%d, %d%% to canary): its pods are gone, so all traffic goes to the canary, the only pods left (%d ready, revision %s, not fully analysed); %s; %s",
			target, st.CanaryRevision, st.CurrentStep, st.Steps, st.CanaryWeight, c.ReadyReplicas, st.CanaryRevision, kept, next))
		d.noDesired = false
		d.rescue = &Desired{
			TargetPaused:          true,
			TargetUntouched:       true, // there is none
			CanaryRevision:        st.CanaryRevision,
			CanaryReplicas:        max(c.Replicas, c.ReadyReplicas),
			StablePodTemplateHash: st.StablePodTemplateHash,
			CanaryWeight:          100,
		}
		return
	}
	d.stall("TargetNotFound", fmt.Sprintf("Deployment %q was deleted: no pods serve the stable subset and no canary is ready to take its traffic; %s, as they are (%d%% to canary); %s",
		target, kept, st.CanaryWeight, next))
}

// --- no rollout in progress --------------------------------------------------------------

func (d *decider) steady() {
	t := d.obs.Target
	failed := d.st.Phase == rampv1.PhaseFailed
	retry := d.take(&d.st.HandledRequests.Retry, d.obs.Requests.Retry)
	// Acknowledge every pending request, not only the first: one left pending would act on the
	// rollout this pass may start (e.g. a stale abort rolling it back at once).
	promote := d.take(&d.st.HandledRequests.Promote, d.obs.Requests.Promote)
	promoteFull := d.take(&d.st.HandledRequests.PromoteFull, d.obs.Requests.PromoteFull)
	abort := d.take(&d.st.HandledRequests.Abort, d.obs.Requests.Abort)
	if reqs := taken(map[string]bool{rampv1.AnnotationPromote: promote, rampv1.AnnotationPromoteFull: promoteFull, rampv1.AnnotationAbort: abort}); len(reqs) > 0 {
		d.ignored("no rollout in progress: nothing to promote or abort", reqs...)
	}
	d.afterRollout()
	switch {
	case t.Revision == d.st.StableRevision:
		if failed {
			d.st.CanaryRevision = ""
			d.clearProgress()
			d.setPhase(rampv1.PhaseIdle, "target reverted to the stable revision "+t.Revision)
			d.event(false, "Reverted", "Git reverted the target to the stable revision "+t.Revision)
		} else if retry {
			d.ignored("nothing to retry: the target runs the stable revision", rampv1.AnnotationRetry)
		}
	case failed && t.Revision == d.st.CanaryRevision && !retry:
		// Stay failed until a new revision or `kubectl ramp retry`.
	default:
		reason := "new revision " + t.Revision
		if failed && t.Revision == d.st.CanaryRevision {
			reason = "retry of revision " + t.Revision
		}
		d.start(reason)
	}
}

func (d *decider) start(reason string) {
	d.st.ReleasedWithoutCanary = nil
	d.st.CanaryRevision = d.obs.Target.Revision
	d.st.TargetReplicas = d.obs.Target.Replicas
	d.st.RolloutStartedAt = &metav1.Time{Time: d.now}
	d.st.FailedChecks, d.st.InconclusiveChecks = 0, 0
	d.st.LastAnalysis, d.st.LastAnalysisTime = nil, nil
	d.st.CanaryWeight = 0
	d.st.Steps = int32(len(d.steps))
	d.st.Gates = nil
	d.enterStep(1)
	d.setPhase(rampv1.PhaseProgressing, "")
	d.event(false, "RolloutStarted", fmt.Sprintf("%s: %s", reason, d.planText()))
}

func (d *decider) enterStep(k int32) {
	d.st.CurrentStep = k
	d.setStage(StageScalingCanary)
	d.st.StepAnalysisPassed = false
}

func (d *decider) clearProgress() {
	d.st.PausedAt = nil
	d.st.TargetReplicas = 0
	d.st.CurrentStep, d.st.Steps, d.st.CanaryWeight = 0, 0, 0
	d.st.Stage, d.st.StageStartedAt = "", nil
	d.st.StepAnalysisPassed = false
}

// --- a rollout in progress -----------------------------------------------------------------

func (d *decider) active() {
	t := d.obs.Target
	promoting := d.isPromotionStage()
	lateStage := d.st.Stage == StageUpdatingStable || d.st.Stage == StageSwitchingStableSubset || d.st.Stage == StageRoutingToStable

	if d.take(&d.st.HandledRequests.Retry, d.obs.Requests.Retry) {
		// Left pending, it would restart the rollout the moment it fails.
		d.ignored("nothing to retry: a rollout is in progress", rampv1.AnnotationRetry)
	}
	if d.take(&d.st.HandledRequests.Abort, d.obs.Requests.Abort) {
		if lateStage {
			d.ignored("too late to abort: the target is already being updated to the new revision", rampv1.AnnotationAbort)
		} else {
			d.rollback("AbortRequested", "aborted by kubectl ramp abort")
			return
		}
	}

	switch {
	case t.Revision == d.st.StableRevision && !lateStage:
		d.st.CanaryRevision = ""
		d.clearProgress()
		d.setPhase(rampv1.PhaseIdle, "target reverted to the stable revision "+t.Revision+"; rollout cancelled")
		d.event(false, "RolloutCancelled", "Git reverted the target to the stable revision "+t.Revision+"; all traffic to stable")
		return
	case t.Revision != d.st.CanaryRevision && (d.st.Stage == StageUpdatingStable || d.st.Stage == StageSwitchingStableSubset && !t.Paused):
		// The target is un-paused and Git changed its template again: the Deployment would roll
		// an unanalysed revision out. The desired state re-pauses it; traffic stays on the
		// canary, which runs the analysed revision at full size. Also when the commit landed
		// after the target rolled the promoted revision out but before ramp's pause took effect
		// (the pause, conditional on the version observed, failed): back to updating the target,
		// which finishes once Git holds the promoted revision again.
		if d.st.Stage != StageUpdatingStable {
			d.setStage(StageUpdatingStable)
		}
		d.stall("NewRevisionDuringPromotion", fmt.Sprintf(
			"revision %s arrived while the target was being updated to %s: ramp keeps the target paused and all traffic on the canary; set the target back to revision %s in Git to finish, then commit the new change",
			t.Revision, d.st.CanaryRevision, d.st.CanaryRevision))
		d.st.Phase = rampv1.PhasePromoting
		d.noDesired = false
		return
	case t.Revision != d.st.CanaryRevision && !lateStage:
		from := d.st.CanaryRevision
		d.st.CanaryRevision = t.Revision
		d.st.TargetReplicas = t.Replicas
		d.st.RolloutStartedAt = &metav1.Time{Time: d.now}
		d.st.CanaryWeight = 0
		d.st.FailedChecks, d.st.InconclusiveChecks = 0, 0
		d.st.LastAnalysis, d.st.LastAnalysisTime = nil, nil
		d.st.Steps = int32(len(d.steps))
		d.st.Gates = nil
		d.enterStep(1)
		d.setPhase(rampv1.PhaseProgressing, "")
		d.event(false, "RolloutRestarted", fmt.Sprintf("revision %s replaced %s mid-rollout: traffic back to stable, restarting %s", t.Revision, from, d.planText()))
		return
	}

	d.watchTargetSize()

	if !promoting && d.st.CanaryWeight > 0 && d.canaryLost() {
		// Traffic must not wait for pods that are gone: back to stable, and the step starts
		// over (its pause and analysis too) once the canary is ready again.
		msg := fmt.Sprintf("step %d/%d: canary Deployment %q has no ready pods: all traffic back on stable until it is ready again",
			d.st.CurrentStep, d.st.Steps, rampv1.CanaryNameFor(d.spec.TargetRef.Name))
		d.st.CanaryWeight = 0
		d.enterStep(d.st.CurrentStep)
		d.setPhase(rampv1.PhaseProgressing, msg)
		d.event(true, "CanaryLost", msg)
		return
	}

	if d.spec.Paused || d.obs.Requests.Paused {
		by := "spec.paused"
		if !d.spec.Paused {
			by = "kubectl ramp pause"
			if d.obs.Requests.PausedBy != "" {
				by = d.obs.Requests.PausedBy
			}
		}
		if d.st.PausedAt == nil {
			d.st.PausedAt = d.nowTime()
		}
		msg := fmt.Sprintf("paused by %s at step %d/%d, %d%% to canary", by, d.st.CurrentStep, d.st.Steps, d.st.CanaryWeight)
		if d.prevPhase != rampv1.PhasePaused && d.st.Phase != rampv1.PhasePaused {
			d.event(false, "Paused", msg)
		}
		d.setPhase(rampv1.PhasePaused, msg)
		return
	}

	d.resumeClocks()

	if promoting {
		// Left pending, a promote request would complete a step of the next rollout.
		promote := d.take(&d.st.HandledRequests.Promote, d.obs.Requests.Promote)
		promoteFull := d.take(&d.st.HandledRequests.PromoteFull, d.obs.Requests.PromoteFull)
		if reqs := taken(map[string]bool{rampv1.AnnotationPromote: promote, rampv1.AnnotationPromoteFull: promoteFull}); len(reqs) > 0 {
			d.ignored("already promoting revision "+d.st.CanaryRevision, reqs...)
		}
		d.promotion()
		return
	}
	switch d.st.Stage {
	case StageScalingCanary, StageWaitingForWindow:
		d.scaling()
	default:
		d.holding()
	}
}

func (d *decider) currentStep() step {
	k := int(d.st.CurrentStep)
	if k < 1 || k > len(d.steps) {
		// The spec lost steps mid-rollout: finish with the last one.
		k = len(d.steps)
		d.st.CurrentStep = int32(k)
		d.st.Steps = int32(len(d.steps))
	}
	return d.steps[k-1]
}

func (d *decider) scaling() {
	s := d.currentStep()
	if d.take(&d.st.HandledRequests.PromoteFull, d.obs.Requests.PromoteFull) {
		// Also here, not only while holding: a 100% step waits for its window in this stage.
		d.event(false, "PromoteRequested", "kubectl ramp promote --full: skipping remaining steps, analysis and promotion windows")
		d.startPromotion()
		return
	}
	if d.st.CurrentStep <= 1 && d.st.CanaryWeight == 0 {
		// BeforeRollout gates: the canary is neither scaled nor given traffic until they pass.
		switch o := d.gates(GatePoint{At: rampv1.GateBeforeRollout, Revision: d.st.CanaryRevision}); {
		case o.rolledBack:
			return
		case !o.passed:
			d.setPhase(rampv1.PhaseProgressing, fmt.Sprintf("waiting for %s before scaling the canary; all traffic on stable meanwhile", o.waiting))
			return
		case o.justPassed:
			d.setStage(StageScalingCanary) // the progress deadline counts from now
		}
	}
	if s.weight == 100 && !d.windowAllows() {
		if d.st.Stage != StageWaitingForWindow {
			d.setStage(StageWaitingForWindow)
		}
		if d.take(&d.st.HandledRequests.Promote, d.obs.Requests.Promote) {
			d.ignored("kubectl ramp promote does not override promotion windows: use kubectl ramp promote --full", rampv1.AnnotationPromote)
		}
		return
	}
	if d.st.Stage == StageWaitingForWindow || d.st.Phase == rampv1.PhaseWaitingForWindow { // the phase: statuses written before the stage existed
		// The window just opened: the canary was held at its previous size until now, so the
		// progress deadline counts from now, not from when the step was entered.
		d.setStage(StageScalingCanary)
	}
	need := d.stepReplicas(s)
	c := d.obs.Canary
	if c.Exists && c.Revision == d.st.CanaryRevision && c.ReadyReplicas >= need {
		d.st.CanaryWeight = s.weight
		d.st.Stage = StageHolding
		d.st.StageStartedAt = d.nowTime()
		d.st.StepAnalysisPassed = false
		if !d.holdingMessage(s) { // as the step's passes say once it is routed: no second write
			d.setPhase(rampv1.PhaseProgressing, d.stepText(s))
		}
		d.event(false, "StepStarted", d.stepText(s))
		return
	}
	if d.deadlinePassed() {
		d.rollback("ProgressDeadlineExceeded", fmt.Sprintf("canary not ready within %s: %d/%d replicas ready",
			d.spec.ProgressDeadlineOrDefault(), d.readyOfRevision(), need))
		return
	}
	meanwhile := fmt.Sprintf("%d%% to canary meanwhile", d.st.CanaryWeight)
	if d.st.CanaryWeight == 0 {
		meanwhile = "all traffic on stable meanwhile"
	}
	// Not the ready count so far: a status write per pod becoming ready would buy nothing the
	// canary Deployment's own status does not show.
	d.setPhase(rampv1.PhaseProgressing, fmt.Sprintf("step %d/%d: waiting for the canary to have %d ready replicas; %s",
		d.st.CurrentStep, d.st.Steps, need, meanwhile))
	d.wakeAt(d.stageStart().Add(d.spec.ProgressDeadlineOrDefault()))
}

func (d *decider) holding() {
	s := d.currentStep()
	if r := d.obs.Analysis; r != nil && s.analysis {
		d.obs.Analysis = nil
		if d.record(r) {
			return
		}
	}
	if !d.routed(d.st.CanaryWeight) || d.obs.Routing.Mirror != s.mirror {
		// A step ends only once the live VirtualService has its weight: every step's weight
		// reaches the proxies (none is skipped by chaining steps in one pass), and a controller
		// stopped between recording a step and routing it does not skip the step. Requests wait
		// too, so a promote is not spent on a step that has not begun.
		if !d.holdingMessage(s) {
			d.setPhase(rampv1.PhaseProgressing, d.stepText(s))
		}
		if grace := d.stageStart().Add(d.cfg.RoutingGrace); d.now.Before(grace) {
			d.wakeAt(grace)
		} else {
			what := fmt.Sprintf("route %d%% to the canary", d.st.CanaryWeight)
			if s.mirror > 0 {
				what += fmt.Sprintf(" and mirror %g%% to it", s.mirror)
			}
			d.setPhase(rampv1.PhaseProgressing, fmt.Sprintf("%s; waiting for the VirtualService to %s", d.stepText(s), what))
		}
		if s.analysis {
			d.wakeForAnalysis()
		}
		return
	}
	if d.take(&d.st.HandledRequests.PromoteFull, d.obs.Requests.PromoteFull) {
		d.event(false, "PromoteRequested", "kubectl ramp promote --full: skipping remaining steps, analysis and promotion windows")
		d.startPromotion()
		return
	}
	forced := d.take(&d.st.HandledRequests.Promote, d.obs.Requests.Promote)
	if forced {
		d.event(false, "PromoteRequested", fmt.Sprintf("kubectl ramp promote: step %d/%d done", d.st.CurrentStep, d.st.Steps))
	}

	// While the step holds, analysis rounds go on (also after one passed, and while waiting
	// for a window); once it ends, its next round is no reason to come back.
	wakeForAnalysis := func() {
		if s.analysis {
			d.wakeForAnalysis()
		}
	}
	if !forced {
		// EachStep gates are called once the weight is routed, beside the pause and analysis.
		o := d.gates(GatePoint{At: rampv1.GateEachStep, Step: d.st.CurrentStep, Revision: d.st.CanaryRevision})
		if o.rolledBack {
			return
		}
		var gate []string
		if !o.passed {
			gate = append(gate, o.waiting)
		}
		if d.holdingMessage(s, gate...) {
			wakeForAnalysis()
			return
		}
	}
	if int(d.st.CurrentStep) < len(d.steps) {
		d.enterStep(d.st.CurrentStep + 1)
		return
	}
	switch o := d.gates(GatePoint{At: rampv1.GateBeforePromotion, Revision: d.st.CanaryRevision}); {
	case o.rolledBack:
		return
	case !o.passed:
		wakeForAnalysis()
		d.setPhase(rampv1.PhaseProgressing, fmt.Sprintf("%s; waiting for %s before promotion", d.stepText(s), o.waiting))
		return
	}
	if !d.windowAllows() {
		wakeForAnalysis()
		return
	}
	d.startPromotion()
}

// holdingMessage reports whether step s still waits for its pause, a passing analysis round
// or what else the caller names and, if so, says so in the status and asks for a pass when
// the pause ends. Otherwise it leaves the status alone: what comes next (the next step, a
// window, promotion) says more.
func (d *decider) holdingMessage(s step, also ...string) bool {
	var waiting []string
	if s.pause != nil {
		if s.pause.Duration == nil {
			waiting = append(waiting, "kubectl ramp promote")
		} else if end := d.stageStart().Add(s.pause.Duration.Duration); d.now.Before(end) {
			waiting = append(waiting, "pause until "+end.UTC().Format(time.RFC3339))
			d.wakeAt(end)
		}
	}
	if s.analysis && !d.st.StepAnalysisPassed {
		waiting = append(waiting, "a passing analysis round")
	}
	waiting = append(waiting, also...)
	if len(waiting) == 0 {
		return false
	}
	d.setPhase(rampv1.PhaseProgressing, fmt.Sprintf("%s; waiting for %s", d.stepText(s), joinAnd(waiting)))
	return true
}

// wakeForAnalysis asks for a pass when the next round is due, unless a round is running:
// an overdue timer would only spin until its result arrives.
func (d *decider) wakeForAnalysis() {
	if !d.obs.AnalysisRunning {
		d.wakeAt(NextAnalysisAt(d.spec, &d.st))
	}
}

// record folds an analysis round into the status; it reports whether it rolled back.
func (d *decider) record(r *AnalysisResult) bool {
	a := d.spec.Analysis
	t := d.nowTime()
	if !r.Started.IsZero() && !r.Started.After(d.now) {
		t = mtimeOf(r.Started)
	}
	d.st.LastAnalysis = r.Metrics
	d.st.LastAnalysisTime = t
	d.st.StepAnalysisPassed = r.Verdict == rampv1.VerdictPassed
	switch r.Verdict {
	case rampv1.VerdictFailed:
		d.st.FailedChecks++
		d.event(true, "AnalysisFailed", fmt.Sprintf("check %d/%d failed: %s", d.st.FailedChecks, a.FailureLimitOrDefault(), r.Reason))
		if d.st.FailedChecks >= a.FailureLimitOrDefault() {
			d.rollback("AnalysisFailed", fmt.Sprintf("analysis failed %d times: %s", d.st.FailedChecks, r.Reason))
			return true
		}
	case rampv1.VerdictInconclusive:
		d.st.InconclusiveChecks++
		d.event(true, "AnalysisInconclusive", fmt.Sprintf("round %d/%d inconclusive: %s", d.st.InconclusiveChecks, a.InconclusiveLimitOrDefault(), r.Reason))
		if d.st.InconclusiveChecks >= a.InconclusiveLimitOrDefault() {
			d.rollback("AnalysisInconclusive", fmt.Sprintf("analysis inconclusive %d times: %s", d.st.InconclusiveChecks, r.Reason))
			return true
		}
	}
	return false
}

// windowAllows holds the rollout outside promotion windows; it reports whether to go on.
func (d *decider) windowAllows() bool {
	if d.obs.WindowOpen {
		return true
	}
	msg := fmt.Sprintf("holding at %d%% outside promotion windows", d.st.CanaryWeight)
	if !d.obs.WindowOpensAt.IsZero() {
		msg += "; next window opens at " + d.obs.WindowOpensAt.UTC().Format(time.RFC3339)
		d.wakeAt(d.obs.WindowOpensAt)
	}
	if d.st.Phase != rampv1.PhaseWaitingForWindow {
		d.event(false, "WaitingForWindow", msg)
	}
	d.setPhase(rampv1.PhaseWaitingForWindow, msg)
	return false
}

// --- promotion -----------------------------------------------------------------------------

func (d *decider) isPromotionStage() bool {
	switch d.st.Stage {
	case StageRoutingToCanary, StageUpdatingStable, StageSwitchingStableSubset, StageRoutingToStable:
		return true
	}
	return false
}

func (d *decider) startPromotion() {
	d.setStage(StageRoutingToCanary)
	d.setPhase(rampv1.PhasePromoting, "promoting revision "+d.st.CanaryRevision)
	d.event(false, "PromotionStarted", fmt.Sprintf("promoting revision %s", d.st.CanaryRevision))
}

func (d *decider) promotion() {
	t, c := d.obs.Target, d.obs.Canary
	full := CanaryReplicas(t.Replicas, 100)
	d.st.Phase = rampv1.PhasePromoting
	switch d.st.Stage {
	case StageRoutingToCanary:
		if d.st.CanaryWeight < 100 {
			if c.Exists && c.Revision == d.st.CanaryRevision && c.ReadyReplicas >= full {
				d.st.CanaryWeight = 100
				d.setPhase(rampv1.PhasePromoting, "all traffic to the canary")
				return
			}
			if d.deadlinePassed() {
				d.rollback("ProgressDeadlineExceeded", fmt.Sprintf("canary not ready at full size within %s: %d/%d replicas ready",
					d.spec.ProgressDeadlineOrDefault(), d.readyOfRevision(), full))
				return
			}
			d.setPhase(rampv1.PhasePromoting, fmt.Sprintf("waiting for the canary to reach full size before it takes all traffic (%d/%d ready)", d.readyOfRevision(), full))
			d.wakeAt(d.stageStart().Add(d.spec.ProgressDeadlineOrDefault()))
			return
		}
		// Un-pause the target only once the VirtualService holds 100% canary: its rolling
		// update takes the stable pods away.
		if d.obs.Routing != nil && d.obs.Routing.CanaryWeight == 100 {
			d.setStage(StageUpdatingStable)
			d.setPhase(rampv1.PhasePromoting, "updating the target Deployment to the new revision")
			return
		}
		d.setPhase(rampv1.PhasePromoting, "waiting for the VirtualService to route all traffic to the canary")
	case StageUpdatingStable:
		if t.Revision == d.st.CanaryRevision && t.RolledOut && t.PodTemplateHash != "" {
			d.st.StablePodTemplateHash = t.PodTemplateHash
			d.setStage(StageSwitchingStableSubset)
			d.setPhase(rampv1.PhasePromoting, "pointing the stable subset at the updated target")
			return
		}
		if d.deadlinePassed() {
			// Traffic is all on the healthy canary: holding is safe, rolling back is not.
			d.stall("TargetUpdateStuck", fmt.Sprintf("the target Deployment did not finish rolling out revision %s within %s; all traffic stays on the canary until it does",
				d.st.CanaryRevision, d.spec.ProgressDeadlineOrDefault()))
			d.st.Phase = rampv1.PhasePromoting
			d.noDesired = false
			return
		}
		d.setPhase(rampv1.PhasePromoting, "waiting for the target Deployment to roll out the new revision")
		d.wakeAt(d.stageStart().Add(d.spec.ProgressDeadlineOrDefault()))
	case StageSwitchingStableSubset:
		settled := d.stageStart().Add(d.cfg.SubsetSettle)
		if d.now.Before(settled) {
			d.wakeAt(settled)
			d.setPhase(rampv1.PhasePromoting, "letting the new stable subset reach the proxies")
			return
		}
		if !t.Paused {
			// Traffic goes back to the target only once it is paused at the promoted revision:
			// a commit would otherwise roll out under it (the pause event brings the next pass).
			d.setPhase(rampv1.PhasePromoting, fmt.Sprintf("waiting for the target Deployment to be paused at revision %s before routing traffic back to it", d.st.CanaryRevision))
			return
		}
		d.st.CanaryWeight = 0
		d.setStage(StageRoutingToStable)
		d.setPhase(rampv1.PhasePromoting, "routing all traffic back to the updated target")
	case StageRoutingToStable:
		if d.obs.Routing != nil && d.obs.Routing.CanaryWeight == 0 {
			rev := d.st.CanaryRevision
			d.st.StableRevision = rev
			d.st.CanaryRevision = ""
			d.clearProgress()
			d.ended(rev)
			d.setPhase(rampv1.PhaseSucceeded, "revision "+rev+" promoted")
			d.event(false, "Promoted", fmt.Sprintf("revision %s promoted: the target runs it and takes all traffic", rev))
			return
		}
		d.setPhase(rampv1.PhasePromoting, "waiting for the VirtualService to route all traffic to stable")
	}
}

// --- rollback ------------------------------------------------------------------------------

func (d *decider) rollback(reason, msg string) {
	d.st.PausedAt = nil
	d.st.CanaryWeight = 0
	d.setPhase(rampv1.PhaseRollingBack, msg)
	d.event(true, reason, "rolling back: "+msg)
}

func (d *decider) rollingBack() {
	if d.obs.Routing != nil && d.obs.Routing.CanaryWeight == 0 {
		d.ended(d.st.CanaryRevision)
		d.setPhase(rampv1.PhaseFailed, d.st.Message)
		d.event(true, "RolledBack", fmt.Sprintf("all traffic on stable revision %s; canary scaled to zero: %s", d.st.StableRevision, d.st.Message))
		return
	}
	d.st.Phase = rampv1.PhaseRollingBack
}

// --- helpers -------------------------------------------------------------------------------

// take reports whether token is a request not yet acted on, and acknowledges it.
func (d *decider) take(handled *string, token string) bool {
	if token == "" || token == *handled {
		return false
	}
	*handled = token
	return true
}

func (d *decider) stall(reason, msg string) {
	d.summary = &Summary{Stalled: true, Reason: reason, Message: msg}
	d.st.Message = msg
	d.noDesired = true
	if d.st.Phase == "" || d.st.Phase == rampv1.PhaseInitializing {
		// Nothing adopted yet, so no rollout state to keep: say so in the phase.
		d.st.Phase = rampv1.PhaseStalled
	}
}

// canaryLost reports whether the canary has no pod to serve the traffic routed to it: gone,
// of another revision, or with no ready pod (once its controller has seen its spec).
func (d *decider) canaryLost() bool {
	c := d.obs.Canary
	return !c.Exists || c.Revision != d.st.CanaryRevision || (!c.Unobserved && c.ReadyReplicas == 0)
}

func (d *decider) setPhase(phase, msg string) {
	d.st.Phase = phase
	d.st.Message = msg
}

func (d *decider) setStage(stage string) {
	d.st.Stage = stage
	d.st.StageStartedAt = d.nowTime()
	d.st.PausedAt = nil
}

// watchTargetSize warns when the target shrinks below what the traffic on stable needs at
// the size the rollout was sized with: its share of the replicas the target had (e.g. Git
// dropped spec.replicas, and Flux's apply reset it to the API default of 1, with 80% of
// traffic on stable). The canary follows the target's size; nothing else changes.
func (d *decider) watchTargetSize() {
	st, n := &d.st, d.obs.Target.Replicas
	if n > st.TargetReplicas {
		st.TargetReplicas = n
		return
	}
	w := st.CanaryWeight
	if d.isPromotionStage() || w >= 100 {
		return
	}
	if need := CanaryReplicas(st.TargetReplicas, 100-w); n < need {
		d.event(true, "TargetShrunk", fmt.Sprintf("Deployment %q shrank from %d to %d replicas at step %d/%d with %d%% of traffic on stable, which needs %d at the size the rollout started with; did Git drop spec.replicas (Flux then resets it to 1)? See docs/gitops.md",
			d.spec.TargetRef.Name, st.TargetReplicas, n, st.CurrentStep, st.Steps, 100-w, need))
		st.TargetReplicas = n
	}
}

// resumeClocks ends a pause: the stage's clocks stood still while it lasted, so the stage's
// start moves forward by its length. A step paused for 5 minutes and held for 2 before a
// 10-minute kubectl ramp pause still holds 3 minutes after resume, instead of ending at once;
// the progress deadline likewise does not run while a person holds the rollout.
func (d *decider) resumeClocks() {
	if d.st.PausedAt == nil {
		return
	}
	if paused := d.now.Sub(d.st.PausedAt.Time); paused > 0 && d.st.StageStartedAt != nil {
		d.st.StageStartedAt = mtimeOf(d.st.StageStartedAt.Add(paused))
	}
	d.st.PausedAt = nil
}

func mtimeOf(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

func (d *decider) nowTime() *metav1.MicroTime { t := metav1.NewMicroTime(d.now); return &t }

func (d *decider) stageStart() time.Time {
	if d.st.StageStartedAt == nil {
		return d.now
	}
	return d.st.StageStartedAt.Time
}

// routed reports whether the live VirtualService routes weight% to the canary.
func (d *decider) routed(weight int32) bool {
	return d.obs.Routing != nil && d.obs.Routing.CanaryWeight == weight
}

func (d *decider) deadlinePassed() bool {
	return !d.now.Before(d.stageStart().Add(d.spec.ProgressDeadlineOrDefault()))
}

func (d *decider) wakeAt(t time.Time) {
	if t.IsZero() {
		return
	}
	if d.requeue.IsZero() || t.Before(d.requeue) {
		d.requeue = t
	}
}

func (d *decider) event(warning bool, reason, msg string) {
	d.events = append(d.events, Event{Warning: warning, Reason: reason, Message: msg})
}

func (d *decider) stepReplicas(s step) int32 {
	if isBlueGreen(d.spec) {
		return CanaryReplicas(d.obs.Target.Replicas, 100)
	}
	return CanaryReplicas(d.obs.Target.Replicas, s.share())
}

func (d *decider) readyOfRevision() int32 {
	if d.obs.Canary.Revision != d.st.CanaryRevision {
		return 0
	}
	return d.obs.Canary.ReadyReplicas
}

// stepText describes the step the rollout holds by the traffic it routes, which is the
// step's weight unless Git lowered it mid-rollout (traffic never moves back for that).
func (d *decider) stepText(s step) string {
	if isBlueGreen(d.spec) {
		if s.mirror > 0 {
			return fmt.Sprintf("preview: new version at full size on the preview header route, %g%% of live traffic mirrored to it", s.mirror)
		}
		return "preview: new version at full size on the preview header route"
	}
	txt := fmt.Sprintf("step %d/%d: %d%% to canary", d.st.CurrentStep, d.st.Steps, d.st.CanaryWeight)
	if s.weight != d.st.CanaryWeight {
		txt += fmt.Sprintf(" (the step now says %d%%; traffic does not move back mid-rollout)", s.weight)
	}
	if s.mirror > 0 {
		txt += fmt.Sprintf(", %g%% mirrored to canary", s.mirror)
	}
	return txt
}

func (d *decider) planText() string {
	if isBlueGreen(d.spec) {
		return "blue/green: preview, then flip"
	}
	txt := "canary"
	for i, s := range d.steps {
		sep := " → "
		if i == 0 {
			sep = " "
		}
		if s.mirror > 0 {
			txt += fmt.Sprintf("%smirror %g%%", sep, s.mirror)
			continue
		}
		txt += fmt.Sprintf("%s%d%%", sep, s.weight)
	}
	return txt
}

func joinAnd(parts []string) string {
	out := ""
	for i, p := range parts {
		switch {
		case i == 0:
		case i == len(parts)-1:
			out += " and "
		default:
			out += ", "
		}
		out += p
	}
	return out
}
