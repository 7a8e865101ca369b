package plan

import (
	"math"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// step is one step of the plan, whatever the strategy.
type step struct {
	weight   int32
	pause    *rampv1.Pause
	analysis bool
	fault    *rampv1.FaultInjection
	// mirror is the percentage of live traffic copied to the canary (0: not a mirror step).
	mirror float64
}

// stepsOf returns the plan's steps: the canary's (defaulted), or blue/green's single preview
// step at weight 0 with the new version at full size.
func stepsOf(spec *rampv1.RolloutSpec) []step {
	hasAnalysis := spec.Analysis != nil && len(spec.Analysis.Metrics) > 0
	if bg := spec.Strategy.BlueGreen; bg != nil {
		s := step{weight: 0, pause: bg.PrePromotionPause, analysis: hasAnalysis, fault: spec.FaultInjection}
		if bg.Mirror != nil {
			s.mirror = bg.Mirror.Percentage
		}
		return []step{s}
	}
	cs := spec.CanarySteps()
	out := make([]step, len(cs))
	weight := int32(0)
	for i, s := range cs {
		fault := s.FaultInjection
		if fault == nil {
			fault = spec.FaultInjection
		}
		out[i] = step{weight: s.SetWeight, pause: s.Pause, analysis: hasAnalysis && !s.SkipAnalysis, fault: fault}
		if s.Mirror != nil {
			// A mirror step keeps the weight of the step before it (0 before the first).
			out[i].weight, out[i].mirror = weight, s.Mirror.Percentage
		}
		weight = out[i].weight
	}
	return out
}

func isBlueGreen(spec *rampv1.RolloutSpec) bool { return spec.Strategy.BlueGreen != nil }

// MirrorsAt reports whether step k (1-based, as status.currentStep) of spec copies live traffic
// to the canary: its callers never see the canary's answers to the copies, so only the
// canary's own proxy reports them.
func MirrorsAt(spec *rampv1.RolloutSpec, k int32) bool {
	steps := stepsOf(spec)
	return k >= 1 && int(k) <= len(steps) && steps[k-1].mirror > 0
}

// share is the part of all traffic the canary serves at step s, mirrored requests included,
// in percent rounded up: what its size follows.
func (s step) share() int32 {
	return max(s.weight, int32(math.Ceil(min(s.mirror, 100))))
}

// CanaryReplicas sizes the canary for a share of traffic: the same share of the target's
// replicas, rounded up, at least one; all of them at 100%, so the canary can carry all
// traffic before it gets it.
func CanaryReplicas(targetReplicas, weight int32) int32 {
	if targetReplicas < 1 {
		targetReplicas = 1
	}
	if weight >= 100 {
		return targetReplicas
	}
	n := (targetReplicas*weight + 99) / 100
	if n < 1 {
		n = 1
	}
	return n
}
