package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// RolloutSpec says which Deployment ramp delivers progressively and how.
// +kubebuilder:validation:XValidation:rule="has(self.service.name) || self.targetRef.name.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",messageExpression="'targetRef.name ' + self.targetRef.name + ' is also the Service name when service.name is unset, and a Service name must be a DNS-1035 label (at most 63 characters: lower case letters, digits and -, starting with a letter): set service.name'",fieldPath=".targetRef.name"
// +kubebuilder:validation:XValidation:rule="!has(self.faultInjection) || !has(self.strategy.canary) || has(self.strategy.canary.headerMatch)",message="faultInjection needs strategy.canary.headerMatch: Istio applies a route's fault to all its destinations, so ramp injects faults only on the header route that reaches the canary alone"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || (has(self.service.name) ? self.service.name : self.targetRef.name).size() <= 56",message="with service.gatewayAPI the Service name (service.name, or targetRef.name when unset) must be at most 56 characters: ramp creates the Services <name>-stable and <name>-canary, whose names are at most 63",fieldPath=".service"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || !has(self.faultInjection)",message="faultInjection: the Gateway API's HTTPRoute has no field for fault injection; remove faultInjection, or route with Istio (remove service.gatewayAPI)"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || !has(self.strategy.canary) || !has(self.strategy.canary.steps) || !self.strategy.canary.steps.exists(s, has(s.faultInjection))",message="strategy.canary.steps[].faultInjection: the Gateway API's HTTPRoute has no field for fault injection; remove it, or route with Istio (remove service.gatewayAPI)"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || !has(self.strategy.canary) || !has(self.strategy.canary.stickySessions)",message="strategy.canary.stickySessions: a standard-channel HTTPRoute (Gateway API v1.6) has no field for session persistence; remove stickySessions, or route with Istio (remove service.gatewayAPI)"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || !has(self.strategy.canary) || !has(self.strategy.canary.headerMatch) || !has(self.strategy.canary.headerMatch.prefix)",message="strategy.canary.headerMatch.prefix: an HTTPRoute header match is Exact or RegularExpression, it has no prefix match; use exact or regex"
// +kubebuilder:validation:XValidation:rule="!has(self.service.gatewayAPI) || !has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.previewHeader) || !has(self.strategy.blueGreen.previewHeader.prefix)",message="strategy.blueGreen.previewHeader.prefix: an HTTPRoute header match is Exact or RegularExpression, it has no prefix match; use exact or regex"
type RolloutSpec struct {
	// TargetRef is the Deployment that Git owns. ramp never edits its pod template; it pauses
	// it between rollouts and un-pauses it to promote. Changing the target is not supported:
	// create a new Rollout instead.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="targetRef is immutable: create a new Rollout for another Deployment"
	TargetRef TargetReference `json:"targetRef"`

	// Service describes the Kubernetes Service in front of the target and the Istio routing
	// ramp generates for it (a VirtualService and a DestinationRule named after the Rollout).
	Service ServiceSpec `json:"service"`

	// Strategy is exactly one of canary or blueGreen.
	Strategy Strategy `json:"strategy"`

	// Analysis is checked between steps; without it steps advance on their pauses alone.
	// +optional
	Analysis *AnalysisSpec `json:"analysis,omitempty"`

	// FaultInjection is injected into the header route that reaches the canary alone (canary
	// headerMatch, or the blue/green preview header) while a rollout runs, unless a canary
	// step sets its own; it is removed when the step ends, on promotion and on rollback.
	// +optional
	FaultInjection *FaultInjection `json:"faultInjection,omitempty"`

	// PromotionWindows restrict when a rollout may go to 100%. Outside every window the rollout
	// holds before its final step (phase WaitingForWindow). Empty means always.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	PromotionWindows []PromotionWindow `json:"promotionWindows,omitempty"`

	// Notifications are sent on rollout transitions.
	// +optional
	Notifications *Notifications `json:"notifications,omitempty"`

	// ProgressDeadline is how long the canary may take to become ready at a step before the
	// rollout fails. Defaults to 10m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) > duration('0s') && duration(self) <= duration('8760h')",message="progressDeadline must be greater than 0s and at most 8760h"
	ProgressDeadline *metav1.Duration `json:"progressDeadline,omitempty"`

	// Paused holds the rollout where it is: no step advances, no analysis runs.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Gates are HTTP calls at named points of a rollout (docs/gates.md).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Gates []Gate `json:"gates,omitempty"`
}

// TargetReference names the Deployment in the Rollout's namespace.
type TargetReference struct {
	// APIVersion of the target.
	// +kubebuilder:default="apps/v1"
	// +kubebuilder:validation:Enum="apps/v1"
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the target.
	// +kubebuilder:default=Deployment
	// +kubebuilder:validation:Enum=Deployment
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the Deployment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=246
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Strategy is exactly one of canary or blueGreen.
// +kubebuilder:validation:XValidation:rule="has(self.canary) != has(self.blueGreen)",message="exactly one of strategy.canary or strategy.blueGreen must be set"
type Strategy struct {
	// Canary shifts weight to the new version in steps.
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`
	// BlueGreen runs the new version at full size beside the old, previews it on a header
	// route, then flips all traffic at once.
	// +optional
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
}

// CanaryStrategy shifts traffic to the canary in ordered steps.
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || !self.steps.exists(s, has(s.faultInjection)) || has(self.headerMatch)",message="steps[].faultInjection needs headerMatch: faults are injected only on the header route that reaches the canary alone"
type CanaryStrategy struct {
	// Steps, in order. Weights must not decrease. Defaults to 5, 25 and 100 percent. After the
	// last step the rollout promotes, whatever its weight.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:XValidation:rule="self.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",message="steps[].setWeight must not decrease from one step to the next"
	Steps []CanaryStep `json:"steps,omitempty"`

	// HeaderMatch routes matching requests to the canary at every step, whatever the weight
	// (for example x-canary: "true" for testers).
	// +optional
	HeaderMatch *HeaderMatch `json:"headerMatch,omitempty"`

	// StickySessions keeps a user the canary served on the canary for the rest of the
	// rollout: the canary's answers on the weighted route set a cookie, and a route matching
	// that cookie sends the user's next requests to the canary. The route and the cookie's
	// value change with each rollout and are removed on promotion and rollback.
	// +optional
	StickySessions *StickySessions `json:"stickySessions,omitempty"`
}

// StickySessions configures the cookie of sticky canary sessions.
type StickySessions struct {
	// CookieName of the cookie the canary's answers set. Defaults to ramp-<rollout name>.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	CookieName string `json:"cookieName,omitempty"`
}

// TrafficMirror copies a share of live requests to the canary. The copies' answers are
// discarded: users get stable's answers, while the canary's own metrics (what analysis
// reads) show how it handles real traffic.
type TrafficMirror struct {
	// Percentage of requests copied to the canary: more than 0, at most 100.
	// +kubebuilder:validation:XValidation:rule="self > 0.0 && self <= 100.0",message="mirror.percentage must be more than 0 and at most 100"
	Percentage float64 `json:"percentage"`
}

// CanaryStep sends a share of traffic to the canary (setWeight), or copies a share of it to
// the canary (mirror), and holds it until the step's pause ends and, when analysis is
// configured, an analysis round passes.
// +kubebuilder:validation:XValidation:rule="has(self.setWeight) != has(self.mirror)",message="a step sets exactly one of setWeight or mirror: a mirror step keeps the weight of the step before it (0 before the first)"
type CanaryStep struct {
	// SetWeight is the percentage of traffic the canary gets during this step.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	SetWeight int32 `json:"setWeight,omitempty"`

	// Mirror copies a percentage of live traffic to the canary during this step while users
	// keep getting stable's answers (Istio mirror and mirrorPercentage on the weighted
	// route); the weight stays that of the step before. Analysis judges the canary on the
	// mirrored requests.
	// +optional
	Mirror *TrafficMirror `json:"mirror,omitempty"`

	// Pause holds the step for a duration, or until promoted when no duration is given.
	// +optional
	Pause *Pause `json:"pause,omitempty"`

	// SkipAnalysis advances without an analysis round at this step.
	// +optional
	SkipAnalysis bool `json:"skipAnalysis,omitempty"`

	// FaultInjection for this step only; overrides spec.faultInjection.
	// +optional
	FaultInjection *FaultInjection `json:"faultInjection,omitempty"`
}

// Pause holds a step. Without a duration it holds until `kubectl ramp promote`.
type Pause struct {
	// Duration of the pause. Empty means until promoted.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) > duration('0s') && duration(self) <= duration('8760h')",message="pause.duration must be greater than 0s and at most 8760h"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// BlueGreenStrategy brings the new version up at full size, exposes it on a preview header
// route, analyses it, then flips all traffic in one step.
type BlueGreenStrategy struct {
	// PreviewHeader routes matching requests to the new version before the flip.
	// Defaults to the header x-ramp-preview: "true".
	// +optional
	PreviewHeader *HeaderMatch `json:"previewHeader,omitempty"`

	// PrePromotionPause holds before the flip, for a duration or until promoted.
	// +optional
	PrePromotionPause *Pause `json:"prePromotionPause,omitempty"`

	// Mirror copies a percentage of live traffic to the new version while it is previewed
	// (users keep getting the old version's answers), so the pre-promotion analysis judges
	// it on real requests.
	// +optional
	Mirror *TrafficMirror `json:"mirror,omitempty"`
}

// HeaderMatch matches one HTTP header: exactly one of exact, prefix or regex.
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",message="set exactly one of exact, prefix or regex"
type HeaderMatch struct {
	// Name of the header, lower case.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[a-z0-9!#$%&'*+\-.^_|~]+$`
	Name string `json:"name"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Exact *string `json:"exact,omitempty"`
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Prefix *string `json:"prefix,omitempty"`
	// Regex in RE2 syntax (ramp checks it compiles, as Istio does, and stalls the Rollout when
	// it does not).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Regex *string `json:"regex,omitempty"`
}

// FaultInjection injects a delay and/or an abort into the canary route.
// +kubebuilder:validation:XValidation:rule="has(self.delay) || has(self.abort)",message="faultInjection needs delay, abort or both"
type FaultInjection struct {
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a percentage of canary requests.
type FaultDelay struct {
	// Percentage of requests delayed: 0, or 0.0001 to 100.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self == 0.0 || self >= 0.0001",message="percentage must be 0 or between 0.0001 and 100: Istio rejects smaller shares"
	Percentage float64 `json:"percentage"`
	// FixedDelay before the request is forwarded.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="fixedDelay must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="fixedDelay must be a whole number of milliseconds (Istio rejects finer durations)"
	FixedDelay metav1.Duration `json:"fixedDelay"`
}

// FaultAbort answers a percentage of canary requests with an HTTP status.
type FaultAbort struct {
	// Percentage of requests aborted: 0, or 0.0001 to 100.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self == 0.0 || self >= 0.0001",message="percentage must be 0 or between 0.0001 and 100: Istio rejects smaller shares"
	Percentage float64 `json:"percentage"`
	// HTTPStatus returned to the caller.
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	HTTPStatus int32 `json:"httpStatus"`
}

// PromotionWindow is a recurring window in which a rollout may go to 100%.
type PromotionWindow struct {
	// Schedule in cron syntax (five fields, or a descriptor such as @daily) marking each
	// window's opening; may start with CRON_TZ=<zone>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Schedule string `json:"schedule"`
	// Duration each window stays open.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) > duration('0s') && duration(self) <= duration('8760h')",message="duration must be greater than 0s and at most 8760h"
	Duration metav1.Duration `json:"duration"`
	// TimeZone (IANA name, e.g. Europe/Paris) of the schedule; defaults to UTC.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
}

// Notifications configures where ramp reports rollout transitions.
type Notifications struct {
	// Slack incoming webhook.
	// +optional
	Slack *SlackNotification `json:"slack,omitempty"`
}

// SlackNotification posts to a Slack incoming webhook whose URL is held in a Secret.
type SlackNotification struct {
	// SecretRef names the Secret (in the Rollout's namespace) and key holding the webhook URL.
	SecretRef SecretKeyReference `json:"secretRef"`
}

// SecretKeyReference names a key of a Secret in the Rollout's namespace.
type SecretKeyReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// An object name (DNS-1123 subdomain): anything else ("a/../b") names no object ramp
	// could read, and would only make every pass fail.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data. Defaults to "address".
	// +optional
	// +kubebuilder:default=address
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// Rollout phases.
const (
	PhaseInitializing     = "Initializing"
	PhaseIdle             = "Idle"
	PhaseProgressing      = "Progressing"
	PhasePaused           = "Paused"
	PhaseWaitingForWindow = "WaitingForWindow"
	PhasePromoting        = "Promoting"
	PhaseSucceeded        = "Succeeded"
	PhaseRollingBack      = "RollingBack"
	PhaseFailed           = "Failed"
	// PhaseStalled: a problem stops ramp before it adopted the target (an invalid spec, a
	// missing or paused target, a foreign object); the Stalled condition says which.
	PhaseStalled = "Stalled"
)

// RolloutStatus is what ramp observed and decided.
type RolloutStatus struct {
	// ObservedGeneration is the last spec generation ramp acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled (kstatus).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Phase of the rollout.
	// +optional
	Phase string `json:"phase,omitempty"`

	// Message says why the rollout is in its phase.
	// +optional
	Message string `json:"message,omitempty"`

	// CurrentStep is the 1-based index of the step in progress; 0 when no rollout runs.
	// +optional
	CurrentStep int32 `json:"currentStep,omitempty"`

	// Steps is how many steps the rollout has.
	// +optional
	Steps int32 `json:"steps,omitempty"`

	// CanaryWeight is the share of traffic routed to the canary, in percent.
	// +optional
	CanaryWeight int32 `json:"canaryWeight"`

	// StableRevision is the revision (ramp's hash of the pod template) the stable pods run.
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`

	// StablePodTemplateHash is the pod-template-hash of the target's ReplicaSet that serves
	// stable traffic; the DestinationRule's stable subset selects it.
	// +optional
	StablePodTemplateHash string `json:"stablePodTemplateHash,omitempty"`

	// CanaryRevision is the revision being rolled out; empty when none is.
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`

	// RolloutStartedAt is when the current (or last) rollout began.
	// +optional
	RolloutStartedAt *metav1.Time `json:"rolloutStartedAt,omitempty"`

	// Stage is the part of the current step or of promotion in progress (e.g. ScalingCanary,
	// Holding, RoutingToCanary, UpdatingStable, SwitchingStableSubset, RoutingToStable).
	// +optional
	Stage string `json:"stage,omitempty"`

	// StageStartedAt is when the current stage began, moved forward by the time the rollout
	// spent paused in it; pauses, analysis intervals and the progress deadline count from it.
	// +optional
	// Microsecond precision: second-precision timestamps would cut short sub-minute pauses.
	StageStartedAt *metav1.MicroTime `json:"stageStartedAt,omitempty"`

	// TargetReplicas is the target's replica count the rollout in progress was sized with:
	// its largest since the rollout started, lowered when ramp warns that it shrank
	// (event TargetShrunk).
	// +optional
	TargetReplicas int32 `json:"targetReplicas,omitempty"`

	// PausedAt is when the rollout was paused (spec.paused or the annotation ramp.dev/paused);
	// set while it is paused. The stage's clocks stop meanwhile: on resume, stageStartedAt
	// moves forward by the time spent paused, so a step's pause is served in full.
	// +optional
	PausedAt *metav1.MicroTime `json:"pausedAt,omitempty"`

	// FailedChecks counts failed analysis rounds of the current rollout.
	// +optional
	FailedChecks int32 `json:"failedChecks,omitempty"`

	// InconclusiveChecks counts inconclusive analysis rounds of the current rollout.
	// +optional
	InconclusiveChecks int32 `json:"inconclusiveChecks,omitempty"`

	// StepAnalysisPassed is true when the latest analysis round at the current step passed.
	// +optional
	StepAnalysisPassed bool `json:"stepAnalysisPassed,omitempty"`

	// LastAnalysisTime is when the last recorded analysis round started; the next one of the
	// step falls due one interval later.
	// +optional
	LastAnalysisTime *metav1.MicroTime `json:"lastAnalysisTime,omitempty"`

	// LastAnalysis holds the results of the last analysis round, one per metric.
	// +optional
	// +listType=map
	// +listMapKey=name
	LastAnalysis []MetricResult `json:"lastAnalysis,omitempty"`

	// HandledRequests records the plugin requests (annotation tokens) already acted on.
	// +optional
	HandledRequests HandledRequests `json:"handledRequests,omitempty"`

	// Target identifies the Deployment ramp adopted. A Deployment of the same name with another
	// UID was deleted and created again (Flux's force does that when Git changes an immutable
	// field such as spec.selector): its pods started on Git's template at once, without a
	// canary, and ramp routes to them.
	// +optional
	Target *TargetStatus `json:"target,omitempty"`

	// ReleasedWithoutCanary records the last revision that went live without a canary, and
	// why; it is cleared when the next rollout starts.
	// +optional
	ReleasedWithoutCanary *Release `json:"releasedWithoutCanary,omitempty"`

	// Gates records the gates of the point the rollout is at (spec.gates).
	// +optional
	Gates *GateStatus `json:"gates,omitempty"`
}

// TargetStatus identifies the adopted target Deployment.
type TargetStatus struct {
	// UID of the Deployment.
	UID types.UID `json:"uid"`
	// Selector is its spec.selector, as a label selector string (e.g. "app=web").
	// +optional
	Selector string `json:"selector,omitempty"`
}

// Release is a revision that went live without a canary.
type Release struct {
	// Revision is ramp's hash of the pod template that went live.
	Revision string `json:"revision"`
	// Reason says why it went live without a canary.
	Reason string `json:"reason"`
	// Time is when ramp noticed.
	Time metav1.Time `json:"time"`
}

// HandledRequests records, per verb, the token of the last request acted on, so a request is
// acted on once and acknowledged where `kubectl ramp` can see it.
type HandledRequests struct {
	// +optional
	Promote string `json:"promote,omitempty"`
	// +optional
	PromoteFull string `json:"promoteFull,omitempty"`
	// +optional
	Abort string `json:"abort,omitempty"`
	// +optional
	Retry string `json:"retry,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ro;rollouts,categories=ramp
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canaryWeight`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStep`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Rollout delivers a Git-owned Deployment progressively through Istio.
// +kubebuilder:validation:XValidation:rule="!has(self.metadata.name) || self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: it is the value of the ramp.dev/rollout label on every object ramp writes",fieldPath=".metadata"
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec"`
	Status RolloutStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RolloutList is a list of Rollouts.
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

// GetConditions returns the status conditions (fluxcd/pkg/runtime conditions.Getter).
func (in *Rollout) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions sets the status conditions (fluxcd/pkg/runtime conditions.Setter).
func (in *Rollout) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
