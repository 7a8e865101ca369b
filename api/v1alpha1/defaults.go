package v1alpha1

import (
	"strings"
	"time"
)

// Annotations through which people (kubectl ramp) ask the controller to act. Each value is a
// token; a token the status has not yet acknowledged is a new request. Annotations are used
// because Flux and Argo CD leave annotations they never applied alone, so Git sync does not
// revert a request, and setting one does not bump the spec generation.
const (
	AnnotationPromote     = "ramp.dev/promote"
	AnnotationPromoteFull = "ramp.dev/promote-full"
	AnnotationAbort       = "ramp.dev/abort"
	AnnotationRetry       = "ramp.dev/retry"
	// AnnotationPaused set to "true" holds the rollout like spec.paused.
	AnnotationPaused = "ramp.dev/paused"
)

// Defaults, applied when reading the spec (not by a webhook), so Git manifests stay minimal.
const (
	DefaultAnalysisInterval  = time.Minute
	DefaultFailureLimit      = 2
	DefaultInconclusiveLimit = 5
	DefaultProgressDeadline  = 10 * time.Minute
	DefaultQueryTimeout      = 10 * time.Second
	DefaultMinRequests       = 10
	DefaultPreviewHeader     = "x-ramp-preview"
)

// DefaultCanarySteps are used when strategy.canary.steps is empty: 5% → 25% → 100%.
func DefaultCanarySteps() []CanaryStep {
	return []CanaryStep{{SetWeight: 5}, {SetWeight: 25}, {SetWeight: 100}}
}

// CanarySteps returns the canary steps, defaulted.
func (s *RolloutSpec) CanarySteps() []CanaryStep {
	if s.Strategy.Canary == nil || len(s.Strategy.Canary.Steps) == 0 {
		return DefaultCanarySteps()
	}
	return s.Strategy.Canary.Steps
}

// ProgressDeadlineOrDefault is how long the canary (or the target, while promoting) may take
// to become ready.
func (s *RolloutSpec) ProgressDeadlineOrDefault() time.Duration {
	if s.ProgressDeadline != nil {
		return s.ProgressDeadline.Duration
	}
	return DefaultProgressDeadline
}

// IntervalOrDefault is the time between analysis rounds.
func (a *AnalysisSpec) IntervalOrDefault() time.Duration {
	if a.Interval != nil {
		return a.Interval.Duration
	}
	return DefaultAnalysisInterval
}

// FailureLimitOrDefault is how many failed rounds roll back.
func (a *AnalysisSpec) FailureLimitOrDefault() int32 {
	if a.FailureLimit != nil {
		return *a.FailureLimit
	}
	return DefaultFailureLimit
}

// InconclusiveLimitOrDefault is how many inconclusive rounds roll back.
func (a *AnalysisSpec) InconclusiveLimitOrDefault() int32 {
	if a.InconclusiveLimit != nil {
		return *a.InconclusiveLimit
	}
	return DefaultInconclusiveLimit
}

// ServiceName is the Service in front of the target: spec.service.name or the target's name.
func (in *Rollout) ServiceName() string {
	if in.Spec.Service.Name != "" {
		return in.Spec.Service.Name
	}
	return in.Spec.TargetRef.Name
}

// CanaryName is the name of the Deployment ramp creates for the canary.
func (in *Rollout) CanaryName() string { return CanaryNameFor(in.Spec.TargetRef.Name) }

// CanaryNameFor is the name of the canary Deployment of target.
func CanaryNameFor(target string) string { return target + canarySuffix }

// TargetOfCanaryName is the target whose canary Deployment would be called name, if any.
func TargetOfCanaryName(name string) (string, bool) { return strings.CutSuffix(name, canarySuffix) }

const canarySuffix = "-canary"
