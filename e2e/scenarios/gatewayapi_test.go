package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/gatewayapi"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Issue 16.4: the Gateway API router. ramp writes an HTTPRoute whose parent is the Service
// (GAMMA) and whose backendRefs weigh podinfo-stable and podinfo-canary; istiod, which
// implements the Gateway API for the mesh, serves it over xDS, and the mesh simulator routes
// by what istiod serves. At a 10% step with a header match, requests with x-canary: true all
// reach the canary and about 10% of the others do; the rollout is promoted on the canary's
// metrics.
func TestGatewayAPIHTTPRoute(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Service.GatewayAPI = &rampv1.GatewayAPIRouting{}
			ro.Spec.Strategy.Canary.HeaderMatch = &rampv1.HeaderMatch{Name: canaryHdr, Exact: ptr.To("true")}
			ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{
				{SetWeight: 10, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 15 * time.Second}}},
				{SetWeight: 100},
			}
		},
		classes:  []meshsim.Class{{Share: 0.1, Request: meshsim.Request{Headers: map[string]string{canaryHdr: "true"}}}},
		backends: []string{appName + "-stable", appName + "-canary"},
	})
	routes := env.RecordTimeline(t, a.ns, testenv.HTTPRoutes)
	a.setImage(imgV2)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var at time.Time
	if err := routes.Wait(ctx, func() bool {
		for _, v := range routes.Of(testenv.HTTPRoutes, appName) {
			hr := &gwapiv1.HTTPRoute{}
			if v.Deleted || v.RV <= a.committed || runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object.Object, hr) != nil {
				continue
			}
			if r, err := gatewayapi.ObservedRouting(a.ro, hr); err == nil && r.CanaryWeight == 10 {
				at = v.Seen
				return true
			}
		}
		return false
	}); err != nil {
		ro := a.get()
		t.Fatalf("the HTTPRoute never sent 10%% to the canary (phase %s: %s)", ro.Status.Phase, ro.Status.Message)
	}

	// istiod translated the HTTPRoute into the Service's outbound route: weighted clusters of
	// ramp's two backend Services.
	host := func(svc string) string { return svc + "." + a.ns + ".svc.cluster.local" }
	stableCluster, canaryCluster := meshsim.ClusterName(port, "", host(appName+"-stable")), meshsim.ClusterName(port, "", host(appName+"-canary"))
	err := testenv.WaitFor(ctx, time.Minute, func(context.Context) (bool, error) {
		w := servedWeights(a.sim.Envoy())
		return w[stableCluster] == 90 && w[canaryCluster] == 10, nil
	})
	if err != nil {
		t.Fatalf("istiod never served %s 90 / %s 10:\n%v", stableCluster, canaryCluster, a.sim.Envoy().Summary())
	}

	// Let the simulator fill a 5s window at this step.
	holdUntil(at.Add(7 * time.Second))
	s := a.sim.Stats(5 * time.Second)
	if ro := a.get(); ro.Status.CanaryWeight != 10 {
		t.Fatalf("the step ended before the stats window was full (weight %d)", ro.Status.CanaryWeight)
	}
	// istiod names the Envoy routes after the HTTPRoute's rules: the header rule's requests
	// all reach the canary, the weighted rule's about 10%.
	canary := func(k meshsim.Key) bool { return k.Workload == appName+"-canary" }
	hTotal, hCanary := routeWorkload(s, gatewayapi.RuleHeader, canary)
	pTotal, pCanary := routeWorkload(s, gatewayapi.RulePrimary, canary)
	t.Logf("header rule: %d/%d to the canary; weighted rule: %d/%d to the canary", hCanary, hTotal, pCanary, pTotal)
	if hTotal < 30 || hCanary != hTotal {
		t.Errorf("header requests: %d of %d reached the canary, want all (and > 30)", hCanary, hTotal)
	}
	if pTotal < 300 {
		t.Fatalf("only %d plain requests in the window", pTotal)
	}
	if share := float64(pCanary) / float64(pTotal); share < 0.05 || share > 0.16 {
		t.Errorf("plain requests: %.3f reached the canary, want ~0.10", share)
	}

	ro := a.waitEnd(3 * time.Minute)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := routes.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	weights, err := routes.HTTPRouteWeights(a.ro)
	if err != nil {
		t.Error(err)
	}
	if got := fmt.Sprint(weights); got != "[0 10 100 0]" {
		t.Errorf("HTTPRoute weights %s, want 0 10 100 0", got)
	}
	if len(ro.Status.LastAnalysis) == 0 {
		t.Errorf("promoted without an analysis round on the canary's metrics")
	}
}

// servedWeights maps each cluster of the weighted routes istiod served to its weight.
func servedWeights(e *meshsim.EnvoyConfig) map[string]uint32 {
	out := map[string]uint32{}
	if e == nil {
		return out
	}
	for _, vh := range e.Routes.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			for _, c := range rt.GetRoute().GetWeightedClusters().GetClusters() {
				out[c.GetName()] = c.GetWeight().GetValue()
			}
		}
	}
	return out
}

// routeWorkload counts source-reported requests on route, in total and those whose
// destination matches.
func routeWorkload(s meshsim.Stats, route string, match func(meshsim.Key) bool) (total, matched int64) {
	on := func(k meshsim.Key) bool { return k.Reporter == meshsim.ReporterSource && k.Route == route }
	return s.Sum(on), s.Sum(func(k meshsim.Key) bool { return on(k) && match(k) })
}
