package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Built-in metrics, computed from Istio's standard telemetry for the canary.
const (
	// BuiltinErrorRate is the percentage (0-100) of the canary's requests answered with 5xx.
	BuiltinErrorRate = "error-rate"
	// BuiltinLatencyP99 is the canary's 99th percentile request duration in milliseconds.
	BuiltinLatencyP99 = "latency-p99"
)

// AnalysisSpec says how the canary is judged between steps.
// +kubebuilder:validation:XValidation:rule="has(self.prometheus) || self.metrics.all(m, has(m.templateRef))",message="prometheus is required unless every metric has a templateRef"
type AnalysisSpec struct {
	// Interval between analysis rounds; a step holds at least one interval. Defaults to 1m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1s') && duration(self) <= duration('8760h')",message="interval must be between 1s and 8760h"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// FailureLimit is how many failed rounds roll the rollout back. Defaults to 2.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureLimit *int32 `json:"failureLimit,omitempty"`

	// InconclusiveLimit is how many inconclusive rounds (no data, too little traffic, provider
	// error) roll the rollout back. Inconclusive never promotes. Defaults to 5.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	InconclusiveLimit *int32 `json:"inconclusiveLimit,omitempty"`

	// Prometheus to query for the metrics without a templateRef (a metric with one queries
	// its template's). Required unless every metric has a templateRef.
	// +optional
	Prometheus PrometheusSpec `json:"prometheus,omitzero"`

	// Metrics checked each round; all must pass.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Metrics []Metric `json:"metrics"`
}

// PrometheusSpec is the Prometheus server ramp queries.
type PrometheusSpec struct {
	// Address of the Prometheus HTTP API, e.g. http://prometheus.istio-system:9090.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="address must be an http or https URL"
	Address string `json:"address"`

	// SecretRef names a Secret with credentials: keys `token` (bearer), or `username` and
	// `password` (basic auth), and optionally `ca.crt`, `tls.crt`, `tls.key`.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`

	// Timeout of one query. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="timeout must be between 1ms and 8760h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// LocalObjectReference names an object in the Rollout's namespace.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// An object name (DNS-1123 subdomain): anything else ("a/../b") names no object ramp
	// could read, and would only make every pass fail.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Metric is one check: a built-in Istio metric, a custom PromQL query, or a metric template
// (templateRef), judged against a threshold range, against the stable version, or both.
// +kubebuilder:validation:XValidation:rule="[has(self.builtin), has(self.query), has(self.templateRef)].filter(x, x).size() == 1",message="set exactly one of builtin, query or templateRef"
// +kubebuilder:validation:XValidation:rule="!has(self.stableQuery) || !has(self.templateRef)",message="stableQuery comes from the template with templateRef: set it there"
// +kubebuilder:validation:XValidation:rule="has(self.thresholdRange) || has(self.compareToStable)",message="set thresholdRange, compareToStable or both"
// +kubebuilder:validation:XValidation:rule="!has(self.compareToStable) || has(self.builtin) || has(self.stableQuery) || !has(self.query) || self.query.contains('{{ .Workload }}')",message="compareToStable with a custom query needs stableQuery or the {{ .Workload }} variable"
type Metric struct {
	// Name of the check, unique in the list.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Builtin metric: error-rate (percent of 5xx responses) or latency-p99 (milliseconds).
	// +optional
	// +kubebuilder:validation:Enum=error-rate;latency-p99
	Builtin string `json:"builtin,omitempty"`

	// Query is a PromQL template for a custom metric; it must return one sample. Variables:
	// {{ .Namespace }}, {{ .Name }} (the Rollout), {{ .Workload }} (the workload judged:
	// the canary, or the target when compared), {{ .CanaryWorkload }}, {{ .StableWorkload }},
	// {{ .Interval }} (a PromQL range such as 1m). Values are escaped for PromQL strings.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query,omitempty"`

	// StableQuery is the query for the stable side of compareToStable, when {{ .Workload }}
	// in query does not express it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	StableQuery string `json:"stableQuery,omitempty"`

	// TemplateRef takes the metric's Prometheus (address, credentials, timeout) and its
	// builtin or query from a ClusterMetricTemplate or a MetricTemplate of the Rollout's
	// namespace; thresholds, comparison, minRequests and window stay the metric's own.
	// +optional
	TemplateRef *MetricTemplateRef `json:"templateRef,omitempty"`

	// Window of the range in the query (rate over it). Defaults to the analysis interval.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1s') && duration(self) <= duration('8760h')",message="window must be between 1s and 8760h"
	Window *metav1.Duration `json:"window,omitempty"`

	// ThresholdRange the value must stay within.
	// +optional
	ThresholdRange *ThresholdRange `json:"thresholdRange,omitempty"`

	// CompareToStable passes when the canary is not worse than stable by more than a tolerance.
	// +optional
	CompareToStable *Comparison `json:"compareToStable,omitempty"`

	// MinRequests the canary must have served in the window for a built-in metric to count;
	// below it the round is inconclusive. Defaults to 10.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinRequests *int32 `json:"minRequests,omitempty"`
}

// ThresholdRange bounds a metric value; at least one bound is set.
// +kubebuilder:validation:XValidation:rule="has(self.min) || has(self.max)",message="set min, max or both"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must not exceed max"
type ThresholdRange struct {
	// +optional
	Min *float64 `json:"min,omitempty"`
	// +optional
	Max *float64 `json:"max,omitempty"`
}

// Comparison of canary against stable.
type Comparison struct {
	// Tolerance the canary may be worse by: a percentage of the stable value (Relative) or
	// an amount in the metric's unit (Absolute).
	// +kubebuilder:validation:Minimum=0
	Tolerance float64 `json:"tolerance"`
	// Mode of the tolerance. Defaults to Relative.
	// +optional
	// +kubebuilder:default=Relative
	// +kubebuilder:validation:Enum=Relative;Absolute
	Mode string `json:"mode,omitempty"`
	// HigherIsBetter for metrics such as success rate; by default lower is better.
	// +optional
	HigherIsBetter bool `json:"higherIsBetter,omitempty"`
}

// Verdicts of an analysis check.
const (
	VerdictPassed       = "Passed"
	VerdictFailed       = "Failed"
	VerdictInconclusive = "Inconclusive"
)

// MetricResult is the outcome of one metric in one analysis round.
type MetricResult struct {
	// Name of the metric.
	Name string `json:"name"`
	// Verdict: Passed, Failed or Inconclusive.
	Verdict string `json:"verdict"`
	// Value measured on the canary, formatted; empty when there was none.
	// +optional
	Value string `json:"value,omitempty"`
	// StableValue measured on stable for a comparison.
	// +optional
	StableValue string `json:"stableValue,omitempty"`
	// Threshold the value was judged against, human readable (e.g. "<= 1").
	// +optional
	Threshold string `json:"threshold,omitempty"`
	// Message explains an inconclusive or failed verdict.
	// +optional
	Message string `json:"message,omitempty"`
	// Time of the measurement.
	Time metav1.Time `json:"time"`
}
