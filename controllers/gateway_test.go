package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/gatewayapi"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Issue 16, item 4: the Gateway API router, on the real API server with the Gateway API's
// standard CRDs (their CEL rules check every HTTPRoute ramp writes).

// gatewayRollout is a canary Rollout of "web" routed by an HTTPRoute: mirror 50% for a
// second, then 20% and 100%, with the header route.
func gatewayRollout(ns string) *rampv1.Rollout {
	ro := plainRollout(ns,
		rampv1.CanaryStep{Mirror: &rampv1.TrafficMirror{Percentage: 50}, Pause: pauseFor(time.Second)},
		rampv1.CanaryStep{SetWeight: 20},
		rampv1.CanaryStep{SetWeight: 100})
	ro.Spec.Service.GatewayAPI = &rampv1.GatewayAPIRouting{}
	return ro
}

func liveService(ctx context.Context, ns, name string) (*corev1.Service, error) {
	s := &corev1.Service{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		return nil, err
	}
	return s, nil
}

// waitStableService waits until web-stable selects the pods of the ReplicaSet hash.
func waitStableService(t *testing.T, ns, hash string) {
	t.Helper()
	waitFor(t, "web-stable selecting pod-template-hash "+hash, func(ctx context.Context) (bool, error) {
		s, err := liveService(ctx, ns, "web-stable")
		if err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return s.Spec.Selector[istio.PodTemplateHashLabel] == hash && s.Spec.Selector["app"] == "web" && len(s.Spec.Selector) == 2, nil
	})
}

func TestGatewayAPICanaryShiftsBackendWeights(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := gatewayRollout(ns)
	tl := env.RecordTimeline(t, ns, testenv.HTTPRoutes)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := onlyReplicaSetHash(t, ns)
	waitStableService(t, ns, stableHash)

	var canary *corev1.Service
	waitFor(t, "web-canary", func(ctx context.Context) (bool, error) {
		var err error
		canary, err = liveService(ctx, ns, "web-canary")
		return err == nil, client.IgnoreNotFound(err)
	})
	if canary.Spec.Selector[istio.TrackLabel] != istio.TrackCanary || canary.Spec.Selector["app"] != "web" || !metav1.IsControlledBy(canary, ro) {
		t.Errorf("web-canary: selector %v, owners %v", canary.Spec.Selector, canary.OwnerReferences)
	}
	if p := canary.Spec.Ports; len(p) != 1 || p[0].Port != 80 || p[0].Name != "http" {
		t.Errorf("web-canary ports %+v, want the Service's", p)
	}
	hr := &gwapiv1.HTTPRoute{}
	waitFor(t, "HTTPRoute web", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), hr)
		return err == nil, client.IgnoreNotFound(err)
	})
	// The API server's defaults are rendered too, so a route as ramp wants it is not written
	// again on every pass.
	if want := gatewayapi.HTTPRoute(ro, gatewayapi.Routing{}).Spec; !equality.Semantic.DeepEqual(hr.Spec, want) {
		t.Errorf("the live HTTPRoute differs from the rendered one:\nlive     %+v\nrendered %+v", hr.Spec, want)
	}
	if p := hr.Spec.ParentRefs; len(p) != 1 || ptr.Deref(p[0].Kind, "") != "Service" || p[0].Name != "web" {
		t.Errorf("parentRefs %+v, want the Service web (GAMMA)", p)
	}
	// The Istio router's objects are not written.
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		if u, err := env.IstioObject(ctx, ns, kind, ro.Name); err != nil || u != nil {
			t.Errorf("%s written by the Gateway API router (err=%v)", kind, err)
		}
	}

	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	must(t, tl.Sync(ctx))

	weights, err := tl.HTTPRouteWeights(ro)
	must(t, err)
	if got, want := fmt.Sprint(weights), "[0 20 100 0]"; got != want {
		t.Errorf("HTTPRoute canary weights over time = %s, want %s", got, want)
	}
	routings, err := tl.HTTPRouteRoutings(ro)
	must(t, err)
	var mirrored, header20 bool
	for _, r := range routings {
		mirrored = mirrored || (r.Mirror == 50 && r.CanaryWeight == 0)
		header20 = header20 || (r.CanaryWeight == 20 && r.HeaderRoute)
		if r.Mirror != 0 && r.Mirror != 50 {
			t.Errorf("mirror %v", r.Mirror)
		}
	}
	if !mirrored || !header20 {
		t.Errorf("want the mirror step (50%% copied, weight 0) and the header rule at 20%%: %+v", routings)
	}
	if last := routings[len(routings)-1]; last != (gatewayapi.Routing{}) {
		t.Errorf("after promotion the HTTPRoute must route all to stable without header rule or mirror: %+v", last)
	}

	// The stable Service follows the target's new ReplicaSet, as the stable subset does.
	newHash := ro.Status.StablePodTemplateHash
	if newHash == stableHash || newHash == "" {
		t.Fatalf("stable hash did not move: %q", newHash)
	}
	waitStableService(t, ns, newHash)
	assertReplicaSetReady(t, ns, newHash, 3)
	assertCanaryReplicas(t, ns, 0)
}

func TestGatewayAPIBlueGreenFlipsInOneStep(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := gatewayRollout(ns)
	ro.Spec.Strategy = rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{
		PreviewHeader:     &rampv1.HeaderMatch{Name: "x-preview", Regex: ptr.To("^(yes|true)$")},
		PrePromotionPause: pauseFor(time.Second),
	}}
	tl := env.RecordTimeline(t, ns, testenv.HTTPRoutes)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	must(t, tl.Sync(ctx))

	weights, err := tl.HTTPRouteWeights(ro)
	must(t, err)
	if got, want := fmt.Sprint(weights), "[0 100 0]"; got != want {
		t.Errorf("weights = %s, want %s (one flip)", got, want)
	}
	routings, err := tl.HTTPRouteRoutings(ro)
	must(t, err)
	preview := false
	for _, r := range routings {
		preview = preview || (r.HeaderRoute && r.CanaryWeight == 0)
	}
	if !preview {
		t.Errorf("no preview header rule before the flip: %+v", routings)
	}
	// The preview rule as the API server stored it: a regular-expression header match to the
	// canary Service alone.
	for _, v := range tl.Of(testenv.HTTPRoutes, ro.Name) {
		hr := &gwapiv1.HTTPRoute{}
		must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, hr))
		if len(hr.Spec.Rules) == 2 {
			h := hr.Spec.Rules[0]
			if m := h.Matches[0].Headers[0]; ptr.Deref(m.Type, "") != gwapiv1.HeaderMatchRegularExpression || m.Name != "x-preview" || m.Value != "^(yes|true)$" ||
				len(h.BackendRefs) != 1 || h.BackendRefs[0].Name != "web-canary" {
				t.Errorf("preview rule %+v", h)
			}
			break
		}
	}
	assertCanaryReplicas(t, ns, 0)
}

// An HTTPRoute of the Rollout's name, or a Service of a backend's name, that someone else made
// is not taken over: the Rollout stalls naming it, writes nothing, and leaves it as it was
// when deleted.
func TestGatewayAPIForeignObjectsAreLeftAlone(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")

	theirs := &gwapiv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwapiv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"team": "platform"}},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{
				Group: ptr.To(gwapiv1.Group("")), Kind: ptr.To(gwapiv1.Kind("Service")), Name: "web"}}},
			Rules: []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
				BackendObjectReference: gwapiv1.BackendObjectReference{Name: "web", Port: ptr.To(gwapiv1.PortNumber(80))}}}}}},
		},
	}
	must(t, env.Client.Patch(ctx, theirs, client.Apply, client.FieldOwner("kustomize-controller")))
	svc := testenv.ServiceFor(target, 80)
	svc.Name = "web-stable"
	must(t, env.Client.Create(ctx, svc, client.FieldOwner("argocd-controller")))
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), theirs))
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc))

	ro := gatewayRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	msg := waitForeignStall(t, ro)
	for _, want := range []string{
		`HTTPRoute "web" exists and was not created by this Rollout (field managers: kustomize-controller)`,
		`Service "web-stable" exists and was not created by this Rollout (field managers: argocd-controller)`,
		"ramp takes over no object it did not create",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message %q lacks %q", msg, want)
		}
	}
	if _, err := liveService(ctx, ns, "web-canary"); !apierrors.IsNotFound(err) {
		t.Errorf("web-canary created while stalled: %v", err)
	}
	assertNothingWritten(t, ns, target, istio.KindVirtualService, istio.KindDestinationRule)

	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	// istiod writes the route's status (it serves it to the mesh); nothing else changes.
	after := &gwapiv1.HTTPRoute{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), after))
	if after.UID != theirs.UID || after.Generation != theirs.Generation || !equality.Semantic.DeepEqual(after.Spec, theirs.Spec) ||
		!equality.Semantic.DeepEqual(after.Labels, theirs.Labels) || len(after.OwnerReferences) != 0 ||
		!equality.Semantic.DeepEqual(specManagers(after.ManagedFields), specManagers(theirs.ManagedFields)) {
		t.Errorf("the foreign HTTPRoute changed:\nbefore %+v\nnow    %+v", theirs, after)
	}
	afterSvc, err := liveService(ctx, ns, "web-stable")
	must(t, err)
	if afterSvc.UID != svc.UID || afterSvc.ResourceVersion != svc.ResourceVersion {
		t.Errorf("the foreign Service changed: %s → %s", svc.ResourceVersion, afterSvc.ResourceVersion)
	}
}

// Deleting the Rollout deletes the HTTPRoute first (the Service's traffic spreads over its
// pods again), then the backend Services, and hands the target back.
func TestGatewayAPIDeletionRemovesWhatRampCreated(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := gatewayRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitStableService(t, ns, onlyReplicaSetHash(t, ns))

	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &gwapiv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
		t.Errorf("HTTPRoute still there: %v", err)
	}
	for _, name := range []string{"web-stable", "web-canary"} {
		if _, err := liveService(ctx, ns, name); !apierrors.IsNotFound(err) {
			t.Errorf("Service %s still there: %v", name, err)
		}
	}
	if _, err := liveService(ctx, ns, "web"); err != nil {
		t.Errorf("the app's Service: %v", err)
	}
	assertTargetPaused(t, target, false)
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Deployment: %v", err)
	}
}

// specManagers are the managedFields entries of the main resource (not status writers').
func specManagers(mf []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, e := range mf {
		if e.Subresource == "" {
			out = append(out, e)
		}
	}
	return out
}

// A Rollout that changes routers leaves no routing of the other behind: adding gatewayAPI
// deletes the VirtualService and DestinationRule once the HTTPRoute routes, removing it
// deletes the HTTPRoute and the backend Services once the VirtualService routes.
func TestSwitchingRoutersRemovesTheOtherRoutersObjects(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := plainRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
	mustIstioObject(t, ns, istio.KindDestinationRule, ro.Name)
	hash := onlyReplicaSetHash(t, ns)

	patchSpec := func(service string) {
		t.Helper()
		p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"service":`+service+`}}`))
		must(t, env.Client.Patch(ctx, &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ro.Name}}, p))
	}
	istioGone := func(ctx context.Context) (bool, error) {
		for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
			if u, err := env.IstioObject(ctx, ns, kind, ro.Name); err != nil || u != nil {
				return false, err
			}
		}
		return true, nil
	}

	patchSpec(`{"gatewayAPI":{}}`)
	waitFor(t, "HTTPRoute routing, VirtualService and DestinationRule gone", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &gwapiv1.HTTPRoute{}); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return istioGone(ctx)
	})
	waitStableService(t, ns, hash)

	patchSpec(`{"gatewayAPI":null}`)
	mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
	waitFor(t, "HTTPRoute and backend Services gone", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &gwapiv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
			return false, client.IgnoreNotFound(err)
		}
		for _, name := range []string{"web-stable", "web-canary"} {
			if _, err := liveService(ctx, ns, name); !apierrors.IsNotFound(err) {
				return false, client.IgnoreNotFound(err)
			}
		}
		return true, nil
	})
	assertStableSubset(t, ns, ro.Name, hash)
}

// In a cluster without the Gateway API's CRDs a Rollout asking for it stalls naming the field
// and what to install, and its deletion does not hang on the kind the API server lacks.
func TestGatewayAPIMissingStallsTheRollout(t *testing.T) {
	s := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(s))
	must(t, rampv1.AddToScheme(s))
	must(t, gwapiv1.Install(s))
	noHTTPRoutes := func(obj client.Object) error {
		if _, ok := obj.(*gwapiv1.HTTPRoute); ok {
			return &apimeta.NoKindMatchError{GroupKind: gwapiv1.SchemeGroupVersion.WithKind("HTTPRoute").GroupKind(), SearchedVersions: []string{"v1"}}
		}
		return nil
	}
	c := fake.NewClientBuilder().WithScheme(s).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := noHTTPRoutes(obj); err != nil {
				return err
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	gr := gatewayRouter{&RolloutReconciler{Client: c}}
	ro := gatewayRollout("shop")
	w := &world{}
	foreign, err := gr.observe(t.Context(), ro, w)
	if err != nil || len(foreign) > 0 {
		t.Fatalf("observe: %v, foreign %v", err, foreign)
	}
	if b := w.obs.Blocked; b == nil || b.Reason != ReasonGatewayAPINotInstalled || !strings.Contains(b.Message, "spec.service.gatewayAPI: the cluster has no HTTPRoute") {
		t.Errorf("blocker %+v", b)
	}
	if err := gr.unroute(t.Context(), ro); err != nil {
		t.Errorf("unroute: %v", err)
	}
}

// gitHTTPRoute is an HTTPRoute as a team keeps it in Git: attached to the Service web, a rule
// legacy to another Service, and the rule primary to ramp's two Services (all to stable).
func gitHTTPRoute(ns string) *unstructured.Unstructured {
	backend := func(name string, w int64) map[string]any {
		return map[string]any{"name": name, "port": int64(80), "weight": w}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gwapiv1.GroupVersion.String(), "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "web-routes", "namespace": ns, "labels": map[string]any{"team": "shop"}},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "web"}},
			"rules": []any{
				map[string]any{"name": "legacy", "matches": []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/api/v1"}}},
					"backendRefs": []any{backend("web-legacy", 1)}},
				map[string]any{"name": "primary", "backendRefs": []any{backend("web-stable", 100), backend("web-canary", 0)},
					"timeouts": map[string]any{"request": "7s"}},
			},
		},
	}}
}

// The team's own HTTPRoute, re-applied by Flux every 200 ms (told to leave spec.rules to ramp):
// ramp weights its rule primary and adds its header rule, and Git's other fields and rules
// never change.
func TestReferencedHTTPRouteRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{gitHTTPRoute(ns)}))
	ro := plainRollout(ns, referencingSteps()...)
	ro.Spec.Service.GatewayAPI = &rampv1.GatewayAPIRouting{HTTPRouteRef: &rampv1.HTTPRouteReference{Name: "web-routes", Rules: []string{"primary"}}}
	tl := env.RecordTimeline(t, ns, testenv.HTTPRoutes)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitStableService(t, ns, onlyReplicaSetHash(t, ns))

	typed := func(u *unstructured.Unstructured) (*gwapiv1.HTTPRoute, error) {
		hr := &gwapiv1.HTTPRoute{}
		return hr, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, hr)
	}
	releaseUnderFlux(t, ro, target, tl, referencedRoute{
		kind: testenv.HTTPRoutes, git: gitHTTPRoute(ns), owned: "rules", gitOwned: "parentRefs",
		routing: func(u *unstructured.Unstructured) (routeWeights, error) {
			hr, err := typed(u)
			if err != nil {
				return routeWeights{}, err
			}
			r, err := gatewayapi.ObservedReferencedRouting(ro, hr)
			return routeWeights{weight: r.CanaryWeight, mirror: r.Mirror, header: r.HeaderRoute}, err
		},
		gitKept: func(u *unstructured.Unstructured) error {
			got, err := typed(u)
			if err != nil {
				return err
			}
			if got.Labels["team"] != "shop" || len(got.Spec.ParentRefs) != 1 || got.Spec.ParentRefs[0].Name != "web" ||
				string(ptr.Deref(got.Spec.Rules[0].Name, "")) != "legacy" || got.Spec.Rules[0].BackendRefs[0].Name != "web-legacy" {
				return fmt.Errorf("%+v", got)
			}
			return nil
		},
	}, func(live *unstructured.Unstructured) {
		hr, err := typed(live)
		must(t, err)
		var names []string
		for _, r := range hr.Spec.Rules {
			names = append(names, string(ptr.Deref(r.Name, "")))
		}
		if got := strings.Join(names, " "); got != "legacy ramp-web-header-primary primary" {
			t.Errorf("rules %s", got)
		}
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &gwapiv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
		t.Errorf("an HTTPRoute %q generated beside the referenced one: %v", ro.Name, err)
	}

	// Deleting the Rollout leaves Git's HTTPRoute, its rule all to stable and no rule of ramp's.
	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	hr := &gwapiv1.HTTPRoute{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-routes"}, hr))
	if r, err := gatewayapi.ObservedReferencedRouting(ro, hr); err != nil || r != (gatewayapi.Routing{}) || len(hr.Spec.Rules) != 2 {
		t.Errorf("after the Rollout: %+v, %v, %d rules", r, err, len(hr.Spec.Rules))
	}
}

// A referenced HTTPRoute that is missing, or whose named rule does not route to ramp's two
// Services, stalls the Rollout naming the field; nothing is written to it.
func TestReferencedHTTPRouteProblemsStall(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := gatewayRollout(ns)
	ro.Spec.Service.GatewayAPI = &rampv1.GatewayAPIRouting{HTTPRouteRef: &rampv1.HTTPRouteReference{Name: "web-routes", Rules: []string{"primary"}}}
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, ReasonHTTPRouteNotFound)
	if !strings.Contains(c.Message, `spec.service.gatewayAPI.httpRouteRef.name: HTTPRoute "web-routes" not found`) {
		t.Errorf("message %q", c.Message)
	}

	git := gitHTTPRoute(ns)
	rules, _, _ := unstructured.NestedSlice(git.Object, "spec", "rules")
	rules[1].(map[string]any)["backendRefs"] = []any{map[string]any{"name": "web", "port": int64(80)}}
	must(t, unstructured.SetNestedSlice(git.Object, rules, "spec", "rules"))
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{git}))
	c = waitStalled(t, ro, ReasonHTTPRouteInvalid)
	if !strings.Contains(c.Message, `spec.service.gatewayAPI.httpRouteRef.rules[0]: rule "primary" of HTTPRoute "web-routes", backendRefs[0] (web): want exactly two backendRefs`) {
		t.Errorf("message %q", c.Message)
	}
	hr := &gwapiv1.HTTPRoute{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-routes"}, hr))
	if m := specFieldManagers(t, hr.ManagedFields); fmt.Sprint(m["f:rules"]) != "["+testenv.FluxManager+"]" {
		t.Errorf("spec.rules managers %v: ramp wrote a route it cannot use", m)
	}
}

// specFieldManagers maps each top-level spec field ("f:http", "f:rules", ...) to the field
// managers that own it, status writers aside.
func specFieldManagers(t *testing.T, mf []metav1.ManagedFieldsEntry) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range mf {
		if m.Subresource != "" {
			continue
		}
		var f map[string]map[string]any
		must(t, json.Unmarshal(m.FieldsV1.Raw, &f))
		for k := range f["f:spec"] {
			out[k] = append(out[k], m.Manager)
		}
	}
	return out
}

// The stable and canary Services copy the Rollout's Service's ports and selector: a change of
// those in Git reaches them at once, with no release.
func TestGatewayAPIBackendsFollowTheService(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := gatewayRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitStableService(t, ns, onlyReplicaSetHash(t, ns))

	svc, err := liveService(ctx, ns, "web")
	must(t, err)
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(9898)
	must(t, env.Client.Update(ctx, svc))
	for _, name := range []string{"web-stable", "web-canary"} {
		waitFor(t, name+" on the new target port", func(ctx context.Context) (bool, error) {
			s, err := liveService(ctx, ns, name)
			return err == nil && len(s.Spec.Ports) == 1 && s.Spec.Ports[0].TargetPort.IntValue() == 9898, client.IgnoreNotFound(err)
		})
	}
}

func TestServiceRoutingChanged(t *testing.T) {
	base := &corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	for _, tc := range []struct {
		name string
		edit func(*corev1.Service)
		want bool
	}{
		{"nothing", func(*corev1.Service) {}, false},
		{"a label", func(s *corev1.Service) { s.Labels = map[string]string{"team": "shop"} }, false},
		{"the status", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}}
		}, false},
		{"a port", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(9898) }, true},
		{"the selector", func(s *corev1.Service) { s.Spec.Selector["tier"] = "web" }, true},
	} {
		n := base.DeepCopy()
		tc.edit(n)
		if got := serviceRoutingChanged(event.UpdateEvent{ObjectOld: base, ObjectNew: n}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
