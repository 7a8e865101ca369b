package analysis

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"k8s.io/utils/ptr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// fakeTemplates holds templates by name (namespaced ones by namespace/name).
type fakeTemplates struct {
	cluster    map[string]*rampv1.ClusterMetricTemplate
	namespaced map[string]*rampv1.MetricTemplate
}

func (f fakeTemplates) ClusterMetricTemplate(_ context.Context, name string) (*rampv1.ClusterMetricTemplate, error) {
	if t, ok := f.cluster[name]; ok {
		return t, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "ramp.dev", Resource: "clustermetrictemplates"}, name)
}

func (f fakeTemplates) MetricTemplate(_ context.Context, namespace, name string) (*rampv1.MetricTemplate, error) {
	if t, ok := f.namespaced[namespace+"/"+name]; ok {
		return t, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "ramp.dev", Resource: "metrictemplates"}, name)
}

func clusterTemplate(address string, secret *rampv1.SecretReference, q rampv1.MetricTemplateQuery) *rampv1.ClusterMetricTemplate {
	return &rampv1.ClusterMetricTemplate{Spec: rampv1.ClusterMetricTemplateSpec{
		Prometheus: rampv1.ClusterPrometheusSpec{Address: address, SecretRef: secret}, MetricTemplateQuery: q}}
}

func nsTemplate(address, secret string, q rampv1.MetricTemplateQuery) *rampv1.MetricTemplate {
	t := &rampv1.MetricTemplate{Spec: rampv1.MetricTemplateSpec{
		Prometheus: rampv1.PrometheusSpec{Address: address}, MetricTemplateQuery: q}}
	if secret != "" {
		t.Spec.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: secret}
	}
	return t
}

func ref(kind, name string) *rampv1.MetricTemplateRef {
	return &rampv1.MetricTemplateRef{Kind: kind, Name: name}
}

const workloadQuery = `sum(rate(http_errors{workload="{{ .Workload }}"}[{{ .Interval }}]))`

func TestResolve(t *testing.T) {
	allowed := endpoints.MustParse("http://prometheus.istio-system:9090")
	templates := fakeTemplates{
		cluster: map[string]*rampv1.ClusterMetricTemplate{
			"thanos-errors": clusterTemplate("https://thanos.internal", &rampv1.SecretReference{Namespace: "ramp-system", Name: "thanos"},
				rampv1.MetricTemplateQuery{Query: workloadQuery}),
			"elsewhere": clusterTemplate("https://thanos.internal", &rampv1.SecretReference{Namespace: "shop", Name: "db-admin"},
				rampv1.MetricTemplateQuery{Builtin: rampv1.BuiltinErrorRate}),
			"fixed": clusterTemplate("https://thanos.internal", nil, rampv1.MetricTemplateQuery{Query: "sum(up)"}),
		},
		namespaced: map[string]*rampv1.MetricTemplate{
			"demo/allowed":     nsTemplate("http://prometheus.istio-system:9090", "prom-creds", rampv1.MetricTemplateQuery{Builtin: rampv1.BuiltinLatencyP99}),
			"demo/not-allowed": nsTemplate("http://169.254.169.254", "", rampv1.MetricTemplateQuery{Query: "sum(up)"}),
			"other/others":     nsTemplate("http://prometheus.istio-system:9090", "", rampv1.MetricTemplateQuery{Query: "sum(up)"}),
		},
	}
	policy := Policy{Allowed: &allowed, PlatformNamespace: "ramp-system"}
	cmp := &rampv1.Comparison{Tolerance: 10}

	for _, c := range []struct {
		name   string
		metric rampv1.Metric
		inline string // spec.analysis.prometheus.address
		want   *ResolvedMetric
		reason string // of the Refusal
		msg    []string
	}{
		{name: "inline allowed", inline: "http://prometheus.istio-system:9090",
			metric: rampv1.Metric{Name: "m", Query: "sum(up)", ThresholdRange: maxR(1)},
			want: &ResolvedMetric{Metric: rampv1.Metric{Name: "m", Query: "sum(up)", ThresholdRange: maxR(1)},
				Source: Source{Address: "http://prometheus.istio-system:9090", Timeout: rampv1.DefaultQueryTimeout}}},
		{name: "inline not allowed", inline: "http://169.254.169.254",
			metric: rampv1.Metric{Name: "m", Query: "sum(up)", ThresholdRange: maxR(1)},
			reason: ReasonAnalysisEndpointNotAllowed, msg: []string{"spec.analysis.prometheus.address", "not an analysis endpoint the platform allows"}},
		{name: "inline without prometheus",
			metric: rampv1.Metric{Name: "m", Query: "sum(up)", ThresholdRange: maxR(1)},
			reason: ReasonInvalidSpec, msg: []string{"spec.analysis.prometheus.address"}},
		{name: "cluster template: any address, platform Secret, the metric's own judgement",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("ClusterMetricTemplate", "thanos-errors"), ThresholdRange: maxR(1), CompareToStable: cmp, MinRequests: ptr.To[int32](50)},
			want: &ResolvedMetric{
				Metric: rampv1.Metric{Name: "m", Query: workloadQuery, TemplateRef: ref("ClusterMetricTemplate", "thanos-errors"), ThresholdRange: maxR(1), CompareToStable: cmp, MinRequests: ptr.To[int32](50)},
				Source: Source{Address: "https://thanos.internal", Timeout: rampv1.DefaultQueryTimeout,
					Secret: &SecretRef{Namespace: "ramp-system", Name: "thanos", Platform: true, Field: `ClusterMetricTemplate "thanos-errors" spec.prometheus.secretRef`}}}},
		{name: "cluster template naming a Secret outside the manager's namespace",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("ClusterMetricTemplate", "elsewhere"), ThresholdRange: maxR(1)},
			reason: ReasonSecretNotAllowed, msg: []string{`ClusterMetricTemplate "elsewhere" spec.prometheus.secretRef`, "spec.analysis.metrics[0].templateRef", "shop/db-admin", `"ramp-system"`}},
		{name: "cluster template missing",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("ClusterMetricTemplate", "nope"), ThresholdRange: maxR(1)},
			reason: ReasonTemplateNotFound, msg: []string{"spec.analysis.metrics[0].templateRef", `ClusterMetricTemplate "nope" not found`}},
		{name: "compareToStable with a template query that cannot tell the workloads apart",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("ClusterMetricTemplate", "fixed"), CompareToStable: cmp},
			reason: ReasonInvalidTemplateRef, msg: []string{"spec.analysis.metrics[0].templateRef", "{{ .Workload }}", `ClusterMetricTemplate "fixed"`}},
		{name: "namespaced template: allowed address, Secret of the Rollout's namespace needing the label",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("MetricTemplate", "allowed"), ThresholdRange: maxR(500)},
			want: &ResolvedMetric{
				Metric: rampv1.Metric{Name: "m", Builtin: rampv1.BuiltinLatencyP99, TemplateRef: ref("MetricTemplate", "allowed"), ThresholdRange: maxR(500)},
				Source: Source{Address: "http://prometheus.istio-system:9090", Timeout: rampv1.DefaultQueryTimeout,
					Secret: &SecretRef{Namespace: "demo", Name: "prom-creds", Field: `MetricTemplate "allowed" spec.prometheus.secretRef (spec.analysis.metrics[0].templateRef)`}}}},
		{name: "namespaced template naming an address not allowed",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("MetricTemplate", "not-allowed"), ThresholdRange: maxR(1)},
			reason: ReasonAnalysisEndpointNotAllowed, msg: []string{`MetricTemplate "not-allowed" spec.prometheus.address`, "spec.analysis.metrics[0].templateRef", "169.254.169.254"}},
		{name: "namespaced template of another namespace",
			metric: rampv1.Metric{Name: "m", TemplateRef: ref("MetricTemplate", "others"), ThresholdRange: maxR(1)},
			reason: ReasonTemplateNotFound, msg: []string{`MetricTemplate "others" not found in namespace "demo"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ro := rollout(c.inline, c.metric)
			got, err := Resolve(context.Background(), ro, templates, policy)
			var refusal *Refusal
			switch {
			case c.want != nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != nil:
				if len(got) != 1 || !reflect.DeepEqual(got[0], *c.want) {
					t.Errorf("got  %+v %+v\nwant %+v %+v", got[0].Metric, got[0].Source.Secret, c.want.Metric, c.want.Source.Secret)
				}
			case !errors.As(err, &refusal):
				t.Fatalf("got %v, want a refusal %s", err, c.reason)
			default:
				if refusal.Reason != c.reason {
					t.Errorf("reason %s, want %s (%s)", refusal.Reason, c.reason, refusal.Message)
				}
				for _, w := range c.msg {
					if !strings.Contains(refusal.Message, w) {
						t.Errorf("message %q lacks %q", refusal.Message, w)
					}
				}
			}
		})
	}
}

// A template's metric is judged by the Rollout's thresholds, its minRequests and comparison,
// through the same evaluation as an inline one, against the template's Prometheus.
func TestAnalyzeWithTemplates(t *testing.T) {
	errCanary := mustQ(CanaryBuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "web-canary", "1m"))
	reqCanary := mustQ(CanaryRequestCountQuery("demo", "web", "web-canary", "1m"))
	custom := func(w string) string { return `sum(rate(http_errors{workload="` + w + `"}[1m]))` }
	answers := map[string]string{errCanary: vectorOf(0.5), reqCanary: vectorOf(5), custom("web-canary"): vectorOf(3), custom("web"): vectorOf(1)}
	f := newFakeProm(t, func(q string) (int, string) {
		if a, ok := answers[q]; ok {
			return 200, a
		}
		return 400, promError("bad_data", "unexpected query")
	})
	templates := fakeTemplates{cluster: map[string]*rampv1.ClusterMetricTemplate{
		"errors": clusterTemplate(f.URL, nil, rampv1.MetricTemplateQuery{Builtin: rampv1.BuiltinErrorRate}),
		"custom": clusterTemplate(f.URL, nil, rampv1.MetricTemplateQuery{Query: workloadQuery}),
	}}
	// The allow-list does not hold the fake's address: a ClusterMetricTemplate's is the platform's.
	a := NewAnalyzer(WithClock(fixedClock()), WithTemplates(templates), WithAllowedEndpoints(endpoints.MustParse("http://prometheus.istio-system:9090")))
	ro := rollout("",
		rampv1.Metric{Name: "error-rate", TemplateRef: ref("ClusterMetricTemplate", "errors"), ThresholdRange: maxR(1), MinRequests: ptr.To[int32](2)},
		rampv1.Metric{Name: "custom", TemplateRef: ref("ClusterMetricTemplate", "custom"), CompareToStable: &rampv1.Comparison{Tolerance: 50}},
	)
	got := a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictFailed || !strings.Contains(got.Reason, "custom 3 > stable 1 +50% (1.5)") {
		t.Fatalf("%s %q %+v", got.Verdict, got.Reason, got.Metrics)
	}
	if got.Metrics[0].Verdict != rampv1.VerdictPassed || got.Metrics[0].Threshold != "<= 1" {
		t.Errorf("error-rate: %+v", got.Metrics[0])
	}

	// The Rollout's own minRequests applies to the template's built-in.
	ro.Spec.Analysis.Metrics[0].MinRequests = ptr.To[int32](10)
	ro.Spec.Analysis.Metrics = ro.Spec.Analysis.Metrics[:1]
	got = a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "too little traffic: 5 requests < 10") {
		t.Errorf("minRequests: %s %q", got.Verdict, got.Reason)
	}

	// A template gone between the controller's check and the round: inconclusive, nothing sent.
	before := f.total()
	ro.Spec.Analysis.Metrics[0].TemplateRef.Name = "gone"
	got = a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, `ClusterMetricTemplate "gone" not found`) || f.total() != before {
		t.Errorf("missing template: %s %q, %d queries", got.Verdict, got.Reason, f.total()-before)
	}
}

// secretReads records which getter read which Secret.
type secretReads struct {
	mu   sync.Mutex
	seen []string
}

func (r *secretReads) getter(kind string) SecretGetter {
	return func(_ context.Context, ns, name string) (map[string][]byte, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seen = append(r.seen, kind+":"+ns+"/"+name)
		return map[string][]byte{"token": []byte("tok-" + name)}, nil
	}
}

func (r *secretReads) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// Issue 15: a Rollout never makes ramp contact an address or read a Secret through a template
// that it could not name itself, except through a ClusterMetricTemplate; and a
// ClusterMetricTemplate's Secret is read only in the manager's namespace.
func TestAnalyzeTemplatesContactAndReadOnlyWhatIsAllowed(t *testing.T) {
	listener, accepted := testenv.CountConnections(t)
	f := newFakeProm(t, func(string) (int, string) { return 200, vectorOf(0) })
	templates := fakeTemplates{
		cluster: map[string]*rampv1.ClusterMetricTemplate{
			"platform":         clusterTemplate(f.URL, &rampv1.SecretReference{Namespace: "ramp-system", Name: "thanos"}, rampv1.MetricTemplateQuery{Query: "sum(up)"}),
			"foreign-secret":   clusterTemplate(f.URL, &rampv1.SecretReference{Namespace: "shop", Name: "db-admin"}, rampv1.MetricTemplateQuery{Query: "sum(up)"}),
			"platform-listens": clusterTemplate("http://"+listener, nil, rampv1.MetricTemplateQuery{Query: "sum(up)"}),
		},
		namespaced: map[string]*rampv1.MetricTemplate{
			"demo/sneaky":  nsTemplate("http://"+listener, "db-admin", rampv1.MetricTemplateQuery{Query: "sum(up)"}),
			"demo/labeled": nsTemplate(f.URL, "prom-creds", rampv1.MetricTemplateQuery{Query: "sum(up)"}),
		},
	}
	reads := &secretReads{}
	a := NewAnalyzer(WithTemplates(templates),
		WithAllowedEndpoints(endpoints.MustParse(f.URL)),
		WithSecretGetter(reads.getter("marked")),
		WithPlatformSecrets("ramp-system", reads.getter("platform")))
	round := func(kind, name string) (string, string) {
		got := a.Analyze(context.Background(), rollout("", rampv1.Metric{Name: "m", TemplateRef: ref(kind, name), ThresholdRange: maxR(1)}))
		return got.Verdict, got.Reason
	}

	// A MetricTemplate is a Rollout's words: an address off the allow-list is not contacted,
	// and its Secret is not read.
	if v, why := round("MetricTemplate", "sneaky"); v != rampv1.VerdictInconclusive || !strings.Contains(why, "not an analysis endpoint the platform allows") {
		t.Errorf("sneaky: %s %q", v, why)
	}
	// A ClusterMetricTemplate's Secret outside the manager's namespace is never read.
	if v, why := round("ClusterMetricTemplate", "foreign-secret"); v != rampv1.VerdictInconclusive || !strings.Contains(why, "not in the manager's namespace") {
		t.Errorf("foreign-secret: %s %q", v, why)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections through a MetricTemplate to an address the Rollout may not name", n)
	}
	if r := reads.list(); len(r) != 0 {
		t.Errorf("Secrets read for refused templates: %v", r)
	}

	// What is allowed: the MetricTemplate's Secret through the getter that reads only marked
	// Secrets, the ClusterMetricTemplate's through the platform getter.
	if v, why := round("MetricTemplate", "labeled"); v != rampv1.VerdictPassed {
		t.Errorf("labeled: %s %q", v, why)
	}
	if h := f.headers[len(f.headers)-1].Get("Authorization"); h != "Bearer tok-prom-creds" {
		t.Errorf("Authorization %q", h)
	}
	if v, why := round("ClusterMetricTemplate", "platform"); v != rampv1.VerdictPassed {
		t.Errorf("platform: %s %q", v, why)
	}
	if h := f.headers[len(f.headers)-1].Get("Authorization"); h != "Bearer tok-thanos" {
		t.Errorf("Authorization %q", h)
	}
	if got, want := strings.Join(reads.list(), " "), "marked:demo/prom-creds platform:ramp-system/thanos"; got != want {
		t.Errorf("Secret reads %q, want %q", got, want)
	}
	// The platform's own address is contacted even though it is not on the allow-list.
	round("ClusterMetricTemplate", "platform-listens")
	if n := accepted.Load(); n == 0 {
		t.Errorf("the ClusterMetricTemplate's address was not contacted")
	}
}
