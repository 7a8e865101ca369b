package istio

import (
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// VirtualService renders the VirtualService ramp applies for ro with routing r: hosts
// (spec.service.hosts, or the Service), gateways when set, then the header route RouteCanary
// (when r.HeaderRoute and the strategy has a usable header match; it carries r.Fault) and the
// weighted route RoutePrimary, which always lists both subsets. A CanaryWeight outside 0..100
// is clamped.
func VirtualService(ro *v1alpha1.Rollout, r Routing) *networkingv1.VirtualService {
	svc := &ro.Spec.Service
	host := ServiceHost(ro)
	w := max(0, min(100, r.CanaryWeight))

	hosts := []string{host}
	if len(svc.Hosts) > 0 {
		hosts = append([]string(nil), svc.Hosts...)
	}
	var http []*networking.HTTPRoute
	if r.HeaderRoute {
		if hm := HeaderMatch(ro); hm != nil {
			if sm := stringMatch(hm); sm != nil {
				route := &networking.HTTPRoute{
					Name:  RouteCanary,
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{hm.Name: sm}}},
					Route: []*networking.HTTPRouteDestination{destination(host, CanarySubset, svc.Port, 100)},
					Fault: fault(r.Fault),
				}
				routePolicy(route, svc)
				http = append(http, route)
			}
		}
	}
	primary := &networking.HTTPRoute{
		Name: RoutePrimary,
		Route: []*networking.HTTPRouteDestination{
			destination(host, StableSubset, svc.Port, 100-w),
			destination(host, CanarySubset, svc.Port, w),
		},
	}
	routePolicy(primary, svc)
	http = append(http, primary)

	return &networkingv1.VirtualService{
		TypeMeta:   typeMeta(KindVirtualService),
		ObjectMeta: objectMeta(ro),
		Spec: networking.VirtualService{
			Hosts:    hosts,
			Gateways: append([]string(nil), svc.Gateways...), // nil when none
			Http:     http,
		},
	}
}

// destination is an HTTPRouteDestination. The port is omitted when unset (0): Istio then
// uses the Service's only port.
func destination(host, subset string, port, weight int32) *networking.HTTPRouteDestination {
	d := &networking.Destination{Host: host, Subset: subset}
	if port != 0 {
		d.Port = &networking.PortSelector{Number: uint32(port)}
	}
	return &networking.HTTPRouteDestination{Destination: d, Weight: weight}
}

// routePolicy sets spec.service's retries and timeout on an HTTPRoute.
func routePolicy(route *networking.HTTPRoute, svc *v1alpha1.ServiceSpec) {
	if rt := svc.Retries; rt != nil {
		route.Retries = &networking.HTTPRetry{Attempts: rt.Attempts, RetryOn: rt.RetryOn}
		if rt.PerTryTimeout != nil {
			route.Retries.PerTryTimeout = durationpb.New(rt.PerTryTimeout.Duration)
		}
	}
	if svc.Timeout != nil {
		route.Timeout = durationpb.New(svc.Timeout.Duration)
	}
}

// fault is an HTTPFaultInjection, or nil when f injects nothing.
func fault(f *v1alpha1.FaultInjection) *networking.HTTPFaultInjection {
	if f == nil || (f.Delay == nil && f.Abort == nil) {
		return nil
	}
	out := &networking.HTTPFaultInjection{}
	if d := f.Delay; d != nil {
		out.Delay = &networking.HTTPFaultInjection_Delay{
			Percentage:    &networking.Percent{Value: d.Percentage},
			HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(d.FixedDelay.Duration)},
		}
	}
	if a := f.Abort; a != nil {
		out.Abort = &networking.HTTPFaultInjection_Abort{
			Percentage: &networking.Percent{Value: a.Percentage},
			ErrorType:  &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: a.HTTPStatus},
		}
	}
	return out
}
