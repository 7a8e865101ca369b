package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// The team's own VirtualService, kept in Git and applied by Flux: ramp weights its "primary"
// route while Flux re-applies the VirtualService every 200 ms (server-side apply as
// kustomize-controller, with a drift ignore rule for /spec/http, which Istio's CRD makes one
// atomic field). Neither side's fields change, the weights only move forward, and the
// simulated clients' requests on that route reach the canary in the step's share.
func TestReferencedVirtualServiceUnderFlux(t *testing.T) {
	t.Parallel()
	const gitVS = "podinfo-routes"
	ctx := context.Background()
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Service.VirtualServiceRef = &rampv1.VirtualServiceReference{Name: gitVS, Routes: []string{"primary"}}
		},
		before: func(ns string) {
			if err := env.Apply(ctx, testenv.FluxManager, []*unstructured.Unstructured{testenv.GitVirtualService(ns, gitVS, appName)}); err != nil {
				t.Fatal(err)
			}
		},
	})
	routing := func(ctx context.Context) (istio.Routing, *networkingv1.VirtualService, error) {
		vs := &networkingv1.VirtualService{}
		if err := a.c.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: gitVS}, vs); err != nil {
			return istio.Routing{}, nil, err
		}
		r, err := istio.ObservedReferencedRouting(a.ro, vs)
		return r, vs, err
	}
	_, adopted, err := routing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta, wantSpec, err := testenv.GitFields(adopted, appName, "primary")
	if err != nil {
		t.Fatal(err)
	}

	rec := a.record()
	fluxView := testenv.GitVirtualService(a.ns, gitVS, appName)
	unstructured.RemoveNestedField(fluxView.Object, "spec", "http")
	stopFlux := env.Reapply(ctx, testenv.FluxManager, fluxView, 200*time.Millisecond, t.Errorf)
	a.setImage(imgV2)

	// At the 50% step, the clients' requests on "primary" split about evenly.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if r, _, err := routing(ctx); err == nil && r.CanaryWeight == 50 {
			break
		}
		if time.Now().After(deadline) {
			ro := a.get()
			t.Fatalf("the referenced VirtualService never routed 50%% (phase %s: %s)", ro.Status.Phase, ro.Status.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	holdUntil(time.Now().Add(3 * time.Second)) // a window of the 50% step alone
	total, toCanary := routeSubset(a.sim.Stats(2*time.Second), "primary", istio.CanarySubset)
	if total < 100 || toCanary < total*3/10 || toCanary > total*7/10 {
		t.Errorf("at 50%%, %d of %d requests on route primary reached the canary", toCanary, total)
	}

	ro := a.waitEnd(3 * time.Minute)
	applies := stopFlux()
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rec.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	var weights []int32
	versions := rec.Of(testenv.VirtualServices, gitVS)
	for _, v := range versions {
		vs, err := testenv.TypedVirtualService(v.Object)
		if err != nil {
			t.Fatal(err)
		}
		meta, spec, err := testenv.GitFields(vs, appName, "primary")
		if err != nil {
			t.Fatal(err)
		}
		if meta != wantMeta || !proto.Equal(spec, wantSpec) {
			t.Errorf("version %d changed Git's fields:\n%s %v\nwant\n%s %v", v.RV, meta, spec, wantMeta, wantSpec)
		}
		r, err := istio.ObservedReferencedRouting(a.ro, vs)
		if err != nil {
			t.Fatalf("version %d: %v", v.RV, err)
		}
		if n := len(weights); n == 0 || weights[n-1] != r.CanaryWeight {
			weights = append(weights, r.CanaryWeight)
		}
	}
	if got := fmt.Sprint(weights); got != "[0 10 50 100 0]" {
		t.Errorf("weights %s, want 0 10 50 100 0", got)
	}
	if applies < 50 {
		t.Errorf("Flux applied %d times during the rollout, want at least 50", applies)
	}
	_, final, err := routing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string][]string{}
	for _, m := range final.ManagedFields {
		var f map[string]map[string]any
		if err := json.Unmarshal(m.FieldsV1.Raw, &f); err != nil {
			t.Fatal(err)
		}
		for k := range f["f:spec"] {
			owners[k] = append(owners[k], m.Manager)
		}
	}
	if want := map[string][]string{"f:hosts": {testenv.FluxManager}, "f:http": {"ramp"}}; !reflect.DeepEqual(owners, want) {
		t.Errorf("spec field owners %v, want %v", owners, want)
	}
	t.Logf("%d versions of %s, %d Flux applies; weights %v", len(versions), gitVS, applies, weights)
}

// A mirror step before the first weight: half the live requests are copied to v2, which
// answers 10% errors; the clients keep getting v1's answers, the analysis of the canary's own
// metrics (the mirrored requests) fails, and the rollout is rolled back without the canary
// ever taking a user's request.
func TestMirrorStepRollsBackOnCanaryErrors(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{
			{Mirror: &rampv1.TrafficMirror{Percentage: 50}}, {SetWeight: 10}, {SetWeight: 100}}
	}})
	rec := a.record()
	a.setImage(imgErrors)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, vs := a.vsState(context.Background()); vs != nil {
			if r, err := istio.ObservedRouting(vs); err == nil && r.Mirror == 50 {
				break
			}
		}
		if time.Now().After(deadline) {
			ro := a.get()
			t.Fatalf("the VirtualService never mirrored 50%% (phase %s: %s)", ro.Status.Phase, ro.Status.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	holdUntil(time.Now().Add(3 * time.Second))
	s := a.sim.Stats(2 * time.Second)
	total, toCanary := routeSubset(s, istio.RoutePrimary, istio.CanarySubset)
	mirrored := s.ByWorkload(meshsim.ReporterDestination)[appName+"-canary"]
	if total < 100 || toCanary != 0 || mirrored < total*3/10 || mirrored > total*7/10 {
		t.Errorf("mirroring 50%%: %d of %d client requests answered by the canary (want 0), %d mirrored to it (want about half)", toCanary, total, mirrored)
	}

	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseFailed || ro.Status.CurrentStep != 1 {
		t.Fatalf("phase %s at step %d, want Failed at step 1: %s", ro.Status.Phase, ro.Status.CurrentStep, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0]" {
		t.Errorf("weights %s, want 0 throughout", got)
	}
	failed(t, ro, "error-rate")
}

// Sticky sessions, routed by istiod's configuration: once the canary serves 10%, requests
// that carry the cookie the canary's answers set (ramp-podinfo=<revision>) all reach the
// canary on the sticky route, the others split 90/10; promotion removes the route. (The
// simulated clients keep no cookies: the test sends the cookie a browser would.)
func TestStickySessionCookieReachesTheCanary(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary.StickySessions = &rampv1.StickySessions{}
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{
			{SetWeight: 10, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 20 * time.Second}}}, {SetWeight: 100}}
	}})
	rec := a.record()
	a.setImage(imgV2)

	var sticky string
	deadline := time.Now().Add(2 * time.Minute)
	for sticky == "" {
		if _, vs := a.vsState(context.Background()); vs != nil {
			if r, err := istio.ObservedRouting(vs); err == nil && r.CanaryWeight == 10 {
				sticky = r.Sticky
			}
		}
		if time.Now().After(deadline) {
			ro := a.get()
			t.Fatalf("no sticky route at 10%% (phase %s: %s)", ro.Status.Phase, ro.Status.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := a.sim.SetTraffic(meshsim.Traffic{RPS: rps, Classes: []meshsim.Class{{Share: 0.2,
		Request: meshsim.Request{Headers: map[string]string{"cookie": "theme=dark; ramp-" + appName + "=" + sticky}}}}}); err != nil {
		t.Fatal(err)
	}
	holdUntil(time.Now().Add(3 * time.Second))
	s := a.sim.Stats(2 * time.Second)
	total, toCanary := routeSubset(s, istio.RouteSticky, istio.CanarySubset)
	if total < 50 || toCanary != total {
		t.Errorf("sticky route: %d of %d requests with the cookie reached the canary, want all", toCanary, total)
	}
	total, toCanary = routeSubset(s, istio.RoutePrimary, istio.CanarySubset)
	if total < 100 || toCanary > total/5 || toCanary == 0 {
		t.Errorf("weighted route: %d of %d requests reached the canary, want about 10%%", toCanary, total)
	}

	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	routings, err := rec.Routings(appName)
	if err != nil {
		t.Fatal(err)
	}
	if last := routings[len(routings)-1]; last.Sticky != "" || last.CanaryWeight != 0 {
		t.Errorf("after promotion: %+v, want all on stable without the sticky route", last)
	}
}
