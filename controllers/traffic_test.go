package controllers

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Issue 16: traffic mirroring, sticky canary sessions and a referenced VirtualService, on the
// real API server with istiod's validating webhook: every VirtualService ramp writes here is
// admitted by Istio's own validation.

const gitVS = "web-routes"

// referencingRollout is a canary Rollout of "web" through the Git VirtualService's "primary"
// route (referencingSteps), with header match and sticky sessions.
func referencingRollout(ns string) *rampv1.Rollout {
	ro := plainRollout(ns, referencingSteps()...)
	ro.Spec.Service.VirtualServiceRef = &rampv1.VirtualServiceReference{Name: gitVS, Routes: []string{"primary"}}
	ro.Spec.Strategy.Canary.StickySessions = &rampv1.StickySessions{}
	return ro
}

// typedVS reads a VirtualService as Istio's type.
func typedVS(ctx context.Context, ns, name string) (*networkingv1.VirtualService, error) {
	vs := &networkingv1.VirtualService{}
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vs)
	return vs, err
}

// The team's own VirtualService, re-applied by Flux every 200 ms (told to leave spec.http to
// ramp): ramp weights its route primary and adds its header and sticky routes, and Git's
// other fields and routes never change.
func TestReferencedVirtualServiceRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	git := testenv.GitVirtualService(ns, gitVS, "web")
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{git}))
	before, err := typedVS(ctx, ns, gitVS)
	must(t, err)

	ro := referencingRollout(ns)
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	wantMeta, wantSpec, err := testenv.GitFields(before, ro.Name, "primary")
	must(t, err)

	releaseUnderFlux(t, ro, target, tl, referencedRoute{
		kind: testenv.VirtualServices, git: testenv.GitVirtualService(ns, gitVS, "web"), owned: "http", gitOwned: "hosts",
		routing: func(u *unstructured.Unstructured) (routeWeights, error) {
			vs, err := testenv.TypedVirtualService(u)
			if err != nil {
				return routeWeights{}, err
			}
			r, err := istio.ObservedReferencedRouting(ro, vs)
			return routeWeights{weight: r.CanaryWeight, mirror: r.Mirror, header: r.HeaderRoute}, err
		},
		gitKept: func(u *unstructured.Unstructured) error {
			vs, err := testenv.TypedVirtualService(u)
			if err != nil {
				return err
			}
			meta, spec, err := testenv.GitFields(vs, ro.Name, "primary")
			if err != nil {
				return err
			}
			if meta != wantMeta || !proto.Equal(spec, wantSpec) {
				return fmt.Errorf("\n%s %v\nwant\n%s %v", meta, spec, wantMeta, wantSpec)
			}
			return nil
		},
	}, func(live *unstructured.Unstructured) {
		vs, err := testenv.TypedVirtualService(live)
		must(t, err)
		var names []string
		for _, h := range vs.Spec.Http {
			names = append(names, h.Name)
		}
		if want := []string{"legacy", "ramp-web-header-primary", "ramp-web-sticky-primary", "primary"}; !reflect.DeepEqual(names, want) {
			t.Fatalf("http routes %v, want %v", names, want)
		}
		r, err := istio.ObservedReferencedRouting(ro, vs)
		must(t, err)
		if r.Sticky != ro.Status.CanaryRevision || r.Mirror != 0 {
			t.Errorf("routing at step 2: %+v (canary revision %s)", r, ro.Status.CanaryRevision)
		}
		if got := vs.Spec.Http[3].Route[1].Headers.GetResponse().GetSet()["Set-Cookie"]; got != "ramp-web="+ro.Status.CanaryRevision+"; Path=/; HttpOnly" {
			t.Errorf("the canary's answers set %q", got)
		}
	})
	// Promoted: Git's VirtualService again, all traffic on stable.
	vs, err := typedVS(ctx, ns, gitVS)
	must(t, err)
	if !proto.Equal(&vs.Spec, &before.Spec) {
		t.Errorf("after promotion\n%v\nwant Git's\n%v", &vs.Spec, &before.Spec)
	}
	if vs, _ := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name); vs != nil {
		t.Errorf("ramp generated VirtualService %s beside the referenced one", ro.Name)
	}

	// Deleting the Rollout leaves Git's VirtualService in place.
	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "Rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return client.IgnoreNotFound(err) == nil && err != nil, nil
	})
	vs, err = typedVS(ctx, ns, gitVS)
	must(t, err)
	if !proto.Equal(&vs.Spec, &before.Spec) {
		t.Errorf("after deletion\n%v\nwant Git's\n%v", &vs.Spec, &before.Spec)
	}
}

func TestReferencedVirtualServiceStalls(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := referencingRollout(ns)
	must(t, env.Client.Create(ctx, ro))

	c := waitStalled(t, ro, ReasonVirtualServiceNotFound)
	if want := `spec.service.virtualServiceRef.name: VirtualService "web-routes" not found in namespace "` + ns + `"`; !strings.Contains(c.Message, want) {
		t.Errorf("Stalled message %q does not say %q", c.Message, want)
	}

	// Git adds it, but its route has no canary destination.
	git := testenv.GitVirtualService(ns, gitVS, "web")
	http, _, _ := unstructured.NestedSlice(git.Object, "spec", "http")
	primary := http[1].(map[string]any)
	primary["route"] = primary["route"].([]any)[:1]
	must(t, unstructured.SetNestedSlice(git.Object, http, "spec", "http"))
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{git}))
	c = waitStalled(t, ro, ReasonVirtualServiceInvalid)
	if want := `spec.service.virtualServiceRef.routes[0]: route "primary" of VirtualService "web-routes" has no destination with subset "canary" of host "web"`; !strings.Contains(c.Message, want) {
		t.Errorf("Stalled message %q does not say %q", c.Message, want)
	}
	vs, err := typedVS(ctx, ns, gitVS)
	must(t, err)
	for _, m := range vs.ManagedFields {
		if m.Manager == FieldManager {
			t.Errorf("ramp wrote the VirtualService it cannot route with: %+v", m)
		}
	}

	// Fixed in Git: the Rollout adopts its target.
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, "web")}))
	waitPhase(t, ro, rampv1.PhaseIdle)
}

// The generated VirtualService mirrors and keeps sessions sticky, and istiod admits it.
func TestMirrorAndStickyOnGeneratedVirtualService(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := plainRollout(ns,
		rampv1.CanaryStep{Mirror: &rampv1.TrafficMirror{Percentage: 30}, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 100})
	ro.Spec.Strategy.Canary.StickySessions = &rampv1.StickySessions{CookieName: "web-canary"}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRollout(t, ro, "the mirror step holds until promoted", func(ro *rampv1.Rollout) bool {
		return ro.Status.CurrentStep == 1 && strings.Contains(ro.Status.Message, "kubectl ramp promote")
	})
	// The status is written before the VirtualService (write-ahead): wait for the route.
	want := istio.Routing{Mirror: 30, HeaderRoute: true, Sticky: ro.Status.CanaryRevision}
	waitFor(t, fmt.Sprintf("routing %+v", want), func(ctx context.Context) (bool, error) {
		r, err := liveRouting(ctx, ns, ro.Name)
		return err == nil && reflect.DeepEqual(r, want), nil
	})
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("p1"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	waitFor(t, "all traffic on stable, no mirror, no sticky route", func(ctx context.Context) (bool, error) {
		r, err := liveRouting(ctx, ns, ro.Name)
		return err == nil && reflect.DeepEqual(r, istio.Routing{}), nil
	})
}

// Why Flux must leave spec.http to ramp: Istio's CRD makes spec.http one atomic field, so a
// GitOps apply that carries it replaces every route, ramp's weights included. ramp puts them
// back at once (the VirtualService's watch wakes it), but the proxies may have seen Git's
// weights in between: the drift fight the documented ignore rule avoids.
func TestGitOpsApplyOfSpecHTTPReplacesTheRoutes(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, "web")}))
	ro := plainRollout(ns, rampv1.CanaryStep{SetWeight: 20, Pause: untilPromoted()}, rampv1.CanaryStep{SetWeight: 100})
	ro.Spec.Service.VirtualServiceRef = &rampv1.VirtualServiceReference{Name: gitVS, Routes: []string{"primary"}}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	routedAt := func(w int32) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			vs, err := typedVS(ctx, ns, gitVS)
			if err != nil {
				return false, err
			}
			r, err := istio.ObservedReferencedRouting(ro, vs)
			return err == nil && r.CanaryWeight == w && r.HeaderRoute, nil
		}
	}
	waitFor(t, "20% routed", routedAt(20))

	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, "web")}))
	waitFor(t, "ramp routes 20% again", routedAt(20))
	must(t, tl.Sync(ctx))
	var seen []string
	for _, v := range tl.Of(testenv.VirtualServices, gitVS) {
		vs, err := testenv.TypedVirtualService(v.Object)
		must(t, err)
		r, err := istio.ObservedReferencedRouting(ro, vs)
		must(t, err)
		seen = append(seen, fmt.Sprintf("%d%%/header=%t", r.CanaryWeight, r.HeaderRoute))
	}
	if got := strings.Join(seen, " "); !strings.Contains(got, "20%/header=true 0%/header=false 20%/header=true") {
		t.Errorf("versions %s: want Git's apply to replace the routes (0%%, no header route) and ramp to restore them", got)
	}
}

// A Rollout that starts referencing a VirtualService drops the one ramp generated for it,
// which would bind the same host beside it.
func TestSwitchingToAReferencedVirtualServiceDropsTheGeneratedOne(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := plainRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)

	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, "web")}))
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	patch := client.MergeFrom(ro.DeepCopy())
	ro.Spec.Service.VirtualServiceRef = &rampv1.VirtualServiceReference{Name: gitVS, Routes: []string{"primary"}}
	must(t, env.Client.Patch(ctx, ro, patch))
	waitFor(t, "the generated VirtualService deleted, the referenced one ramp's to route", func(ctx context.Context) (bool, error) {
		gen, err := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name)
		if err != nil || gen != nil {
			return false, err
		}
		vs, err := typedVS(ctx, ns, gitVS)
		return err == nil && ownsSpecField(vs.ManagedFields, "http"), nil
	})
}

// Deleting a Rollout whose referenced VirtualService still routes to ramp's subsets leaves the
// DestinationRule (its subsets selecting every pod), which a Rollout of that name adopts again;
// once Git's routes no longer use it, deletion deletes it.
func TestDeletionKeepsTheDestinationRuleGitRoutesUse(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	must(t, env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, "web")}))
	ro := referencingRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	dr := &networkingv1.DestinationRule{}
	key := client.ObjectKeyFromObject(ro)
	waitFor(t, "ramp's DestinationRule", func(ctx context.Context) (bool, error) {
		return client.IgnoreNotFound(env.Client.Get(ctx, key, dr)) == nil && dr.UID != "", nil
	})
	deleteRollout := func(ro *rampv1.Rollout) {
		t.Helper()
		must(t, env.Client.Delete(ctx, ro))
		waitFor(t, "Rollout gone", func(ctx context.Context) (bool, error) {
			err := env.Client.Get(ctx, key, &rampv1.Rollout{})
			return client.IgnoreNotFound(err) == nil && err != nil, nil
		})
	}

	deleteRollout(ro)
	kept := &networkingv1.DestinationRule{}
	must(t, env.Client.Get(ctx, key, kept))
	if kept.UID != dr.UID || len(kept.OwnerReferences) != 0 || kept.Annotations[istio.ReleasedFromAnnotation] != ro.Name {
		t.Errorf("kept DestinationRule: uid %s (was %s), owners %v, annotations %v: want the same object, no owner (the garbage collector would delete it), %s=%s",
			kept.UID, dr.UID, kept.OwnerReferences, kept.Annotations, istio.ReleasedFromAnnotation, ro.Name)
	}
	for _, s := range kept.Spec.Subsets {
		if len(s.Labels) != 0 {
			t.Errorf("kept subset %s selects %v; want every pod of the Service", s.Name, s.Labels)
		}
	}
	waitEvent(t, ro, ReasonDestinationRuleKept)

	// The Rollout comes back (Flux re-creates it): it adopts the DestinationRule.
	again := referencingRollout(ns)
	must(t, env.Client.Create(ctx, again))
	waitPhase(t, again, rampv1.PhaseIdle)
	waitFor(t, "the DestinationRule adopted", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, key, kept)
		return err == nil && metav1.IsControlledBy(kept, again) && istio.ObservedStableSubset(kept) != "" &&
			kept.Annotations[istio.ReleasedFromAnnotation] == "", err
	})

	// Git's VirtualService is gone: nothing routes to the subsets, so deletion deletes them.
	must(t, env.Client.Delete(ctx, &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: gitVS}}))
	deleteRollout(again)
	if err := env.Client.Get(ctx, key, &networkingv1.DestinationRule{}); !apierrors.IsNotFound(err) {
		t.Errorf("DestinationRule after deleting the Rollout with no VirtualService using it: %v, want NotFound", err)
	}
}
