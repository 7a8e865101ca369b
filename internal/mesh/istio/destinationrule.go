package istio

import (
	"errors"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// ErrNoStableHash is returned by DestinationRule when the stable pod-template-hash is not
// known yet: a stable subset without it would select nothing (or, without labels, every pod,
// canary included), so callers must not apply a DestinationRule until they know the hash.
var ErrNoStableHash = errors.New("istio: no stable pod-template-hash to render the DestinationRule's stable subset")

// DestinationRule renders the DestinationRule ramp applies for ro: host ServiceHost(ro), the
// traffic policy of spec.service.trafficPolicy (omitted when nil or empty), and the subsets
// StableSubset (pod-template-hash: stablePodTemplateHash) and CanarySubset
// (TrackLabel: TrackCanary). It fails with ErrNoStableHash when stablePodTemplateHash is empty.
func DestinationRule(ro *v1alpha1.Rollout, stablePodTemplateHash string) (*networkingv1.DestinationRule, error) {
	if stablePodTemplateHash == "" {
		return nil, ErrNoStableHash
	}
	return &networkingv1.DestinationRule{
		TypeMeta:   typeMeta(KindDestinationRule),
		ObjectMeta: objectMeta(ro),
		Spec: networking.DestinationRule{
			Host: ServiceHost(ro),
			Subsets: []*networking.Subset{
				{Name: StableSubset, Labels: map[string]string{PodTemplateHashLabel: stablePodTemplateHash}},
				{Name: CanarySubset, Labels: map[string]string{TrackLabel: TrackCanary}},
			},
			TrafficPolicy: trafficPolicy(ro.Spec.Service.TrafficPolicy),
		},
	}, nil
}

// A part of the traffic policy is rendered when the Rollout sets any of its fields, even to
// zero: Istio treats a present but empty message (outlierDetection: {}) differently from an
// absent one. setInt32 and setDuration report whether they set anything.

func setInt32(dst *int32, v *int32) bool {
	if v != nil {
		*dst = *v
	}
	return v != nil
}

func setDuration(dst **durationpb.Duration, v *metav1.Duration) bool {
	if v != nil {
		*dst = durationpb.New(v.Duration)
	}
	return v != nil
}

// trafficPolicy is a DestinationRule TrafficPolicy, nil when tp sets nothing.
func trafficPolicy(tp *v1alpha1.TrafficPolicy) *networking.TrafficPolicy {
	if tp == nil {
		return nil
	}
	out := &networking.TrafficPolicy{}
	set := false
	if cp := tp.ConnectionPool; cp != nil {
		pool := &networking.ConnectionPoolSettings{}
		if t := cp.TCP; t != nil {
			m := &networking.ConnectionPoolSettings_TCPSettings{}
			s := setInt32(&m.MaxConnections, t.MaxConnections)
			s = setDuration(&m.ConnectTimeout, t.ConnectTimeout) || s
			if s {
				pool.Tcp = m
			}
		}
		if h := cp.HTTP; h != nil {
			m := &networking.ConnectionPoolSettings_HTTPSettings{}
			s := setInt32(&m.Http1MaxPendingRequests, h.HTTP1MaxPendingRequests)
			s = setInt32(&m.Http2MaxRequests, h.HTTP2MaxRequests) || s
			s = setInt32(&m.MaxRequestsPerConnection, h.MaxRequestsPerConnection) || s
			s = setInt32(&m.MaxRetries, h.MaxRetries) || s
			s = setDuration(&m.IdleTimeout, h.IdleTimeout) || s
			if s {
				pool.Http = m
			}
		}
		if pool.Tcp != nil || pool.Http != nil {
			out.ConnectionPool, set = pool, true
		}
	}
	if od := tp.OutlierDetection; od != nil {
		m := &networking.OutlierDetection{}
		s := false
		if v := od.Consecutive5xxErrors; v != nil {
			m.Consecutive_5XxErrors, s = wrapperspb.UInt32(uint32(*v)), true
		}
		s = setDuration(&m.Interval, od.Interval) || s
		s = setDuration(&m.BaseEjectionTime, od.BaseEjectionTime) || s
		s = setInt32(&m.MaxEjectionPercent, od.MaxEjectionPercent) || s
		if s {
			out.OutlierDetection, set = m, true
		}
	}
	if t := tp.TLS; t != nil && (t.Mode != "" || t.SNI != "" || t.CredentialName != "") {
		// Admission allows only the enum's names, so the lookup cannot miss.
		mode := networking.ClientTLSSettings_TLSmode(networking.ClientTLSSettings_TLSmode_value[t.Mode])
		out.Tls, set = &networking.ClientTLSSettings{Mode: mode, Sni: t.SNI, CredentialName: t.CredentialName}, true
	}
	if !set {
		return nil
	}
	return out
}

// ReleasedFromAnnotation marks a DestinationRule ramp left behind when its Rollout was
// deleted, naming that Rollout: a Rollout of that name adopts it again.
const ReleasedFromAnnotation = "ramp.dev/released-from"

// UsesSubsets reports whether vs routes to ramp's stable or canary subset of ro's Service in
// any of its HTTP routes: deleting ramp's DestinationRule would then fail those requests.
func UsesSubsets(ro *v1alpha1.Rollout, vs *networkingv1.VirtualService) bool {
	for _, route := range vs.Spec.Http {
		for _, d := range route.GetRoute() {
			dest := d.GetDestination()
			if (dest.GetSubset() == StableSubset || dest.GetSubset() == CanarySubset) && sameService(dest.GetHost(), ServiceHost(ro), ro.Namespace) {
				return true
			}
		}
		if m := route.GetMirror(); m != nil && (m.GetSubset() == StableSubset || m.GetSubset() == CanarySubset) && sameService(m.GetHost(), ServiceHost(ro), ro.Namespace) {
			return true
		}
	}
	return false
}

// ReleasedDestinationRule is the DestinationRule ramp leaves for a VirtualService that still
// routes to its subsets after the Rollout is gone: the same host and traffic policy, both
// subsets selecting every pod of the Service (a pod-template-hash would select nothing after
// the next release), no owner (so it outlives the Rollout) and no ramp labels, and
// ReleasedFromAnnotation naming the Rollout.
func ReleasedDestinationRule(ro *v1alpha1.Rollout) *networkingv1.DestinationRule {
	return &networkingv1.DestinationRule{
		TypeMeta: typeMeta(KindDestinationRule),
		ObjectMeta: metav1.ObjectMeta{
			Name:        ro.Name,
			Namespace:   ro.Namespace,
			Annotations: map[string]string{ReleasedFromAnnotation: ro.Name},
		},
		Spec: networking.DestinationRule{
			Host:          ServiceHost(ro),
			Subsets:       []*networking.Subset{{Name: StableSubset}, {Name: CanarySubset}},
			TrafficPolicy: trafficPolicy(ro.Spec.Service.TrafficPolicy),
		},
	}
}
