package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// templateIndex indexes Rollouts by the metric templates they reference ("<kind>/<name>"),
// so a template created or changed wakes exactly the Rollouts that use it.
const templateIndex = "ramp.templateRef"

func templateKey(kind, name string) string { return kind + "/" + name }

func indexTemplateRefs(o client.Object) []string {
	a := o.(*rampv1.Rollout).Spec.Analysis
	if a == nil {
		return nil
	}
	var keys []string
	for _, m := range a.Metrics {
		if ref := m.TemplateRef; ref != nil {
			keys = append(keys, templateKey(ref.Kind, ref.Name))
		}
	}
	return keys
}

// rolloutsForClusterMetricTemplate maps a ClusterMetricTemplate to the Rollouts of every
// namespace referencing it.
func (r *RolloutReconciler) rolloutsForClusterMetricTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	return r.rolloutsBy(ctx, "", templateIndex, templateKey(rampv1.KindClusterMetricTemplate, o.GetName()))
}

// rolloutsForMetricTemplate maps a MetricTemplate to the Rollouts of its namespace
// referencing it (no other may).
func (r *RolloutReconciler) rolloutsForMetricTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	return r.rolloutsBy(ctx, o.GetNamespace(), templateIndex, templateKey(rampv1.KindMetricTemplate, o.GetName()))
}

// TemplateReader reads metric templates for package analysis through a client: the manager's
// cache, which watches both kinds.
type TemplateReader struct{ client.Reader }

// ClusterMetricTemplate reads the ClusterMetricTemplate name.
func (t TemplateReader) ClusterMetricTemplate(ctx context.Context, name string) (*rampv1.ClusterMetricTemplate, error) {
	o := &rampv1.ClusterMetricTemplate{}
	if err := t.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
		return nil, err
	}
	return o, nil
}

// MetricTemplate reads the MetricTemplate namespace/name.
func (t TemplateReader) MetricTemplate(ctx context.Context, namespace, name string) (*rampv1.MetricTemplate, error) {
	o := &rampv1.MetricTemplate{}
	if err := t.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, o); err != nil {
		return nil, err
	}
	return o, nil
}
