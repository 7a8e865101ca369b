package gatewayapi

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// A referenced HTTPRoute (spec.service.gatewayAPI.httpRouteRef) is Git's, not ramp's. As for
// a referenced VirtualService, ramp changes, in the rules the Rollout names and nowhere else,
// the weights of their <service>-stable and <service>-canary backendRefs and their
// RequestMirror filter to <service>-canary during a mirror step, and it keeps its own rules
// right before the first named rule:
//
//	ramp-<rollout>-header-<rule>   the named rule for requests with the header match, to
//	                               <service>-canary alone
//
// a copy of its named rule (filters, timeouts as Git wrote them) whose matches also require
// the header, so it catches only what the named rule would have caught. The CRD declares
// spec.rules an atomic list, so ramp applies all of it, with the resourceVersion it read.

// ReferencedRuleName is ramp's header rule for the named rule of ro's referenced HTTPRoute.
func ReferencedRuleName(ro *v1alpha1.Rollout, rule string) string {
	return "ramp-" + ro.Name + "-header-" + rule
}

type namedRule struct {
	name           string
	index          int
	stable, canary int
}

// namedRules finds the rules ro names in hr (ramp's own left out) and checks that each has
// exactly two backendRefs, ramp's stable and canary Services.
func namedRules(ro *v1alpha1.Rollout, hr *gwapiv1.HTTPRoute) ([]namedRule, error) {
	ref := ro.Spec.Service.GatewayAPI.HTTPRouteRef
	var out []namedRule
	for i, name := range ref.Rules {
		field := fmt.Sprintf("spec.service.gatewayAPI.httpRouteRef.rules[%d]", i)
		idx := slices.IndexFunc(hr.Spec.Rules, func(r gwapiv1.HTTPRouteRule) bool { return ptr.Deref(r.Name, "") == gwapiv1.SectionName(name) })
		if idx < 0 {
			return nil, &istio.RefError{Field: field, Message: fmt.Sprintf("HTTPRoute %q has no rule named %q: name one of its rules (%s)",
				hr.Name, name, strings.Join(userRuleNames(ro, hr), ", "))}
		}
		nr := namedRule{name: name, index: idx, stable: -1, canary: -1}
		for j, b := range hr.Spec.Rules[idx].BackendRefs {
			p := &nr.stable
			switch {
			case !isService(b.BackendObjectReference) || (b.Namespace != nil && string(*b.Namespace) != ro.Namespace):
				p = nil
			case string(b.Name) == StableServiceName(ro):
			case string(b.Name) == CanaryServiceName(ro):
				p = &nr.canary
			default:
				p = nil
			}
			if p == nil || *p >= 0 {
				return nil, &istio.RefError{Field: field, Message: fmt.Sprintf("rule %q of HTTPRoute %q, backendRefs[%d] (%s): want exactly two backendRefs, the Services %q and %q that ramp creates (weights as you like; ramp sets them)",
					name, hr.Name, j, b.Name, StableServiceName(ro), CanaryServiceName(ro))}
			}
			*p = j
		}
		if nr.stable < 0 || nr.canary < 0 {
			return nil, &istio.RefError{Field: field, Message: fmt.Sprintf("rule %q of HTTPRoute %q must have the backendRefs %q and %q (weights as you like; ramp sets them)",
				name, hr.Name, StableServiceName(ro), CanaryServiceName(ro))}
		}
		out = append(out, nr)
	}
	return out, nil
}

func isService(b gwapiv1.BackendObjectReference) bool {
	return ptr.Deref(b.Group, "") == "" && ptr.Deref(b.Kind, "Service") == "Service"
}

func userRuleNames(ro *v1alpha1.Rollout, hr *gwapiv1.HTTPRoute) []string {
	var names []string
	for _, r := range hr.Spec.Rules {
		if n := string(ptr.Deref(r.Name, "")); n != "" && !isRampRule(ro, n) {
			names = append(names, fmt.Sprintf("%q", n))
		}
	}
	return names
}

func isRampRule(ro *v1alpha1.Rollout, name string) bool {
	return strings.HasPrefix(name, "ramp-"+ro.Name+"-header-")
}

// isCanaryMirror reports whether f is ramp's mirror to the canary Service.
func isCanaryMirror(ro *v1alpha1.Rollout, f gwapiv1.HTTPRouteFilter) bool {
	return f.Type == gwapiv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil &&
		isService(f.RequestMirror.BackendRef) && string(f.RequestMirror.BackendRef.Name) == CanaryServiceName(ro)
}

// EditHTTPRoute returns a copy of live, the HTTPRoute ro references, routing as rt says; live
// is not changed. It fails with an *istio.RefError when a named rule is missing or does not
// route to ramp's two Services.
func EditHTTPRoute(ro *v1alpha1.Rollout, live *gwapiv1.HTTPRoute, rt Routing) (*gwapiv1.HTTPRoute, error) {
	hr := live.DeepCopy()
	hr.Spec.Rules = slices.DeleteFunc(hr.Spec.Rules, func(r gwapiv1.HTTPRouteRule) bool { return isRampRule(ro, string(ptr.Deref(r.Name, ""))) })
	named, err := namedRules(ro, hr)
	if err != nil {
		return nil, err
	}
	w := min(max(rt.CanaryWeight, 0), 100)
	m := headerMatch(istio.HeaderMatch(ro))
	first := len(hr.Spec.Rules)
	var header []gwapiv1.HTTPRouteRule
	for _, nr := range named {
		first = min(first, nr.index)
		rule := &hr.Spec.Rules[nr.index]
		rule.BackendRefs[nr.stable].Weight = ptr.To(100 - w)
		rule.BackendRefs[nr.canary].Weight = ptr.To(w)
		canary := rule.BackendRefs[nr.canary].BackendObjectReference
		rule.Filters = slices.DeleteFunc(rule.Filters, func(f gwapiv1.HTTPRouteFilter) bool { return isCanaryMirror(ro, f) })
		if rt.Mirror > 0 {
			rule.Filters = append(rule.Filters, mirrorFilter(canary, rt.Mirror))
		}
		if !rt.HeaderRoute || m == nil {
			continue
		}
		h := *rule.DeepCopy()
		h.Name = ptr.To(gwapiv1.SectionName(ReferencedRuleName(ro, nr.name)))
		h.Filters = slices.DeleteFunc(h.Filters, func(f gwapiv1.HTTPRouteFilter) bool { return isCanaryMirror(ro, f) })
		if len(h.Matches) == 0 {
			h.Matches = []gwapiv1.HTTPRouteMatch{{Path: everyPath()}}
		}
		for i := range h.Matches {
			h.Matches[i].Headers = append(h.Matches[i].Headers, *m)
		}
		h.BackendRefs = []gwapiv1.HTTPBackendRef{*rule.BackendRefs[nr.canary].DeepCopy()}
		h.BackendRefs[0].Weight = ptr.To[int32](1)
		header = append(header, h)
	}
	hr.Spec.Rules = slices.Insert(hr.Spec.Rules, first, header...)
	return hr, nil
}

// ObservedReferencedRouting reads ramp's routing back from the HTTPRoute ro references: the
// canary weight and mirror of the first named rule and whether ramp's header rule for it is
// there. It fails with an *istio.RefError as EditHTTPRoute does, and with another error when
// the named rules' weights are not ramp's (not summing to 100, or not all the same).
func ObservedReferencedRouting(ro *v1alpha1.Rollout, live *gwapiv1.HTTPRoute) (Routing, error) {
	named, err := namedRules(ro, live)
	if err != nil {
		return Routing{}, err
	}
	var rt Routing
	for i, nr := range named {
		rule := live.Spec.Rules[nr.index]
		s, c := ptr.Deref(rule.BackendRefs[nr.stable].Weight, 1), ptr.Deref(rule.BackendRefs[nr.canary].Weight, 1)
		if s+c != 100 || (i > 0 && c != rt.CanaryWeight) {
			return Routing{}, fmt.Errorf("gatewayapi: HTTPRoute %s: rule %q weighs %d/%d, not ramp's split", live.Name, nr.name, s, c)
		}
		rt.CanaryWeight = c
	}
	for _, f := range live.Spec.Rules[named[0].index].Filters {
		if isCanaryMirror(ro, f) {
			rt.Mirror = mirrorPercent(f.RequestMirror)
		}
	}
	rt.HeaderRoute = slices.ContainsFunc(live.Spec.Rules, func(r gwapiv1.HTTPRouteRule) bool {
		return ptr.Deref(r.Name, "") == gwapiv1.SectionName(ReferencedRuleName(ro, named[0].name))
	})
	return rt, nil
}

// SameRules reports whether a and b hold the same rules.
func SameRules(a, b *gwapiv1.HTTPRoute) bool {
	return equality.Semantic.DeepEqual(a.Spec.Rules, b.Spec.Rules)
}

// ReferencedApplyPatch is the body of the server-side apply ramp makes to an HTTPRoute it
// references: spec.rules alone, with the resourceVersion read, so the API server refuses it (a
// conflict) when someone wrote the HTTPRoute since.
func ReferencedApplyPatch(hr *gwapiv1.HTTPRoute) (*unstructured.Unstructured, error) {
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&gwapiv1.HTTPRouteSpec{Rules: hr.Spec.Rules})
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"rules": spec["rules"]}}}
	u.SetAPIVersion(gwapiv1.GroupVersion.String())
	u.SetKind(KindHTTPRoute)
	u.SetName(hr.Name)
	u.SetNamespace(hr.Namespace)
	u.SetResourceVersion(hr.ResourceVersion)
	return u, nil
}
