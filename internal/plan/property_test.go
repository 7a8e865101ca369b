package plan

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// randomRollout draws a plan: canary steps (non-decreasing weights, assorted pauses and
// skipped analyses, faults) or blue/green, with or without analysis.
func randomRollout(rng *rand.Rand) *rampv1.Rollout {
	ro := newRollout(withStatus(func(st *rampv1.RolloutStatus) { *st = rampv1.RolloutStatus{} }))
	pause := func() *rampv1.Pause {
		switch rng.Intn(4) {
		case 0:
			return nil
		case 1:
			return untilPromoted()
		default:
			return pauseFor(time.Duration(1+rng.Intn(10)) * time.Minute)
		}
	}
	if rng.Intn(5) == 0 {
		withBlueGreen(pause())(ro)
	} else if rng.Intn(4) > 0 {
		n := 1 + rng.Intn(5)
		w := int32(0)
		var steps []rampv1.CanaryStep
		for i := 0; i < n; i++ {
			w += int32(1 + rng.Intn(40))
			if w > 100 || (i == n-1 && rng.Intn(2) == 0) {
				w = 100
			}
			s := rampv1.CanaryStep{SetWeight: w, Pause: pause(), SkipAnalysis: rng.Intn(4) == 0}
			if rng.Intn(4) == 0 {
				s.FaultInjection = stepFault
			}
			steps = append(steps, s)
		}
		withSteps(steps...)(ro)
		withHeaderMatch()(ro)
	} // else: default steps
	if rng.Intn(2) == 0 {
		withAnalysis(time.Duration(1+rng.Intn(3))*time.Minute, int32(rng.Intn(3)), int32(rng.Intn(6)))(ro)
	}
	if rng.Intn(3) == 0 {
		ro.Spec.FaultInjection = specFault
	}
	if rng.Intn(3) == 0 {
		ro.Spec.ProgressDeadline = mdur(time.Duration(1+rng.Intn(15)) * time.Minute)
	}
	return ro
}

// TestDecideProperties drives Decide through random worlds: Git commits and reverts, targets
// recreated (new UID and selector, as by Flux's force), every stable pod failing, slow
// or failing canaries, missing VirtualServices, analysis verdicts, kubectl ramp requests,
// pauses, windows, stalls and clock jumps. Whatever happens, Decide must not panic and every
// pass must keep the invariants of checkPass (weights within 0..100, traffic only forward
// along the plan or back to 0, never more traffic than the canary was seen ready for, the
// target un-paused only under 100% canary, stable traffic only to running pods, no weight on
// a subset without ready pods while the other has some, a canary recreated only when its
// selector must change and nothing routes to it, requests
// acknowledged only with their own token, ...), and must leave its argument alone.
func TestDecideProperties(t *testing.T) {
	seeds, passes := 300, 250
	if testing.Short() {
		seeds = 50
	}
	revs := []string{"r1", "r2", "r3", "r4"}
	phases, events := map[string]int{}, map[string]int{}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		rng := rand.New(rand.NewSource(seed))
		ro := randomRollout(rng)
		w := newWorld()
		w.replicas = int32(1 + rng.Intn(12))
		w.canaryDelay = time.Duration(rng.Intn(90)) * time.Second
		w.rolloutDelay = time.Duration(rng.Intn(120)) * time.Second
		cfg := Config{SubsetSettle: time.Duration(rng.Intn(3)) * time.Second}
		var req Requests
		token := 0
		newToken := func() string { token++; return fmt.Sprintf("t%d", token) }
		var hist []string

		for i := 0; i < passes; i++ {
			// The world moves on.
			if rng.Intn(12) == 0 {
				w.gitRev = revs[rng.Intn(len(revs))]
			}
			if rng.Intn(40) == 0 {
				// Git changes the target's selector (or Flux's force recreates it anyway).
				w.recreate(revs[rng.Intn(len(revs))], []string{"app=web", "app=web,tier=front"}[rng.Intn(2)])
			}
			obs := w.observe()
			obs.Routing = nil
			if w.vs != nil && rng.Intn(15) > 0 {
				obs.Routing = &ObservedRouting{CanaryWeight: *w.vs}
			}
			if rng.Intn(40) == 0 {
				obs.Target = Target{}
			}
			if rng.Intn(40) == 0 {
				obs.SpecError = "bad schedule"
			}
			if rng.Intn(5) == 0 && obs.Canary.ReadyReplicas > 0 {
				obs.Canary.ReadyReplicas = int32(rng.Intn(int(obs.Canary.ReadyReplicas))) // pods crash
				obs.Canary.ReadyPods = obs.Canary.ReadyReplicas
			}
			if rng.Intn(30) == 0 {
				obs.Target.ReadyPods = map[string]int32{} // every stable pod fails
			}

			if rng.Intn(3) == 0 {
				obs.WindowOpen, obs.WindowOpensAt = false, w.now.Add(time.Duration(rng.Intn(180))*time.Minute)
			}
			for _, f := range []*string{&req.Promote, &req.PromoteFull, &req.Abort, &req.Retry} {
				if rng.Intn(25) == 0 {
					*f = newToken()
				}
			}
			if rng.Intn(15) == 0 {
				req.Paused = !req.Paused
			}
			if rng.Intn(40) == 0 {
				ro.Spec.Paused = !ro.Spec.Paused
			}
			obs.Requests = req
			if AnalysisDue(ro, req.Paused, w.now) || rng.Intn(30) == 0 {
				v := []string{rampv1.VerdictPassed, rampv1.VerdictPassed, rampv1.VerdictPassed, rampv1.VerdictFailed, rampv1.VerdictInconclusive}[rng.Intn(5)]
				obs.Analysis = &AnalysisResult{Verdict: v, Reason: "random"}
			}

			before := ro.DeepCopy()
			var d Decision
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("seed %d pass %d: Decide panicked: %v\nstatus %+v\nobs %+v", seed, i, r, ro.Status, obs)
					}
				}()
				d = Decide(cfg, ro, obs)
			}()
			if !reflect.DeepEqual(before, ro) {
				t.Fatalf("seed %d pass %d: Decide mutated its Rollout", seed, i)
			}
			if d.Desired != nil && (d.Desired.CanaryWeight < 0 || d.Desired.CanaryWeight > 100) {
				t.Fatalf("seed %d pass %d: desired weight %d", seed, i, d.Desired.CanaryWeight)
			}
			checkPass(t, ro, obs, d, w)
			st := d.Status
			hist = append(hist, fmt.Sprintf("%d +%v %s/%s step %d weight %d vs %v events %v target %s %v", i, w.now.Sub(t0), st.Phase, st.Stage, st.CurrentStep, st.CanaryWeight, obs.Routing, reasons(d.Events), obs.Target.UID, st.Target))
			if t.Failed() {
				from := max(0, len(hist)-15)
				t.Fatalf("seed %d pass %d (spec %+v):\n%s", seed, i, ro.Spec.Strategy, joinLines(hist[from:]))
			}
			phases[st.Phase+"/"+st.Stage]++
			for _, e := range d.Events {
				events[e.Reason]++
			}

			ro.Status = d.Status
			w.apply(d.Desired)
			if len(w.errs) > 0 {
				t.Fatalf("seed %d pass %d: %v\n%s", seed, i, w.errs, joinLines(hist[max(0, len(hist)-15):]))
			}
			// The clock: the requeue, a watch event, or a long silence.
			switch rng.Intn(6) {
			case 0:
				if d.RequeueAfter > 0 {
					w.now = w.now.Add(d.RequeueAfter)
				}
			case 1:
				w.now = w.now.Add(time.Duration(rng.Intn(15)) * time.Minute)
			default:
				w.now = w.now.Add(time.Duration(rng.Intn(20)) * time.Second)
			}
			w.settle()
		}
	}
	// The random worlds must reach every part of the machine, or they prove little.
	for _, s := range []string{
		"Initializing/", "Idle/", "Progressing/ScalingCanary", "Progressing/Holding", "Paused/Holding",
		"WaitingForWindow/WaitingForWindow", "WaitingForWindow/Holding", "Promoting/RoutingToCanary", "Promoting/UpdatingStable",
		"Promoting/SwitchingStableSubset", "Promoting/RoutingToStable", "Succeeded/", "RollingBack/Holding", "Failed/Holding",
	} {
		if phases[s] == 0 {
			t.Errorf("no random pass ended in %s: %v", s, phases)
		}
	}
	for _, r := range []string{"ReleasedWithoutCanary", "TargetRecreated", "StableUnavailable", "CanaryUnavailable", "CanaryLost"} {
		if events[r] == 0 {
			t.Errorf("no random pass recorded a %s event: %v", r, events)
		}
	}
}

func joinLines(ls []string) string {
	out := ""
	for _, l := range ls {
		out += "  " + l + "\n"
	}
	return out
}
