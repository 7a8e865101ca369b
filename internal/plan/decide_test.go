package plan

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"reflect"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

type tcase struct {
	name string
	cfg  *Config // nil: DefaultConfig (2s subset settle)
	ro   *rampv1.Rollout
	obs  Observation
	want want
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				cfg = *tc.cfg
			}
			before := tc.ro.DeepCopy()
			d := Decide(cfg, tc.ro, tc.obs)
			if !reflect.DeepEqual(before, tc.ro) {
				t.Errorf("Decide mutated its Rollout argument")
			}
			expect(t, tc.ro, d, tc.want)
		})
	}
}

const (
	progressing = rampv1.PhaseProgressing
	promoting   = rampv1.PhasePromoting
	waiting     = rampv1.PhaseWaitingForWindow
	pausedPhase = rampv1.PhasePaused
	rollingBack = rampv1.PhaseRollingBack
	failedPhase = rampv1.PhaseFailed
	idle        = rampv1.PhaseIdle
	succeeded   = rampv1.PhaseSucceeded

	scaling    = StageScalingCanary
	windowWait = StageWaitingForWindow
	holding    = StageHolding
	toCanary   = StageRoutingToCanary
	updating   = StageUpdatingStable
	switching  = StageSwitchingStableSubset
	toStable   = StageRoutingToStable
)

var (
	// pausedSteps: the default plan with a 5m pause at every step.
	pausedSteps = withSteps(cstep(5, pauseFor(5*time.Minute)), cstep(25, pauseFor(5*time.Minute)), cstep(100, pauseFor(5*time.Minute)))
	// twoSteps: a plan whose last step is below 100%.
	twoSteps = withSteps(cstep(5, nil), cstep(25, nil))
	// analysed: a round every minute, default limits (2 failed, 5 inconclusive).
	analysed = withAnalysis(time.Minute, 0, 0)
)

func lastAnalysis(at time.Time) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) { st.LastAnalysisTime = mtime(at) })
}

func stableHashIs(h string) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) { st.StablePodTemplateHash = h })
}

func paused() roOpt { return withSpec(func(s *rampv1.RolloutSpec) { s.Paused = true }) }

func rev3(d *Desired) { d.CanaryRevision = newerRev }

// --- adoption ---------------------------------------------------------------------------------

// dPauseOnly: adoption pauses the target and writes nothing else.
func dPauseOnly() *Desired {
	return &Desired{TargetPaused: true, TargetAsObserved: true, PauseOnly: true}
}

// pausingAt: ramp recorded rev as the revision it pauses the target at, and waits to see the
// pause (Initializing, nothing routed yet).
func pausingAt(rev string) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) {
		*st = rampv1.RolloutStatus{Phase: rampv1.PhaseInitializing, StableRevision: rev}
	})
}

// hashes: the target has ReplicaSets for these revisions (revision → pod-template-hash).
func hashes(h map[string]string) obsOpt { return func(o *Observation) { o.Target.Hashes = h } }

func TestDecideInitializing(t *testing.T) {
	fresh := withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{} })
	initializing := withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{Phase: rampv1.PhaseInitializing} })
	rwc := ReasonReleasedWithoutCanary
	releasedR2 := withStatus(func(st *rampv1.RolloutStatus) {
		st.StableRevision = newRev
		st.ReleasedWithoutCanary = &rampv1.Release{Revision: newRev, Reason: `Git changed Deployment "web" from revision r1 to r2 before ramp's pause took effect`}
	})
	runCases(t, []tcase{
		{
			name: "new Rollout: target still rolling out",
			ro:   newRollout(fresh),
			obs:  observe(t0, targetUnpaused(), targetAt(stableRev)),
			want: want{phase: rampv1.PhaseInitializing, check: messageHas(`"web" to finish rolling out`)},
		},
		{
			name: "initializing: rolled out but its ReplicaSet hash unknown",
			ro:   newRollout(initializing),
			obs:  observe(t0, targetUnpaused(), targetRolledOut(stableRev, "")),
			want: want{phase: rampv1.PhaseInitializing},
		},
		{
			// Not Idle yet: a commit before the pause takes effect would roll out under it.
			name: "new Rollout: a rolled-out target is paused at its revision, recorded; nothing else until the pause is seen",
			ro:   newRollout(fresh),
			obs:  observe(t0, targetUnpaused(), stableTarget()),
			want: want{phase: rampv1.PhaseInitializing, desired: dPauseOnly(),
				check: checks(revisions(stableRev, "", ""), messageHas(`pausing Deployment "web" at revision r1`))},
		},
		{
			name: "pausing: a canary left over with ready pods gets no traffic: only the pause",
			ro:   newRollout(fresh),
			obs:  observe(t0, targetUnpaused(), stableTarget(), canaryAt("r0", 3), readyPods(map[string]int32{stableHash: replicas}, 3)),
			want: want{phase: rampv1.PhaseInitializing, desired: dPauseOnly(), check: revisions(stableRev, "", "")},
		},
		{
			name: "pausing: the pause not seen yet (it failed, or is not in the cache): paused again, still not adopted",
			ro:   newRollout(pausingAt(stableRev)),
			obs:  observe(t0, targetUnpaused(), stableTarget()),
			want: want{phase: rampv1.PhaseInitializing, desired: dPauseOnly(), check: revisions(stableRev, "", "")},
		},
		{
			name: "pausing: ramp's pause seen: adopted at the recorded revision, ignoring the canary left over",
			ro:   newRollout(pausingAt(stableRev)),
			obs:  observe(t0, stableTarget(), canaryAt("r0", 3)),
			want: want{phase: idle, events: []string{"Adopted"}, desired: dSteady(stableHash),
				check: checks(revisions(stableRev, stableHash, ""), warnings(false))},
		},
		{
			// The pause was applied over the version ramp saw rolled out at r1: Git's commit
			// since created no ReplicaSet, the pods run r1, and r2 goes through the canary.
			name: "pausing: Git changed the template under ramp's pause: adopted at the paused revision, the new one rolls out through the canary",
			ro:   newRollout(pausingAt(stableRev)),
			obs:  observe(t0, targetAt(newRev), hashes(map[string]string{stableRev: stableHash})),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"Adopted", "RolloutStarted"}, requeue: 10 * time.Minute,
				desired: dRun(1, 0, false), check: revisions(stableRev, stableHash, newRev)},
		},
		{
			// The pause failed (the template changed since ramp read it): the Deployment rolls r2
			// out itself. ramp does not claim it as a release.
			name: "pausing: Git changed the template before the pause took effect: that revision goes live without a canary, ramp waits for it",
			ro:   newRollout(pausingAt(stableRev)),
			obs:  observe(t0, targetUnpaused(), targetAt(newRev)),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"ReleasedWithoutCanary"}, summary: summaryOf(rwc, false, true),
				check: checks(revisions(newRev, "", ""), warnings(true),
					messageHas("revision r2 went live without a canary"), messageHas("from revision r1 to r2 before ramp's pause took effect"),
					messageHas("waiting for the Deployment to finish rolling out"),
					func(t *testing.T, d Decision) {
						if r := d.Status.ReleasedWithoutCanary; r == nil || r.Revision != newRev {
							t.Errorf("status.releasedWithoutCanary = %+v, want %s", r, newRev)
						}
					})},
		},
		{
			name: "released before the pause: rolled out: paused at the new revision, still saying it went live without a canary",
			ro:   newRollout(pausingAt(stableRev), releasedR2),
			obs:  observe(t0, targetUnpaused(), targetRolledOut(newRev, newHash)),
			want: want{phase: rampv1.PhaseInitializing, desired: dPauseOnly(), summary: summaryOf(rwc, false, true),
				check: checks(revisions(newRev, "", ""), messageHas("revision r2 went live without a canary"))},
		},
		{
			name: "released before the pause: paused by ramp: Idle at the new revision, Ready says it went live without a canary",
			ro:   newRollout(pausingAt(stableRev), releasedR2),
			obs:  observe(t0, targetRolledOut(newRev, newHash), stableSubset(newHash)),
			want: want{phase: idle, events: []string{"Adopted"}, desired: dSteady(newHash), summary: summaryOf(rwc, true, false),
				check: checks(revisions(newRev, newHash, ""), messageHas("revision r2 went live without a canary"))},
		},
		{
			name: "initializing: requests wait until adopted",
			ro:   newRollout(fresh),
			obs:  observe(t0, targetUnpaused(), targetAt(stableRev), requests(Requests{Promote: "p1", Abort: "a1"})),
			want: want{phase: rampv1.PhaseInitializing, check: handled(rampv1.HandledRequests{})},
		},
		{
			// Git created it paused: it never rolls out, and ramp must not take spec.paused over.
			name: "new Rollout: target paused by Git stalls with the fix",
			ro:   newRollout(fresh),
			obs:  observe(t0, targetAt(stableRev), targetPausedBy("kustomize-controller")),
			want: want{phase: rampv1.PhaseStalled, summary: stalled("TargetPaused"),
				check: checks(messageHas("remove spec.paused from its manifest in Git"), messageHas("(set by kustomize-controller)"))},
		},
		{
			name: "pausing: a pause ramp did not make is not ramp's, even at the recorded revision",
			ro:   newRollout(pausingAt(stableRev)),
			obs:  observe(t0, stableTarget(), targetPausedBy("kubectl-patch")),
			want: want{phase: rampv1.PhaseStalled, summary: stalled("TargetPaused"), check: revisions(stableRev, "", "")},
		},
		{
			name: "paused by ramp, no revision recorded (status lost), rolled out: adopted at what its pods run",
			ro:   newRollout(fresh),
			obs:  observe(t0, stableTarget()),
			want: want{phase: idle, events: []string{"Adopted"}, desired: dSteady(stableHash),
				check: revisions(stableRev, stableHash, "")},
		},
		{
			name: "paused by ramp, no revision recorded, its template not rolled out: stalls naming the fix",
			ro:   newRollout(fresh),
			obs:  observe(t0),
			want: want{phase: rampv1.PhaseStalled, summary: stalled("TargetPaused"), check: messageHas("kubectl rollout resume deployment/web")},
		},
		{
			name: "stalled: pauses the target once the cause is gone",
			ro:   newRollout(withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{Phase: rampv1.PhaseStalled} })),
			obs:  observe(t0, targetUnpaused(), stableTarget()),
			want: want{phase: rampv1.PhaseInitializing, desired: dPauseOnly(), check: revisions(stableRev, "", "")},
		},
	})
}

// --- stalls, in every phase -------------------------------------------------------------------

func TestDecideStalls(t *testing.T) {
	statuses := []struct {
		name string
		ro   *rampv1.Rollout
	}{
		{"new", newRollout(withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{} }))},
		{"idle", newRollout()},
		{"scaling", newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Hour)))},
		{"holding", newRollout(inRollout(progressing, holding, 2, 25, ago(time.Hour)))},
		{"waiting for window", newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour)))},
		{"paused", newRollout(inRollout(pausedPhase, holding, 1, 5, ago(time.Hour)))},
		{"routing to canary", newRollout(inRollout(promoting, toCanary, 3, 100, ago(time.Hour)))},
		{"updating stable", newRollout(inRollout(promoting, updating, 3, 100, ago(time.Hour)))},
		{"routing to stable", newRollout(inRollout(promoting, toStable, 3, 0, ago(time.Hour)))},
		{"rolling back", newRollout(inRollout(rollingBack, holding, 2, 0, ago(time.Hour)))},
		{"failed", newRollout(failed())},
		{"succeeded", newRollout(withStatus(func(st *rampv1.RolloutStatus) { st.Phase = succeeded }))},
	}
	var cases []tcase
	for _, s := range statuses {
		st := s.ro.Status
		for _, o := range []struct {
			name   string
			opt    obsOpt
			reason string
		}{
			{"spec error", specError(`promotionWindows[0].schedule: expected 5 fields`), "InvalidSpec"},
			{"target missing", targetMissing(), "TargetNotFound"},
			{"foreign object", func(o *Observation) {
				o.ForeignObject = `VirtualService "podinfo" exists and was not created by this Rollout`
			}, "ForeignObject"},
		} {
			// Everything that would otherwise move the rollout: it must stay where it is.
			obs := observe(t0, o.opt, canaryReady(10), routing(0), verdict(rampv1.VerdictFailed),
				requests(Requests{Promote: "p1", PromoteFull: "f1", Abort: "a1", Retry: "t1"}))
			reason := o.reason
			phase := st.Phase
			if phase == "" {
				phase = rampv1.PhaseStalled // a blank PHASE column tells nothing
			}
			var desired *Desired
			if o.reason == "TargetNotFound" && st.CanaryRevision != "" && st.Phase != failedPhase {
				// The target's pods are gone and the canary's are ready: they take all traffic.
				desired = &Desired{TargetPaused: true, TargetUntouched: true, CanaryRevision: st.CanaryRevision, CanaryReplicas: 10, StablePodTemplateHash: st.StablePodTemplateHash, CanaryWeight: 100}
			}
			cases = append(cases, tcase{
				name: s.name + ": " + o.name,
				ro:   s.ro,
				obs:  obs,
				want: want{phase: phase, stage: st.Stage, step: st.CurrentStep, weight: st.CanaryWeight, desired: desired,
					summary: stalled(reason),
					check: checks(handled(rampv1.HandledRequests{}), counters(st.FailedChecks, 0),
						revisions(st.StableRevision, st.StablePodTemplateHash, st.CanaryRevision),
						func(t *testing.T, d Decision) {
							if d.Status.Message != d.Summary.Message {
								t.Errorf("status message %q != summary message %q", d.Status.Message, d.Summary.Message)
							}
							if d.Summary.Ready || d.Summary.Reconciling {
								t.Errorf("stalled summary is also ready/reconciling: %+v", d.Summary)
							}
						}),
				},
			})
		}
	}
	runCases(t, cases)
}

// --- no rollout in progress -------------------------------------------------------------------

func TestDecideIdle(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "idle: target at the stable revision",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget()),
			want: want{phase: idle, desired: dSteady(stableHash), check: messageHas("")},
		},
		{
			name: "idle: new revision: step 1 scales the canary, no traffic yet",
			ro:   newRollout(),
			obs:  observe(t0, canaryAbsent()),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: dRun(1, 0, false), requeue: 10 * time.Minute,
				check: checks(revisions(stableRev, stableHash, newRev), totalSteps(3), stageStarted(t0),
					counters(0, 0), messageHas("step 1/3: waiting for the canary to have 1 ready replicas; all traffic on stable meanwhile"))},
		},
		{
			// Step 1 begins in the same pass, but step 2 only once the VirtualService routes 5%:
			// every step's weight reaches the proxies.
			name: "idle: new revision, canary already ready: step 1 starts in the same pass and waits to be routed",
			ro:   newRollout(),
			obs:  observe(t0, canaryReady(1)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5,
				events: []string{"RolloutStarted", "StepStarted"},
				// The message is the step's own until the routing grace ends (one status write,
				// not two, when the route lands in the next pass).
				desired: dRun(1, 5, true), requeue: DefaultConfig().RoutingGrace, check: messageIs("step 1/3: 5% to canary")},
		},
		{
			name: "succeeded: new revision starts a rollout",
			ro:   newRollout(withStatus(func(st *rampv1.RolloutStatus) { st.Phase = succeeded })),
			obs:  observe(t0, canaryAbsent()),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: dRun(1, 0, false), requeue: 10 * time.Minute},
		},
		{
			name: "succeeded: target at the stable revision",
			ro:   newRollout(withStatus(func(st *rampv1.RolloutStatus) { st.Phase = succeeded; st.Message = "revision r1 promoted" })),
			obs:  observe(t0, stableTarget()),
			want: want{phase: succeeded, desired: dSteady(stableHash), check: messageHas("r1 promoted")},
		},
		{
			name: "idle: pending requests are all acknowledged and none acts on the new rollout",
			ro:   newRollout(),
			obs:  observe(t0, canaryAbsent(), routing(0), requests(Requests{Promote: "p1", PromoteFull: "f1", Abort: "a1"})),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RequestIgnored", "RolloutStarted"},
				desired: dRun(1, 0, false), requeue: 10 * time.Minute,
				check: checks(handled(rampv1.HandledRequests{Promote: "p1", PromoteFull: "f1", Abort: "a1"}), warnings(true, false))},
		},
		{
			name: "idle: abort alone is acknowledged and ignored",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), requests(Requests{Abort: "a1"})),
			want: want{phase: idle, events: []string{"RequestIgnored"}, desired: dSteady(stableHash),
				check: handled(rampv1.HandledRequests{Abort: "a1"})},
		},
		{
			name: "idle: retry with nothing failed is ignored",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), requests(Requests{Retry: "t1"})),
			want: want{phase: idle, events: []string{"RequestIgnored"}, desired: dSteady(stableHash),
				check: handled(rampv1.HandledRequests{Retry: "t1"})},
		},
		{
			name: "idle: handled tokens are not new",
			ro:   newRollout(withStatus(func(st *rampv1.RolloutStatus) { st.HandledRequests = rampv1.HandledRequests{Abort: "a1", Retry: "t1"} })),
			obs:  observe(t0, stableTarget(), requests(Requests{Abort: "a1", Retry: "t1"})),
			want: want{phase: idle, desired: dSteady(stableHash)},
		},
		{
			name: "idle: new revision while paused: the rollout starts paused",
			ro:   newRollout(paused()),
			obs:  observe(t0, canaryAbsent()),
			want: want{phase: pausedPhase, stage: scaling, step: 1, events: []string{"RolloutStarted", "Paused"},
				desired: dRun(1, 0, false), check: messageHas("paused by spec.paused at step 1/3, 0% to canary")},
		},
		{
			name: "idle: a stray analysis result is ignored",
			ro:   newRollout(analysed),
			obs:  observe(t0, stableTarget(), verdict(rampv1.VerdictFailed)),
			want: want{phase: idle, desired: dSteady(stableHash), check: counters(0, 0)},
		},
	})
}

// --- a step's canary is scaling ---------------------------------------------------------------

func TestDecideScaling(t *testing.T) {
	full := requests(Requests{PromoteFull: "f1"})
	runCases(t, []tcase{
		{
			name: "scaling: canary not ready yet",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(3*time.Minute))),
			obs:  observe(t0, canaryReady(2), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true),
				requeue: 7 * time.Minute, check: messageIs("step 2/3: waiting for the canary to have 3 ready replicas; 5% to canary meanwhile")},
		},
		{
			name: "scaling: ready pods of another revision do not count",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryAt(stableRev, 5)),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(1, 0, false),
				requeue: 9 * time.Minute, check: messageIs("step 1/3: waiting for the canary to have 1 ready replicas; all traffic on stable meanwhile")},
		},
		{
			name: "scaling: canary Deployment not created yet",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryAbsent()),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(1, 0, false), requeue: 9 * time.Minute},
		},
		{
			name: "scaling: canary ready: the step's weight is routed and it holds",
			ro:   newRollout(pausedSteps, inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(5)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"StepStarted"},
				// The message the step will have once routed, so routing it costs no status write.
				desired: dRun(3, 25, true), requeue: DefaultConfig().RoutingGrace,
				check: checks(stageStarted(t0), messageIs("step 2/3: 25% to canary; waiting for pause until "+t0.Add(5*time.Minute).UTC().Format(time.RFC3339)))},
		},
		{
			name: "scaling: more ready than needed is fine",
			ro:   newRollout(pausedSteps, inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(4)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"StepStarted"},
				desired: dRun(1, 5, true), requeue: DefaultConfig().RoutingGrace},
		},
		{
			// The canary keeps the size of the traffic it had (step 1's), not of the step that never began.
			name: "scaling: progress deadline: roll back, the VirtualService still routes 5%",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(2), routing(5)),
			want: want{phase: rollingBack, stage: scaling, step: 2, events: []string{"ProgressDeadlineExceeded"},
				desired: dRun(1, 0, false), check: checks(warnings(true), messageHas("canary not ready within 10m0s: 2/3 replicas ready"))},
		},
		{
			name: "scaling: progress deadline at step 1 with nothing routed: failed in one pass",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(11*time.Minute))),
			obs:  observe(t0, routing(0)),
			want: want{phase: failedPhase, stage: scaling, step: 1, events: []string{"ProgressDeadlineExceeded", "RolledBack"},
				desired: dSteady(stableHash), check: revisions(stableRev, stableHash, newRev)},
		},
		{
			name: "scaling: spec.progressDeadline overrides the default",
			ro:   newRollout(withSpec(func(s *rampv1.RolloutSpec) { s.ProgressDeadline = mdur(2 * time.Minute) }), inRollout(progressing, scaling, 2, 5, ago(90*time.Second))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 30 * time.Second},
		},
		{
			name: "scaling: spec.progressDeadline passed",
			ro:   newRollout(withSpec(func(s *rampv1.RolloutSpec) { s.ProgressDeadline = mdur(2 * time.Minute) }), inRollout(progressing, scaling, 2, 5, ago(2*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: rollingBack, stage: scaling, step: 2, events: []string{"ProgressDeadlineExceeded"}, desired: dRun(1, 0, false)},
		},
		{
			name: "scaling: 100% step outside promotion windows: hold at the current weight, canary not sized up",
			ro:   newRollout(inRollout(progressing, scaling, 3, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(2*time.Hour))),
			want: want{phase: waiting, stage: windowWait, step: 3, weight: 25, events: []string{"WaitingForWindow"},
				desired: dRun(3, 25, true), requeue: 2 * time.Hour,
				check: messageHas("holding at 25% outside promotion windows; next window opens at 2025-03-14T11:00:00Z")},
		},
		{
			name: "waiting for window: still closed: no new event",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour))),
			want: want{phase: waiting, stage: windowWait, step: 3, weight: 25, desired: dRun(3, 25, true), requeue: time.Hour},
		},
		{
			name: "waiting for window: closed, next opening unknown",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(time.Time{})),
			want: want{phase: waiting, stage: windowWait, step: 3, weight: 25, desired: dRun(3, 25, true)},
		},
		{
			name: "waiting for window: opens: the canary grows and the deadline counts from now",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 3, weight: 25, desired: dRun(10, 25, true),
				requeue: 10 * time.Minute, check: stageStarted(t0)},
		},
		{
			name: "waiting for window: opens with the canary already at full size: the 100% step begins",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(10), routing(25)),
			want: want{phase: progressing, stage: holding, step: 3, weight: 100, events: []string{"StepStarted"},
				desired: dRun(10, 100, true), requeue: DefaultConfig().RoutingGrace},
		},
		{
			// Statuses written before the WaitingForWindow stage existed say ScalingCanary.
			name: "waiting for window (older status): opens: the deadline counts from now",
			ro:   newRollout(inRollout(waiting, scaling, 3, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 3, weight: 25, desired: dRun(10, 25, true),
				requeue: 10 * time.Minute, check: stageStarted(t0)},
		},
		{
			name: "waiting for window: promote --full overrides the window",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour)), full),
			want: want{phase: promoting, stage: toCanary, step: 3, weight: 25, events: []string{"PromoteRequested", "PromotionStarted"},
				desired: dRun(10, 25, true), requeue: 10 * time.Minute,
				check: checks(handled(rampv1.HandledRequests{PromoteFull: "f1"}), stageStarted(t0))},
		},
		{
			name: "waiting for window: plain promote does not override it",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour)), requests(Requests{Promote: "p1"})),
			want: want{phase: waiting, stage: windowWait, step: 3, weight: 25, events: []string{"RequestIgnored"},
				desired: dRun(3, 25, true), requeue: time.Hour, check: handled(rampv1.HandledRequests{Promote: "p1"})},
		},
		{
			name: "scaling: promote waits until the step holds",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true),
				requeue: 9 * time.Minute, check: handled(rampv1.HandledRequests{})},
		},
		{
			name: "scaling: promote --full skips the remaining steps",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), full),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 5, events: []string{"PromoteRequested", "PromotionStarted"},
				desired: dRun(10, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "scaling: abort",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: scaling, step: 2, events: []string{"AbortRequested"},
				desired: dRun(1, 0, false), check: checks(handled(rampv1.HandledRequests{Abort: "a1"}), messageHas("aborted"))},
		},
		{
			name: "waiting for window: abort: the canary does not grow to full size while traffic leaves it",
			ro:   newRollout(inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour)), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: windowWait, step: 3, events: []string{"AbortRequested"}, desired: dRun(3, 0, false)},
		},
		{
			name: "scaling: abort at step 1: the canary keeps step 1's size",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, routing(5), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: scaling, step: 1, events: []string{"AbortRequested"}, desired: dRun(1, 0, false)},
		},
		{
			name: "scaling: retry during a rollout is acknowledged and ignored",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Retry: "t1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"RequestIgnored"},
				desired: dRun(3, 5, true), requeue: 9 * time.Minute, check: handled(rampv1.HandledRequests{Retry: "t1"})},
		},
		{
			name: "scaling: a new revision restarts at step 1 with traffic back to stable",
			ro: newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute)), withStatus(func(st *rampv1.RolloutStatus) {
				st.FailedChecks, st.InconclusiveChecks, st.LastAnalysisTime = 1, 2, mtime(ago(time.Minute))
			})),
			obs: observe(t0, targetAt(newerRev), canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutRestarted"},
				desired: with(dRun(1, 0, false), rev3), requeue: 10 * time.Minute,
				check: checks(counters(0, 0), revisions(stableRev, stableHash, newerRev), stageStarted(t0),
					func(t *testing.T, d Decision) {
						if d.Status.LastAnalysisTime != nil {
							t.Errorf("lastAnalysisTime kept across a restart")
						}
					})},
		},
		{
			name: "scaling: Git reverted the target to stable: idle at once",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, stableTarget(), canaryReady(1), routing(5)),
			want: want{summary: notRoutedYet(idle), phase: idle, events: []string{"RolloutCancelled"}, desired: dSteady(stableHash),
				check: checks(revisions(stableRev, stableHash, ""), totalSteps(0))},
		},
	})
}

// --- a step holds -----------------------------------------------------------------------------

func TestDecideHolding(t *testing.T) {
	untilPromotedSteps := withSteps(cstep(5, untilPromoted()), cstep(100, nil))
	runCases(t, []tcase{
		{
			name: "holding: pause running",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(2*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: 3 * time.Minute, check: messageHas("step 1/3: 5% to canary; waiting for pause until 2025-03-14T09:03:00Z")},
		},
		{
			name: "holding: pause over: the next step scales the canary",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(5*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true),
				requeue: 10 * time.Minute, check: checks(stageStarted(t0), analysisPassed(false))},
		},
		{
			name: "holding: pause over, canary already big enough for the next step",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(5*time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(5)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"StepStarted"},
				desired: dRun(3, 25, true), requeue: DefaultConfig().RoutingGrace},
		},
		{
			name: "holding: no pause and no analysis: the step ends at once",
			ro:   newRollout(inRollout(progressing, holding, 1, 5, ago(time.Second))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "holding: until promoted",
			ro:   newRollout(untilPromotedSteps, inRollout(progressing, holding, 1, 5, ago(time.Hour))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				check: messageHas("waiting for kubectl ramp promote")},
		},
		{
			name: "holding: until promoted: promote",
			ro:   newRollout(untilPromotedSteps, inRollout(progressing, holding, 1, 5, ago(time.Hour))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"PromoteRequested"},
				desired: dRun(10, 5, true), requeue: 10 * time.Minute, check: handled(rampv1.HandledRequests{Promote: "p1"})},
		},
		{
			name: "holding: a handled promote token is not a new request",
			ro: newRollout(untilPromotedSteps, inRollout(progressing, holding, 1, 5, ago(time.Hour)),
				withStatus(func(st *rampv1.RolloutStatus) { st.HandledRequests.Promote = "p1" })),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true)},
		},
		{
			name: "holding: promote cuts a running pause short",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p2"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"PromoteRequested"},
				desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "holding: promote --full",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{PromoteFull: "f1"})),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 5, events: []string{"PromoteRequested", "PromotionStarted"},
				desired: dRun(10, 5, true), requeue: 10 * time.Minute, check: handled(rampv1.HandledRequests{PromoteFull: "f1"})},
		},
		{
			name: "holding: the step's fault",
			ro: newRollout(withSteps(rampv1.CanaryStep{SetWeight: 5, Pause: pauseFor(5 * time.Minute), FaultInjection: stepFault}, cstep(100, nil)),
				withHeaderMatch(), withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault }),
				inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs: observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, requeue: 4 * time.Minute,
				desired: with(dRun(1, 5, true), func(d *Desired) { d.Fault = stepFault })},
		},
		{
			name: "holding: spec.faultInjection when the step has none",
			ro: newRollout(pausedSteps, withHeaderMatch(), withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault }),
				inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs: observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, requeue: 4 * time.Minute,
				desired: with(dRun(3, 25, true), func(d *Desired) { d.Fault = specFault })},
		},
		{
			name: "scaling: no fault outside holding",
			ro: newRollout(pausedSteps, withHeaderMatch(), withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault }),
				inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 9 * time.Minute},
		},
		{
			name: "holding: last step done, window open: promotion; the VirtualService already holds 100% so the target is un-paused",
			ro:   newRollout(inRollout(progressing, holding, 3, 100, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 3, weight: 100, events: []string{"PromotionStarted"},
				desired: with(dRun(10, 100, true), func(d *Desired) { d.TargetPaused, d.TargetAsObserved = false, true }), requeue: 10 * time.Minute,
				check: stageStarted(t0)},
		},
		{
			name: "holding: last step below 100% done, window closed",
			ro:   newRollout(twoSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(2*time.Hour))),
			want: want{phase: waiting, stage: holding, step: 2, weight: 25, events: []string{"WaitingForWindow"},
				desired: dRun(3, 25, true), requeue: 2 * time.Hour},
		},
		{
			name: "waiting for window at the last step: opens",
			ro:   newRollout(twoSteps, inRollout(waiting, holding, 2, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 25, events: []string{"PromotionStarted"},
				desired: dRun(10, 25, true), requeue: 10 * time.Minute},
		},
		{
			name: "waiting for window at the last step: promote --full",
			ro:   newRollout(twoSteps, inRollout(waiting, holding, 2, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(10), routing(25), windowClosed(t0.Add(time.Hour)), requests(Requests{PromoteFull: "f1"})),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 100, events: []string{"PromoteRequested", "PromotionStarted"},
				desired: dRun(10, 100, true)},
		},
		{
			name: "waiting for window at the last step: promote completes nothing more",
			ro:   newRollout(twoSteps, inRollout(waiting, holding, 2, 25, ago(3*time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour)), requests(Requests{Promote: "p1"})),
			want: want{phase: waiting, stage: holding, step: 2, weight: 25, events: []string{"PromoteRequested"},
				desired: dRun(3, 25, true), requeue: time.Hour, check: handled(rampv1.HandledRequests{Promote: "p1"})},
		},
		{
			name: "holding: abort",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(25), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: holding, step: 2, events: []string{"AbortRequested"}, desired: dRun(3, 0, false)},
		},
		{
			name: "holding: abort wins over retry sent with it",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(0), requests(Requests{Abort: "a1", Retry: "t1"})),
			want: want{phase: failedPhase, stage: holding, step: 2, events: []string{"RequestIgnored", "AbortRequested", "RolledBack"},
				desired: dSteady(stableHash), check: handled(rampv1.HandledRequests{Abort: "a1", Retry: "t1"})},
		},
		{
			name: "holding: new revision restarts",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, targetAt(newerRev), canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutRestarted"},
				desired: with(dRun(1, 0, false), rev3), requeue: 10 * time.Minute},
		},
		{
			name: "holding: Git revert",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, stableTarget(), canaryReady(3), routing(25)),
			want: want{summary: notRoutedYet(idle), phase: idle, events: []string{"RolloutCancelled"}, desired: dSteady(stableHash)},
		},
		{
			name: "holding: the spec lost steps mid-rollout: finish with the last one",
			ro: newRollout(inRollout(progressing, holding, 4, 50, ago(time.Minute)),
				withStatus(func(st *rampv1.RolloutStatus) { st.Steps = 4 })),
			obs: observe(t0, canaryReady(10), routing(50)),
			want: want{phase: promoting, stage: toCanary, step: 3, weight: 100, events: []string{"PromotionStarted"},
				desired: dRun(10, 100, true), check: totalSteps(3)},
		},
	})
}

// --- analysis ---------------------------------------------------------------------------------

func TestDecideAnalysis(t *testing.T) {
	// Step 1 of pausedSteps, its 5m pause over, the last round 30s ago.
	heldLong := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(5*time.Minute)),
			lastAnalysis(ago(30 * time.Second))}, extra...)...)
	}
	statusOf := func(f func(st *rampv1.RolloutStatus)) roOpt { return withStatus(f) }
	ready := func(opts ...obsOpt) Observation {
		return observe(t0, append([]obsOpt{canaryReady(1), routing(5)}, opts...)...)
	}
	runCases(t, []tcase{
		{
			name: "analysis: pause over, no round passed yet",
			ro:   heldLong(),
			obs:  ready(),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: 30 * time.Second, check: messageHas("waiting for a passing analysis round")},
		},
		{
			name: "analysis: a round overdue and running: its result brings the next pass, no timer",
			ro:   heldLong(lastAnalysis(ago(2 * time.Minute))),
			obs:  ready(func(o *Observation) { o.AnalysisRunning = true }),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				check: messageHas("waiting for a passing analysis round")},
		},
		{
			name: "analysis: a round running while the pause runs: wake at the pause's end only",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(3*time.Minute)), lastAnalysis(ago(2*time.Minute))),
			obs:  ready(func(o *Observation) { o.AnalysisRunning = true }),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: 2 * time.Minute, check: messageHas("waiting for pause until 2025-03-14T09:02:00Z and a passing analysis round")},
		},
		{
			name: "analysis: pause running and no round yet: wake at the earlier of both",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(30*time.Second))),
			obs:  ready(),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: 30 * time.Second, check: messageHas("waiting for pause until 2025-03-14T09:04:30Z and a passing analysis round")},
		},
		{
			name: "analysis: passed, pause over: next step",
			ro:   heldLong(),
			obs:  ready(verdict(rampv1.VerdictPassed)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true),
				requeue: 10 * time.Minute, check: checks(analysisPassed(false), lastAnalysisAt(t0), counters(0, 0),
					func(t *testing.T, d Decision) {
						if len(d.Status.LastAnalysis) != 1 || d.Status.LastAnalysis[0].Name != "error-rate" {
							t.Errorf("lastAnalysis = %+v", d.Status.LastAnalysis)
						}
					})},
		},
		{
			name: "analysis: passed, pause still running",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(2*time.Minute)), lastAnalysis(ago(time.Minute))),
			obs:  ready(verdict(rampv1.VerdictPassed)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: time.Minute, check: checks(analysisPassed(true), lastAnalysisAt(t0))},
		},
		{
			// The runner starts the next round an interval after this one began (NextRound); the
			// status says the same, so the pass that collects it finds it due.
			name: "analysis: the round's start is recorded; the next is due an interval after it",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(2*time.Minute)), lastAnalysis(ago(time.Minute))),
			obs:  ready(verdictStarted(rampv1.VerdictPassed, ago(3*time.Second))),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: time.Minute - 3*time.Second, check: checks(analysisPassed(true), lastAnalysisAt(ago(3*time.Second)))},
		},
		{
			name: "analysis: a round said to start after now is recorded at now",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(2*time.Minute)), lastAnalysis(ago(time.Minute))),
			obs:  ready(verdictStarted(rampv1.VerdictPassed, t0.Add(time.Second))),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true),
				requeue: time.Minute, check: lastAnalysisAt(t0)},
		},
		{
			name: "analysis: passed earlier; pause just ended: next step without waiting for another round",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed = true })),
			obs:  ready(),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "analysis: failed once (limit 2)",
			ro:   heldLong(),
			obs:  ready(verdict(rampv1.VerdictFailed)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"AnalysisFailed"},
				desired: dRun(1, 5, true), requeue: time.Minute,
				check: checks(counters(1, 0), warnings(true), analysisPassed(false), lastAnalysisAt(t0))},
		},
		{
			name: "analysis: a failed round undoes an earlier pass",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed = true })),
			obs:  ready(verdict(rampv1.VerdictFailed)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"AnalysisFailed"},
				desired: dRun(1, 5, true), requeue: time.Minute, check: checks(counters(1, 0), analysisPassed(false))},
		},
		{
			name: "analysis: failed at the limit: roll back",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.FailedChecks = 1 })),
			obs:  ready(verdict(rampv1.VerdictFailed)),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{"AnalysisFailed", "AnalysisFailed"},
				desired: dRun(1, 0, false), check: checks(counters(2, 0), warnings(true, true), messageHas("analysis failed 2 times"))},
		},
		{
			name: "analysis: failures count across steps",
			ro: newRollout(pausedSteps, analysed, inRollout(progressing, holding, 2, 25, ago(5*time.Minute)),
				statusOf(func(st *rampv1.RolloutStatus) { st.FailedChecks = 1 })),
			obs:  observe(t0, canaryReady(3), routing(25), verdict(rampv1.VerdictFailed)),
			want: want{phase: rollingBack, stage: holding, step: 2, events: []string{"AnalysisFailed", "AnalysisFailed"}, desired: dRun(3, 0, false)},
		},
		{
			name: "analysis: failureLimit 1, VirtualService at 0 already: failed in one pass",
			ro:   newRollout(pausedSteps, withAnalysis(time.Minute, 1, 0), inRollout(progressing, holding, 1, 5, ago(5*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(0), verdict(rampv1.VerdictFailed)),
			want: want{phase: failedPhase, stage: holding, step: 1, events: []string{"AnalysisFailed", "AnalysisFailed", "RolledBack"},
				desired: dSteady(stableHash), check: counters(1, 0)},
		},
		{
			name: "analysis: inconclusive never advances",
			ro:   heldLong(),
			obs:  ready(verdict(rampv1.VerdictInconclusive)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"AnalysisInconclusive"},
				desired: dRun(1, 5, true), requeue: time.Minute, check: checks(counters(0, 1), analysisPassed(false), warnings(true))},
		},
		{
			name: "analysis: inconclusive at the default limit (5): roll back",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.InconclusiveChecks = 4 })),
			obs:  ready(verdict(rampv1.VerdictInconclusive)),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{"AnalysisInconclusive", "AnalysisInconclusive"},
				desired: dRun(1, 0, false), check: checks(counters(0, 5), messageHas("inconclusive 5 times"))},
		},
		{
			name: "analysis: inconclusiveLimit 2",
			ro: newRollout(pausedSteps, withAnalysis(time.Minute, 0, 2), inRollout(progressing, holding, 1, 5, ago(5*time.Minute)),
				statusOf(func(st *rampv1.RolloutStatus) { st.InconclusiveChecks = 1 })),
			obs:  ready(verdict(rampv1.VerdictInconclusive)),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{"AnalysisInconclusive", "AnalysisInconclusive"}, desired: dRun(1, 0, false)},
		},
		{
			// The limits count the whole rollout's rounds (docs/analysis.md): a pass in between
			// does not reset them.
			name: "analysis: a passing round keeps the counts of earlier rounds",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.FailedChecks, st.InconclusiveChecks = 1, 4 })),
			obs:  ready(verdict(rampv1.VerdictPassed)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5,
				desired: dRun(3, 5, true), requeue: 10 * time.Minute, check: counters(1, 4)},
		},
		{
			name: "analysis: inconclusive below the limit with failures below theirs",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.FailedChecks, st.InconclusiveChecks = 1, 3 })),
			obs:  ready(verdict(rampv1.VerdictInconclusive)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"AnalysisInconclusive"},
				desired: dRun(1, 5, true), requeue: time.Minute, check: counters(1, 4)},
		},
		{
			name: "analysis: a step with skipAnalysis ignores results",
			ro: newRollout(withSteps(rampv1.CanaryStep{SetWeight: 5, Pause: pauseFor(5 * time.Minute), SkipAnalysis: true}, cstep(100, nil)),
				analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs: ready(verdict(rampv1.VerdictFailed)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), requeue: 4 * time.Minute,
				check: checks(counters(0, 0), func(t *testing.T, d Decision) {
					if d.Status.LastAnalysisTime != nil {
						t.Errorf("a skipped step recorded an analysis round")
					}
				})},
		},
		{
			name: "analysis: a round is not carried into a step entered in the same pass",
			ro: newRollout(withSteps(rampv1.CanaryStep{SetWeight: 5, SkipAnalysis: true}, cstep(25, pauseFor(5*time.Minute)), cstep(100, nil)),
				analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute))),
			obs: observe(t0, canaryReady(3), routing(5), verdict(rampv1.VerdictPassed)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"StepStarted"},
				desired: dRun(3, 25, true), requeue: DefaultConfig().RoutingGrace,
				check: checks(analysisPassed(false), func(t *testing.T, d Decision) {
					if d.Status.LastAnalysisTime != nil {
						t.Errorf("the round was counted for step 2")
					}
				})},
		},
		{
			name: "analysis: promote skips it",
			ro:   heldLong(),
			obs:  ready(requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"PromoteRequested"},
				desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "analysis: a failing round is counted before promote acts",
			ro:   heldLong(statusOf(func(st *rampv1.RolloutStatus) { st.FailedChecks = 1 })),
			obs:  ready(verdict(rampv1.VerdictFailed), requests(Requests{Promote: "p1"})),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{"AnalysisFailed", "AnalysisFailed"}, desired: dRun(1, 0, false)},
		},
		{
			name: "analysis: rounds go on while waiting for a window",
			ro: newRollout(twoSteps, analysed, inRollout(waiting, holding, 2, 25, ago(time.Hour)), lastAnalysis(ago(time.Minute)),
				statusOf(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed = true })),
			obs: observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(2*time.Hour)), verdict(rampv1.VerdictPassed)),
			want: want{phase: waiting, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), requeue: time.Minute,
				check: lastAnalysisAt(t0)},
		},
		{
			name: "analysis: failing at the limit while waiting for a window rolls back",
			ro: newRollout(twoSteps, analysed, inRollout(waiting, holding, 2, 25, ago(time.Hour)), lastAnalysis(ago(time.Minute)),
				statusOf(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed, st.FailedChecks = true, 1 })),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(2*time.Hour)), verdict(rampv1.VerdictFailed)),
			want: want{phase: rollingBack, stage: holding, step: 2, events: []string{"AnalysisFailed", "AnalysisFailed"}, desired: dRun(3, 0, false)},
		},
	})
}

// --- paused -----------------------------------------------------------------------------------

func TestDecidePaused(t *testing.T) {
	faulty := []roOpt{pausedSteps, analysed, withHeaderMatch(), withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault })}
	ro := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append(append([]roOpt{}, faulty...), extra...)...)
	}
	runCases(t, []tcase{
		{
			name: "paused: holds the weight; no fault, analysis results ignored, promote deferred",
			ro:   ro(paused(), inRollout(progressing, holding, 1, 5, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), verdict(rampv1.VerdictFailed), requests(Requests{Promote: "p1", PromoteFull: "f1"})),
			want: want{phase: pausedPhase, stage: holding, step: 1, weight: 5, desired: dRun(1, 5, true), events: []string{"Paused"},
				check: checks(counters(0, 0), handled(rampv1.HandledRequests{}), messageHas("paused by spec.paused at step 1/3, 5% to canary"))},
		},
		{
			name: "paused by kubectl ramp pause",
			ro:   ro(inRollout(progressing, holding, 2, 25, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(25), requests(Requests{Paused: true})),
			want: want{phase: pausedPhase, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), events: []string{"Paused"}, check: messageHas("kubectl ramp pause")},
		},
		{
			name: "paused: abort still rolls back",
			ro:   ro(paused(), inRollout(pausedPhase, holding, 1, 5, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: holding, step: 1, events: []string{"AbortRequested"}, desired: dRun(1, 0, false)},
		},
		{
			name: "paused while scaling: no deadline, canary keeps growing",
			ro:   ro(paused(), inRollout(pausedPhase, scaling, 2, 5, ago(time.Hour))),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: pausedPhase, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true)},
		},
		{
			name: "unpaused: resumes where it was",
			ro: ro(inRollout(pausedPhase, holding, 1, 5, ago(10*time.Minute)), lastAnalysis(ago(5*time.Minute)),
				withStatus(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed = true })),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "unpaused: a deferred promote now acts",
			ro:   ro(inRollout(pausedPhase, holding, 1, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(1), routing(5), requests(Requests{Promote: "p1"})),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, events: []string{"PromoteRequested"},
				desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "paused: a new revision restarts the rollout, still paused",
			ro:   ro(paused(), inRollout(pausedPhase, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, targetAt(newerRev), canaryReady(3), routing(25)),
			want: want{phase: pausedPhase, stage: scaling, step: 1, events: []string{"RolloutRestarted"}, desired: with(dRun(1, 0, false), rev3)},
		},
		{
			name: "paused: Git revert cancels the rollout",
			ro:   ro(paused(), inRollout(pausedPhase, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, stableTarget(), canaryReady(3), routing(25)),
			want: want{summary: notRoutedYet(idle), phase: idle, events: []string{"RolloutCancelled"}, desired: dSteady(stableHash)},
		},
		{
			name: "paused while promoting: holds 100% on the canary",
			ro:   ro(paused(), inRollout(pausedPhase, switching, 3, 100, ago(time.Hour)), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: pausedPhase, stage: switching, step: 3, weight: 100,
				desired: with(dRun(10, 100, true), func(d *Desired) { d.StablePodTemplateHash, d.TargetAsObserved = newHash, true })},
		},
		{
			// The Paused phase hides that the window held the step: the canary is sized for it.
			name: "paused while waiting for a window: the canary keeps its size",
			ro:   ro(paused(), inRollout(waiting, windowWait, 3, 25, ago(time.Hour))),
			obs:  observe(t0, canaryReady(3), routing(25), windowClosed(t0.Add(time.Hour))),
			want: want{phase: pausedPhase, stage: windowWait, step: 3, weight: 25, desired: dRun(3, 25, true), events: []string{"Paused"}},
		},
	})
}

// --- promotion --------------------------------------------------------------------------------

func TestDecidePromotion(t *testing.T) {
	at := func(phase, stage string, weight int32, since time.Time, extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{twoSteps, inRollout(phase, stage, 2, weight, since)}, extra...)...)
	}
	// The un-pause, for the analysed revision, and the pause after it, for the revision the
	// target rolled out, apply only to the target as observed.
	unpaused := func(d *Desired) { d.TargetPaused, d.TargetAsObserved = false, true }
	newSubset := func(d *Desired) { d.StablePodTemplateHash = newHash }
	// The pause after the target rolled the promoted revision out: for the target as observed.
	repause := func(d *Desired) { d.StablePodTemplateHash, d.TargetAsObserved = newHash, true }
	noSettle := Config{}
	runCases(t, []tcase{
		{
			name: "routing to canary: canary not at full size yet",
			ro:   at(promoting, toCanary, 25, ago(time.Minute)),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 25, desired: dRun(10, 25, true), requeue: 9 * time.Minute,
				check: messageHas("(3/10 ready)")},
		},
		{
			name: "routing to canary: canary at full size takes all traffic",
			ro:   at(promoting, toCanary, 25, ago(time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(25)),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 100, desired: dRun(10, 100, true),
				check: messageHas("waiting for the VirtualService to route all traffic to the canary")},
		},
		{
			name: "routing to canary: the VirtualService holds 100%: un-pause the target",
			ro:   at(promoting, toCanary, 100, ago(time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(dRun(10, 100, true), unpaused),
				requeue: 10 * time.Minute, check: stageStarted(t0)},
		},
		{
			name: "routing to canary: no VirtualService observed",
			ro:   at(promoting, toCanary, 100, ago(time.Minute)),
			obs:  observe(t0, canaryReady(10), noRouting()),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 100, desired: dRun(10, 100, true)},
		},
		{
			name: "routing to canary: 100% desired but not yet observed",
			ro:   at(promoting, toCanary, 100, ago(time.Hour)),
			obs:  observe(t0, canaryReady(10), routing(25)),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 100, desired: dRun(10, 100, true)},
		},
		{
			name: "routing to canary: canary not at full size by the deadline: roll back",
			ro:   at(promoting, toCanary, 25, ago(10*time.Minute)),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: rollingBack, stage: toCanary, step: 2, events: []string{"ProgressDeadlineExceeded"}, desired: dRun(10, 0, false),
				check: messageHas("canary not ready at full size within 10m0s: 3/10 replicas ready")},
		},
		{
			name: "routing to canary: abort",
			ro:   at(promoting, toCanary, 100, ago(time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(100), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: toCanary, step: 2, events: []string{"AbortRequested"}, desired: dRun(10, 0, false)},
		},
		{
			name: "routing to canary: a new revision restarts",
			ro:   at(promoting, toCanary, 100, ago(time.Minute)),
			obs:  observe(t0, targetAt(newerRev), canaryReady(10), routing(100)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutRestarted"},
				desired: with(dRun(1, 0, false), rev3), requeue: 10 * time.Minute},
		},
		{
			name: "routing to canary: Git revert",
			ro:   at(promoting, toCanary, 100, ago(time.Minute)),
			obs:  observe(t0, stableTarget(), canaryReady(10), routing(100)),
			want: want{summary: notRoutedYet(idle), phase: idle, events: []string{"RolloutCancelled"}, desired: dSteady(stableHash)},
		},
		{
			name: "promoting: promote requests are acknowledged and ignored",
			ro:   at(promoting, toCanary, 25, ago(time.Minute)),
			obs:  observe(t0, canaryReady(3), routing(25), requests(Requests{Promote: "p1", PromoteFull: "f1", Retry: "t1"})),
			want: want{phase: promoting, stage: toCanary, step: 2, weight: 25, events: []string{"RequestIgnored", "RequestIgnored"},
				desired: dRun(10, 25, true), requeue: 9 * time.Minute,
				check: handled(rampv1.HandledRequests{Promote: "p1", PromoteFull: "f1", Retry: "t1"})},
		},
		{
			name: "updating stable: the target rolls out",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(dRun(10, 100, true), unpaused),
				requeue: 8 * time.Minute},
		},
		{
			name: "updating stable: rolled out but its ReplicaSet hash unknown",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetRolledOut(newRev, ""), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(dRun(10, 100, true), unpaused),
				requeue: 8 * time.Minute},
		},
		{
			name: "updating stable: rolled out: the stable subset moves to its pods, the target is paused again",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: switching, step: 2, weight: 100, desired: with(dRun(10, 100, true), repause),
				requeue: 2 * time.Second, check: checks(revisions(stableRev, newHash, newRev), stageStarted(t0))},
		},
		{
			name: "updating stable: stuck past the deadline: stall with all traffic on the canary",
			ro:   at(promoting, updating, 100, ago(10*time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(dRun(10, 100, true), unpaused),
				summary: stalled("TargetUpdateStuck")},
		},
		{
			name: "updating stable: a newer revision: re-pause the target and stall",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetAt(newerRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: dRun(10, 100, true),
				summary: stalled("NewRevisionDuringPromotion"), check: checks(revisions(stableRev, stableHash, newRev), messageHas("set the target back to revision r2"))},
		},
		{
			name: "updating stable: Git revert to stable is a new revision here too",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetAt(stableRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: dRun(10, 100, true),
				summary: stalled("NewRevisionDuringPromotion")},
		},
		{
			name: "updating stable: too late to abort",
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, canaryReady(10), routing(100), requests(Requests{Abort: "a1"})),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, events: []string{"RequestIgnored"},
				desired: with(dRun(10, 100, true), unpaused), requeue: 8 * time.Minute,
				check: checks(handled(rampv1.HandledRequests{Abort: "a1"}), warnings(true))},
		},
		{
			name: "switching subset: letting it settle",
			ro:   at(promoting, switching, 100, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: switching, step: 2, weight: 100, desired: with(dRun(10, 100, true), repause),
				requeue: time.Second},
		},
		{
			name: "switching subset: settled: all traffic back to the (updated) target",
			ro:   at(promoting, switching, 100, ago(2*time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: toStable, step: 2, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "switching subset: a new revision waits for the promotion to finish",
			ro:   at(promoting, switching, 100, ago(2*time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetAt(newerRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: toStable, step: 2, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "switching subset: Git revert waits too",
			ro:   at(promoting, switching, 100, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetAt(stableRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: switching, step: 2, weight: 100, desired: with(dRun(10, 100, true), repause), requeue: time.Second},
		},
		{
			// ramp's re-pause did not take effect yet (or failed: the template changed since ramp
			// read it): traffic goes back to the target only once it is paused.
			name: "switching subset: settled but the target not seen paused: traffic stays on the canary, the pause applied again",
			ro:   at(promoting, switching, 100, ago(2*time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetUnpaused(), targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: switching, step: 2, weight: 100, desired: with(dRun(10, 100, true), repause),
				check: messageHas("waiting for the target Deployment to be paused at revision r2")},
		},
		{
			// The commit landed between ramp's observation of the rolled-out target and its
			// re-pause, which failed: the Deployment rolls r3 out. As during the update: paused
			// again at once, all traffic on the canary, until Git holds r2 again.
			name: "switching subset: Git committed before ramp's re-pause took effect: back to updating the target, re-paused, stalled",
			ro:   at(promoting, switching, 100, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetUnpaused(), targetAt(newerRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(dRun(10, 100, true), newSubset),
				summary: stalled("NewRevisionDuringPromotion"), check: checks(stageStarted(t0), messageHas("set the target back to revision r2"))},
		},
		{
			name: "switching subset, back to updating: Git holds the promoted revision again: the target finishes rolling it out",
			ro:   at(promoting, updating, 100, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetAt(newRev), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: updating, step: 2, weight: 100, desired: with(with(dRun(10, 100, true), newSubset), unpaused),
				requeue: 10*time.Minute - time.Second},
		},
		{
			name: "without subset settle: the target not seen paused yet: traffic stays on the canary",
			cfg:  &noSettle,
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetUnpaused(), targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: switching, step: 2, weight: 100, desired: with(dRun(10, 100, true), repause)},
		},
		{
			name: "updating stable without subset settle: straight on to routing to stable",
			cfg:  &noSettle,
			ro:   at(promoting, updating, 100, ago(2*time.Minute)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: toStable, step: 2, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "routing to stable: the VirtualService still routes to the canary",
			ro:   at(promoting, toStable, 0, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100)),
			want: want{phase: promoting, stage: toStable, step: 2, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "routing to stable: no VirtualService observed",
			ro:   at(promoting, toStable, 0, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), noRouting()),
			want: want{phase: promoting, stage: toStable, step: 2, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "routing to stable: abort ignored",
			ro:   at(promoting, toStable, 0, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(100), requests(Requests{Abort: "a1"})),
			want: want{phase: promoting, stage: toStable, step: 2, events: []string{"RequestIgnored"}, desired: with(dRun(10, 0, false), newSubset)},
		},
		{
			name: "routing to stable: done: succeeded",
			ro:   at(promoting, toStable, 0, ago(time.Second), stableHashIs(newHash)),
			obs:  observe(t0, targetRolledOut(newRev, newHash), canaryReady(10), routing(0), stableSubset(newHash)),
			want: want{phase: succeeded, events: []string{"Promoted"}, desired: dSteady(newHash),
				check: checks(revisions(newRev, newHash, ""), totalSteps(0), messageHas("revision r2 promoted"))},
		},
		{
			name: "routing to stable: done, and a newer revision waits: a fresh rollout starts",
			ro: at(promoting, toStable, 0, ago(time.Second), stableHashIs(newHash),
				withStatus(func(st *rampv1.RolloutStatus) { st.FailedChecks = 1 })),
			obs: observe(t0, targetAt(newerRev), canaryReady(10), routing(0)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"Promoted", "RolloutStarted"},
				desired: &Desired{TargetPaused: true, CanaryRevision: newerRev, CanaryReplicas: 1, StablePodTemplateHash: newHash},
				requeue: 10 * time.Minute,
				check:   checks(revisions(newRev, newHash, newerRev), counters(0, 0))},
		},
	})
}

// --- rollback and failure ---------------------------------------------------------------------

func TestDecideRollback(t *testing.T) {
	rb := func(stage string, step int32) *rampv1.Rollout {
		return newRollout(inRollout(rollingBack, stage, step, 0, ago(time.Minute)),
			withStatus(func(st *rampv1.RolloutStatus) {
				st.Message = "analysis failed 2 times: error-rate 8 > 1"
				st.FailedChecks = 2
			}))
	}
	runCases(t, []tcase{
		{
			name: "rolling back: the VirtualService still routes to the canary",
			ro:   rb(holding, 2),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: rollingBack, stage: holding, step: 2, desired: dRun(3, 0, false)},
		},
		{
			name: "rolling back: no VirtualService observed",
			ro:   rb(holding, 2),
			obs:  observe(t0, canaryReady(3), noRouting()),
			want: want{phase: rollingBack, stage: holding, step: 2, desired: dRun(3, 0, false)},
		},
		{
			name: "rolling back from promotion: the canary keeps its full size",
			ro:   rb(toCanary, 3),
			obs:  observe(t0, canaryReady(10), routing(100)),
			want: want{phase: rollingBack, stage: toCanary, step: 3, desired: dRun(10, 0, false)},
		},
		{
			name: "rolling back: traffic all on stable: failed",
			ro:   rb(holding, 2),
			obs:  observe(t0, canaryReady(3), routing(0)),
			want: want{phase: failedPhase, stage: holding, step: 2, events: []string{"RolledBack"}, desired: dSteady(stableHash),
				check: checks(revisions(stableRev, stableHash, newRev), counters(2, 0), messageHas("analysis failed 2 times"), warnings(true))},
		},
		{
			name: "rolling back: a retry sent meanwhile acts once rolled back",
			ro:   rb(holding, 2),
			obs:  observe(t0, canaryReady(0), routing(0), requests(Requests{Retry: "t1"})),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolledBack", "RolloutStarted"},
				desired: dRun(1, 0, false), requeue: 10 * time.Minute, check: checks(counters(0, 0), handled(rampv1.HandledRequests{Retry: "t1"}))},
		},
		{
			name: "rolling back: a new revision waits for the rollback",
			ro:   rb(holding, 2),
			obs:  observe(t0, targetAt(newerRev), canaryReady(3), routing(25)),
			want: want{phase: rollingBack, stage: holding, step: 2, desired: dRun(3, 0, false)},
		},
		{
			name: "rolling back: spec.paused does not hold a rollback",
			ro: newRollout(paused(), inRollout(rollingBack, holding, 2, 0, ago(time.Minute)),
				withStatus(func(st *rampv1.RolloutStatus) { st.Message = "aborted by kubectl ramp abort" })),
			obs:  observe(t0, canaryReady(3), routing(0)),
			want: want{phase: failedPhase, stage: holding, step: 2, events: []string{"RolledBack"}, desired: dSteady(stableHash)},
		},
		{
			name: "failed: same revision stays failed",
			ro:   newRollout(failed()),
			obs:  observe(t0, canaryReady(0)),
			want: want{phase: failedPhase, stage: holding, step: 2, desired: dSteady(stableHash),
				check: checks(messageHas("analysis failed"), func(t *testing.T, d Decision) {
					if d.Summary.Message != d.Status.Message {
						t.Errorf("summary message %q, want the status message", d.Summary.Message)
					}
				})},
		},
		{
			name: "failed: a new revision starts a fresh rollout",
			ro:   newRollout(failed()),
			obs:  observe(t0, targetAt(newerRev), canaryAbsent()),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: with(dRun(1, 0, false), rev3), requeue: 10 * time.Minute,
				check: checks(counters(0, 0), revisions(stableRev, stableHash, newerRev), analysisPassed(false))},
		},
		{
			name: "failed: retry restarts the same revision",
			ro:   newRollout(failed()),
			obs:  observe(t0, canaryAbsent(), requests(Requests{Retry: "t1"})),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: dRun(1, 0, false), requeue: 10 * time.Minute,
				check: checks(counters(0, 0), handled(rampv1.HandledRequests{Retry: "t1"}), func(t *testing.T, d Decision) {
					if m := d.Events[0].Message; len(m) < 8 || m[:8] != "retry of" {
						t.Errorf("event message %q, want a retry", m)
					}
				})},
		},
		{
			name: "failed: a handled retry does nothing",
			ro:   newRollout(failed(), withStatus(func(st *rampv1.RolloutStatus) { st.HandledRequests.Retry = "t1" })),
			obs:  observe(t0, requests(Requests{Retry: "t1"})),
			want: want{phase: failedPhase, stage: holding, step: 2, desired: dSteady(stableHash)},
		},
		{
			name: "failed: promote and abort are ignored",
			ro:   newRollout(failed()),
			obs:  observe(t0, requests(Requests{Promote: "p1", Abort: "a1"})),
			want: want{phase: failedPhase, stage: holding, step: 2, events: []string{"RequestIgnored"}, desired: dSteady(stableHash),
				check: handled(rampv1.HandledRequests{Promote: "p1", Abort: "a1"})},
		},
		{
			name: "failed: Git revert to stable: idle",
			ro:   newRollout(failed()),
			obs:  observe(t0, stableTarget()),
			want: want{phase: idle, events: []string{"Reverted"}, desired: dSteady(stableHash),
				check: checks(revisions(stableRev, stableHash, ""), totalSteps(0))},
		},
		{
			name: "failed: retry after a Git revert: idle",
			ro:   newRollout(failed()),
			obs:  observe(t0, stableTarget(), requests(Requests{Retry: "t1"})),
			want: want{phase: idle, events: []string{"Reverted"}, desired: dSteady(stableHash), check: handled(rampv1.HandledRequests{Retry: "t1"})},
		},
	})
}

// --- blue/green -------------------------------------------------------------------------------

func TestDecideBlueGreen(t *testing.T) {
	bg := withBlueGreen(pauseFor(10 * time.Minute))
	runCases(t, []tcase{
		{
			name: "blue/green: new revision: canary at full size, no traffic, no preview yet",
			ro:   newRollout(bg),
			obs:  observe(t0, canaryAbsent()),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"},
				desired: dRun(10, 0, false), requeue: 10 * time.Minute, check: totalSteps(1)},
		},
		{
			name: "blue/green: part ready",
			ro:   newRollout(bg, inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(9)),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(10, 0, false), requeue: 9 * time.Minute},
		},
		{
			name: "blue/green: ready: preview on the header route",
			ro:   newRollout(bg, inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: progressing, stage: holding, step: 1, events: []string{"StepStarted"},
				desired: dRun(10, 0, true), requeue: 10 * time.Minute, check: messageHas("preview")},
		},
		{
			name: "blue/green: not ready by the deadline",
			ro:   newRollout(bg, inRollout(progressing, scaling, 1, 0, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(9)),
			want: want{phase: failedPhase, stage: scaling, step: 1, events: []string{"ProgressDeadlineExceeded", "RolledBack"}, desired: dSteady(stableHash)},
		},
		{
			name: "blue/green: abort while scaling: the canary keeps its full size",
			ro:   newRollout(bg, inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(4), noRouting(), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: scaling, step: 1, events: []string{"AbortRequested"}, desired: dRun(10, 0, false)},
		},
		{
			name: "blue/green: pre-promotion pause over: flip all traffic at once",
			ro:   newRollout(bg, inRollout(progressing, holding, 1, 0, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 100, events: []string{"PromotionStarted"}, desired: dRun(10, 100, true)},
		},
		{
			name: "blue/green: no pause, no analysis: flips once ready",
			ro:   newRollout(withBlueGreen(nil), inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 100, events: []string{"StepStarted", "PromotionStarted"}, desired: dRun(10, 100, true)},
		},
		{
			name: "blue/green: until promoted",
			ro:   newRollout(withBlueGreen(untilPromoted()), inRollout(progressing, holding, 1, 0, ago(time.Hour))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: progressing, stage: holding, step: 1, desired: dRun(10, 0, true)},
		},
		{
			name: "blue/green: until promoted: promote",
			ro:   newRollout(withBlueGreen(untilPromoted()), inRollout(progressing, holding, 1, 0, ago(time.Hour))),
			obs:  observe(t0, canaryReady(10), requests(Requests{Promote: "p1"})),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 100, events: []string{"PromoteRequested", "PromotionStarted"}, desired: dRun(10, 100, true)},
		},
		{
			name: "blue/green: window closed at the flip",
			ro:   newRollout(bg, inRollout(progressing, holding, 1, 0, ago(10*time.Minute))),
			obs:  observe(t0, canaryReady(10), windowClosed(t0.Add(2*time.Hour))),
			want: want{phase: waiting, stage: holding, step: 1, events: []string{"WaitingForWindow"}, desired: dRun(10, 0, true), requeue: 2 * time.Hour},
		},
		{
			name: "blue/green: promote --full flips outside windows",
			ro:   newRollout(bg, inRollout(waiting, holding, 1, 0, ago(time.Hour))),
			obs:  observe(t0, canaryReady(10), windowClosed(t0.Add(time.Hour)), requests(Requests{PromoteFull: "f1"})),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 100, events: []string{"PromoteRequested", "PromotionStarted"}, desired: dRun(10, 100, true)},
		},
		{
			name: "blue/green: analysis gates the flip",
			ro:   newRollout(bg, analysed, inRollout(progressing, holding, 1, 0, ago(10*time.Minute)), lastAnalysis(ago(30*time.Second))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: progressing, stage: holding, step: 1, desired: dRun(10, 0, true), requeue: 30 * time.Second},
		},
		{
			name: "blue/green: analysis passed: flip",
			ro:   newRollout(bg, analysed, inRollout(progressing, holding, 1, 0, ago(10*time.Minute)), lastAnalysis(ago(time.Minute))),
			obs:  observe(t0, canaryReady(10), verdict(rampv1.VerdictPassed)),
			want: want{phase: promoting, stage: toCanary, step: 1, weight: 100, events: []string{"PromotionStarted"}, desired: dRun(10, 100, true)},
		},
		{
			name: "blue/green: analysis failed at the limit",
			ro: newRollout(bg, analysed, inRollout(progressing, holding, 1, 0, ago(10*time.Minute)), lastAnalysis(ago(time.Minute)),
				withStatus(func(st *rampv1.RolloutStatus) { st.FailedChecks = 1 })),
			obs:  observe(t0, canaryReady(10), verdict(rampv1.VerdictFailed)),
			want: want{phase: failedPhase, stage: holding, step: 1, events: []string{"AnalysisFailed", "AnalysisFailed", "RolledBack"}, desired: dSteady(stableHash)},
		},
		{
			name: "blue/green: fault on the preview route while holding",
			ro:   newRollout(bg, withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault }), inRollout(progressing, holding, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10)),
			want: want{phase: progressing, stage: holding, step: 1, requeue: 9 * time.Minute,
				desired: with(dRun(10, 0, true), func(d *Desired) { d.Fault = specFault })},
		},
	})
}

// --- bounded chaining -------------------------------------------------------------------------

func TestDecideBoundedChainingComesBackAtOnce(t *testing.T) {
	// Steps of one weight already routed: each begins and ends in the same pass.
	var steps []rampv1.CanaryStep
	for range 12 {
		steps = append(steps, cstep(5, nil))
	}
	ro := newRollout(withSteps(steps...), inRollout(progressing, holding, 1, 5, ago(time.Minute)))
	obs := observe(t0, canaryReady(1), routing(5))
	obs.Target.Replicas = 1
	d := Decide(DefaultConfig(), ro, obs)
	expect(t, ro, d, want{phase: progressing, stage: holding, step: 5, weight: 5,
		events:  []string{"StepStarted", "StepStarted", "StepStarted", "StepStarted"},
		desired: dRun(1, 5, true), requeue: time.Millisecond})
}

// --- helpers exported to the reconciler -------------------------------------------------------

func TestCanaryReplicas(t *testing.T) {
	for _, c := range []struct{ target, weight, want int32 }{
		{10, 5, 1}, {10, 25, 3}, {10, 50, 5}, {10, 99, 10}, {10, 100, 10},
		{3, 50, 2}, {3, 34, 2}, {3, 33, 1}, {100, 33, 33}, {7, 100, 7},
		{1, 1, 1}, {0, 5, 1}, {0, 100, 1}, {-1, 50, 1}, {10, 0, 1}, {20, 5, 1}, {21, 5, 2}, {10, 150, 10},
	} {
		if got := CanaryReplicas(c.target, c.weight); got != c.want {
			t.Errorf("CanaryReplicas(%d, %d) = %d, want %d", c.target, c.weight, got, c.want)
		}
	}
}

func TestNextAnalysisAt(t *testing.T) {
	spec := newRollout(analysed).Spec
	defSpec := newRollout(withAnalysis(0, 0, 0)).Spec
	noAnalysis := newRollout().Spec
	for _, c := range []struct {
		name string
		spec *rampv1.RolloutSpec
		st   rampv1.RolloutStatus
		want time.Time
	}{
		{"no analysis", &noAnalysis, rampv1.RolloutStatus{StageStartedAt: mtime(t0)}, time.Time{}},
		{"stage not started", &spec, rampv1.RolloutStatus{}, time.Time{}},
		{"first round: an interval after the stage began", &spec, rampv1.RolloutStatus{StageStartedAt: mtime(t0)}, t0.Add(time.Minute)},
		{"default interval", &defSpec, rampv1.RolloutStatus{StageStartedAt: mtime(t0)}, t0.Add(rampv1.DefaultAnalysisInterval)},
		{"an interval after the last round", &spec, rampv1.RolloutStatus{StageStartedAt: mtime(t0), LastAnalysisTime: mtime(t0.Add(90 * time.Second))}, t0.Add(150 * time.Second)},
		{"a round of an earlier step does not count", &spec, rampv1.RolloutStatus{StageStartedAt: mtime(t0), LastAnalysisTime: mtime(ago(30 * time.Second))}, t0.Add(time.Minute)},
	} {
		if got := NextAnalysisAt(c.spec, &c.st); !got.Equal(c.want) {
			t.Errorf("%s: NextAnalysisAt = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAnalysisDue(t *testing.T) {
	base := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{pausedSteps, analysed, inRollout(progressing, holding, 2, 25, ago(time.Minute))}, extra...)...)
	}
	skipStep2 := withSteps(cstep(5, nil), rampv1.CanaryStep{SetWeight: 25, SkipAnalysis: true}, cstep(100, nil))
	for _, c := range []struct {
		name   string
		ro     *rampv1.Rollout
		paused bool
		now    time.Time
		want   bool
	}{
		{"holding an analysed step, an interval after it began", base(), false, t0, true},
		{"later still", base(), false, t0.Add(time.Hour), true},
		{"before the interval", base(), false, t0.Add(-time.Nanosecond), false},
		{"an interval after the last round", base(lastAnalysis(ago(30 * time.Second))), false, t0.Add(30 * time.Second), true},
		{"less than an interval after the last round", base(lastAnalysis(ago(30 * time.Second))), false, t0, false},
		{"paused by request", base(), true, t0, false},
		{"paused by spec", base(paused()), false, t0, false},
		{"phase paused", base(inRollout(pausedPhase, holding, 2, 25, ago(time.Minute))), false, t0, false},
		{"waiting for a window while holding", base(inRollout(waiting, holding, 2, 25, ago(time.Minute))), false, t0, true},
		{"waiting for a window while scaling", base(inRollout(waiting, windowWait, 3, 25, ago(time.Minute))), false, t0, false},
		{"scaling", base(inRollout(progressing, scaling, 2, 5, ago(time.Minute))), false, t0, false},
		{"promoting", base(inRollout(promoting, toCanary, 3, 100, ago(time.Minute))), false, t0, false},
		{"rolling back", base(inRollout(rollingBack, holding, 2, 0, ago(time.Minute))), false, t0, false},
		{"idle", newRollout(analysed), false, t0, false},
		{"failed", newRollout(analysed, failed()), false, t0, false},
		{"step skips analysis", newRollout(skipStep2, analysed, inRollout(progressing, holding, 2, 25, ago(time.Minute))), false, t0, false},
		{"no analysis configured", newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))), false, t0, false},
		{"metrics empty", newRollout(pausedSteps, analysed, withSpec(func(s *rampv1.RolloutSpec) { s.Analysis.Metrics = nil }),
			inRollout(progressing, holding, 2, 25, ago(time.Minute))), false, t0, false},
		{"step out of range", base(withStatus(func(st *rampv1.RolloutStatus) { st.CurrentStep = 9 })), false, t0, false},
		{"blue/green preview", newRollout(withBlueGreen(nil), analysed, inRollout(progressing, holding, 1, 0, ago(time.Minute))), false, t0, true},
	} {
		if got := AnalysisDue(c.ro, c.paused, c.now); got != c.want {
			t.Errorf("%s: AnalysisDue = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNextRound(t *testing.T) {
	holdingStep2 := func(extra ...roOpt) *rampv1.Rollout {
		return newRollout(append([]roOpt{pausedSteps, analysed, inRollout(progressing, holding, 2, 25, ago(time.Minute))}, extra...)...)
	}
	healthy := observe(t0, canaryReady(3), routing(25))
	for _, c := range []struct {
		name   string
		ro     *rampv1.Rollout
		obs    Observation
		wantAt time.Time
		want   bool
	}{
		{"first round of the step: an interval after it began", holdingStep2(), healthy, t0, true},
		{"an interval after the last round began", holdingStep2(lastAnalysis(ago(10 * time.Second))), healthy, t0.Add(50 * time.Second), true},
		{"a round of an earlier step does not count", holdingStep2(lastAnalysis(ago(2 * time.Minute))), healthy, t0, true},
		{"overdue: due already", newRollout(pausedSteps, analysed, inRollout(progressing, holding, 2, 25, ago(5*time.Minute)),
			lastAnalysis(ago(2*time.Minute))), healthy, ago(time.Minute), true},
		{"paused by request", holdingStep2(), observe(t0, canaryReady(3), routing(25), requests(Requests{Paused: true})), t0, false},
		{"stalled", holdingStep2(), observe(t0, canaryReady(3), routing(25), specError("bad")), t0, false},
		{"scaling for the step", newRollout(pausedSteps, analysed, inRollout(progressing, scaling, 2, 5, ago(time.Minute))), healthy, t0, false},
		{"promoting", newRollout(pausedSteps, analysed, inRollout(promoting, toCanary, 3, 100, ago(time.Minute))), healthy, t0, false},
		{"no analysis", newRollout(pausedSteps, inRollout(progressing, holding, 2, 25, ago(time.Minute))), healthy, time.Time{}, false},
	} {
		at, ok := NextRound(c.ro, c.obs)
		if ok != c.want || (c.want && !at.Equal(c.wantAt)) {
			t.Errorf("%s: NextRound = %v, %t; want %v, %t", c.name, at, ok, c.wantAt, c.want)
		}
		// RoundDue stays the authority: NextRound says it will want the round at that instant.
		if c.want {
			due := c.obs
			due.Now = at
			if !RoundDue(c.ro, due) {
				t.Errorf("%s: RoundDue at NextRound's instant is false", c.name)
			}
			due.Now = at.Add(-time.Nanosecond)
			if RoundDue(c.ro, due) {
				t.Errorf("%s: RoundDue before NextRound's instant is true", c.name)
			}
		}
	}
}

func TestStepEndsAt(t *testing.T) {
	passed := withStatus(func(st *rampv1.RolloutStatus) { st.StepAnalysisPassed = true })
	untilPromoted := withSteps(rampv1.CanaryStep{SetWeight: 5, Pause: &rampv1.Pause{}}, cstep(100, nil))
	for _, c := range []struct {
		name string
		ro   *rampv1.Rollout
		want time.Time
		ok   bool
	}{
		{"analysis passed, timed pause: at its end", newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute)), passed), ago(time.Minute).Add(5 * time.Minute), true},
		{"analysis passed, no pause: at once", newRollout(twoSteps, analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute)), passed), ago(time.Minute), true},
		{"analysis not passed yet", newRollout(pausedSteps, analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute))), time.Time{}, false},
		{"paused until promoted", newRollout(untilPromoted, analysed, inRollout(progressing, holding, 1, 5, ago(time.Minute)), passed), time.Time{}, false},
		{"step out of range", newRollout(pausedSteps, analysed, inRollout(progressing, holding, 9, 5, ago(time.Minute)), passed), time.Time{}, false},
	} {
		got, ok := StepEndsAt(c.ro)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s: StepEndsAt = %v, %t; want %v, %t", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	if got := DefaultConfig().SubsetSettle; got != 2*time.Second {
		t.Errorf("DefaultConfig().SubsetSettle = %v", got)
	}
}

func BenchmarkDecide(b *testing.B) {
	ro := newRollout(pausedSteps, analysed, withHeaderMatch(), withSpec(func(s *rampv1.RolloutSpec) { s.FaultInjection = specFault }),
		inRollout(progressing, holding, 2, 25, ago(5*time.Minute)), lastAnalysis(ago(time.Minute)))
	obs := observe(t0, canaryReady(3), routing(25), verdict(rampv1.VerdictPassed))
	cfg := DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		_ = Decide(cfg, ro, obs)
	}
}

// --- statuses ramp never writes, but may read (hand edits, older versions) ---------------------

func TestDecideDegradedStatus(t *testing.T) {
	noStart := withStatus(func(st *rampv1.RolloutStatus) { st.StageStartedAt = nil })
	runCases(t, []tcase{
		{
			name: "scaling without stageStartedAt: the deadline counts from now, no instant rollback",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, t0), noStart),
			obs:  observe(t0, canaryReady(1), routing(5)),
			want: want{phase: progressing, stage: scaling, step: 2, weight: 5, desired: dRun(3, 5, true), requeue: 10 * time.Minute},
		},
		{
			name: "holding an analysed step without stageStartedAt: no analysis timer, the pause from now",
			ro:   newRollout(pausedSteps, analysed, inRollout(progressing, holding, 2, 25, t0), noStart),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true), requeue: 5 * time.Minute},
		},
		{
			name: "a rollout whose stable subset hash was lost: touch nothing",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute)), stableHashIs("")),
			obs:  observe(t0, canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 3, weight: 25, requeue: 10 * time.Minute},
		},
	})
}

func TestJoinAnd(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a and b"},
		{[]string{"a", "b", "c"}, "a, b and c"},
	} {
		if got := joinAnd(c.in); got != c.want {
			t.Errorf("joinAnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The first round of a rollout waits until a whole metric window of its own traffic exists.
func TestNextAnalysisAtWaitsForAFullWindowOfTheRollout(t *testing.T) {
	window := metav1.Duration{Duration: 5 * time.Minute}
	spec := &rampv1.RolloutSpec{Analysis: &rampv1.AnalysisSpec{
		Interval: &metav1.Duration{Duration: time.Minute},
		Metrics:  []rampv1.Metric{{Name: "a"}, {Name: "b", Window: &window}},
	}}
	started := metav1.NewTime(t0)
	// The canary took 4 minutes to be ready: its traffic began when the step did.
	st := &rampv1.RolloutStatus{StageStartedAt: mtime(t0.Add(4 * time.Minute)), RolloutStartedAt: &started}
	if got, want := NextAnalysisAt(spec, st), t0.Add(9*time.Minute); !got.Equal(want) {
		t.Errorf("first round at %s, want %s (a full 5m window of the canary's traffic)", got, want)
	}
	// Once a round ran, later steps keep the plain interval.
	st.LastAnalysisTime = mtime(t0.Add(9 * time.Minute))
	st.StageStartedAt = mtime(t0.Add(10 * time.Minute))
	if got, want := NextAnalysisAt(spec, st), t0.Add(11*time.Minute); !got.Equal(want) {
		t.Errorf("round at %s, want %s", got, want)
	}
}
