package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Helpers of engine_scenarios_test.go. They read what the API server holds, never ramp's
// intent.

func untilPromoted() *rampv1.Pause { return &rampv1.Pause{} }

func pauseFor(d time.Duration) *rampv1.Pause {
	return &rampv1.Pause{Duration: &metav1.Duration{Duration: d}}
}

// withSteps sets the canary steps of ro and returns it.
func withSteps(ro *rampv1.Rollout, steps ...rampv1.CanaryStep) *rampv1.Rollout {
	ro.Spec.Strategy.Canary.Steps = steps
	return ro
}

// annotate sets (value != nil) or removes (nil) an annotation of the Rollout with a JSON
// merge patch, as kubectl ramp's field manager.
func annotate(t *testing.T, ro *rampv1.Rollout, key string, value *string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
	must(t, err)
	p := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}
	must(t, env.Client.Patch(context.Background(), p, client.RawPatch(types.MergePatchType, b), client.FieldOwner(pluginFieldManager)))
}

// waitRollout polls the Rollout until cond holds; ro is left as last read.
func waitRollout(t *testing.T, ro *rampv1.Rollout, what string, cond func(*rampv1.Rollout) bool) {
	t.Helper()
	waitFor(t, what, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return cond(ro), nil
	})
}

// holdsFor checks cond at every poll for d: the deliberate "still holding" checks.
func holdsFor(t *testing.T, d time.Duration, what string, cond func(context.Context) (bool, string, error)) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, detail, err := cond(ctx)
		cancel()
		must(t, err)
		if !ok {
			t.Fatalf("%s stopped holding: %s", what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustIstioObject waits for a VirtualService or DestinationRule and returns it: ramp records
// its decision in the status before it applies it, so a phase seen in the status may precede
// the objects by a moment.
func mustIstioObject(t *testing.T, ns, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var u *unstructured.Unstructured
	waitFor(t, kind+" "+name, func(ctx context.Context) (bool, error) {
		var err error
		u, err = env.IstioObject(ctx, ns, kind, name)
		return u != nil, err
	})
	return u
}

// liveRouting is the routing the live VirtualService holds.
func liveRouting(ctx context.Context, ns, name string) (istio.Routing, error) {
	vs, err := env.IstioObject(ctx, ns, istio.KindVirtualService, name)
	if err != nil || vs == nil {
		return istio.Routing{}, fmt.Errorf("VirtualService %s/%s: %v (found=%t)", ns, name, err, vs != nil)
	}
	return istio.ObservedRouting(vs)
}

// waitRouting waits until the live VirtualService routes weight% to the canary, with or
// without the header route.
func waitRouting(t *testing.T, ns, name string, weight int32, headerRoute bool) {
	t.Helper()
	waitFor(t, fmt.Sprintf("VirtualService at %d%% canary, header route %t", weight, headerRoute), func(ctx context.Context) (bool, error) {
		r, err := liveRouting(ctx, ns, name)
		if err != nil {
			return false, nil
		}
		return r.CanaryWeight == weight && r.HeaderRoute == headerRoute, nil
	})
}

func canaryDeployment(t *testing.T, ns string) *appsv1.Deployment {
	t.Helper()
	c := &appsv1.Deployment{}
	must(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-canary"}, c))
	return c
}

// waitEvent waits for a core/v1 Event about the Rollout with the given reason.
func waitEvent(t *testing.T, ro *rampv1.Rollout, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	waitFor(t, "event "+reason, func(ctx context.Context) (bool, error) {
		var list corev1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(ro.Namespace)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == ro.Name && e.Reason == reason {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// eventReasons lists the reasons of the core/v1 Events about the Rollout.
func eventReasons(t *testing.T, ro *rampv1.Rollout) []string {
	t.Helper()
	var list corev1.EventList
	must(t, env.Client.List(context.Background(), &list, client.InNamespace(ro.Namespace)))
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == ro.Name {
			out = append(out, e.Reason)
		}
	}
	return out
}

func cond(ro *rampv1.Rollout, typ string) *metav1.Condition {
	return apimeta.FindStatusCondition(ro.Status.Conditions, typ)
}

// canaryPodImages returns the images of the canary's pods that are not being deleted, and how
// many of them are ready.
func canaryPodImages(ctx context.Context, ns string) (images []string, ready int, err error) {
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{istio.TrackLabel: istio.TrackCanary}); err != nil {
		return nil, 0, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		images = append(images, p.Spec.Containers[0].Image)
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return images, ready, nil
}

// assertOnlyReplicaSet checks that the target's only active ReplicaSet is hash, with n ready
// replicas.
func assertOnlyReplicaSet(t *testing.T, ns, hash string, n int32) {
	t.Helper()
	if got := onlyReplicaSetHash(t, ns); got != hash {
		t.Fatalf("target ReplicaSet is %s, want %s (unchanged)", got, hash)
	}
	assertReplicaSetReady(t, ns, hash, n)
}

// shortWait is waitFor with a short timeout, for what must happen within a few seconds.
func shortWait(t *testing.T, d time.Duration, what string, c func(context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.WaitFor(context.Background(), d, c); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
