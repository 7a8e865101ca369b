package analysis_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// platformNamespace is the manager's own namespace, where ClusterMetricTemplates keep their
// Secrets.
const platformNamespace = "ramp-system"

// p99Query is a custom latency query, as a platform team would write it once.
const p99Query = `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="{{ .Namespace }}",destination_workload="{{ .Workload }}"}[{{ .Interval }}])))`

// platformTemplates creates two ClusterMetricTemplates on the shared Prometheus, with
// credentials in the manager's namespace (unlabelled: platform configuration): the built-in
// error rate, and a custom P99 query. Their names carry ns, as tests share the cluster.
func platformTemplates(t *testing.T, ns string) (errors, p99 string) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: platformNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: platformNamespace, Name: "prometheus-" + ns},
		StringData: map[string]string{"token": "platform-token-" + ns}}
	must(t, env.Client.Create(ctx, secret))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), secret) })
	ref := &rampv1.SecretReference{Namespace: platformNamespace, Name: secret.Name}
	for name, q := range map[string]rampv1.MetricTemplateQuery{
		"error-rate-" + ns:  {Builtin: rampv1.BuiltinErrorRate},
		"latency-p99-" + ns: {Query: p99Query},
	} {
		tpl := &rampv1.ClusterMetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: rampv1.ClusterMetricTemplateSpec{
			Prometheus:          rampv1.ClusterPrometheusSpec{Address: prom.URL, SecretRef: ref},
			MetricTemplateQuery: q,
		}}
		must(t, env.Client.Create(ctx, tpl))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), tpl) })
	}
	return "error-rate-" + ns, "latency-p99-" + ns
}

// templated are the scenario's metrics from the platform's templates: the Rollout keeps its
// own thresholds, window, minRequests and comparison.
func templated(errorsTpl, p99Tpl string) []rampv1.Metric {
	er := errorRate(1)
	er.Builtin, er.TemplateRef = "", &rampv1.MetricTemplateRef{Kind: rampv1.KindClusterMetricTemplate, Name: errorsTpl}
	lat := latencyP99(500)
	lat.Builtin, lat.TemplateRef = "", &rampv1.MetricTemplateRef{Kind: rampv1.KindClusterMetricTemplate, Name: p99Tpl}
	lat.CompareToStable = &rampv1.Comparison{Tolerance: 50}
	return []rampv1.Metric{er, lat}
}

// Issue 15, templates: a Rollout without its own Prometheus judges its canary with the
// platform's ClusterMetricTemplates (address, credentials and query fixed once) against the
// real Prometheus: a healthy canary is promoted, a failing one rolled back, by the Rollout's
// own thresholds.
func TestClusterMetricTemplates(t *testing.T) {
	needsEnv(t)
	t.Parallel()
	t.Run("healthy canary is promoted", func(t *testing.T) {
		t.Parallel()
		r := scenario{canary: healthy, stable: healthy, failureLimit: 1, templates: true}.start(t)
		ro := r.finish(rampv1.PhaseSucceeded)

		r.expectWeights(0, 10, 50, 100, 0)
		expectRounds(t, r, "1:Passed", "2:Passed", "3:Passed")
		expectMetric(t, metric(t, ro, "error-rate"), rampv1.VerdictPassed, 0, 0.95, "<= 1")
		lat := metric(t, ro, "latency-p99")
		if lat.Verdict != rampv1.VerdictPassed || !strings.HasPrefix(lat.Threshold, "<= 500, <= ") {
			t.Errorf("latency-p99 %+v", lat)
		}
		within(t, "canary p99", lat.Value, 85, 115)
		within(t, "stable p99", lat.StableValue, 85, 115)
		r.expectEvent("Promoted")
	})
	t.Run("failing canary is rolled back", func(t *testing.T) {
		t.Parallel()
		r := scenario{canary: traffic{errorRatio: 0.10, p99: 100}, stable: healthy, failureLimit: 1, templates: true}.start(t)
		ro := r.finish(rampv1.PhaseFailed)

		r.expectWeights(0, 10, 0)
		expectRounds(t, r, "1:Failed")
		expectMetric(t, metric(t, ro, "error-rate"), rampv1.VerdictFailed, 8.5, 11.5, "<= 1")
		if ro.Spec.Analysis.Prometheus.Address != "" {
			t.Errorf("the Rollout names a Prometheus: %+v", ro.Spec.Analysis.Prometheus)
		}
		r.expectEvent("RolledBack")
	})
}
