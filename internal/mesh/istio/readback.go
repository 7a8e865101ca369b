package istio

import (
	"encoding/json"
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// ObservedRouting reads ramp's routing back from a live VirtualService: the canary weight of
// RoutePrimary, whether RouteCanary is present, and its fault. It fails when vs does not have
// the shape VirtualService renders — spec.http is [RouteCanary?, RoutePrimary], RoutePrimary
// with no match and no fault, routing to the stable then canary subsets with weights 0..100
// summing to 100, RouteCanary with a header match and the canary subset alone, its fault (if
// any) a fixed delay and an HTTP abort — so callers can tell that someone else changed the
// routing. obj is Istio's VirtualService, or one read as unstructured (a dynamic client, an
// unstructured watch), which must then be a networking.istio.io VirtualService.
func ObservedRouting(obj runtime.Object) (Routing, error) {
	vs, err := virtualService(obj)
	if err != nil {
		return Routing{}, err
	}
	http := vs.Spec.GetHttp()
	if len(http) == 0 || len(http) > 2 {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: want http routes [%s, %s] or [%s], got %d",
			vs.Name, RouteCanary, RoutePrimary, RoutePrimary, len(http))
	}
	var r Routing
	if len(http) == 2 {
		if http[0].GetName() != RouteCanary {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: first of two http routes is not %s", vs.Name, RouteCanary)
		}
		f, err := observeHeaderRoute(http[0])
		if err != nil {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.Name, RouteCanary, err)
		}
		r.HeaderRoute, r.Fault = true, f
	}
	pr := http[len(http)-1]
	if pr.GetName() != RoutePrimary {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: last http route is not %s", vs.Name, RoutePrimary)
	}
	w, err := observePrimaryRoute(pr)
	if err != nil {
		return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", vs.Name, RoutePrimary, err)
	}
	r.CanaryWeight = w
	return r, nil
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

func observePrimaryRoute(route *networking.HTTPRoute) (int32, error) {
	if len(route.GetMatch()) > 0 {
		return 0, fmt.Errorf("has a match")
	}
	if route.GetFault() != nil {
		return 0, fmt.Errorf("has a fault")
	}
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
