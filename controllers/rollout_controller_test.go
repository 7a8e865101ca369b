package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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

const waitLong = 60 * time.Second

// app creates a 3-replica Deployment "web" and waits until it has rolled out.
func app(t *testing.T, ns, image string) *appsv1.Deployment {
	t.Helper()
	return env.App(t, ns, "web", image, 3)
}

func canaryRollout(ns string) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
			Analysis: &rampv1.AnalysisSpec{
				Interval:     &metav1.Duration{Duration: time.Second},
				FailureLimit: ptr.To[int32](1),
				Prometheus:   rampv1.PrometheusSpec{Address: "http://prometheus.invalid:9090"},
				Metrics: []rampv1.Metric{{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate,
					ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}}},
			},
			FaultInjection: &rampv1.FaultInjection{Delay: &rampv1.FaultDelay{Percentage: 50, FixedDelay: metav1.Duration{Duration: 200 * time.Millisecond}}},
		},
	}
}

func TestCanaryRolloutPromotesThroughWeights(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))

	// Adoption: target paused, stable subset on its ReplicaSet, all traffic to stable.
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := onlyReplicaSetHash(t, ns)
	assertTargetPaused(t, target, true)
	assertStableSubset(t, ns, ro.Name, stableHash)
	if got := ro.Status.StablePodTemplateHash; got != stableHash {
		t.Fatalf("status.stablePodTemplateHash = %q, want %q", got, stableHash)
	}

	// A Git commit changes the image: the rollout starts at once.
	start := time.Now()
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	t.Logf("canary 5 → 25 → 100 promoted in %s", time.Since(start).Round(time.Millisecond))

	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 25 100 0]"; got != want {
		t.Errorf("VirtualService canary weights over time = %s, want %s", got, want)
	}
	routings, err := tl.Routings(ro.Name)
	must(t, err)
	for _, v := range routings {
		if v.Fault != nil && (!v.HeaderRoute || v.CanaryWeight == 0) {
			t.Errorf("fault injected outside a canary step: %+v", v)
		}
	}
	if !sawFaultAt(routings, 5) || !sawFaultAt(routings, 25) {
		t.Errorf("fault injection missing on the header route during the 5%% and 25%% steps: %+v", routings)
	}
	if last := routings[len(routings)-1]; last.Fault != nil || last.HeaderRoute || last.CanaryWeight != 0 {
		t.Errorf("after promotion the VirtualService must route all to stable without header route or fault, got %+v", last)
	}

	// The target (same name) runs the new template, paused again; the stable subset follows it.
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	if img := target.Spec.Template.Spec.Containers[0].Image; img != "podinfo:2" {
		t.Fatalf("target image %s", img)
	}
	assertTargetPaused(t, target, true)
	if target.Status.UpdatedReplicas != 3 || target.Status.ReadyReplicas != 3 {
		t.Errorf("target not fully updated: %+v", target.Status)
	}
	newHash := ro.Status.StablePodTemplateHash
	if newHash == stableHash || newHash == "" {
		t.Fatalf("stable hash did not move to the new ReplicaSet: %q", newHash)
	}
	assertStableSubset(t, ns, ro.Name, newHash)
	assertReplicaSetReady(t, ns, newHash, 3)
	assertCanaryReplicas(t, ns, 0)
	if ro.Status.StableRevision == "" || ro.Status.CanaryRevision != "" || ro.Status.CanaryWeight != 0 {
		t.Errorf("status after promotion: %+v", ro.Status)
	}
}

func TestFailedAnalysisRollsBackThenNewRevisionStartsAgain(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := onlyReplicaSetHash(t, ns)

	verdicts.set(ro, rampv1.VerdictFailed)
	setImage(t, target, "podinfo:3-broken")
	waitPhase(t, ro, rampv1.PhaseFailed)

	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 0]"; got != want {
		t.Errorf("weights = %s, want %s (rollback at the first step)", got, want)
	}
	if ro.Status.FailedChecks != 1 || len(ro.Status.LastAnalysis) != 1 || ro.Status.LastAnalysis[0].Value != "8.3" {
		t.Errorf("status must keep the failing result: %+v", ro.Status)
	}
	assertStableSubset(t, ns, ro.Name, stableHash)
	assertTargetPaused(t, target, true)
	assertCanaryReplicas(t, ns, 0)
	// The target stays on its old pods: no ReplicaSet for the broken template.
	if h := onlyReplicaSetHash(t, ns); h != stableHash {
		t.Fatalf("target ReplicaSet changed to %s", h)
	}
	assertReplicaSetReady(t, ns, stableHash, 3)

	// The next commit starts a fresh rollout (no wedged Failed state).
	verdicts.set(ro, rampv1.VerdictPassed)
	setImage(t, target, "podinfo:4")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.FailedChecks != 0 {
		t.Errorf("a new rollout starts with clean counters: %+v", ro.Status)
	}
}

func TestBlueGreenFlipsInOneStep(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.FaultInjection = nil
	ro.Spec.Strategy = rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{}}
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	setImage(t, target, "podinfo:2")
	// The preview runs the new version at full size behind the preview header.
	waitFor(t, "preview at full size", func(ctx context.Context) (bool, error) {
		c := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, c); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return c.Status.ReadyReplicas == 3, nil
	})
	waitPhase(t, ro, rampv1.PhaseSucceeded)

	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 100 0]"; got != want {
		t.Errorf("weights = %s, want %s (one flip)", got, want)
	}
	routings, err := tl.Routings(ro.Name)
	must(t, err)
	preview := false
	for _, v := range routings {
		preview = preview || (v.HeaderRoute && v.CanaryWeight == 0)
	}
	if !preview {
		t.Errorf("no preview header route before the flip: %+v", routings)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	assertReplicaSetReady(t, ns, ro.Status.StablePodTemplateHash, 3)
	assertCanaryReplicas(t, ns, 0)
}

func TestDeletingRolloutHandsTargetBack(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	assertTargetPaused(t, target, true)

	must(t, env.Client.Delete(ctx, ro))
	waitFor(t, "rollout gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	assertTargetPaused(t, target, false)
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(istio.APIVersion)
		u.SetKind(kind)
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ro.Name}, u); !apierrors.IsNotFound(err) {
			t.Errorf("%s still there after the Rollout was deleted (err=%v)", kind, err)
		}
	}
	// Git is in charge again: an image change rolls out by itself.
	setImage(t, target, "podinfo:2")
	waitFor(t, "target rolls out on its own", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(target), target); err != nil {
			return false, err
		}
		return target.Status.ObservedGeneration == target.Generation && target.Status.UpdatedReplicas == 3 && target.Status.ReadyReplicas == 3, nil
	})
}

// --- helpers --------------------------------------------------------------------------

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.WaitFor(context.Background(), waitLong, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func waitPhase(t *testing.T, ro *rampv1.Rollout, phase string) {
	t.Helper()
	waitFor(t, "phase "+phase, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return ro.Status.Phase == phase, nil
	})
}

func setImage(t *testing.T, d *appsv1.Deployment, image string) {
	t.Helper()
	p := client.RawPatch(types.StrategicMergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":%q}]}}}}`, image)))
	must(t, env.Client.Patch(context.Background(), d, p))
}

func assertTargetPaused(t *testing.T, d *appsv1.Deployment, paused bool) {
	t.Helper()
	waitFor(t, fmt.Sprintf("target paused=%t", paused), func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		return d.Spec.Paused == paused, nil
	})
}

func onlyReplicaSetHash(t *testing.T, ns string) string {
	t.Helper()
	var list appsv1.ReplicaSetList
	must(t, env.Client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"app": "web"}))
	hash := ""
	for _, rs := range list.Items {
		if rs.Labels[istio.TrackLabel] == istio.TrackCanary || ptr.Deref(rs.Spec.Replicas, 0) == 0 {
			continue
		}
		if hash != "" {
			t.Fatalf("more than one active target ReplicaSet")
		}
		hash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	}
	return hash
}

func assertReplicaSetReady(t *testing.T, ns, hash string, n int32) {
	t.Helper()
	waitFor(t, "ReplicaSet "+hash+" ready", func(ctx context.Context) (bool, error) {
		var list appsv1.ReplicaSetList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{appsv1.DefaultDeploymentUniqueLabelKey: hash}); err != nil {
			return false, err
		}
		return len(list.Items) == 1 && list.Items[0].Status.ReadyReplicas == n, nil
	})
}

func assertStableSubset(t *testing.T, ns, name, hash string) {
	t.Helper()
	waitFor(t, "stable subset "+hash, func(ctx context.Context) (bool, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(istio.APIVersion)
		u.SetKind(istio.KindDestinationRule)
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		subsets, _, _ := unstructured.NestedSlice(u.Object, "spec", "subsets")
		for _, s := range subsets {
			m := s.(map[string]any)
			if m["name"] == istio.StableSubset {
				labels := m["labels"].(map[string]any)
				return labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash, nil
			}
		}
		return false, nil
	})
}

func assertCanaryReplicas(t *testing.T, ns string, n int32) {
	t.Helper()
	waitFor(t, fmt.Sprintf("canary at %d replicas", n), func(ctx context.Context) (bool, error) {
		c := &appsv1.Deployment{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, c); err != nil {
			return false, err
		}
		return ptr.Deref(c.Spec.Replicas, 1) == n && c.Status.Replicas == n, nil
	})
}

func sawFaultAt(vs []istio.Routing, weight int32) bool {
	for _, v := range vs {
		if v.CanaryWeight == weight && v.Fault != nil && v.HeaderRoute {
			return true
		}
	}
	return false
}
