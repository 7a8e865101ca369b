package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds a metric's templateRef may name.
const (
	KindClusterMetricTemplate = "ClusterMetricTemplate"
	KindMetricTemplate        = "MetricTemplate"
)

// MetricTemplateRef names the template a metric takes its Prometheus and query from.
type MetricTemplateRef struct {
	// Kind: ClusterMetricTemplate (cluster-scoped, written by cluster admins) or MetricTemplate
	// (in the Rollout's namespace).
	// +kubebuilder:validation:Enum=ClusterMetricTemplate;MetricTemplate
	Kind string `json:"kind"`
	// Name of the template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// MetricTemplateQuery is what a template measures: a built-in metric, or a PromQL query
// template with the variables of a Rollout's custom metric. The Rollout's metric keeps its
// thresholds, minRequests, window and comparison.
type MetricTemplateQuery struct {
	// Builtin metric: error-rate or latency-p99, queried from this template's Prometheus.
	// +optional
	// +kubebuilder:validation:Enum=error-rate;latency-p99
	Builtin string `json:"builtin,omitempty"`

	// Query is a PromQL template, as a Rollout metric's query: it must return one sample.
	// Variables: {{ .Namespace }}, {{ .Name }}, {{ .Workload }}, {{ .CanaryWorkload }},
	// {{ .StableWorkload }}, {{ .Interval }}. Use {{ .Workload }} (or set stableQuery) so
	// Rollouts can compare the canary to stable.
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
}

// ClusterMetricTemplateSpec fixes a metric's Prometheus and query for the whole cluster.
// +kubebuilder:validation:XValidation:rule="has(self.builtin) != has(self.query)",message="set exactly one of builtin or query"
// +kubebuilder:validation:XValidation:rule="!has(self.stableQuery) || has(self.query)",message="stableQuery goes with query"
type ClusterMetricTemplateSpec struct {
	// Prometheus to query.
	Prometheus ClusterPrometheusSpec `json:"prometheus"`

	MetricTemplateQuery `json:",inline"`
}

// ClusterPrometheusSpec is the Prometheus of a ClusterMetricTemplate. Its address is the
// platform's choice, so it need not be in the manager's --analysis-allowed-endpoints; its
// Secret is platform configuration, in the manager's own namespace.
type ClusterPrometheusSpec struct {
	// Address of the Prometheus HTTP API, e.g. http://prometheus.istio-system:9090.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="address must be an http or https URL"
	Address string `json:"address"`

	// SecretRef names a Secret with credentials (the keys of spec.analysis.prometheus.secretRef)
	// in the manager's own namespace; ramp reads no other for a ClusterMetricTemplate.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// Timeout of one query. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="timeout must be between 1ms and 8760h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// SecretReference names a Secret in a namespace.
type SecretReference struct {
	// Namespace of the Secret: the manager's own.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// MetricTemplateSpec fixes a metric's Prometheus and query for the Rollouts of its namespace.
// ramp treats it like a Rollout: its address must be one the manager allows, and its Secret
// must be in its namespace and labelled ramp.dev/credentials=true.
// +kubebuilder:validation:XValidation:rule="has(self.builtin) != has(self.query)",message="set exactly one of builtin or query"
// +kubebuilder:validation:XValidation:rule="!has(self.stableQuery) || has(self.query)",message="stableQuery goes with query"
type MetricTemplateSpec struct {
	// Prometheus to query, as in a Rollout's spec.analysis.prometheus.
	Prometheus PrometheusSpec `json:"prometheus"`

	MetricTemplateQuery `json:",inline"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cmt,categories=ramp
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.prometheus.address`
// +kubebuilder:printcolumn:name="Builtin",type=string,JSONPath=`.spec.builtin`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterMetricTemplate is a metric the platform team defines once (Prometheus, credentials,
// query) and Rollouts of every namespace reference by name (templateRef). Only cluster admins
// should be allowed to write it: ramp contacts its address and reads its Secret on the
// platform's authority (docs/security.md).
type ClusterMetricTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ClusterMetricTemplateSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// ClusterMetricTemplateList is a list of ClusterMetricTemplates.
type ClusterMetricTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterMetricTemplate `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=mt,categories=ramp
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.prometheus.address`
// +kubebuilder:printcolumn:name="Builtin",type=string,JSONPath=`.spec.builtin`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// MetricTemplate is a metric (Prometheus, credentials, query) the Rollouts of its namespace
// reference by name (templateRef). It gives a Rollout nothing it could not name itself.
type MetricTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MetricTemplateSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// MetricTemplateList is a list of MetricTemplates.
type MetricTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetricTemplate `json:"items"`
}
