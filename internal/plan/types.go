// Package plan holds ramp's rollout state machine: a pure function from (spec, status,
// observation) to (new status, desired world, events, requeue time). It does no I/O and reads
// no clock, so every phase × observation is tested without a cluster.
package plan

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Stages of a step or of promotion (status.stage).
const (
	// StageScalingCanary: the canary is scaled for the step's weight; traffic stays where it was.
	StageScalingCanary = "ScalingCanary"
	// StageHolding: the step's weight is routed; pause and analysis run.
	StageHolding = "Holding"
	// StageWaitingForWindow: a 100% step waits for a promotion window before the canary is
	// sized for it; traffic stays where it was.
	StageWaitingForWindow = "WaitingForWindow"
	// StageRoutingToCanary: promotion: the canary is at full size; all traffic goes to it.
	StageRoutingToCanary = "RoutingToCanary"
	// StageUpdatingStable: promotion: the target is un-paused and rolls to the new template.
	StageUpdatingStable = "UpdatingStable"
	// StageSwitchingStableSubset: promotion: the stable subset selects the target's new pods.
	StageSwitchingStableSubset = "SwitchingStableSubset"
	// StageRoutingToStable: promotion: all traffic returns to the (updated) target.
	StageRoutingToStable = "RoutingToStable"
)

// Config holds the controller-wide knobs of the state machine.
type Config struct {
	// SubsetSettle is how long ramp waits after changing the DestinationRule's stable subset
	// before moving traffic onto it, so proxies hold the new subset before they need it.
	SubsetSettle time.Duration
	// RoutingGrace is how long a step entered but not yet seen routed is reported as the step
	// it is (its pause and analysis); only later does the message say ramp waits for the
	// VirtualService. The route normally lands in the next pass, and a message that changed in
	// between would cost a status write per step for nothing a user could act on.
	RoutingGrace time.Duration
}

// DefaultConfig is what the manager runs with unless flags say otherwise.
func DefaultConfig() Config {
	return Config{SubsetSettle: 2 * time.Second, RoutingGrace: 5 * time.Second}
}

// Observation is what the reconciler read this pass.
type Observation struct {
	Now time.Time

	Target Target
	Canary Canary
	// Routing is the traffic split the live VirtualService holds; nil when there is none or it
	// is not in ramp's shape.
	Routing *ObservedRouting
	// RoutingUnreadable: ramp's VirtualService exists but is not in the shape ramp renders (a
	// hand edit), so how much traffic the canary takes is unknown.
	RoutingUnreadable bool

	// Peers are the other Rollouts targeting the same Deployment; the first created manages it.
	Peers []Peer

	// Analysis is the result of the analysis round run this pass; nil when none was due.
	Analysis *AnalysisResult
	// AnalysisRunning reports that a due round is still running: its result, not a timer,
	// brings the next pass.
	AnalysisRunning bool

	Requests Requests

	// Gates are the gate calls that ended since the last pass, for whatever point they were
	// called at: Decide takes those of the point the rollout is at.
	Gates []GateResult

	// WindowOpen reports whether a promotion window is open now (true without windows);
	// WindowOpensAt is when the next one opens, when closed.
	WindowOpen    bool
	WindowOpensAt time.Time

	// SpecError is a spec problem admission could not catch (e.g. a cron schedule); the
	// rollout stalls with it until the spec is fixed.
	SpecError string
	// Blocked is a problem in the cluster ramp must not work around (e.g. the Service is
	// missing); the rollout stalls with it and touches nothing until it is gone.
	Blocked *Blocker

	// ForeignObject describes objects ramp needs (the VirtualService, the DestinationRule, the
	// canary Deployment) that exist and were not created by this Rollout; the rollout stalls
	// with it, touching nothing, until they are gone. ramp never takes an object over.
	ForeignObject string

	// StableSubset is the pod-template-hash the live DestinationRule's stable subset selects
	// ("" when there is no DestinationRule or it is not ramp's).
	StableSubset string
}

// Blocker is a named reason to stall.
type Blocker struct {
	Reason, Message string
	// RetryAfter, when set, brings the next pass back then: what blocks is not watched (a
	// Secret's label).
	RetryAfter time.Duration
}

// Target is the Git-owned Deployment.
type Target struct {
	Exists bool
	// Revision is ramp's hash of the Deployment's pod template.
	Revision string
	// Replicas is spec.replicas (defaulted to 1).
	Replicas int32
	Paused   bool
	// PausedByRamp: ramp's field manager owns spec.paused, so the pause is ramp's, applied
	// only over a version of the Deployment ramp observed fully rolled out. Read only while
	// adopting (Adopting), the only time the plan asks: false otherwise.
	PausedByRamp bool
	// PausedBy names the other field managers that own spec.paused (Git's sync, a person),
	// for the message of a pause ramp did not make.
	PausedBy []string
	// RolledOut: the Deployment controller has fully rolled the template out: every replica
	// updated, ready and available, and no old replicas left.
	RolledOut bool
	// PodTemplateHash is the pod-template-hash of the ReplicaSet that runs Revision, if any.
	PodTemplateHash string
	// Hashes is the pod-template-hash of the Deployment's ReplicaSet of each revision it has
	// one for: the pods of a revision ramp paused it at, when Git changed the template since.
	Hashes map[string]string

	// UID is the Deployment's: another UID than the status records means it was deleted and
	// created again (Flux's force does that when Git changes its immutable selector).
	UID types.UID
	// Selector is its spec.selector as a string; CanarySelector the selector the canary
	// Deployment rendered from it has (the target's plus the track label).
	Selector, CanarySelector string
	// ReadyPods counts the ready pods of the Deployment's ReplicaSets by pod-template-hash:
	// what each value of the stable subset would route to. Nil when not observed (unit tests
	// of other behaviour): then routing does not follow ready pods.
	ReadyPods map[string]int32
}

// Canary is the <target>-canary Deployment ramp manages.
type Canary struct {
	Exists bool
	// Revision the canary Deployment was rendered from (its ramp.dev/revision annotation).
	Revision string
	// ReadyReplicas counts ready pods of the canary's current template only (0 while the
	// Deployment controller has not yet observed the latest spec).
	ReadyReplicas int32
	// Replicas is the canary Deployment's spec.replicas.
	Replicas int32
	// Unobserved: the Deployment controller has not yet observed the latest spec, so
	// ReadyReplicas says nothing (a freshly scaled canary is not a canary without pods).
	Unobserved bool
	// ReadyPods counts its ready pods of any template: what the canary subset routes to.
	ReadyPods int32
	// Selector is its spec.selector as a string (immutable: a canary whose selector is not
	// the target's CanarySelector must be recreated to be rendered).
	Selector string
}

// ObservedRouting is the live VirtualService's split.
type ObservedRouting struct {
	CanaryWeight int32
	// HeaderRoute: the header route to the canary is there.
	HeaderRoute bool
	// Mirror is the percentage of traffic mirrored to the canary (0: none).
	Mirror float64
	// Sticky: the sticky-session route to the canary is there.
	Sticky bool
}

// AnalysisResult is one round's outcome.
type AnalysisResult struct {
	// Verdict: rampv1.VerdictPassed, VerdictFailed or VerdictInconclusive.
	Verdict string
	// Reason summarises a failed or inconclusive verdict, e.g. "error-rate 8.2 > 1".
	Reason  string
	Metrics []rampv1.MetricResult
	// Started is when the round began querying (zero: unknown). The status records it as
	// lastAnalysisTime, so the next round is due one interval after this one began, a time the
	// round runner can compute and keep without waiting for a pass.
	Started time.Time
}

// Requests are the plugin's annotation tokens and the pause flag.
type Requests struct {
	Promote, PromoteFull, Abort, Retry string
	Paused                             bool
	// PausedBy names who wrote the pause annotation, for messages ("" for kubectl ramp pause,
	// its usual writer).
	PausedBy string
}

// Decision is the outcome of one pass.
type Decision struct {
	// Status is the new status, without conditions (see Summary).
	Status rampv1.RolloutStatus
	// Desired is the world to converge to; nil means touch nothing (stalled or not adopted).
	Desired *Desired
	Summary Summary
	Events  []Event
	// RequeueAfter is when the next pass is due on a timer (pause end, analysis, deadline,
	// window); 0 means only when something changes.
	RequeueAfter time.Duration
	// Gates are the gate calls due now (nil: none; calls in flight for anything else are
	// no longer wanted). Their results come back in Observation.Gates.
	Gates *GateCalls
}

// Desired is the state of the objects ramp manages, derived from the new status alone, so
// applying it again is harmless and a fresh controller after a crash applies the same.
type Desired struct {
	// TargetPaused is the target Deployment's spec.paused.
	TargetPaused bool
	// CanaryRevision is the revision the canary Deployment must be rendered from ("" keeps
	// whatever template it has; used when it is scaled to zero).
	CanaryRevision string
	CanaryReplicas int32
	// StablePodTemplateHash is the DestinationRule's stable subset.
	StablePodTemplateHash string
	CanaryWeight          int32
	HeaderRoute           bool
	Fault                 *rampv1.FaultInjection
	// Mirror is the percentage of live traffic copied to the canary (0: none): the current
	// step's mirror while it holds.
	Mirror float64
	// Sticky: sticky canary sessions are on (the strategy asks for them and the canary serves
	// the revision being rolled out); the cookie's value is CanaryRevision.
	Sticky bool

	// RenderCanary: the canary Deployment is rendered from the target's template (it must run
	// the target's revision); otherwise it is only scaled.
	RenderCanary bool
	// RecreateCanary: the canary Deployment is rendered but its selector, which Kubernetes
	// does not let change, is not the target's: it is deleted (only the object observed,
	// conditional on its UID and resourceVersion) and created again.
	RecreateCanary bool
	// TargetAsObserved: the write of the target's spec.paused is meant for the Deployment as
	// observed (the pause at the revision adoption or a promotion recorded, the un-pause onto
	// the analysed revision): the reconciler makes it conditional on the observed
	// resourceVersion, so it fails if Git changed the template since. Otherwise (a pause that
	// must hold whatever the template: a commit during the promotion, a canary gone) it is not.
	TargetAsObserved bool
	// PauseOnly: ramp adopts the target and pauses it, writing nothing else yet: no routes,
	// no canary, until it has observed its pause take effect (a commit landing before it
	// would be rolled out by the Deployment itself, under routes ramp would have made).
	PauseOnly bool
	// TargetUntouched: ramp writes nothing on the target. A recreated Deployment is not paused
	// until it has rolled out: paused before its controller creates the ReplicaSet, it would
	// get no pods at all.
	TargetUntouched bool
	// RouteFirst: the routes change before the canary does, because traffic leaves the
	// canary (a lower weight, no more header route, or a live split ramp cannot read): the
	// canary is neither shrunk nor re-rendered while it still takes that traffic. Otherwise the
	// canary is sized first, so traffic never reaches pods that are not there.
	RouteFirst bool
}

// Summary drives the kstatus conditions.
type Summary struct {
	// Ready is true when the desired revision is fully promoted (or nothing is pending).
	Ready       bool
	Reconciling bool
	Stalled     bool
	Reason      string
	Message     string
}

// Event is a Kubernetes event to record (and notify).
type Event struct {
	Warning bool
	Reason  string
	Message string
}
