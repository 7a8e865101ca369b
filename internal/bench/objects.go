package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// ReleaseAnnotation is the pod-template annotation the bench bumps to "commit" a release.
const ReleaseAnnotation = "bench.ramp.dev/release"

// target is an app's Deployment as Git would have it.
func target(ns, name string, replicas int32) *appsv1.Deployment {
	lbl := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: map[string]string{ReleaseAnnotation: "v1"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "ghcr.io/stefanprodan/podinfo:6.7.0",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9898}},
				}}},
			},
		},
	}
}

// rolloutSpec describes the Rollouts a phase creates.
type rolloutSpec struct {
	steps []rampv1.CanaryStep
	// analysis: nil for none.
	analysis *rampv1.AnalysisSpec
}

func rollout(ns, name string, s rolloutSpec) *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: name},
			Service:   rampv1.ServiceSpec{Port: 9898},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps:       s.steps,
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
			Analysis: s.analysis.DeepCopy(),
		},
	}
}

// builtinAnalysis checks ramp's two built-in metrics against prometheus every interval.
func builtinAnalysis(prometheus string, interval time.Duration, failureLimit int32) *rampv1.AnalysisSpec {
	return &rampv1.AnalysisSpec{
		Interval:     &metav1.Duration{Duration: interval},
		FailureLimit: ptr.To(failureLimit),
		Prometheus:   rampv1.PrometheusSpec{Address: prometheus},
		Metrics: []rampv1.Metric{
			{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}},
			{Name: "latency", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(500.0)}},
		},
	}
}

func pause(d time.Duration) *rampv1.Pause {
	return &rampv1.Pause{Duration: &metav1.Duration{Duration: d}}
}

// createApps creates the namespace, then each app's Deployment and Rollout, workers at a time.
func createApps(ctx context.Context, c client.Client, ns string, names []string, replicas int32, s rolloutSpec, workers int) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	return parallel(len(names), workers, func(i int) error {
		d := target(ns, names[i], replicas)
		if err := c.Create(ctx, d); err != nil {
			return fmt.Errorf("creating Deployment %s: %w", names[i], err)
		}
		// Headless: envtest's Service IP range holds a few hundred addresses, and ramp needs only
		// the Service to exist.
		svc := testenv.ServiceFor(d, 9898)
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		if err := c.Create(ctx, svc); err != nil {
			return fmt.Errorf("creating Service %s: %w", names[i], err)
		}
		if err := c.Create(ctx, rollout(ns, names[i], s)); err != nil {
			return fmt.Errorf("creating Rollout %s: %w", names[i], err)
		}
		return nil
	})
}

// release "commits" a new revision of the app: it changes the pod template as a Git sync
// would, and returns when the API server has accepted the change.
func release(ctx context.Context, c client.Client, ns, name, version string) (time.Time, error) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, ReleaseAnnotation, version)))
	if err := c.Patch(ctx, d, p); err != nil {
		return time.Time{}, fmt.Errorf("releasing %s %s: %w", name, version, err)
	}
	return time.Now(), nil
}

// annotateRollout sets an annotation on a Rollout.
func annotateRollout(ctx context.Context, c client.Client, ns, name, key, value string) error {
	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)))
	return c.Patch(ctx, ro, p)
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func appNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}
