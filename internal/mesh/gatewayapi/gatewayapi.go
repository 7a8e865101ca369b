// Package gatewayapi renders the Gateway API objects ramp routes with when a Rollout sets
// spec.service.gatewayAPI, and reads back the split they hold: an HTTPRoute named after the
// Rollout whose backendRefs weigh two Services ramp creates, <service>-stable (the stable
// pods, by pod-template-hash, as Istio's stable subset) and <service>-canary (the canary's
// pods, by ramp.dev/track). It does no I/O.
package gatewayapi

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// Rule names of the generated HTTPRoute.
const (
	// RuleHeader is the header rule that reaches the canary alone.
	RuleHeader = "ramp-header"
	// RulePrimary is the weighted stable/canary rule.
	RulePrimary = "ramp-primary"

	// KindHTTPRoute names the HTTPRoute in messages.
	KindHTTPRoute = "HTTPRoute"

	// mirrorDenominator is the fraction a mirror percentage that is not a whole number is
	// written as: 1/10000 of a percent, the API's smallest mirror share.
	mirrorDenominator = 1_000_000
)

// Routing is the split ramp wants.
type Routing struct {
	// CanaryWeight is 0..100; stable gets the rest.
	CanaryWeight int32
	// HeaderRoute renders the header rule (when the strategy has a header).
	HeaderRoute bool
	// Mirror is the percentage of the weighted rule's requests copied to the canary (0: none).
	Mirror float64
}

// StableServiceName and CanaryServiceName are the Services ramp creates beside the Rollout's.
func StableServiceName(ro *v1alpha1.Rollout) string { return istio.ServiceHost(ro) + "-stable" }
func CanaryServiceName(ro *v1alpha1.Rollout) string { return istio.ServiceHost(ro) + "-canary" }

// Services renders <service>-stable and <service>-canary from svc, the Service in front of
// the target: its selector plus pod-template-hash=stableHash (the stable ReplicaSet's pods),
// or plus ramp.dev/track=canary (the canary Deployment's pods), and its ports. A Service
// without a selector is an error (ramp cannot tell which pods are behind it), and so is an
// empty stableHash (istio.ErrNoStableHash).
func Services(ro *v1alpha1.Rollout, svc *corev1.Service, stableHash string) (stable, canary *corev1.Service, err error) {
	if len(svc.Spec.Selector) == 0 {
		return nil, nil, fmt.Errorf("Service %q has no selector: ramp's Gateway API router selects the stable and canary pods by adding a label to it; give it a selector", svc.Name)
	}
	render := func(name, key, value string) *corev1.Service {
		sel := map[string]string{key: value}
		for k, v := range svc.Spec.Selector {
			sel[k] = v
		}
		ports := make([]corev1.ServicePort, 0, len(svc.Spec.Ports))
		for _, p := range svc.Spec.Ports {
			ports = append(ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: p.TargetPort})
		}
		m := objectMeta(ro)
		m.Name = name
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: m,
			Spec:       corev1.ServiceSpec{Selector: sel, Ports: ports},
		}
	}
	if stableHash == "" {
		return nil, nil, istio.ErrNoStableHash
	}
	stable = render(StableServiceName(ro), istio.PodTemplateHashLabel, stableHash)
	canary = render(CanaryServiceName(ro), istio.TrackLabel, istio.TrackCanary)
	return stable, canary, nil
}

// ObservedStableHash is the pod-template-hash the stable Service selects ("" when none).
func ObservedStableHash(stable *corev1.Service) string {
	return stable.Spec.Selector[istio.PodTemplateHashLabel]
}

// HTTPRoute renders the HTTPRoute named after the Rollout: the header rule (the strategy's
// header, to the canary alone) when rt.HeaderRoute, then the weighted rule, with the
// mirror filter while a mirror step holds.
func HTTPRoute(ro *v1alpha1.Rollout, rt Routing) *gwapiv1.HTTPRoute {
	w := min(max(rt.CanaryWeight, 0), 100)
	port := gwapiv1.PortNumber(ro.Spec.Service.Port)
	backend := func(name string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: gwapiv1.BackendObjectReference{
				Group: ptr.To(gwapiv1.Group("")), Kind: ptr.To(gwapiv1.Kind("Service")),
				Name: gwapiv1.ObjectName(name), Port: &port,
			},
			Weight: ptr.To(weight),
		}}
	}
	var timeouts *gwapiv1.HTTPRouteTimeouts
	if t := ro.Spec.Service.Timeout; t != nil {
		timeouts = &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration(formatDuration(t.Duration.Milliseconds())))}
	}
	var rules []gwapiv1.HTTPRouteRule
	if m := headerMatch(istio.HeaderMatch(ro)); rt.HeaderRoute && m != nil {
		rules = append(rules, gwapiv1.HTTPRouteRule{
			Name:        ptr.To(gwapiv1.SectionName(RuleHeader)),
			Matches:     []gwapiv1.HTTPRouteMatch{{Path: everyPath(), Headers: []gwapiv1.HTTPHeaderMatch{*m}}},
			BackendRefs: []gwapiv1.HTTPBackendRef{backend(CanaryServiceName(ro), 1)},
			Timeouts:    timeouts,
		})
	}
	primary := gwapiv1.HTTPRouteRule{
		Name:        ptr.To(gwapiv1.SectionName(RulePrimary)),
		Matches:     []gwapiv1.HTTPRouteMatch{{Path: everyPath()}},
		BackendRefs: []gwapiv1.HTTPBackendRef{backend(StableServiceName(ro), 100-w), backend(CanaryServiceName(ro), w)},
		Timeouts:    timeouts,
	}
	if rt.Mirror > 0 {
		primary.Filters = []gwapiv1.HTTPRouteFilter{mirrorFilter(backend(CanaryServiceName(ro), 0).BackendObjectReference, rt.Mirror)}
	}
	rules = append(rules, primary)

	hostnames := make([]gwapiv1.Hostname, 0)
	var parents []gwapiv1.ParentReference
	if g := ro.Spec.Service.GatewayAPI; g != nil {
		for _, h := range g.Hostnames {
			hostnames = append(hostnames, gwapiv1.Hostname(h))
		}
		for _, p := range g.ParentRefs {
			parents = append(parents, parentRef(p))
		}
	}
	if len(parents) == 0 {
		// The Service itself: the route applies to the mesh's traffic to it (GAMMA).
		parents = []gwapiv1.ParentReference{parentRef(v1alpha1.GatewayParentReference{Kind: "Service", Name: istio.ServiceHost(ro)})}
	}
	if len(hostnames) == 0 {
		hostnames = nil
	}
	return &gwapiv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwapiv1.GroupVersion.String(), Kind: KindHTTPRoute},
		ObjectMeta: objectMeta(ro),
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: parents},
			Hostnames:       hostnames,
			Rules:           rules,
		},
	}
}

// mirrorFilter copies percent of a rule's requests to the backend to: as a whole percent when
// it is one, otherwise as a fraction of a million.
func mirrorFilter(to gwapiv1.BackendObjectReference, percent float64) gwapiv1.HTTPRouteFilter {
	mirror := &gwapiv1.HTTPRequestMirrorFilter{BackendRef: to}
	if p := math.Min(percent, 100); p == math.Trunc(p) {
		mirror.Percent = ptr.To(int32(p))
	} else {
		mirror.Fraction = &gwapiv1.Fraction{Numerator: int32(math.Round(p * mirrorDenominator / 100)), Denominator: ptr.To(int32(mirrorDenominator))}
	}
	return gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterRequestMirror, RequestMirror: mirror}
}

// everyPath is the path match the API server defaults a match to, written out so that a
// rendered route compares equal to the live one.
func everyPath() *gwapiv1.HTTPPathMatch {
	return &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/")}
}

func parentRef(p v1alpha1.GatewayParentReference) gwapiv1.ParentReference {
	ref := gwapiv1.ParentReference{Name: gwapiv1.ObjectName(p.Name)}
	switch p.Kind {
	case "Service":
		ref.Group, ref.Kind = ptr.To(gwapiv1.Group("")), ptr.To(gwapiv1.Kind("Service"))
	default:
		ref.Group, ref.Kind = ptr.To(gwapiv1.Group(gwapiv1.GroupName)), ptr.To(gwapiv1.Kind("Gateway"))
	}
	if p.Namespace != "" {
		ref.Namespace = ptr.To(gwapiv1.Namespace(p.Namespace))
	}
	if p.SectionName != "" {
		ref.SectionName = ptr.To(gwapiv1.SectionName(p.SectionName))
	}
	if p.Port != nil {
		ref.Port = ptr.To(gwapiv1.PortNumber(*p.Port))
	}
	return ref
}

// headerMatch renders the strategy's header as an HTTPRoute header match: exact, or a
// regular expression. A prefix has no HTTPRoute form (admission rejects it with gatewayAPI);
// nil means no header rule.
func headerMatch(hm *v1alpha1.HeaderMatch) *gwapiv1.HTTPHeaderMatch {
	if hm == nil || hm.Name == "" {
		return nil
	}
	m := &gwapiv1.HTTPHeaderMatch{Name: gwapiv1.HTTPHeaderName(hm.Name)}
	switch {
	case hm.Exact != nil:
		m.Type, m.Value = ptr.To(gwapiv1.HeaderMatchExact), *hm.Exact
	case hm.Regex != nil:
		m.Type, m.Value = ptr.To(gwapiv1.HeaderMatchRegularExpression), *hm.Regex
	default:
		return nil
	}
	return m
}

// formatDuration writes ms as a Gateway API duration (GEP-2257: h, m, s, ms parts).
func formatDuration(ms int64) string {
	if ms <= 0 {
		return "0s"
	}
	var s string
	for _, u := range []struct {
		n    int64
		unit string
	}{{3_600_000, "h"}, {60_000, "m"}, {1000, "s"}, {1, "ms"}} {
		if q := ms / u.n; q > 0 {
			s += fmt.Sprintf("%d%s", q, u.unit)
			ms -= q * u.n
		}
	}
	return s
}

// ObservedRouting reads the split of a live HTTPRoute ramp generated. An error means it is
// not in the shape ramp renders (a hand edit): how much traffic the canary takes is unknown.
func ObservedRouting(ro *v1alpha1.Rollout, hr *gwapiv1.HTTPRoute) (Routing, error) {
	var rt Routing
	var primary bool
	for _, r := range hr.Spec.Rules {
		switch ptr.Deref(r.Name, "") {
		case RuleHeader:
			rt.HeaderRoute = true
		case RulePrimary:
			stable, canary, ok := weights(ro, r.BackendRefs)
			if !ok || stable+canary != 100 {
				return Routing{}, fmt.Errorf("rule %s: backendRefs are not ramp's stable and canary Services weighing 100", RulePrimary)
			}
			primary, rt.CanaryWeight = true, canary
			for _, f := range r.Filters {
				if m := f.RequestMirror; f.Type == gwapiv1.HTTPRouteFilterRequestMirror && m != nil {
					rt.Mirror = mirrorPercent(m)
				}
			}
		default:
			return Routing{}, fmt.Errorf("rule %q is not one of ramp's", ptr.Deref(r.Name, ""))
		}
	}
	if !primary {
		return Routing{}, fmt.Errorf("no rule %s", RulePrimary)
	}
	return rt, nil
}

func weights(ro *v1alpha1.Rollout, refs []gwapiv1.HTTPBackendRef) (stable, canary int32, ok bool) {
	var seenStable, seenCanary bool
	for _, b := range refs {
		w := ptr.Deref(b.Weight, 1)
		switch string(b.Name) {
		case StableServiceName(ro):
			stable, seenStable = w, true
		case CanaryServiceName(ro):
			canary, seenCanary = w, true
		default:
			return 0, 0, false
		}
	}
	return stable, canary, seenStable && seenCanary
}

func mirrorPercent(m *gwapiv1.HTTPRequestMirrorFilter) float64 {
	switch {
	case m.Percent != nil:
		return float64(*m.Percent)
	case m.Fraction != nil:
		den := float64(ptr.Deref(m.Fraction.Denominator, 100))
		// Rounded to the API's 1/10000 of a percent, so a rendered value reads back equal.
		return math.Round(float64(m.Fraction.Numerator)/den*100*10000) / 10000
	}
	return 100 // the filter's default: every request
}

// objectMeta is the metadata of a rendered object: the Rollout's name and namespace, ramp's
// labels and a controller reference to the Rollout.
func objectMeta(ro *v1alpha1.Rollout) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      ro.Name,
		Namespace: ro.Namespace,
		Labels:    map[string]string{istio.ManagedByLabel: istio.ManagedByValue, istio.RolloutLabel: ro.Name},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "Rollout", Name: ro.Name, UID: ro.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}
}
