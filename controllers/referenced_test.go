package controllers

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// referencedRoute is a routing object a team keeps in Git and ramp weights (a VirtualService's
// routes, an HTTPRoute's rules), for releaseUnderFlux.
type referencedRoute struct {
	kind testenv.Kind
	// git is the object as Git holds it (a manifest, not a copy read from the API server).
	git *unstructured.Unstructured
	// owned is the spec field Flux is told to leave to ramp (a drift ignore rule: the CRDs
	// make it one atomic field, so whoever applies it applies every route); gitOwned another
	// spec field, which Flux alone applies.
	owned, gitOwned string
	// routing reads ramp's routing from a version of the object.
	routing func(*unstructured.Unstructured) (routeWeights, error)
	// gitKept says how a version of the object changed Git's fields (nil: it did not).
	gitKept func(*unstructured.Unstructured) error
}

// routeWeights is what the referenced-route tests check of ramp's routing.
type routeWeights struct {
	weight int32
	mirror float64
	header bool
}

// referencingSteps are the steps of a Rollout through a referenced route: mirror 50%, then
// 20% until promoted, then 100%.
func referencingSteps() []rampv1.CanaryStep {
	return []rampv1.CanaryStep{
		{Mirror: &rampv1.TrafficMirror{Percentage: 50}, Pause: pauseFor(time.Second)},
		{SetWeight: 20, Pause: untilPromoted()},
		{SetWeight: 100},
	}
}

// releaseUnderFlux releases podinfo:2 through ro (Idle, with referencingSteps, tl recording
// r.kind since before it was created) while Flux re-applies r.git every 200 ms, leaving
// r.owned to ramp. At step 2, once 20% and the header route are routed, it checks that ramp
// alone owns r.owned and Flux alone r.gitOwned, and hands the live object to atStep2; then it
// promotes. Flux must have applied throughout, every version of the object must keep Git's
// fields, and ramp's routing must have gone through the mirror step and only forward:
// canary 0, 20, 100, 0.
func releaseUnderFlux(t *testing.T, ro *rampv1.Rollout, target *appsv1.Deployment, tl *testenv.Timeline, r referencedRoute, atStep2 func(live *unstructured.Unstructured)) {
	t.Helper()
	ctx := context.Background()
	fluxView := r.git.DeepCopy()
	unstructured.RemoveNestedField(fluxView.Object, "spec", r.owned)
	stopFlux := env.Reapply(ctx, testenv.FluxManager, fluxView, 200*time.Millisecond, t.Errorf)

	setImage(t, target, "podinfo:2")
	waitRollout(t, ro, "step 2 holds until promoted", func(ro *rampv1.Rollout) bool {
		return ro.Status.CurrentStep == 2 && ro.Status.Stage == "Holding" && strings.Contains(ro.Status.Message, "kubectl ramp promote")
	})
	// The status is written before the route (write-ahead): wait for it.
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(schema.FromAPIVersionAndKind(r.kind.APIVersion, r.kind.Kind))
	waitFor(t, "20% routed with the header route", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: r.git.GetName()}, live); err != nil {
			return false, err
		}
		got, err := r.routing(live)
		return err == nil && got.weight == 20 && got.header, nil
	})
	m := specFieldManagers(t, live.GetManagedFields())
	if !reflect.DeepEqual(m["f:"+r.owned], []string{FieldManager}) || !reflect.DeepEqual(m["f:"+r.gitOwned], []string{testenv.FluxManager}) {
		t.Errorf("field managers %v: want spec.%s ramp's alone, spec.%s Flux's alone", m, r.owned, r.gitOwned)
	}
	atStep2(live)

	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("p1"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if n := stopFlux(); n < 5 {
		t.Errorf("Flux applied only %d times", n)
	}
	must(t, tl.Sync(ctx))

	var weights []int32
	mirrored := false
	for _, v := range tl.Of(r.kind, r.git.GetName()) {
		if err := r.gitKept(v.Object); err != nil {
			t.Errorf("resourceVersion %d changed Git's fields: %v", v.RV, err)
		}
		got, err := r.routing(v.Object)
		if err != nil {
			t.Errorf("resourceVersion %d: %v", v.RV, err)
			continue
		}
		mirrored = mirrored || (got.mirror == 50 && got.weight == 0)
		if n := len(weights); n == 0 || weights[n-1] != got.weight {
			weights = append(weights, got.weight)
		}
	}
	if got := fmt.Sprint(weights); got != "[0 20 100 0]" || !mirrored {
		t.Errorf("canary weights over time %s (want [0 20 100 0]), the mirror step routed %t", got, mirrored)
	}
}
