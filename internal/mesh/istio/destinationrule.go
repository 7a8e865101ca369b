package istio

import (
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
func DestinationRule(ro *v1alpha1.Rollout, stablePodTemplateHash string) (*unstructured.Unstructured, error) {
	if stablePodTemplateHash == "" {
		return nil, ErrNoStableHash
	}
	spec := map[string]any{
		"host": ServiceHost(ro),
		"subsets": []any{
			map[string]any{
				"name":   StableSubset,
				"labels": map[string]any{PodTemplateHashLabel: stablePodTemplateHash},
			},
			map[string]any{
				"name":   CanarySubset,
				"labels": map[string]any{TrackLabel: TrackCanary},
			},
		},
	}
	if tp := trafficPolicy(ro.Spec.Service.TrafficPolicy); tp != nil {
		spec["trafficPolicy"] = map[string]any(tp)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": APIVersion,
		"kind":       KindDestinationRule,
		"metadata":   objectMeta(ro),
		"spec":       spec,
	}}, nil
}

// obj builds a map of the fields that are set; it is nil when none is, so empty objects are
// never rendered.
type obj map[string]any

func (o *obj) set(k string, v any) {
	if *o == nil {
		*o = make(obj, 4)
	}
	(*o)[k] = v
}

func (o *obj) setInt32(k string, v *int32) {
	if v != nil {
		o.set(k, int64(*v))
	}
}

func (o *obj) setDuration(k string, v *metav1.Duration) {
	if v != nil {
		o.set(k, protoDuration(v.Duration))
	}
}

func (o *obj) setString(k, v string) {
	if v != "" {
		o.set(k, v)
	}
}

func (o *obj) setObj(k string, v obj) {
	if v != nil {
		o.set(k, map[string]any(v))
	}
}

// trafficPolicy is a DestinationRule TrafficPolicy, nil when tp sets nothing.
func trafficPolicy(tp *v1alpha1.TrafficPolicy) obj {
	if tp == nil {
		return nil
	}
	var out obj
	if cp := tp.ConnectionPool; cp != nil {
		var pool obj
		if t := cp.TCP; t != nil {
			var m obj
			m.setInt32("maxConnections", t.MaxConnections)
			m.setDuration("connectTimeout", t.ConnectTimeout)
			pool.setObj("tcp", m)
		}
		if h := cp.HTTP; h != nil {
			var m obj
			m.setInt32("http1MaxPendingRequests", h.HTTP1MaxPendingRequests)
			m.setInt32("http2MaxRequests", h.HTTP2MaxRequests)
			m.setInt32("maxRequestsPerConnection", h.MaxRequestsPerConnection)
			m.setInt32("maxRetries", h.MaxRetries)
			m.setDuration("idleTimeout", h.IdleTimeout)
			pool.setObj("http", m)
		}
		out.setObj("connectionPool", pool)
	}
	if od := tp.OutlierDetection; od != nil {
		var m obj
		m.setInt32("consecutive5xxErrors", od.Consecutive5xxErrors)
		m.setDuration("interval", od.Interval)
		m.setDuration("baseEjectionTime", od.BaseEjectionTime)
		m.setInt32("maxEjectionPercent", od.MaxEjectionPercent)
		out.setObj("outlierDetection", m)
	}
	if t := tp.TLS; t != nil {
		var m obj
		m.setString("mode", t.Mode)
		m.setString("sni", t.SNI)
		m.setString("credentialName", t.CredentialName)
		out.setObj("tls", m)
	}
	return out
}
