package plan

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// fuzzBytes draws values from the fuzzer's bytes (zeros once they run out).
type fuzzBytes struct {
	b []byte
	i int
}

func (f *fuzzBytes) byte() byte {
	if f.i >= len(f.b) {
		return 0
	}
	f.i++
	return f.b[f.i-1]
}

func (f *fuzzBytes) intn(n int) int { return int(f.byte()) % n }
func (f *fuzzBytes) bool() bool     { return f.byte()&1 == 1 }

func pickOf[T any](f *fuzzBytes, xs ...T) T { return xs[f.intn(len(xs))] }

func (f *fuzzBytes) duration() time.Duration {
	return pickOf(f, time.Second, 30*time.Second, time.Minute, 10*time.Minute, time.Hour)
}

func (f *fuzzBytes) pause() *rampv1.Pause {
	switch f.intn(3) {
	case 0:
		return nil
	case 1:
		return &rampv1.Pause{} // until promoted
	}
	return &rampv1.Pause{Duration: &metav1.Duration{Duration: f.duration()}}
}

// fuzzSpec draws a spec admission would accept: one strategy, canary weights 1..100 and
// non-decreasing, positive durations, limits ≥ 1.
func fuzzSpec(f *fuzzBytes) rampv1.RolloutSpec {
	spec := rampv1.RolloutSpec{TargetRef: rampv1.TargetReference{Name: "web"}}
	fault := &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 10, HTTPStatus: 503}}
	if f.intn(4) == 3 {
		spec.Strategy.BlueGreen = &rampv1.BlueGreenStrategy{PrePromotionPause: f.pause()}
	} else {
		cs := &rampv1.CanaryStrategy{HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary"}}
		n := f.intn(7) // 0: the default steps
		w := int32(0)
		for range n {
			w = min(100, w+int32(f.intn(60)))
			if w == 0 {
				w = 1
			}
			s := rampv1.CanaryStep{SetWeight: w, Pause: f.pause(), SkipAnalysis: f.bool()}
			if f.intn(4) == 0 {
				s.FaultInjection = fault
			}
			cs.Steps = append(cs.Steps, s)
		}
		spec.Strategy.Canary = cs
	}
	if f.bool() {
		spec.Analysis = &rampv1.AnalysisSpec{
			Interval:          &metav1.Duration{Duration: f.duration()},
			FailureLimit:      ptrTo(int32(1 + f.intn(3))),
			InconclusiveLimit: ptrTo(int32(1 + f.intn(5))),
			Metrics:           []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate}},
		}
	}
	if f.intn(3) == 0 {
		spec.FaultInjection = fault
	}
	if f.bool() {
		spec.ProgressDeadline = &metav1.Duration{Duration: f.duration()}
	}
	spec.Paused = f.intn(8) == 0
	return spec
}

var fuzzRevs = []string{"", "r1", "r2", "r3"}

// fuzzStatus draws a status ramp could have written — for this spec or, the spec having been
// edited since, for another plan: an active phase has a stable and a canary revision and a
// stage of that phase; weights are 0..100.
func fuzzStatus(f *fuzzBytes, now time.Time) rampv1.RolloutStatus {
	st := rampv1.RolloutStatus{
		Phase: pickOf(f, "", rampv1.PhaseInitializing, rampv1.PhaseIdle, rampv1.PhaseProgressing, rampv1.PhasePaused,
			rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting, rampv1.PhaseSucceeded, rampv1.PhaseRollingBack, rampv1.PhaseFailed),
		CurrentStep:        int32(f.intn(9)),
		Steps:              int32(f.intn(9)),
		CanaryWeight:       int32(f.intn(101)),
		StableRevision:     pickOf(f, fuzzRevs[1:]...),
		FailedChecks:       int32(f.intn(4)),
		InconclusiveChecks: int32(f.intn(6)),
		StepAnalysisPassed: f.bool(),
		HandledRequests:    rampv1.HandledRequests{Promote: pickOf(f, "", "t1"), PromoteFull: pickOf(f, "", "t1"), Abort: pickOf(f, "", "t1"), Retry: pickOf(f, "", "t1")},
	}
	st.StablePodTemplateHash = "h" + st.StableRevision[1:]
	if f.bool() {
		t := metav1.NewMicroTime(now.Add(-time.Duration(f.intn(120)) * 10 * time.Second))
		st.StageStartedAt = &t
	}
	if f.bool() {
		t := metav1.NewMicroTime(now.Add(-time.Duration(f.intn(120)) * 10 * time.Second))
		st.LastAnalysisTime = &t
	}
	switch st.Phase {
	case "", rampv1.PhaseInitializing:
		st.StableRevision, st.StablePodTemplateHash, st.CurrentStep, st.CanaryWeight = "", "", 0, 0
	case rampv1.PhaseIdle, rampv1.PhaseSucceeded:
		st.CurrentStep, st.Steps, st.CanaryWeight = 0, 0, 0
	case rampv1.PhaseFailed:
		st.CanaryRevision = pickOf(f, fuzzRevs...)
		st.Stage = pickOf(f, "", StageScalingCanary, StageHolding, StageRoutingToCanary)
		st.CanaryWeight = 0
	default:
		st.CanaryRevision = pickOf(f, fuzzRevs[1:]...)
		if st.CanaryRevision == st.StableRevision {
			st.CanaryRevision = "r4"
		}
		switch st.Phase {
		case rampv1.PhasePromoting:
			st.Stage = pickOf(f, StageRoutingToCanary, StageUpdatingStable, StageSwitchingStableSubset, StageRoutingToStable)
			switch st.Stage {
			case StageUpdatingStable, StageSwitchingStableSubset:
				st.CanaryWeight = 100
			case StageRoutingToStable:
				st.CanaryWeight = 0
			}
		case rampv1.PhaseRollingBack:
			st.Stage = pickOf(f, StageScalingCanary, StageHolding, StageRoutingToCanary)
			st.CanaryWeight = 0
		default:
			st.Stage = pickOf(f, StageScalingCanary, StageHolding)
		}
	}
	return st
}

func fuzzObservation(f *fuzzBytes, now time.Time) Observation {
	o := Observation{Now: now, WindowOpen: !(f.intn(4) == 0)}
	if !o.WindowOpen && f.bool() {
		o.WindowOpensAt = now.Add(f.duration())
	}
	if f.intn(10) > 0 {
		o.Target = Target{Exists: true, Revision: pickOf(f, fuzzRevs[1:]...), Replicas: int32(f.intn(13)), Paused: f.bool(), RolledOut: f.bool()}
		if f.bool() {
			o.Target.PodTemplateHash = "h" + o.Target.Revision[1:]
		}
		// ramp's own pause (adoption waits for it) or someone else's.
		o.Target.PausedByRamp = o.Target.Paused && f.bool()
	}
	if f.bool() {
		o.Canary = Canary{Exists: true, Revision: pickOf(f, fuzzRevs...), ReadyReplicas: int32(f.intn(13))}
	}
	if f.intn(6) > 0 {
		o.Routing = &ObservedRouting{CanaryWeight: int32(f.intn(101))}
	}
	if f.bool() {
		o.Analysis = &AnalysisResult{Verdict: pickOf(f, rampv1.VerdictPassed, rampv1.VerdictFailed, rampv1.VerdictInconclusive), Reason: "fuzz"}
	}
	o.Requests = Requests{Promote: pickOf(f, "", "t1", "t2"), PromoteFull: pickOf(f, "", "t1", "t2"),
		Abort: pickOf(f, "", "t1", "t2"), Retry: pickOf(f, "", "t1", "t2"), Paused: f.intn(6) == 0}
	if f.intn(12) == 0 {
		o.SpecError = "bad schedule"
	}
	return o
}

func ptrTo[T any](v T) *T { return &v }

// FuzzDecide runs the state machine on a random spec (canary steps or blue/green, pauses,
// analysis on or off), a status ramp could have written (for this plan or one edited since)
// and a random observation. Decide must not panic nor touch its argument, must decide the
// same twice, and its desired state must be consistent: weights within 0..100 and equal to
// the recorded one, never traffic to a canary of another revision than status.canaryRevision
// nor to one too small for it, the header route and faults only to a canary with pods, the
// target un-paused only while the canary takes all traffic.
func FuzzDecide(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		{0, 0, 0, 0},
		[]byte("ramp: canary 10 50 100"),
		{1, 3, 10, 1, 0, 40, 2, 1, 50, 0, 1, 1, 3, 0, 1, 5, 3, 60, 2, 2, 1, 1, 1, 1, 2, 1, 1, 7, 1, 1, 1, 1, 1, 1, 1},
		{0, 1, 2, 0, 1, 1, 0, 4, 6, 50, 1, 2, 2, 1, 1, 0, 9, 8, 1, 1, 1, 1, 12, 3, 1, 1, 1, 3, 1},
		{2, 6, 30, 0, 0, 30, 0, 0, 30, 0, 0, 30, 0, 0, 30, 0, 0, 30, 0, 0, 1, 1, 1, 1, 0, 3, 2, 3, 80, 2, 1, 3, 2, 1},
		{3, 2, 80, 1, 0, 20, 1, 0, 0, 0, 0, 0, 3, 1, 2, 2, 60, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 2, 1, 1, 3, 1, 1, 1, 10, 1, 2, 2, 5},
		// Steps edited mid-rollout: the status holds 50% at step 2, whose weight is now 20%; the
		// canary must stay sized for the 50% it takes (10 target replicas: 5, not 2).
		{0, 0, 0, 1, 3, 10, 1, 0, 1, 10, 1, 0, 1, 59, 0, 0, 1, 0, 1, 0, 1,
			3, 2, 3, 50, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1,
			1, 1, 1, 10, 1, 0, 0, 1, 2, 5, 1, 50, 0, 0, 0, 0, 0, 1, 1},
	} {
		f.Add(seed)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		fb := &fuzzBytes{b: data}
		cfg := Config{SubsetSettle: time.Duration(fb.intn(3)) * time.Second}
		now := base.Add(time.Duration(fb.intn(200)) * time.Minute)
		ro := &rampv1.Rollout{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Generation: 1 + int64(fb.intn(3))},
			Spec:       fuzzSpec(fb),
		}
		ro.Status = fuzzStatus(fb, now)
		obs := fuzzObservation(fb, now)
		before := ro.DeepCopy()

		d := Decide(cfg, ro, obs)
		if !reflect.DeepEqual(before, ro) {
			t.Fatalf("Decide changed its Rollout")
		}
		if again := Decide(cfg, ro, obs); !reflect.DeepEqual(again, d) {
			t.Fatalf("Decide is not deterministic:\n%+v\n%+v", d, again)
		}
		st := d.Status
		what := func() string {
			return fmt.Sprintf("\nspec %+v\nstatus in  %+v\nobs %+v\nstatus out %+v\ndesired %+v", ro.Spec.Strategy, ro.Status, obs, st, d.Desired)
		}
		if d.RequeueAfter < 0 {
			t.Fatalf("RequeueAfter %s%s", d.RequeueAfter, what())
		}
		if st.CanaryWeight < 0 || st.CanaryWeight > 100 {
			t.Fatalf("status weight %d%s", st.CanaryWeight, what())
		}
		ds := d.Desired
		if ds == nil {
			return
		}
		switch {
		case ds.CanaryWeight < 0 || ds.CanaryWeight > 100:
			t.Fatalf("desired weight %d%s", ds.CanaryWeight, what())
		case ds.CanaryWeight != 0 && ds.CanaryWeight != st.CanaryWeight:
			t.Fatalf("desired weight %d is not the recorded one (%d)%s", ds.CanaryWeight, st.CanaryWeight, what())
		case ds.CanaryReplicas < 0:
			t.Fatalf("desired canary replicas %d%s", ds.CanaryReplicas, what())
		case ds.StablePodTemplateHash == "" || ds.StablePodTemplateHash != st.StablePodTemplateHash:
			t.Fatalf("stable subset %q, status %q%s", ds.StablePodTemplateHash, st.StablePodTemplateHash, what())
		case ds.CanaryWeight > 0 && (ds.CanaryRevision == "" || ds.CanaryRevision != st.CanaryRevision):
			t.Fatalf("%d%% routed to a canary of revision %q, status.canaryRevision %q%s", ds.CanaryWeight, ds.CanaryRevision, st.CanaryRevision, what())
		case ds.CanaryWeight > 0 && ds.CanaryReplicas < CanaryReplicas(obs.Target.Replicas, ds.CanaryWeight):
			t.Fatalf("%d%% routed to a canary sized %d (needs %d)%s", ds.CanaryWeight, ds.CanaryReplicas, CanaryReplicas(obs.Target.Replicas, ds.CanaryWeight), what())
		case ds.HeaderRoute && (ds.CanaryRevision == "" || ds.CanaryReplicas < 1):
			t.Fatalf("header route to canary %q×%d%s", ds.CanaryRevision, ds.CanaryReplicas, what())
		case ds.Fault != nil && !ds.HeaderRoute:
			t.Fatalf("fault without the header route%s", what())
		case !ds.TargetPaused && (ds.CanaryWeight != 100 || st.Stage != StageUpdatingStable || obs.Target.Revision != st.CanaryRevision):
			t.Fatalf("target un-paused at %d%% (stage %s, target %s, canary %s)%s", ds.CanaryWeight, st.Stage, obs.Target.Revision, st.CanaryRevision, what())
		}
	})
}
