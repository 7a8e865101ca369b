package testenv_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// One local cluster for the package: it is what the harness is for, and starting it is the
// slow part.
var (
	env       *testenv.Env
	startedIn time.Duration
)

func TestMain(m *testing.M) {
	// Generous: the first run may build the binaries.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	start := time.Now()
	var err error
	env, err = testenv.Start(ctx, testenv.Options{LocalCluster: true, LogDir: os.Getenv("RAMP_TESTENV_LOGS")})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	startedIn = time.Since(start)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

func TestDeploymentRollsOutAndPauses(t *testing.T) {
	t.Logf("local cluster with a Ready node started in %s (binaries in %s)", startedIn.Round(time.Millisecond), env.BinDir)
	ctx := t.Context()
	ns := env.Namespace(t)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:v1"}}},
			},
		},
	}
	start := time.Now()
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, d)
	t.Logf("3 replicas ready in %s", time.Since(start).Round(time.Millisecond))

	// Paused with a new template: the controller records the pause and starts no ReplicaSet.
	// This is how ramp holds a Git-applied change until it decides to roll it out.
	setPausedImage(t, d, true, "registry.example/web:v2")
	err := testenv.WaitFor(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "DeploymentPaused" {
				return d.Status.ObservedGeneration == d.Generation, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no Progressing=DeploymentPaused condition: %v; conditions %+v", err, d.Status.Conditions)
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if rs := replicaSets(t, ns); len(rs) != 1 {
			t.Fatalf("paused Deployment has %d ReplicaSets, want 1", len(rs))
		}
	}

	start = time.Now()
	setPausedImage(t, d, false, "registry.example/web:v2")
	waitRolledOut(t, d)
	t.Logf("rollout after resume completed in %s", time.Since(start).Round(time.Millisecond))
	var active []appsv1.ReplicaSet
	for _, rs := range replicaSets(t, ns) {
		if *rs.Spec.Replicas > 0 || rs.Status.Replicas > 0 {
			active = append(active, rs)
		}
	}
	if len(active) != 1 {
		t.Fatalf("%d ReplicaSets with replicas after the rollout, want 1", len(active))
	}
	rs := active[0]
	if img := rs.Spec.Template.Spec.Containers[0].Image; img != "registry.example/web:v2" || rs.Status.ReadyReplicas != 3 {
		t.Fatalf("ReplicaSet %s runs %s with %d ready replicas, want registry.example/web:v2 with 3", rs.Name, img, rs.Status.ReadyReplicas)
	}
}

// waitRolledOut waits until the Deployment's current spec runs 3 ready, updated replicas.
func waitRolledOut(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	err := testenv.WaitFor(t.Context(), 30*time.Second, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		s := d.Status
		return s.ObservedGeneration == d.Generation && s.Replicas == 3 && s.UpdatedReplicas == 3 &&
			s.ReadyReplicas == 3 && s.AvailableReplicas == 3, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s not rolled out: %v; status %+v", d.Name, err, d.Status)
	}
}

func setPausedImage(t *testing.T, d *appsv1.Deployment, paused bool, image string) {
	t.Helper()
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Paused = paused
	d.Spec.Template.Spec.Containers[0].Image = image
	if err := env.Client.Patch(t.Context(), d, patch); err != nil {
		t.Fatal(err)
	}
}

func replicaSets(t *testing.T, ns string) []appsv1.ReplicaSet {
	t.Helper()
	var l appsv1.ReplicaSetList
	if err := env.Client.List(t.Context(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// TestIstioSchema checks that the real Istio CRDs are installed: ramp's generated routing is
// validated by Istio's own schema and CEL rules, as in a cluster.
func TestIstioSchema(t *testing.T) {
	ns := env.Namespace(t)
	vs := func(name string, weight any, fixedDelay string) *unstructured.Unstructured {
		route := map[string]any{
			"route": []any{
				map[string]any{"destination": map[string]any{"host": "web", "subset": "stable"}, "weight": int64(90)},
				map[string]any{"destination": map[string]any{"host": "web", "subset": "canary"}, "weight": weight},
			},
		}
		if fixedDelay != "" {
			route["fault"] = map[string]any{"delay": map[string]any{"fixedDelay": fixedDelay, "percentage": map[string]any{"value": 10.0}}}
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "VirtualService",
			"metadata":   map[string]any{"name": name, "namespace": ns},
			"spec":       map[string]any{"hosts": []any{"web"}, "http": []any{route}},
		}}
	}
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "DestinationRule",
		"metadata":   map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{
			"host":          "web",
			"trafficPolicy": map[string]any{"tls": map[string]any{"mode": "ISTIO_MUTUAL"}},
			"subsets": []any{
				map[string]any{"name": "stable", "labels": map[string]any{"pod-template-hash": "aaaa"}},
				map[string]any{"name": "canary", "labels": map[string]any{"pod-template-hash": "bbbb"}},
			},
		},
	}}

	for _, obj := range []*unstructured.Unstructured{vs("valid", int64(10), "100ms"), dr} {
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Errorf("creating a valid %s: %v", obj.GetKind(), err)
		}
	}
	for _, c := range []struct {
		name string
		obj  *unstructured.Unstructured
		want string
	}{
		{"weight-not-integer", vs("bad-weight", "abc", ""), "spec.http[0].route[1].weight: Invalid value: \"string\""},
		{"fixed-delay-zero", vs("bad-delay", int64(10), "0s"), "must be a valid duration greater than 1ms"},
	} {
		err := env.Client.Create(t.Context(), c.obj)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestGatewayAPISchema checks that the Gateway API's standard CRDs are installed from the
// module: ramp's HTTPRoutes are validated by their schema and CEL rules, as in a cluster.
func TestGatewayAPISchema(t *testing.T) {
	ns := env.Namespace(t)
	route := func(name string, weight int64, filters []any) *unstructured.Unstructured {
		rule := map[string]any{"backendRefs": []any{
			map[string]any{"name": "web-stable", "port": int64(80), "weight": int64(90)},
			map[string]any{"name": "web-canary", "port": int64(80), "weight": weight},
		}}
		if filters != nil {
			rule["filters"] = filters
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1",
			"kind":       "HTTPRoute",
			"metadata":   map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{
				"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "web"}},
				"rules":      []any{rule},
			},
		}}
	}
	mirror := func(m map[string]any) []any {
		m["backendRef"] = map[string]any{"name": "web-canary", "port": int64(80)}
		return []any{map[string]any{"type": "RequestMirror", "requestMirror": m}}
	}
	if err := env.Client.Create(t.Context(), route("valid", 10, mirror(map[string]any{"percent": int64(20)}))); err != nil {
		t.Errorf("creating a valid HTTPRoute: %v", err)
	}
	for _, c := range []struct {
		name string
		obj  *unstructured.Unstructured
		want string
	}{
		{"weight-too-large", route("bad-weight", 1000001, nil), "spec.rules[0].backendRefs[1].weight"},
		{"mirror-percent-and-fraction", route("bad-mirror", 10, mirror(map[string]any{"percent": int64(20), "fraction": map[string]any{"numerator": int64(1)}})),
			"Only one of percent or fraction may be specified"},
	} {
		err := env.Client.Create(t.Context(), c.obj)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
