package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// templateWake bounds how soon a template's creation or change must reach the Rollouts that
// reference it: well under the minute a blocked Rollout waits before looking again by itself,
// so only the watch can meet it.
const templateWake = 15 * time.Second

// templateRollout is canaryRollout whose one metric comes from a template.
func templateRollout(ns, kind, name string) *rampv1.Rollout {
	ro := canaryRollout(ns)
	ro.Spec.Analysis.Prometheus = rampv1.PrometheusSpec{}
	ro.Spec.Analysis.Metrics = []rampv1.Metric{{Name: "errors", TemplateRef: &rampv1.MetricTemplateRef{Kind: kind, Name: name},
		ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}}}
	return ro
}

func clusterMetricTemplate(t *testing.T, name, address string, secret *rampv1.SecretReference) *rampv1.ClusterMetricTemplate {
	t.Helper()
	tpl := &rampv1.ClusterMetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: rampv1.ClusterMetricTemplateSpec{
		Prometheus:          rampv1.ClusterPrometheusSpec{Address: address, SecretRef: secret},
		MetricTemplateQuery: rampv1.MetricTemplateQuery{Builtin: rampv1.BuiltinErrorRate}}}
	must(t, env.Client.Create(context.Background(), tpl))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), tpl) })
	return tpl
}

func metricTemplate(t *testing.T, ns, name, address, secret string) *rampv1.MetricTemplate {
	t.Helper()
	tpl := &rampv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: rampv1.MetricTemplateSpec{
		Prometheus:          rampv1.PrometheusSpec{Address: address},
		MetricTemplateQuery: rampv1.MetricTemplateQuery{Query: `sum(up{pod=~"{{ .Workload }}-.*"})`}}}
	if secret != "" {
		tpl.Spec.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: secret}
	}
	must(t, env.Client.Create(context.Background(), tpl))
	return tpl
}

func roundsOf(ro *rampv1.Rollout) int {
	verdicts.mu.Lock()
	defer verdicts.mu.Unlock()
	return verdicts.rounds[ro.Namespace+"/"+ro.Name]
}

func waitPhaseWithin(t *testing.T, d time.Duration, ro *rampv1.Rollout, phase string) {
	t.Helper()
	shortWait(t, d, "phase "+phase, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		return ro.Status.Phase == phase, nil
	})
}

func updateRollout(t *testing.T, ro *rampv1.Rollout, change func(*rampv1.Rollout)) {
	t.Helper()
	// ramp writes the Rollout too (its status, its finalizer): a conflict means read again.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		change(ro)
		return env.Client.Update(context.Background(), ro)
	}))
}

// A metric naming a template that does not exist stalls its Rollout, naming the field, and no
// round runs; creating the template wakes the Rollout at once (the watch, not the retry), and
// a template changed to an address the Rollout could not name stalls it again.
func TestTemplateNotFoundStallsUntilCreated(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	cluster := "errors-" + ns
	ro := templateRollout(ns, rampv1.KindClusterMetricTemplate, cluster)
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "TemplateNotFound")
	if !strings.Contains(c.Message, "spec.analysis.metrics[0].templateRef") || !strings.Contains(c.Message, `ClusterMetricTemplate "`+cluster+`" not found`) {
		t.Errorf("Stalled message %q does not name the field and the template", c.Message)
	}
	// The platform's template may name an address off the allow-list.
	clusterMetricTemplate(t, cluster, "http://thanos.platform.invalid:9090", nil)
	waitPhaseWithin(t, templateWake, ro, rampv1.PhaseIdle)

	// The same for a MetricTemplate of the Rollout's namespace.
	updateRollout(t, ro, func(ro *rampv1.Rollout) {
		ro.Spec.Analysis.Metrics[0].TemplateRef = &rampv1.MetricTemplateRef{Kind: rampv1.KindMetricTemplate, Name: "errors"}
	})
	c = waitStalled(t, ro, "TemplateNotFound")
	if !strings.Contains(c.Message, `MetricTemplate "errors" not found in namespace "`+ns+`"`) {
		t.Errorf("Stalled message %q", c.Message)
	}
	tpl := metricTemplate(t, ns, "errors", "http://prometheus.invalid:9090", "")
	waitPhaseWithin(t, templateWake, ro, rampv1.PhaseIdle)

	// Changed to an address the Rollout could not name itself: Stalled, nothing contacted.
	addr, accepted := testenv.CountConnections(t)
	tpl.Spec.Prometheus.Address = "http://" + addr
	must(t, env.Client.Update(ctx, tpl))
	shortWait(t, templateWake, "Stalled=AnalysisEndpointNotAllowed", func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return false, err
		}
		s := cond(ro, "Stalled")
		return s != nil && s.Reason == "AnalysisEndpointNotAllowed", nil
	})
	if s := cond(ro, "Stalled"); !strings.Contains(s.Message, `MetricTemplate "errors" spec.prometheus.address (spec.analysis.metrics[0].templateRef)`) {
		t.Errorf("Stalled message %q does not name the template's field", s.Message)
	}
	setImage(t, target, "podinfo:2")
	holdsFor(t, 2*time.Second, "stalled, nothing contacted", func(context.Context) (bool, string, error) {
		if n, r := accepted.Load(), roundsOf(ro); n != 0 || r != 0 {
			return false, "connections or rounds", nil
		}
		return true, "", nil
	})
}

// Issue 15: a Rollout cannot make ramp read, through a template, a Secret it could not name
// itself. A MetricTemplate's Secret must carry the label (only its metadata is read until it
// does); a ClusterMetricTemplate's must be in the manager's namespace, where it needs none,
// and one elsewhere is not requested at all.
func TestTemplatesReadOnlySecretsTheRolloutMay(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	must(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db-admin", Namespace: ns},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "admin", "password": "hunter2"},
	}))

	metricTemplate(t, ns, "with-secret", "http://prometheus.invalid:9090", "db-admin")
	ro := templateRollout(ns, rampv1.KindMetricTemplate, "with-secret")
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "SecretNotMarked")
	if !strings.Contains(c.Message, `MetricTemplate "with-secret" spec.prometheus.secretRef`) {
		t.Errorf("Stalled message %q does not name the template's field", c.Message)
	}
	onlyMetadataRead(t, ns, "db-admin")

	// A ClusterMetricTemplate naming that Secret (someone tricked a cluster admin, or a typo)
	// is refused without a request for it: only the manager's namespace holds platform Secrets.
	foreign := "foreign-" + ns
	clusterMetricTemplate(t, foreign, "http://thanos.platform.invalid:9090", &rampv1.SecretReference{Namespace: ns, Name: "db-admin"})
	before := len(secretRequests.of(ns, "db-admin"))
	updateRollout(t, ro, func(ro *rampv1.Rollout) {
		ro.Spec.Analysis.Metrics[0].TemplateRef = &rampv1.MetricTemplateRef{Kind: rampv1.KindClusterMetricTemplate, Name: foreign}
	})
	c = waitStalled(t, ro, "SecretNotAllowed")
	for _, w := range []string{`ClusterMetricTemplate "` + foreign + `" spec.prometheus.secretRef`, ns + "/db-admin", `"` + platformNamespace + `"`} {
		if !strings.Contains(c.Message, w) {
			t.Errorf("Stalled message %q lacks %q", c.Message, w)
		}
	}
	if n := len(secretRequests.of(ns, "db-admin")); n != before {
		t.Errorf("%d requests for a Secret outside the manager's namespace", n-before)
	}

	// In the manager's namespace, the platform's Secret needs no label: the Rollout runs.
	platform := "platform-" + ns
	must(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: platform, Namespace: platformNamespace},
		StringData: map[string]string{"token": "platform-token"},
	}))
	clusterMetricTemplate(t, platform, "http://thanos.platform.invalid:9090", &rampv1.SecretReference{Namespace: platformNamespace, Name: platform})
	updateRollout(t, ro, func(ro *rampv1.Rollout) { ro.Spec.Analysis.Metrics[0].TemplateRef.Name = platform })
	waitPhase(t, ro, rampv1.PhaseIdle)
}
