package analysis

import (
	"context"
	"fmt"
	"regexp"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
)

// TemplateGetter reads the metric templates Rollouts reference (a controller wires it to its
// cache). A template that does not exist is an error apierrors.IsNotFound recognises.
type TemplateGetter interface {
	ClusterMetricTemplate(ctx context.Context, name string) (*rampv1.ClusterMetricTemplate, error)
	MetricTemplate(ctx context.Context, namespace, name string) (*rampv1.MetricTemplate, error)
}

// Policy is what a Rollout may make ramp contact and read. A Rollout and a MetricTemplate
// (which whoever may write Rollouts in a namespace may write too) name only allowed
// addresses and Secrets of their own namespace; a ClusterMetricTemplate, which only cluster
// admins write, names any address and a Secret of the platform's namespace.
type Policy struct {
	// Allowed are the endpoints Rollouts and MetricTemplates may name; nil checks none (tests
	// and in-process wiring that trust their Rollouts).
	Allowed *endpoints.List
	// PlatformNamespace is the manager's own namespace, the only one whose Secrets a
	// ClusterMetricTemplate may name ("": none).
	PlatformNamespace string
}

// Reasons of a Refusal (the Rollout's Stalled condition).
const (
	ReasonTemplateNotFound           = "TemplateNotFound"
	ReasonInvalidTemplateRef         = "InvalidTemplateRef"
	ReasonAnalysisEndpointNotAllowed = "AnalysisEndpointNotAllowed"
	ReasonSecretNotAllowed           = "SecretNotAllowed"
	ReasonInvalidSpec                = "InvalidSpec"
)

// Refusal is why a Rollout's analysis cannot run as specified; Message names the field. ramp
// contacts and reads nothing on its behalf until it is fixed.
type Refusal struct {
	Reason, Message string
}

func (r *Refusal) Error() string { return r.Message }

// Source is where a metric's queries go.
type Source struct {
	Address string
	Timeout time.Duration
	// Secret holds the credentials (nil: none).
	Secret *SecretRef
}

// SecretRef is a credentials Secret ramp may read for a Source.
type SecretRef struct {
	Namespace, Name string
	// Platform marks the Secret of a ClusterMetricTemplate, in the platform's namespace: ramp
	// reads it without the ramp.dev/credentials label. Any other Secret needs the label.
	Platform bool
	// Field names where it was referenced, for messages.
	Field string
}

// ResolvedMetric is a Rollout's metric with its template applied: the template's builtin,
// query and stableQuery, the metric's own thresholds, comparison, minRequests and window.
type ResolvedMetric struct {
	Metric rampv1.Metric
	Source Source
}

// Resolve applies the metrics' templates of ro under policy. It reads only templates (never a
// Secret, never an endpoint): a *Refusal says what ro may not make ramp do; other errors are
// reads that failed.
func Resolve(ctx context.Context, ro *rampv1.Rollout, templates TemplateGetter, policy Policy) ([]ResolvedMetric, error) {
	spec := ro.Spec.Analysis
	if spec == nil {
		return nil, nil
	}
	out := make([]ResolvedMetric, len(spec.Metrics))
	for i := range spec.Metrics {
		m := &spec.Metrics[i]
		field := fmt.Sprintf("spec.analysis.metrics[%d]", i)
		out[i].Metric = *m
		var err error
		if m.TemplateRef == nil {
			out[i].Source, err = inlineSource(ro, policy)
		} else {
			err = fromTemplate(ctx, ro, field+".templateRef", &out[i], templates, policy)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func inlineSource(ro *rampv1.Rollout, policy Policy) (Source, error) {
	prom := &ro.Spec.Analysis.Prometheus
	if prom.Address == "" {
		return Source{}, &Refusal{ReasonInvalidSpec, "spec.analysis.prometheus.address: required by the metrics without a templateRef"}
	}
	if err := allowed(policy, prom.Address, "spec.analysis.prometheus.address"); err != nil {
		return Source{}, err
	}
	s := Source{Address: prom.Address, Timeout: timeoutOf(prom.Timeout)}
	if ref := prom.SecretRef; ref != nil {
		s.Secret = &SecretRef{Namespace: ro.Namespace, Name: ref.Name, Field: "spec.analysis.prometheus.secretRef"}
	}
	return s, nil
}

func fromTemplate(ctx context.Context, ro *rampv1.Rollout, field string, rm *ResolvedMetric, templates TemplateGetter, policy Policy) error {
	ref := rm.Metric.TemplateRef
	if templates == nil {
		return fmt.Errorf("%s: this analyzer reads no metric templates", field)
	}
	var (
		q    rampv1.MetricTemplateQuery
		what string
	)
	switch ref.Kind {
	case rampv1.KindClusterMetricTemplate:
		t, err := templates.ClusterMetricTemplate(ctx, ref.Name)
		if apierrors.IsNotFound(err) {
			return &Refusal{ReasonTemplateNotFound, fmt.Sprintf("%s: ClusterMetricTemplate %q not found; create it (cluster admins), or reference another", field, ref.Name)}
		} else if err != nil {
			return fmt.Errorf("%s: reading ClusterMetricTemplate %q: %w", field, ref.Name, err)
		}
		what = fmt.Sprintf("ClusterMetricTemplate %q", ref.Name)
		q = t.Spec.MetricTemplateQuery
		prom := &t.Spec.Prometheus
		// Written by cluster admins: its address is the platform's choice, and its Secret
		// platform configuration, which lives in the manager's namespace and nowhere else.
		rm.Source = Source{Address: prom.Address, Timeout: timeoutOf(prom.Timeout)}
		if s := prom.SecretRef; s != nil {
			sf := what + " spec.prometheus.secretRef"
			if policy.PlatformNamespace == "" || s.Namespace != policy.PlatformNamespace {
				return &Refusal{ReasonSecretNotAllowed, fmt.Sprintf(
					"%s (%s): Secret %s/%s is not in the manager's namespace %q; a ClusterMetricTemplate's credentials are platform configuration and ramp reads them only there: move the Secret",
					sf, field, s.Namespace, s.Name, policy.PlatformNamespace)}
			}
			rm.Source.Secret = &SecretRef{Namespace: s.Namespace, Name: s.Name, Platform: true, Field: sf}
		}
	case rampv1.KindMetricTemplate:
		t, err := templates.MetricTemplate(ctx, ro.Namespace, ref.Name)
		if apierrors.IsNotFound(err) {
			return &Refusal{ReasonTemplateNotFound, fmt.Sprintf("%s: MetricTemplate %q not found in namespace %q; create it, or reference another", field, ref.Name, ro.Namespace)}
		} else if err != nil {
			return fmt.Errorf("%s: reading MetricTemplate %q: %w", field, ref.Name, err)
		}
		what = fmt.Sprintf("MetricTemplate %q", ref.Name)
		q = t.Spec.MetricTemplateQuery
		prom := &t.Spec.Prometheus
		// Whoever writes Rollouts here may write this too: it gets what a Rollout gets.
		if err := allowed(policy, prom.Address, what+" spec.prometheus.address ("+field+")"); err != nil {
			return err
		}
		rm.Source = Source{Address: prom.Address, Timeout: timeoutOf(prom.Timeout)}
		if s := prom.SecretRef; s != nil {
			rm.Source.Secret = &SecretRef{Namespace: ro.Namespace, Name: s.Name, Field: what + " spec.prometheus.secretRef (" + field + ")"}
		}
	default:
		return &Refusal{ReasonInvalidSpec, fmt.Sprintf("%s.kind: %q is neither %s nor %s", field, ref.Kind, rampv1.KindClusterMetricTemplate, rampv1.KindMetricTemplate)}
	}
	if (q.Builtin == "") == (q.Query == "") {
		return &Refusal{ReasonInvalidTemplateRef, fmt.Sprintf("%s: %s sets %s", field, what, "neither or both of builtin and query")}
	}
	m := &rm.Metric
	m.Builtin, m.Query, m.StableQuery = q.Builtin, q.Query, q.StableQuery
	// What admission checks for an inline query, checked here for the template's.
	if m.CompareToStable != nil && m.Query != "" && m.StableQuery == "" && !workloadVar.MatchString(m.Query) {
		return &Refusal{ReasonInvalidTemplateRef, fmt.Sprintf(
			"%s: compareToStable needs a query that uses {{ .Workload }} or a stableQuery, and %s has neither: drop compareToStable or use another template", field, what)}
	}
	return nil
}

func allowed(policy Policy, address, field string) error {
	if policy.Allowed == nil {
		return nil
	}
	if err := policy.Allowed.Allows(address); err != nil {
		return &Refusal{ReasonAnalysisEndpointNotAllowed, fmt.Sprintf(
			"%s: %v; ramp contacts no other: use one of those, or ask the platform team to allow it (manager flag --analysis-allowed-endpoints) or to provide a ClusterMetricTemplate", field, err)}
	}
	return nil
}

func timeoutOf(d *metav1.Duration) time.Duration {
	if d == nil {
		return rampv1.DefaultQueryTimeout
	}
	return d.Duration
}

// workloadVar is the {{ .Workload }} variable, spaced and trimmed as a template may write it.
var workloadVar = regexp.MustCompile(`\{\{-?\s*\.Workload\s*-?\}\}`)
