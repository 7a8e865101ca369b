package istio

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// A referenced VirtualService (spec.service.virtualServiceRef) is Git's, not ramp's. ramp
// changes, in the routes the Rollout names and nowhere else:
//
//   - the weights of their stable and canary destinations;
//   - their mirror to the canary (mirror and mirrorPercentage) during a mirror step;
//   - with sticky sessions, the Set-Cookie header of the canary destination's answers;
//
// and it keeps its own routes, placed right before the first named route:
//
//	ramp-<rollout>-header-<route>   the named route for requests with the header match,
//	                                to the canary alone (with the step's fault)
//	ramp-<rollout>-sticky-<route>   the named route for requests with the sticky cookie,
//	                                to the canary alone
//
// Each is a copy of its named route (rewrites, timeouts, retries, headers as Git wrote them)
// whose matches also require the header or the cookie, so it catches only what the named
// route would have caught. Every other route and field stays as Git wrote it.
//
// Istio's CRD declares spec.http an atomic list (no x-kubernetes-list-type), so server-side
// apply cannot share it route by route: whoever applies spec.http applies all of it. ramp
// therefore reads the VirtualService, edits this copy, and applies spec.http alone under its
// field manager with the resourceVersion it read (optimistic locking: a write in between makes
// the apply fail with a conflict and the next pass edits the newer version).

// RefError is a referenced VirtualService ramp cannot route with; Field names the Rollout's
// field to fix (or the route of the VirtualService to fix).
type RefError struct {
	Field   string
	Message string
}

func (e *RefError) Error() string { return e.Field + ": " + e.Message }

// ReferencedRouteName is the name of ramp's route kind ("header" or "sticky") for the named
// route of ro's referenced VirtualService.
func ReferencedRouteName(ro *v1alpha1.Rollout, kind, route string) string {
	return "ramp-" + ro.Name + "-" + kind + "-" + route
}

// isRampRoute reports whether name is one of ro's own routes in a referenced VirtualService.
func isRampRoute(ro *v1alpha1.Rollout, name string) bool {
	rest, ok := strings.CutPrefix(name, "ramp-"+ro.Name+"-")
	return ok && (strings.HasPrefix(rest, "header-") || strings.HasPrefix(rest, "sticky-"))
}

// namedRoute is one route of spec.service.virtualServiceRef.routes found in the
// VirtualService, with the indexes of its stable and canary destinations.
type namedRoute struct {
	name           string
	route          *networking.HTTPRoute
	stable, canary int
}

// namedRoutes finds the routes ro names in vs (ramp's own routes left out) and checks each
// routes to the Service's stable and canary subsets and nowhere else.
func namedRoutes(ro *v1alpha1.Rollout, vs *networkingv1.VirtualService) ([]namedRoute, error) {
	ref := ro.Spec.Service.VirtualServiceRef
	host := ServiceHost(ro)
	var out []namedRoute
	for i, name := range ref.Routes {
		field := fmt.Sprintf("spec.service.virtualServiceRef.routes[%d]", i)
		idx := slices.IndexFunc(vs.Spec.GetHttp(), func(r *networking.HTTPRoute) bool { return r.GetName() == name })
		if idx < 0 {
			return nil, &RefError{field, fmt.Sprintf("VirtualService %q has no http route named %q: name one of its http routes (%s)",
				vs.Name, name, strings.Join(userRouteNames(ro, vs), ", "))}
		}
		route := vs.Spec.Http[idx]
		nr := namedRoute{name: name, route: route, stable: -1, canary: -1}
		for j, d := range route.GetRoute() {
			where := fmt.Sprintf("route %q of VirtualService %q, route[%d]", name, vs.Name, j)
			if !sameService(d.GetDestination().GetHost(), host, ro.Namespace) {
				return nil, &RefError{field, fmt.Sprintf("%s goes to host %q, not to Service %q: ramp weights only the stable and canary subsets of the Service it rolls out",
					where, d.GetDestination().GetHost(), host)}
			}
			p := &nr.stable
			switch d.GetDestination().GetSubset() {
			case StableSubset:
			case CanarySubset:
				p = &nr.canary
			default:
				return nil, &RefError{field, fmt.Sprintf("%s has subset %q: want %q or %q, the subsets of the DestinationRule ramp generates",
					where, d.GetDestination().GetSubset(), StableSubset, CanarySubset)}
			}
			if *p >= 0 {
				return nil, &RefError{field, fmt.Sprintf("%s: a second destination with subset %q", where, d.GetDestination().GetSubset())}
			}
			*p = j
		}
		for subset, j := range map[string]int{StableSubset: nr.stable, CanarySubset: nr.canary} {
			if j < 0 {
				return nil, &RefError{field, fmt.Sprintf("route %q of VirtualService %q has no destination with subset %q of host %q: list both the %q and the %q subsets (weights as you like; ramp sets them)",
					name, vs.Name, subset, host, StableSubset, CanarySubset)}
			}
		}
		out = append(out, nr)
	}
	return out, nil
}

// userRouteNames lists the names of vs's http routes that are not ramp's.
func userRouteNames(ro *v1alpha1.Rollout, vs *networkingv1.VirtualService) []string {
	var names []string
	for _, r := range vs.Spec.GetHttp() {
		if !isRampRoute(ro, r.GetName()) {
			names = append(names, fmt.Sprintf("%q", r.GetName()))
		}
	}
	return names
}

// sameService reports whether an Istio destination host names the Service host of namespace
// ns: its short name or a longer form of it (host.ns, host.ns.svc, host.ns.svc.<domain>).
func sameService(dest, host, ns string) bool {
	return dest == host || dest == host+"."+ns || strings.HasPrefix(dest, host+"."+ns+".svc")
}

// EditVirtualService returns a copy of live, the VirtualService ro references, routing as r
// says (see the comment at the top of this file); live is not changed. It fails with a
// *RefError when a named route is missing or does not route to the stable and canary subsets.
func EditVirtualService(ro *v1alpha1.Rollout, live *networkingv1.VirtualService, r Routing) (*networkingv1.VirtualService, error) {
	vs := live.DeepCopy()
	// ramp's own routes come out first; they are rebuilt below from the named routes.
	vs.Spec.Http = slices.DeleteFunc(vs.Spec.Http, func(h *networking.HTTPRoute) bool { return isRampRoute(ro, h.GetName()) })
	named, err := namedRoutes(ro, vs)
	if err != nil {
		return nil, err
	}
	w := max(0, min(100, r.CanaryWeight))
	cookie := StickyCookie(ro)
	var header, sticky []*networking.HTTPRoute
	first := len(vs.Spec.Http)
	for _, nr := range named {
		route := nr.route
		first = min(first, slices.Index(vs.Spec.Http, route))
		route.Route[nr.stable].Weight = 100 - w
		route.Route[nr.canary].Weight = w
		canary := route.Route[nr.canary]
		setMirror(route, canary.GetDestination(), r.Mirror)
		if cookie != "" {
			setStickyCookie(canary, cookie, r.Sticky)
		}
		if m := headerMatch(ro); r.HeaderRoute && m != nil {
			header = append(header, guarded(route, ReferencedRouteName(ro, "header", nr.name), m, canary, fault(r.Fault)))
		}
		if cookie != "" && r.Sticky != "" {
			sticky = append(sticky, guarded(route, ReferencedRouteName(ro, "sticky", nr.name), stickyMatch(cookie, r.Sticky), canary, nil))
		}
	}
	vs.Spec.Http = slices.Insert(vs.Spec.Http, first, append(header, sticky...)...)
	return vs, nil
}

// guarded is a copy of route, named name, that matches only requests route matches and also
// extra, and sends them to the canary alone with fault f.
func guarded(route *networking.HTTPRoute, name string, extra *networking.HTTPMatchRequest, canary *networking.HTTPRouteDestination, f *networking.HTTPFaultInjection) *networking.HTTPRoute {
	out := proto.Clone(route).(*networking.HTTPRoute)
	out.Name = name
	if len(out.Match) == 0 {
		out.Match = []*networking.HTTPMatchRequest{{}}
	}
	for _, m := range out.Match {
		if m.Headers == nil {
			m.Headers = map[string]*networking.StringMatch{}
		}
		for k, v := range extra.Headers {
			m.Headers[k] = proto.Clone(v).(*networking.StringMatch)
		}
		// A named match would make Istio name the route by it; ramp's route keeps its own.
		m.Name = ""
	}
	toCanaryAlone(out, canary, f)
	return out
}

// ObservedReferencedRouting reads ramp's routing back from the VirtualService ro references:
// the canary weight and mirror of the first named route, whether ramp's header route for it
// is there (and its fault), and the sticky cookie's value. It fails with a *RefError as
// EditVirtualService does, and when the named routes do not all carry the same weight (someone
// else changed one).
func ObservedReferencedRouting(ro *v1alpha1.Rollout, live *networkingv1.VirtualService) (Routing, error) {
	named, err := namedRoutes(ro, live)
	if err != nil {
		return Routing{}, err
	}
	first := named[0]
	canary := first.route.Route[first.canary]
	r := Routing{CanaryWeight: canary.GetWeight()}
	for _, nr := range named[1:] {
		if w := nr.route.Route[nr.canary].GetWeight(); w != r.CanaryWeight {
			return Routing{}, fmt.Errorf("istio: VirtualService %s: route %q sends %d%% to the canary, route %q %d%%", live.Name, first.name, r.CanaryWeight, nr.name, w)
		}
	}
	r.Mirror = observeMirror(first.route, canary.GetDestination())
	for _, h := range live.Spec.GetHttp() {
		switch h.GetName() {
		case ReferencedRouteName(ro, "header", first.name):
			f, err := observeFault(h.GetFault())
			if err != nil {
				return Routing{}, fmt.Errorf("istio: VirtualService %s: route %s: %w", live.Name, h.GetName(), err)
			}
			r.HeaderRoute, r.Fault = true, f
		case ReferencedRouteName(ro, "sticky", first.name):
			r.Sticky = observeCookie(canary)
		}
	}
	return r, nil
}
