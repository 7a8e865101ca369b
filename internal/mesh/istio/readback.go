package istio

import (
	"encoding/json"
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// ObservedRouting reads ramp's routing back from a live VirtualService: the canary weight of
// RoutePrimary, its mirror to the canary, whether RouteCanary is present and its fault, and
// the sticky cookie's value. It fails when vs does not have the shape VirtualService renders
// — spec.http is [RouteCanary?, RouteSticky?, RoutePrimary], RoutePrimary with no match and
// no fault, routing to the stable then canary subsets with weights 0..100 summing to 100 and
// mirroring (if at all) to the canary, RouteCanary with a header match and the canary subset
// alone, its fault (if any) a fixed delay and an HTTP abort, RouteSticky with a cookie match
// and the canary subset alone — so callers can tell that someone else changed the routing.
// obj is Istio's VirtualService, or one read as unstructured (a dynamic client, an
// unstructured watch), which must then be a networking.istio.io VirtualService.
func ObservedRouting(obj runtime.Object) (Routing, error) {
	vs, err := virtualService(obj)
	if err != nil {
		return Routing{}, err
	}
	http := vs.Spec.GetHttp()
	if len(http) == 0 || len(http) > 3 {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: want http routes [%s?, %s?, %s], got %d",
			vs.Name, RouteCanary, RouteSticky, RoutePrimary, len(http))
	}
	var r Routing
	rest := http[:len(http)-1]
	if len(rest) > 0 && rest[0].GetName() == RouteCanary {
		f, err := observeHeaderRoute(rest[0])
		if err != nil {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.Name, RouteCanary, err)
		}
		r.HeaderRoute, r.Fault = true, f
		rest = rest[1:]
	}
	sticky := false
	if len(rest) > 0 && rest[0].GetName() == RouteSticky {
		if err := observeStickyRoute(rest[0]); err != nil {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.Name, RouteSticky, err)
		}
		sticky = true
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %q is not ramp's (want [%s?, %s?, %s])", vs.Name, rest[0].GetName(), RouteCanary, RouteSticky, RoutePrimary)
	}
	pr := http[len(http)-1]
	if pr.GetName() != RoutePrimary {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: last http route is not %s", vs.Name, RoutePrimary)
	}
	if len(pr.GetMatch()) > 0 {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: has a match", vs.Name, RoutePrimary)
	}
	if pr.GetFault() != nil {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: has a fault", vs.Name, RoutePrimary)
	}
	w, err := observeWeights(pr)
	if err != nil {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.Name, RoutePrimary, err)
	}
	r.CanaryWeight = w
	r.Mirror = observeMirror(pr, pr.GetRoute()[1].GetDestination())
	if sticky {
		r.Sticky = observeCookie(pr.GetRoute()[1])
		if r.Sticky == "" {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: the sticky route is there but the canary's answers set no cookie", vs.Name, RoutePrimary)
		}
	}
	return r, nil
}

// observeMirror is the percentage of route's requests mirrored to the destination to (0 when
// it mirrors nothing there). A mirror without mirrorPercentage mirrors everything.
func observeMirror(route *networking.HTTPRoute, to *networking.Destination) float64 {
	m := route.GetMirror()
	if m == nil || m.GetHost() != to.GetHost() || m.GetSubset() != to.GetSubset() {
		return 0
	}
	if route.GetMirrorPercentage() == nil {
		return 100
	}
	return route.GetMirrorPercentage().GetValue()
}

// observeCookie is the value of the cookie ramp's Set-Cookie on d sets ("" when none).
func observeCookie(d *networking.HTTPRouteDestination) string {
	v := d.GetHeaders().GetResponse().GetSet()[SetCookieHeader]
	_, rest, ok := strings.Cut(v, "=")
	if !ok {
		return ""
	}
	value, _, _ := strings.Cut(rest, ";")
	return value
}

func observeStickyRoute(route *networking.HTTPRoute) error {
	if len(route.GetMatch()) != 1 || route.GetMatch()[0].GetHeaders()["cookie"] == nil {
		return fmt.Errorf("want one match on the cookie header")
	}
	if len(route.GetRoute()) != 1 {
		return fmt.Errorf("want the %s subset alone, got %d destinations", CanarySubset, len(route.GetRoute()))
	}
	_, err := observeDestination(route.GetRoute()[0], CanarySubset)
	return err
}

// virtualService is obj as Istio's VirtualService.
func virtualService(obj runtime.Object) (*networkingv1.VirtualService, error) {
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		if o != nil {
			return o, nil
		}
	case *unstructured.Unstructured:
		if o == nil || o.Object == nil {
			break
		}
		if gvk := o.GroupVersionKind(); gvk.Group != networkingv1.GroupName || gvk.Kind != KindVirtualService {
			return nil, fmt.Errorf("istio: %s is not a VirtualService", gvk)
		}
		b, err := o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		vs := &networkingv1.VirtualService{}
		if err := json.Unmarshal(b, vs); err != nil {
			return nil, fmt.Errorf("istio: VirtualService %s: %w", o.GetName(), err)
		}
		return vs, nil
	}
	return nil, fmt.Errorf("istio: no VirtualService")
}

func observeHeaderRoute(route *networking.HTTPRoute) (*v1alpha1.FaultInjection, error) {
	if len(route.GetMatch()) != 1 {
		return nil, fmt.Errorf("want one match, got %d", len(route.GetMatch()))
	}
	if h := route.GetMatch()[0].GetHeaders(); len(h) != 1 {
		return nil, fmt.Errorf("want a match on one header, got %d headers", len(h))
	}
	if len(route.GetRoute()) != 1 {
		return nil, fmt.Errorf("want the %s subset alone, got %d destinations", CanarySubset, len(route.GetRoute()))
	}
	if _, err := observeDestination(route.GetRoute()[0], CanarySubset); err != nil {
		return nil, err
	}
	return observeFault(route.GetFault())
}

// observeWeights reads the canary weight of a route to the stable then the canary subset.
func observeWeights(route *networking.HTTPRoute) (int32, error) {
	if len(route.GetRoute()) != 2 {
		return 0, fmt.Errorf("want destinations [%s, %s], got %d", StableSubset, CanarySubset, len(route.GetRoute()))
	}
	sw, err := observeDestination(route.GetRoute()[0], StableSubset)
	if err != nil {
		return 0, err
	}
	cw, err := observeDestination(route.GetRoute()[1], CanarySubset)
	if err != nil {
		return 0, err
	}
	if sw+cw != 100 {
		return 0, fmt.Errorf("weights %d (%s) and %d (%s) do not sum to 100", sw, StableSubset, cw, CanarySubset)
	}
	return cw, nil
}

// observeDestination checks an HTTPRouteDestination goes to subset and returns its weight.
func observeDestination(d *networking.HTTPRouteDestination, subset string) (int32, error) {
	if d.GetDestination() == nil {
		return 0, fmt.Errorf("route has no destination")
	}
	if s := d.GetDestination().GetSubset(); s != subset {
		return 0, fmt.Errorf("want subset %q, got %q", subset, s)
	}
	if w := d.GetWeight(); w < 0 || w > 100 {
		return 0, fmt.Errorf("subset %s: weight %d is not in 0..100", subset, w)
	}
	return d.GetWeight(), nil
}

// observeFault reads back a fault VirtualService renders: a fixed delay and an HTTP abort,
// each with a percentage. nil injects nothing.
func observeFault(f *networking.HTTPFaultInjection) (*v1alpha1.FaultInjection, error) {
	if f == nil || (f.GetDelay() == nil && f.GetAbort() == nil) {
		return nil, nil
	}
	var out v1alpha1.FaultInjection
	if d := f.GetDelay(); d != nil {
		if d.GetPercent() != 0 {
			return nil, fmt.Errorf("fault.delay has percent")
		}
		if d.GetPercentage() == nil {
			return nil, fmt.Errorf("fault.delay: no percentage")
		}
		if d.GetFixedDelay() == nil {
			return nil, fmt.Errorf("fault.delay: no fixedDelay")
		}
		if err := d.GetFixedDelay().CheckValid(); err != nil {
			return nil, fmt.Errorf("fault.delay.fixedDelay: %w", err)
		}
		out.Delay = &v1alpha1.FaultDelay{
			Percentage: d.GetPercentage().GetValue(),
			FixedDelay: metav1.Duration{Duration: d.GetFixedDelay().AsDuration()},
		}
	}
	if a := f.GetAbort(); a != nil {
		if a.GetPercentage() == nil {
			return nil, fmt.Errorf("fault.abort: no percentage")
		}
		st, ok := a.GetErrorType().(*networking.HTTPFaultInjection_Abort_HttpStatus)
		if !ok {
			return nil, fmt.Errorf("fault.abort: no httpStatus")
		}
		out.Abort = &v1alpha1.FaultAbort{Percentage: a.GetPercentage().GetValue(), HTTPStatus: st.HttpStatus}
	}
	return &out, nil
}

// ObservedStableSubset reads the pod-template-hash the stable subset of a live
// DestinationRule selects; "" when it has no such subset.
func ObservedStableSubset(dr *networkingv1.DestinationRule) string {
	if dr == nil {
		return ""
	}
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == StableSubset {
			return s.GetLabels()[PodTemplateHashLabel]
		}
	}
	return ""
}
