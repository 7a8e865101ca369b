package istio

import (
	"encoding/json"
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metaac "istio.io/client-go/pkg/applyconfiguration/meta/v1"
	networkingac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ApplyPatch is the body of a server-side apply of a rendered VirtualService or
// DestinationRule: Istio's apply configuration of it, which holds the fields ramp sets and
// nothing else (the typed object would also send a null creationTimestamp and an empty
// status). The spec is in Istio's own JSON (protobuf JSON: durations as "1.500s", zero values
// omitted), as istiod reads it.
func ApplyPatch(obj runtime.Object) ([]byte, error) {
	var ac any
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		a := networkingac.VirtualService(o.Name, o.Namespace)
		applyMeta(a.ObjectMetaApplyConfiguration, &o.ObjectMeta)
		a.Spec = &o.Spec
		ac = a
	case *networkingv1.DestinationRule:
		a := networkingac.DestinationRule(o.Name, o.Namespace)
		applyMeta(a.ObjectMetaApplyConfiguration, &o.ObjectMeta)
		a.Spec = &o.Spec
		ac = a
	default:
		return nil, fmt.Errorf("istio: no apply configuration for %T", obj)
	}
	return json.Marshal(ac)
}

// ReferencedApplyPatch is the body of the server-side apply ramp makes to a VirtualService it
// references (see EditVirtualService): spec.http alone, the only field ramp owns there, with
// the resourceVersion ramp read, so the API server refuses it (a conflict) when someone wrote
// the VirtualService since. spec.http is an atomic list in Istio's CRD: the apply sets all of
// it, which is why it must be based on the latest version.
func ReferencedApplyPatch(vs *networkingv1.VirtualService) ([]byte, error) {
	a := networkingac.VirtualService(vs.Name, vs.Namespace).WithResourceVersion(vs.ResourceVersion)
	a.Spec = &networking.VirtualService{Http: vs.Spec.Http}
	return json.Marshal(a)
}

// applyMeta copies the metadata ramp renders (labels, annotations, owner references, and a
// UID the apply must match) into ac.
func applyMeta(ac *metaac.ObjectMetaApplyConfiguration, m *metav1.ObjectMeta) {
	if len(m.Labels) > 0 {
		ac.Labels = m.Labels
	}
	if len(m.Annotations) > 0 {
		ac.Annotations = m.Annotations
	}
	if m.UID != "" {
		ac.UID = &m.UID
	}
	for _, ref := range m.OwnerReferences {
		r := metaac.OwnerReference().WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).WithName(ref.Name).WithUID(ref.UID)
		r.Controller, r.BlockOwnerDeletion = ref.Controller, ref.BlockOwnerDeletion
		ac.OwnerReferences = append(ac.OwnerReferences, *r)
	}
}
