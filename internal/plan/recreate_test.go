package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// A target recreated under its name (Flux's force: true after a selector change) and routing
// that follows the ready pods.

const (
	oldSelector = "app=web"
	newSelector = "app=web,tier=front"
	newerHash   = "h3"
)

// adoptedAs records the adopted target's identity in the status: uid-1, app=web.
func adoptedAs() roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) {
		st.Target = &rampv1.TargetStatus{UID: "uid-1", Selector: oldSelector}
	})
}

// identity: the observed target is uid, with selector; the canary (when it exists) was
// rendered from the old selector.
func identity(uid types.UID, selector string) obsOpt {
	return func(o *Observation) {
		o.Target.UID, o.Target.Selector, o.Target.CanarySelector = uid, selector, selector+",ramp.dev/track=canary"
		o.Canary.Selector = oldSelector + ",ramp.dev/track=canary"
	}
}

// recreatedAt: the target was deleted and created again with the new selector at rev, not
// paused; its ReplicaSet hash exists, with ready of its pods ready.
func recreatedAt(rev, hash string, ready int32) obsOpt {
	return func(o *Observation) {
		identity("uid-2", newSelector)(o)
		o.Target.Revision, o.Target.Paused, o.Target.PausedByRamp, o.Target.PodTemplateHash = rev, false, false, hash
		o.Target.RolledOut = ready == o.Target.Replicas
		o.Target.ReadyPods = map[string]int32{hash: ready}
	}
}

// readyPods: the ready pods of the target by hash and of the canary (any template).
func readyPods(byHash map[string]int32, canary int32) obsOpt {
	return func(o *Observation) {
		o.Target.ReadyPods = byHash
		o.Canary.ReadyPods = canary
		if o.Canary.Replicas == 0 {
			o.Canary.Replicas = canary
		}
	}
}

func summaryHas(parts ...string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(d.Summary.Message, p) {
				t.Errorf("summary message %q does not say %q", d.Summary.Message, p)
			}
		}
	}
}

func eventHas(reason string, parts ...string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		for _, e := range d.Events {
			if e.Reason != reason {
				continue
			}
			for _, p := range parts {
				if !strings.Contains(e.Message, p) {
					t.Errorf("%s event %q does not say %q", reason, e.Message, p)
				}
			}
			return
		}
		t.Errorf("no %s event: %v", reason, d.Events)
	}
}

func releasedWithoutCanary(rev string) func(t *testing.T, d Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		r := d.Status.ReleasedWithoutCanary
		if r == nil || r.Revision != rev || !strings.Contains(r.Reason, "recreat") {
			t.Errorf("status.releasedWithoutCanary = %+v, want revision %s and why", r, rev)
		}
		if tg := d.Status.Target; tg == nil || tg.UID != "uid-2" || tg.Selector != newSelector {
			t.Errorf("status.target = %+v, want uid-2 %s", tg, newSelector)
		}
	}
}

// readopting: the target was recreated at rev, whose pods (hash) the stable subset selects;
// ramp waits to pause it (Initializing), and says rev went live without a canary.
func readopting(rev, hash string) roOpt {
	return withStatus(func(st *rampv1.RolloutStatus) {
		st.Phase, st.StableRevision, st.StablePodTemplateHash = rampv1.PhaseInitializing, rev, hash
		st.Target = &rampv1.TargetStatus{UID: "uid-2", Selector: newSelector}
		st.ReleasedWithoutCanary = &rampv1.Release{Revision: rev, Reason: "Deployment \"web\" was deleted and created again"}
	})
}

// dPausing: re-adoption pauses the rolled-out target (at the revision observed) and routes all
// traffic to its pods.
func dPausing(hash string) *Desired {
	return &Desired{TargetPaused: true, TargetAsObserved: true, StablePodTemplateHash: hash}
}

func summaryOf(reason string, ready, reconciling bool) *Summary {
	return &Summary{Ready: ready, Reconciling: reconciling, Reason: reason}
}

func TestDecideTargetRecreated(t *testing.T) {
	rwc := ReasonReleasedWithoutCanary
	runCases(t, []tcase{
		{
			name: "idle: recreated with a new selector and revision, its pods starting: they are the stable subset at once, the target is left alone",
			ro:   newRollout(adoptedAs()),
			obs:  observe(t0, canaryAt(stableRev, 0), recreatedAt(newRev, newHash, 0)),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"ReleasedWithoutCanary"},
				desired: &Desired{TargetPaused: true, TargetUntouched: true, StablePodTemplateHash: newHash},
				summary: summaryOf(rwc, false, true),
				check: checks(releasedWithoutCanary(newRev),
					summaryHas("revision r2 went live without a canary", `selector changed from "app=web" to "app=web,tier=front"`, "waiting for the Deployment to finish rolling out"),
					eventHas("ReleasedWithoutCanary", "uid-2", "was uid-1", "force: true"))},
		},
		{
			name: "idle: recreated before its ReplicaSet exists: the stable subset keeps its hash until there is one, the target is not paused (it would get no pods)",
			ro:   newRollout(adoptedAs()),
			obs:  observe(t0, canaryAbsent(), recreatedAt(newRev, "", 0), readyPods(map[string]int32{}, 0)),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"ReleasedWithoutCanary"},
				desired: &Desired{TargetPaused: true, TargetUntouched: true, StablePodTemplateHash: stableHash},
				summary: summaryOf(rwc, false, true)},
		},
		{
			name: "re-adoption: the recreated target has rolled out: ramp pauses it, routing to its pods, and waits to see the pause",
			ro:   newRollout(readopting(newRev, newHash)),
			obs:  observe(t0, canaryAbsent(), recreatedAt(newRev, newHash, replicas), stableSubset(newHash)),
			want: want{phase: rampv1.PhaseInitializing, desired: dPausing(newHash), summary: summaryOf(rwc, false, true),
				check: summaryHas("revision r2 went live without a canary", "deleted and created again", "pausing the Deployment")},
		},
		{
			name: "re-adoption: ramp's pause took effect: Idle, Ready says the revision went live without a canary",
			ro:   newRollout(readopting(newRev, newHash)),
			obs: observe(t0, canaryAbsent(), recreatedAt(newRev, newHash, replicas), stableSubset(newHash),
				func(o *Observation) { o.Target.Paused, o.Target.PausedByRamp = true, true }),
			want: want{phase: idle, events: []string{"Adopted"}, desired: dSteady(newHash), summary: summaryOf(rwc, true, false),
				check: summaryHas("revision r2 went live without a canary", "deleted and created again")},
		},
		{
			name: "re-adoption: Git changed the template before ramp's pause took effect: that revision went live without a canary too",
			ro:   newRollout(readopting(newRev, newHash)),
			obs: observe(t0, canaryAbsent(), recreatedAt(newerRev, "", 0), stableSubset(newHash),
				func(o *Observation) { o.Target.ReadyPods = map[string]int32{newHash: replicas} }),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"ReleasedWithoutCanary"},
				desired: &Desired{TargetPaused: true, TargetUntouched: true, StablePodTemplateHash: newHash}, summary: summaryOf(rwc, false, true),
				check: checks(revisions(newerRev, newHash, ""), summaryHas("revision r3 went live without a canary", "from revision r2 to r3 before ramp's pause took effect"))},
		},
		{
			name: "mid-rollout at 25%: recreated at r3: the rollout ends, all traffic to the ready canary until the new pods are ready",
			ro:   newRollout(adoptedAs(), inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs: observe(t0, routing(25), canaryAt(newRev, 3), recreatedAt(newerRev, newerHash, 0),
				func(o *Observation) { o.Canary.Replicas, o.Canary.ReadyPods = 3, 3 }),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"ReleasedWithoutCanary", "StableUnavailable"},
				desired: &Desired{TargetPaused: true, TargetUntouched: true, StablePodTemplateHash: newerHash, CanaryWeight: 100, CanaryReplicas: 3},
				order:   &applyOrder{},
				summary: summaryOf(rwc, false, true),
				check: checks(releasedWithoutCanary(newerRev),
					func(t *testing.T, d Decision) {
						if st := d.Status; st.CanaryRevision != "" || st.CurrentStep != 0 || st.StableRevision != newerRev {
							t.Errorf("status after the recreate: %+v", st)
						}
					},
					summaryHas("the rollout of revision r2 (step 2/3, 25% to canary) ended unpromoted", "has no ready pods: all traffic goes to the canary's 3 ready pods"))},
		},
		{
			name: "mid-rollout: the recreated target's pods are ready: traffic back to them, routes first, then the canary scaled to zero",
			ro: newRollout(withStatus(func(st *rampv1.RolloutStatus) {
				st.Phase, st.StableRevision, st.StablePodTemplateHash = rampv1.PhaseInitializing, newerRev, newerHash
				st.Target = &rampv1.TargetStatus{UID: "uid-2", Selector: newSelector}
				st.ReleasedWithoutCanary = &rampv1.Release{Revision: newerRev, Reason: "recreated"}
			})),
			obs: observe(t0, routing(100), canaryAt(newRev, 3), recreatedAt(newerRev, newerHash, replicas), stableSubset(newerHash),
				func(o *Observation) { o.Canary.Replicas, o.Canary.ReadyPods = 3, 3 }),
			want: want{phase: rampv1.PhaseInitializing, desired: dPausing(newerHash), order: &applyOrder{routeFirst: true},
				summary: summaryOf(rwc, false, true)},
		},
		{
			name: "recreated with the stable template (a selector change alone): no release, the event says what happened",
			ro:   newRollout(adoptedAs()),
			obs:  observe(t0, canaryAbsent(), recreatedAt(stableRev, stableHash, replicas), stableSubset(stableHash)),
			want: want{phase: rampv1.PhaseInitializing, events: []string{"TargetRecreated"}, desired: dPausing(stableHash),
				check: func(t *testing.T, d Decision) {
					if d.Status.ReleasedWithoutCanary != nil {
						t.Errorf("released without canary: %+v", d.Status.ReleasedWithoutCanary)
					}
				}},
		},
		{
			name: "a status from before the target's identity was recorded: recorded, nothing else",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), identity("uid-1", oldSelector)),
			want: want{phase: idle, desired: dSteady(stableHash), check: func(t *testing.T, d Decision) {
				if tg := d.Status.Target; tg == nil || tg.UID != "uid-1" || tg.Selector != oldSelector {
					t.Errorf("status.target = %+v", tg)
				}
			}},
		},
		{
			name: "the next rollout renders the canary over an old selector: deleted and created again, as nothing routes to it",
			ro: newRollout(withStatus(func(st *rampv1.RolloutStatus) {
				st.Target = &rampv1.TargetStatus{UID: "uid-2", Selector: newSelector}
				st.ReleasedWithoutCanary = &rampv1.Release{Revision: stableRev, Reason: "recreated"}
			})),
			obs: observe(t0, canaryAt(stableRev, 0), identity("uid-2", newSelector)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutStarted"}, requeue: 10 * time.Minute,
				desired: with(dRun(1, 0, false), func(d *Desired) { d.RecreateCanary = true }), order: &applyOrder{render: true},
				check: func(t *testing.T, d Decision) {
					if d.Status.ReleasedWithoutCanary != nil {
						t.Errorf("releasedWithoutCanary kept by a new rollout: %+v", d.Status.ReleasedWithoutCanary)
					}
				}},
		},
		{
			name: "the canary's selector is old but the live routes are unknown: it is left as it is until they are known",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(time.Second)), withStatus(func(st *rampv1.RolloutStatus) { st.Target = &rampv1.TargetStatus{UID: "uid-2", Selector: newSelector} })),
			obs: observe(t0, noRouting(), canaryAt(stableRev, 0), identity("uid-2", newSelector),
				func(o *Observation) { o.Canary.Replicas = 0 }),
			want: want{phase: progressing, stage: scaling, step: 1, requeue: 10*time.Minute - time.Second,
				desired: dRun(0, 0, false), order: &applyOrder{}},
		},
	})
}

func TestDecideFollowsReadyPods(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "every stable pod unready mid-step: all traffic to the ready canary, the status keeps the step's weight",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Second))),
			obs:  observe(t0, routing(5), canaryReady(1), readyPods(map[string]int32{stableHash: 0}, 1)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, events: []string{"StableUnavailable"}, requeue: 5*time.Minute - time.Second,
				desired: with(dRun(1, 100, true), func(d *Desired) {}), order: &applyOrder{render: true},
				check: summaryHas("the stable subset (pod-template-hash h1) has no ready pods")},
		},
		{
			name: "the stable pods are back: the step's weight again, no event",
			ro:   newRollout(pausedSteps, inRollout(progressing, holding, 1, 5, ago(time.Second))),
			obs:  observe(t0, routing(100), canaryReady(1), readyPods(map[string]int32{stableHash: 10}, 1)),
			want: want{phase: progressing, stage: holding, step: 1, weight: 5, requeue: DefaultConfig().RoutingGrace - time.Second, desired: dRun(1, 5, true), order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "promotion: the full-size canary lost every pod: traffic back to stable, the target stays paused",
			ro:   newRollout(inRollout(promoting, toCanary, 3, 100, ago(time.Second))),
			obs:  observe(t0, routing(100), canaryReady(0), readyPods(map[string]int32{stableHash: 10}, 0)),
			want: want{phase: promoting, stage: updating, step: 3, weight: 100, events: []string{"CanaryUnavailable"}, requeue: 10 * time.Minute,
				desired: dRun(10, 0, true), order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "updating the target while the routes went back to stable: it is not un-paused until they send it nothing",
			ro:   newRollout(inRollout(promoting, updating, 3, 100, ago(time.Second))),
			obs: observe(t0, routing(0), targetAt(newRev), targetUnpaused(), canaryReady(10),
				readyPods(map[string]int32{stableHash: 10}, 10)),
			want: want{phase: promoting, stage: updating, step: 3, weight: 100, requeue: 10*time.Minute - time.Second,
				desired: dRun(10, 100, true), order: &applyOrder{render: true}},
		},
	})
}

// Flux's force: true recreates the target (a new UID and selector) while ramp is idle, then
// during a rollout: traffic always on ready pods, the revision reported as released without a
// canary, the canary recreated for the next rollout, which runs as usual.
func TestSimulateTargetRecreated(t *testing.T) {
	for _, c := range []struct {
		name string
		// when recreates the target at rev (once) when it returns true.
		when    func(st rampv1.RolloutStatus) bool
		rev     string
		weights []int32
	}{
		{name: "idle, after a promotion", rev: newerRev,
			when:    func(st rampv1.RolloutStatus) bool { return st.Phase == rampv1.PhaseSucceeded },
			weights: []int32{0, 5, 25, 100, 0}},
		{name: "mid-rollout at 25%", rev: newerRev,
			when:    func(st rampv1.RolloutStatus) bool { return st.CurrentStep == 2 && st.Stage == StageHolding },
			weights: []int32{0, 5, 25, 100, 0}},
		{name: "Git's template unchanged (a selector change alone), mid-rollout", rev: newRev,
			when:    func(st rampv1.RolloutStatus) bool { return st.CurrentStep == 2 && st.Stage == StageHolding },
			weights: []int32{0, 5, 25, 100, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld()
			w.rolloutDelay, w.canaryDelay = 20*time.Second, 5*time.Second
			dr := &driver{t: t, cfg: DefaultConfig(), ro: newRollout(pausedSteps), w: w}
			dr.adopt()
			w.gitRev = newRev
			var recreatedAt time.Time
			dr.hook = func(dr *driver) {
				if recreatedAt.IsZero() && c.when(dr.ro.Status) {
					recreatedAt = dr.w.now
					dr.w.recreate(c.rev, newSelector)
				}
			}
			dr.run(func(ro *rampv1.Rollout) bool {
				return !recreatedAt.IsZero() && ro.Status.Phase == rampv1.PhaseIdle && ro.Status.Target.UID == "uid-2"
			}, 300)
			if got := w.vsHistory; !slices.Equal(got, c.weights) {
				t.Errorf("VirtualService weights %v, want %v%s", got, c.weights, dr.trace())
			}
			// Within the new pods' start-up (20s), not the progress deadline.
			if took := w.now.Sub(recreatedAt); took > 30*time.Second {
				t.Errorf("re-adopted %v after the recreate%s", took, dr.trace())
			}
			st := dr.ro.Status
			if st.StableRevision != c.rev || st.StablePodTemplateHash != hashOf(c.rev) || w.subset != hashOf(c.rev) || !w.targetPaused || w.canaryWant != 0 {
				t.Errorf("after re-adoption: status %+v; world subset %s paused %t canary ×%d", st, w.subset, w.targetPaused, w.canaryWant)
			}
			if n := countOf(dr.eventsSeen(), "ReleasedWithoutCanary"); n != 1 || st.ReleasedWithoutCanary == nil || st.ReleasedWithoutCanary.Revision != c.rev {
				t.Errorf("%d ReleasedWithoutCanary events, status %+v: %v", n, st.ReleasedWithoutCanary, dr.eventsSeen())
			}

			// The next commit: the canary is recreated with the new selector and the rollout runs.
			dr.passes = nil
			w.gitRev = "r4"
			dr.run(phaseIs(rampv1.PhaseSucceeded), 300)
			if got := w.vsHistory[len(c.weights):]; !slices.Equal(got, []int32{5, 25, 100, 0}) {
				t.Errorf("next rollout's weights %v%s", got, dr.trace())
			}
			if w.canarySel != w.canarySelector() || dr.ro.Status.ReleasedWithoutCanary != nil {
				t.Errorf("canary selector %q, releasedWithoutCanary %+v", w.canarySel, dr.ro.Status.ReleasedWithoutCanary)
			}
		})
	}
}
