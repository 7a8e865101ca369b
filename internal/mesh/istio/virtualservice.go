package istio

import (
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// VirtualService renders the VirtualService ramp applies for ro with routing r: hosts
// (spec.service.hosts, or the Service), gateways when set, then the header route RouteCanary
// (when r.HeaderRoute and the strategy has a usable header match; it carries r.Fault), the
// sticky route RouteSticky (when r.Sticky and the strategy has sticky sessions) and the
// weighted route RoutePrimary, which always lists both subsets, mirrors r.Mirror percent to
// the canary and, with sticky sessions, sets the cookie on the canary's answers. A
// CanaryWeight outside 0..100 is clamped.
func VirtualService(ro *v1alpha1.Rollout, r Routing) *networkingv1.VirtualService {
	svc := &ro.Spec.Service
	host := ServiceHost(ro)
	w := max(0, min(100, r.CanaryWeight))

	hosts := []string{host}
	if len(svc.Hosts) > 0 {
		hosts = append([]string(nil), svc.Hosts...)
	}
	canary := destination(host, CanarySubset, svc.Port, 100)
	var http []*networking.HTTPRoute
	if r.HeaderRoute {
		if m := headerMatch(ro); m != nil {
			route := &networking.HTTPRoute{Name: RouteCanary, Match: []*networking.HTTPMatchRequest{m}}
			toCanaryAlone(route, canary, fault(r.Fault))
			routePolicy(route, svc)
			http = append(http, route)
		}
	}
	cookie := StickyCookie(ro)
	if cookie != "" && r.Sticky != "" {
		route := &networking.HTTPRoute{Name: RouteSticky, Match: []*networking.HTTPMatchRequest{stickyMatch(cookie, r.Sticky)}}
		toCanaryAlone(route, canary, nil)
		routePolicy(route, svc)
		http = append(http, route)
	}
	primary := &networking.HTTPRoute{
		Name: RoutePrimary,
		Route: []*networking.HTTPRouteDestination{
			destination(host, StableSubset, svc.Port, 100-w),
			destination(host, CanarySubset, svc.Port, w),
		},
	}
	setMirror(primary, canary.GetDestination(), r.Mirror)
	if cookie != "" {
		setStickyCookie(primary.Route[1], cookie, r.Sticky)
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

// headerMatch is the match of the header route: the strategy's header, or nil when it has
// none usable (see stringMatch).
func headerMatch(ro *v1alpha1.Rollout) *networking.HTTPMatchRequest {
	hm := HeaderMatch(ro)
	sm := stringMatch(hm)
	if sm == nil {
		return nil
	}
	return &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{hm.Name: sm}}
}

// toCanaryAlone makes route send everything to the canary destination (a copy of canary at
// weight 100) with fault f, and no mirror.
func toCanaryAlone(route *networking.HTTPRoute, canary *networking.HTTPRouteDestination, f *networking.HTTPFaultInjection) {
	d := proto.Clone(canary).(*networking.HTTPRouteDestination)
	d.Weight = 100
	route.Route = []*networking.HTTPRouteDestination{d}
	route.Fault = f
	route.Mirror, route.MirrorPercentage, route.Mirrors, route.MirrorPercent = nil, nil, nil, nil //nolint:staticcheck // clear the deprecated field too
}

// setMirror mirrors percent of route's requests to the canary (to), or removes a mirror to
// the canary when percent is 0. A mirror elsewhere is not ramp's and is left alone.
func setMirror(route *networking.HTTPRoute, to *networking.Destination, percent float64) {
	if percent > 0 {
		route.Mirror = proto.Clone(to).(*networking.Destination)
		route.MirrorPercentage = &networking.Percent{Value: percent}
		return
	}
	if m := route.GetMirror(); m != nil && proto.Equal(m, to) {
		route.Mirror, route.MirrorPercentage = nil, nil
	}
}

// setStickyCookie makes the canary's answers on d set the sticky cookie name=value, or, with
// value "", removes ramp's Set-Cookie (one for cookie name) and leaves any other header.
func setStickyCookie(d *networking.HTTPRouteDestination, name, value string) {
	if value != "" {
		if d.Headers == nil {
			d.Headers = &networking.Headers{}
		}
		if d.Headers.Response == nil {
			d.Headers.Response = &networking.Headers_HeaderOperations{}
		}
		if d.Headers.Response.Set == nil {
			d.Headers.Response.Set = map[string]string{}
		}
		d.Headers.Response.Set[SetCookieHeader] = name + "=" + value + "; Path=/; HttpOnly"
		return
	}
	resp := d.GetHeaders().GetResponse()
	if v, ok := resp.GetSet()[SetCookieHeader]; !ok || !strings.HasPrefix(v, name+"=") {
		return
	}
	delete(resp.Set, SetCookieHeader)
	if len(resp.Set) == 0 {
		resp.Set = nil
		if len(resp.Add) == 0 && len(resp.Remove) == 0 {
			d.Headers.Response = nil
			if d.Headers.Request == nil {
				d.Headers = nil
			}
		}
	}
}

// SetCookieHeader is the response header sticky sessions set on the canary's answers.
const SetCookieHeader = "Set-Cookie"

// stickyMatch matches requests whose Cookie header holds name=value.
func stickyMatch(name, value string) *networking.HTTPMatchRequest {
	re := `^(.*;\s*)?` + regexp.QuoteMeta(name) + "=" + regexp.QuoteMeta(value) + `(;.*)?$`
	return &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{
		"cookie": {MatchType: &networking.StringMatch_Regex{Regex: re}},
	}}
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
