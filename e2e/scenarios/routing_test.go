package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/meshsim"
)

// Blue/green: v2 comes up beside v1, previewed on the header route (requests with the preview
// header reach it), then all traffic flips at once.
func TestBlueGreenFlip(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Strategy = rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{
				PrePromotionPause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 15 * time.Second}},
			}}
		},
		classes: []meshsim.Class{{Share: 0.1, Request: meshsim.Request{Headers: map[string]string{previewHdr: "true"}}}},
	})
	rec := a.record()
	a.setImage(imgV2)

	// Previewing: the header route exists and the preview requests reach the canary subset.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, vs := a.vsState(context.Background())
		if vs != nil && hasRoute(vs, istio.RouteCanary) {
			s := a.sim.Stats(2 * time.Second)
			total, toCanary := routeSubset(s, istio.RouteCanary, istio.CanarySubset)
			if total > 10 && toCanary == total {
				t.Logf("preview: %d/%d header requests reached the canary subset", toCanary, total)
				break
			}
		}
		if time.Now().After(deadline) {
			ro := a.get()
			t.Fatalf("preview requests never reached the canary subset (phase %s: %s)", ro.Status.Phase, ro.Status.Message)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if w, _ := a.vsState(context.Background()); w != 0 {
		t.Errorf("canary weight %d while previewing, want 0", w)
	}

	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 100 0]" {
		t.Errorf("weights %s, want 0 100 0", got)
	}
}

// A/B by header: at a 10% step, requests with x-canary: true all reach the canary and about
// 10% of the others do.
func TestHeaderMatch(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &rampv1.HeaderMatch{Name: canaryHdr, Exact: ptr.To("true")}
			ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{
				{SetWeight: 10, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 15 * time.Second}}},
				{SetWeight: 100},
			}
		},
		classes: []meshsim.Class{{Share: 0.1, Request: meshsim.Request{Headers: map[string]string{canaryHdr: "true"}}}},
	})
	rec := a.record()
	a.setImage(imgV2)
	at := a.waitWeight(10, 2*time.Minute)
	// Let the simulator pick up the routing (refresh 300ms) and fill a 5s window at this step.
	holdUntil(at.Add(7 * time.Second))
	s := a.sim.Stats(5 * time.Second)
	if ro := a.get(); ro.Status.CanaryWeight != 10 {
		t.Fatalf("the step ended before the stats window was full (weight %d)", ro.Status.CanaryWeight)
	}
	hTotal, hCanary := routeSubset(s, istio.RouteCanary, istio.CanarySubset)
	pTotal, pCanary := routeSubset(s, istio.RoutePrimary, istio.CanarySubset)
	t.Logf("header route: %d/%d to canary; primary route: %d/%d to canary", hCanary, hTotal, pCanary, pTotal)
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
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 100 0]" {
		t.Errorf("weights %s, want 0 10 100 0", got)
	}
}

// A step injects aborts (50% 503) on the header route: header clients see them (source
// reports), the canary's own telemetry (destination reports, which analysis reads) does not,
// so the rollout is promoted; after promotion no request is aborted.
func TestFaultInjectionStep(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &rampv1.HeaderMatch{Name: canaryHdr, Exact: ptr.To("true")}
			ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{
				{SetWeight: 10, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 15 * time.Second}},
					FaultInjection: &rampv1.FaultInjection{Abort: &rampv1.FaultAbort{Percentage: 50, HTTPStatus: 503}}},
				{SetWeight: 100},
			}
		},
		classes: []meshsim.Class{{Share: 0.2, Request: meshsim.Request{Headers: map[string]string{canaryHdr: "true"}}}},
	})
	rec := a.record()
	a.setImage(imgV2)
	at := a.waitWeight(10, 2*time.Minute)
	holdUntil(at.Add(7 * time.Second))
	s := a.sim.Stats(5 * time.Second)
	if ro := a.get(); ro.Status.CanaryWeight != 10 {
		t.Fatalf("the step ended before the stats window was full (weight %d)", ro.Status.CanaryWeight)
	}
	total := s.Sum(func(k meshsim.Key) bool { return k.Reporter == meshsim.ReporterSource && k.Route == istio.RouteCanary })
	aborted := s.Sum(func(k meshsim.Key) bool {
		return k.Reporter == meshsim.ReporterSource && k.Route == istio.RouteCanary && k.Code == 503 && k.Flags == "FI"
	})
	t.Logf("header route: %d of %d aborted with 503 FI", aborted, total)
	if total < 50 {
		t.Fatalf("only %d header requests in the window", total)
	}
	if share := float64(aborted) / float64(total); share < 0.35 || share > 0.65 {
		t.Errorf("%.3f of header requests aborted, want ~0.5", share)
	}
	if n := s.Sum(func(k meshsim.Key) bool { return k.Reporter == meshsim.ReporterDestination && k.Code == 503 }); n > 0 {
		t.Errorf("%d destination-reported 503s: the faults must not reach the pods", n)
	}

	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s, want Succeeded (faults are source-only): %s (analysis %s)", ro.Status.Phase, ro.Status.Message, metricsText(ro.Status.LastAnalysis))
	}
	promoted := time.Now()
	_, vs := a.vsState(context.Background())
	if vs != nil && hasFault(vs) {
		t.Errorf("fault still in the VirtualService after promotion: %v", vs.Object["spec"])
	}
	holdUntil(promoted.Add(4 * time.Second))
	s = a.sim.Stats(3 * time.Second)
	if n := s.Sum(func(k meshsim.Key) bool { return k.Flags == "FI" }); n > 0 {
		t.Errorf("%d requests aborted after promotion", n)
	}
}

// Canary pods never become Ready (a nodeSelector no node matches): Failed at the progress
// deadline, no traffic ever shifted.
func TestCanaryNeverReady(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec.ProgressDeadline = &metav1.Duration{Duration: 20 * time.Second}
	}})
	rec := a.record()
	start := time.Now()
	a.setImage(imgV2, func(p *corev1.PodSpec) { p.NodeSelector = map[string]string{"ramp.dev/e2e": "no-such-node"} })
	ro := a.waitEnd(2 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("phase %s, want Failed: %s", ro.Status.Phase, ro.Status.Message)
	}
	if took := time.Since(start); took < 20*time.Second {
		t.Errorf("failed after %s, before the 20s progress deadline", took)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0]" {
		t.Errorf("weights %s, want 0 (never shifted)", got)
	}
	t.Logf("failed after %s: %s", time.Since(start).Round(time.Second), ro.Status.Message)
}

func httpRoutes(vs *unstructured.Unstructured) []any {
	rs, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	return rs
}

func hasRoute(vs *unstructured.Unstructured, name string) bool {
	for _, r := range httpRoutes(vs) {
		if m, ok := r.(map[string]any); ok && m["name"] == name {
			return true
		}
	}
	return false
}

func hasFault(vs *unstructured.Unstructured) bool {
	for _, r := range httpRoutes(vs) {
		if m, ok := r.(map[string]any); ok && m["fault"] != nil {
			return true
		}
	}
	return false
}
