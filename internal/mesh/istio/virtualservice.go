package istio

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// VirtualService renders the VirtualService ramp applies for ro with routing r: hosts
// (spec.service.hosts, or the Service), gateways when set, then the header route RouteCanary
// (when r.HeaderRoute and the strategy has a usable header match; it carries r.Fault) and the
// weighted route RoutePrimary, which always lists both subsets. A CanaryWeight outside 0..100
// is clamped.
func VirtualService(ro *v1alpha1.Rollout, r Routing) *unstructured.Unstructured {
	svc := &ro.Spec.Service
	host := ServiceHost(ro)

	w := int64(r.CanaryWeight)
	w = max(0, min(100, w))

	var hosts []any
	if len(svc.Hosts) > 0 {
		hosts = make([]any, len(svc.Hosts))
		for i, h := range svc.Hosts {
			hosts[i] = h
		}
	} else {
		hosts = []any{host}
	}
	spec := map[string]any{"hosts": hosts}
	if len(svc.Gateways) > 0 {
		gws := make([]any, len(svc.Gateways))
		for i, g := range svc.Gateways {
			gws[i] = g
		}
		spec["gateways"] = gws
	}

	http := make([]any, 0, 2)
	if r.HeaderRoute {
		if hm := HeaderMatch(ro); hm != nil {
			if sm, ok := stringMatch(hm); ok {
				route := map[string]any{
					"name": RouteCanary,
					"match": []any{
						map[string]any{"headers": map[string]any{hm.Name: sm}},
					},
					"route": []any{destination(host, CanarySubset, svc.Port, 100)},
				}
				if f := fault(r.Fault); f != nil {
					route["fault"] = f
				}
				routePolicy(route, svc)
				http = append(http, route)
			}
		}
	}
	primary := map[string]any{
		"name": RoutePrimary,
		"route": []any{
			destination(host, StableSubset, svc.Port, 100-w),
			destination(host, CanarySubset, svc.Port, w),
		},
	}
	routePolicy(primary, svc)
	http = append(http, primary)
	spec["http"] = http

	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": APIVersion,
		"kind":       KindVirtualService,
		"metadata":   objectMeta(ro),
		"spec":       spec,
	}}
}

// destination is an HTTPRouteDestination. The port is omitted when unset (0): Istio then
// uses the Service's only port.
func destination(host, subset string, port int32, weight int64) map[string]any {
	d := map[string]any{"host": host, "subset": subset}
	if port != 0 {
		d["port"] = map[string]any{"number": int64(port)}
	}
	return map[string]any{"destination": d, "weight": weight}
}

// routePolicy sets spec.service's retries and timeout on an HTTPRoute.
func routePolicy(route map[string]any, svc *v1alpha1.ServiceSpec) {
	if rt := svc.Retries; rt != nil {
		m := map[string]any{"attempts": int64(rt.Attempts)}
		if rt.PerTryTimeout != nil {
			m["perTryTimeout"] = protoDuration(rt.PerTryTimeout.Duration)
		}
		if rt.RetryOn != "" {
			m["retryOn"] = rt.RetryOn
		}
		route["retries"] = m
	}
	if svc.Timeout != nil {
		route["timeout"] = protoDuration(svc.Timeout.Duration)
	}
}

// fault is an HTTPFaultInjection, or nil when f injects nothing.
func fault(f *v1alpha1.FaultInjection) map[string]any {
	if f == nil || (f.Delay == nil && f.Abort == nil) {
		return nil
	}
	m := make(map[string]any, 2)
	if d := f.Delay; d != nil {
		m["delay"] = map[string]any{
			"percentage": map[string]any{"value": d.Percentage},
			"fixedDelay": protoDuration(d.FixedDelay.Duration),
		}
	}
	if a := f.Abort; a != nil {
		m["abort"] = map[string]any{
			"percentage": map[string]any{"value": a.Percentage},
			"httpStatus": int64(a.HTTPStatus),
		}
	}
	return m
}
