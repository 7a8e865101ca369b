package istio

import (
	networking "istio.io/api/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// Labels, subsets and route names ramp uses.
const (
	// TrackLabel marks pods of the canary; the canary subset selects TrackLabel=TrackCanary.
	TrackLabel = "ramp.dev/track"
	// TrackCanary is the TrackLabel value of canary pods.
	TrackCanary = "canary"

	// StableSubset is the DestinationRule subset of the stable pods (by pod-template-hash).
	StableSubset = "stable"
	// CanarySubset is the DestinationRule subset of the canary pods (by TrackLabel).
	CanarySubset = "canary"

	// RouteCanary is the header route that reaches the canary alone.
	RouteCanary = "ramp-canary"
	// RoutePrimary is the weighted stable/canary route.
	RoutePrimary = "ramp-primary"
	// RouteSticky is the route of sticky canary sessions: requests carrying the cookie the
	// canary's answers set reach the canary alone.
	RouteSticky = "ramp-sticky"

	// ManagedByLabel and RolloutLabel are set on every object ramp renders.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "ramp"
	RolloutLabel   = "ramp.dev/rollout"

	// PodTemplateHashLabel is the label Deployments put on their ReplicaSets' pods.
	PodTemplateHashLabel = "pod-template-hash"

	// DefaultPreviewHeader is the blue/green preview header when none is configured; it
	// matches DefaultPreviewValue exactly.
	DefaultPreviewHeader = "x-ramp-preview"
	DefaultPreviewValue  = "true"

	// APIVersion, KindVirtualService and KindDestinationRule identify the rendered objects.
	APIVersion          = "networking.istio.io/v1"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
)

// Routing is the traffic split ramp wants now.
type Routing struct {
	// CanaryWeight is 0..100; stable gets 100-CanaryWeight. VirtualService clamps values
	// outside the range.
	CanaryWeight int32
	// HeaderRoute includes the header route (to the canary alone). It is rendered only when
	// HeaderMatch(ro) is non-nil.
	HeaderRoute bool
	// Fault is injected on the header route only (nil: none). It is dropped when the header
	// route is not rendered, and when it has neither delay nor abort.
	Fault *v1alpha1.FaultInjection
	// Mirror is the percentage of the weighted route's requests copied to the canary (0:
	// none); the copies' answers are discarded.
	Mirror float64
	// Sticky is the value of the sticky-session cookie ("" for none): the canary's answers on
	// the weighted route set it, and the sticky route sends requests carrying it to the
	// canary alone. Rendered only when the strategy has stickySessions.
	Sticky string
}

// StickyCookie is the name of the sticky-session cookie: stickySessions.cookieName, defaulting
// to ramp-<rollout>. It is "" when the strategy has no sticky sessions.
func StickyCookie(ro *v1alpha1.Rollout) string {
	c := ro.Spec.Strategy.Canary
	if c == nil || c.StickySessions == nil {
		return ""
	}
	if c.StickySessions.CookieName != "" {
		return c.StickySessions.CookieName
	}
	return "ramp-" + ro.Name
}

// ServiceHost is the Service ramp routes to: spec.service.name, defaulting to
// spec.targetRef.name. It is a short name, resolved by Istio in the Rollout's namespace.
func ServiceHost(ro *v1alpha1.Rollout) string {
	if ro.Spec.Service.Name != "" {
		return ro.Spec.Service.Name
	}
	return ro.Spec.TargetRef.Name
}

// HeaderMatch is the header that reaches the canary alone: strategy.canary.headerMatch, or
// strategy.blueGreen.previewHeader defaulting to x-ramp-preview: "true". It is nil when the
// strategy has none (a canary without headerMatch, or no strategy). The result is a copy.
func HeaderMatch(ro *v1alpha1.Rollout) *v1alpha1.HeaderMatch {
	switch s := ro.Spec.Strategy; {
	case s.Canary != nil:
		return s.Canary.HeaderMatch.DeepCopy() // nil stays nil
	case s.BlueGreen != nil:
		if s.BlueGreen.PreviewHeader != nil {
			return s.BlueGreen.PreviewHeader.DeepCopy()
		}
		v := DefaultPreviewValue
		return &v1alpha1.HeaderMatch{Name: DefaultPreviewHeader, Exact: &v}
	}
	return nil
}

// stringMatch renders a HeaderMatch as an Istio StringMatch. The API allows exactly one of
// exact, prefix or regex; should several be set the first of that order wins. It is nil when
// the match is unusable (no name or no value), in which case no header route is rendered: an
// empty StringMatch would not mean what the user asked for.
func stringMatch(hm *v1alpha1.HeaderMatch) *networking.StringMatch {
	if hm == nil || hm.Name == "" {
		return nil
	}
	switch {
	case hm.Exact != nil:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: *hm.Exact}}
	case hm.Prefix != nil:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: *hm.Prefix}}
	case hm.Regex != nil:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: *hm.Regex}}
	}
	return nil
}

// typeMeta identifies a rendered object of kind.
func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: APIVersion, Kind: kind}
}

// objectMeta is the metadata of a rendered object: name and namespace of the Rollout, ramp's
// labels and a controller reference to the Rollout. ro must carry its UID, as any Rollout read
// from the API server does: the API server rejects an owner reference without one.
func objectMeta(ro *v1alpha1.Rollout) metav1.ObjectMeta {
	controller, block := true, true
	return metav1.ObjectMeta{
		Name:      ro.Name,
		Namespace: ro.Namespace,
		Labels: map[string]string{
			ManagedByLabel: ManagedByValue,
			RolloutLabel:   ro.Name,
		},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion:         v1alpha1.GroupVersion.String(),
			Kind:               "Rollout",
			Name:               ro.Name,
			UID:                ro.UID,
			Controller:         &controller,
			BlockOwnerDeletion: &block,
		}},
	}
}
