package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Points of a rollout at which gates are called.
const (
	// GateBeforeRollout: a new revision was detected; the canary is neither scaled nor given
	// traffic until the point's gates pass.
	GateBeforeRollout = "BeforeRollout"
	// GateEachStep: a step's weight is routed; the step does not end until the gates pass.
	GateEachStep = "EachStep"
	// GateBeforePromotion: the last step is done; promotion does not start until the gates
	// pass.
	GateBeforePromotion = "BeforePromotion"
	// GateAfterRollout: the rollout was promoted or rolled back; called once, its result only
	// reported.
	GateAfterRollout = "AfterRollout"
)

// What a failing gate does.
const (
	// GateHold keeps the rollout where it is and calls the gate again every interval.
	GateHold = "Hold"
	// GateRollBack rolls the rollout back (reason GateFailed).
	GateRollBack = "RollBack"
)

// Gate defaults.
const (
	DefaultGateTimeout  = 10 * time.Second
	DefaultGateRetries  = 2
	DefaultGateInterval = time.Minute
)

// Gate is an HTTP call at a named point of a rollout. ramp POSTs a JSON body (GateRequest)
// to url; a 2xx answer passes, anything else (or no answer after the retries) fails. The
// answer's body is never read into status, events or notifications: only its status code.
// url must be an endpoint the platform allows (manager flag --analysis-allowed-endpoints):
// a Rollout naming another is Stalled and nothing is contacted.
type Gate struct {
	// Name of the gate, unique among the Rollout's gates (a DNS label).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// At is the point of the rollout the gate is called at: BeforeRollout, EachStep,
	// BeforePromotion or AfterRollout.
	// +kubebuilder:validation:Enum=BeforeRollout;EachStep;BeforePromotion;AfterRollout
	At string `json:"at"`

	// URL ramp POSTs to: http or https, without credentials, query or fragment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https') && url(self).getHostname() != '' && url(self).getQuery().size() == 0 && !self.contains('#') && !self.contains('@')",message="url must be an http or https URL with a host and without credentials, query or fragment"
	URL string `json:"url"`

	// Timeout of one call. Defaults to 10s; at most 1m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('1m')",message="timeout must be between 1ms and 1m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retries after a failed call (no answer, or a 5xx or 429) before the gate fails, with
	// back-off. Defaults to 2.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	Retries *int32 `json:"retries,omitempty"`

	// OnFailure: Hold keeps the rollout where it is and calls the gate again every interval;
	// RollBack rolls the rollout back. Ignored at AfterRollout (reported only). Defaults to
	// Hold.
	// +optional
	// +kubebuilder:default=Hold
	// +kubebuilder:validation:Enum=Hold;RollBack
	OnFailure string `json:"onFailure,omitempty"`

	// Interval between calls of a holding gate. Defaults to 1m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="interval must be between 1s and 24h"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Metadata is sent as is in the body's metadata.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Metadata map[string]string `json:"metadata,omitempty"`
}

// TimeoutOrDefault is the timeout of one call.
func (g *Gate) TimeoutOrDefault() time.Duration {
	if g.Timeout != nil && g.Timeout.Duration > 0 {
		return g.Timeout.Duration
	}
	return DefaultGateTimeout
}

// RetriesOrDefault is how many times a failed call is retried.
func (g *Gate) RetriesOrDefault() int {
	if g.Retries != nil {
		return int(*g.Retries)
	}
	return DefaultGateRetries
}

// IntervalOrDefault is how often a holding gate is called.
func (g *Gate) IntervalOrDefault() time.Duration {
	if g.Interval != nil && g.Interval.Duration > 0 {
		return g.Interval.Duration
	}
	return DefaultGateInterval
}

// RollsBack reports whether a failure of the gate rolls the rollout back.
func (g *Gate) RollsBack() bool { return g.OnFailure == GateRollBack }

// GateRequest is the JSON body ramp POSTs to a gate.
type GateRequest struct {
	Rollout string `json:"rollout"`
	// Name is the Rollout's name again, under the key Flagger's webhook receivers (its load
	// tester, for one) read, so they work as ramp gates unchanged.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Gate is the gate's name, At its point.
	Gate string `json:"gate"`
	At   string `json:"at"`
	// Revisions: ramp's hashes of the pod templates.
	StableRevision string `json:"stableRevision"`
	CanaryRevision string `json:"canaryRevision"`
	// Step (1-based; 0 outside steps, and after a promotion), of Steps (0 after a promotion;
	// after a rollback, the step it failed at of the plan's steps), and the canary's weight in
	// percent.
	Step   int32  `json:"step"`
	Steps  int32  `json:"steps"`
	Weight int32  `json:"weight"`
	Phase  string `json:"phase"`
	// Metadata is the gate's spec.gates[].metadata.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// GateStatus records the gates of the point the rollout is at, so a restarted controller
// does not call again a gate that passed.
type GateStatus struct {
	// At is the point, Step the step (EachStep only) and Revision the revision it concerns.
	At string `json:"at"`
	// +optional
	Step int32 `json:"step,omitempty"`
	// +optional
	Revision string `json:"revision,omitempty"`
	// Passed lists the gates of the point that passed (at AfterRollout: that were called).
	// +optional
	// +listType=set
	Passed []string `json:"passed,omitempty"`
	// Held lists the gates of the point whose last call failed and that hold the rollout.
	// +optional
	// +listType=map
	// +listMapKey=name
	Held []HeldGate `json:"held,omitempty"`
}

// HeldGate is a holding gate's last failed call.
type HeldGate struct {
	Name string `json:"name"`
	// Result of the call: the HTTP status code, or the class of error (e.g. timeout); never
	// the answer's body.
	Result string `json:"result"`
	// At is when the call ended.
	At metav1.MicroTime `json:"at"`
}
