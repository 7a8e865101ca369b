// Package v1alpha1 holds the ramp.dev/v1alpha1 API: the Rollout custom resource.
// +kubebuilder:object:generate=true
// +groupName=ramp.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Durations: every duration field has a CEL rule of the form
//
//	self.matches(GUARD) && duration(self) >= MIN && duration(self) <= duration('8760h')
//
// whose message shows the value and the range. GUARD bounds the digits of each component
// (h: 5, m: 7, s: 9, ms: 12; MaxLength 64) so that duration() cannot overflow, which would
// fail with a bare "type conversion error"; any string it rejects is above 8760h anyway.
// Durations ramp copies into Istio objects must also be whole milliseconds, as Istio requires.

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "ramp.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &Rollout{}, &RolloutList{},
		&ClusterMetricTemplate{}, &ClusterMetricTemplateList{}, &MetricTemplate{}, &MetricTemplateList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
