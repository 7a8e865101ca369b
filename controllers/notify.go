package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Notifier queues notifications without blocking (internal/notify.Sender).
type Notifier interface {
	Enqueue(webhookURL string, n notify.Notification) bool
}

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// notify queues the pass's notable transitions. It runs after the status write, so a
// transition is announced once: a restarted controller finds it recorded and does not
// decide it again. The webhook URL is read from the Secret only when there is something to
// send, through the API reader (get only: no cluster-wide watch on Secrets).
func (r *RolloutReconciler) notify(ctx context.Context, ro *rampv1.Rollout, w *world, events []plan.Event) {
	if r.Notifier == nil || len(events) == 0 {
		return
	}
	var todo []plan.Event
	for _, e := range events {
		if notify.Notifies(e.Reason) {
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return
	}
	url, err := r.slackURL(ctx, ro)
	if err != nil {
		r.Events.Eventf(ro, nil, corev1.EventTypeWarning, "NotificationFailed", "Notify", "%s", err.Error())
		return
	}
	if url == "" {
		return
	}
	st := ro.Status
	step := ""
	if st.CurrentStep > 0 {
		step = fmt.Sprintf("%d/%d", st.CurrentStep, st.Steps)
	}
	rev := st.CanaryRevision
	if rev == "" {
		rev = st.StableRevision
	}
	var metrics []rampv1.MetricResult
	for _, m := range st.LastAnalysis {
		if m.Verdict != rampv1.VerdictPassed {
			metrics = append(metrics, m)
		}
	}
	for _, e := range todo {
		n := notify.Notification{
			Rollout: ro.Name, Namespace: ro.Namespace, Reason: e.Reason, Message: e.Message, Warning: e.Warning,
			Phase: st.Phase, Step: step, CanaryWeight: st.CanaryWeight, Revision: rev,
			Image: images(w), Time: r.Now(),
		}
		if strings.HasPrefix(e.Reason, "Analysis") || e.Reason == "RolledBack" {
			n.Metrics = metrics
		}
		r.Notifier.Enqueue(url, n)
	}
}

// slackURL is the rollout's webhook (from its Secret), else the controller-wide default.
func (r *RolloutReconciler) slackURL(ctx context.Context, ro *rampv1.Rollout) (string, error) {
	n := ro.Spec.Notifications
	if n == nil || n.Slack == nil {
		return r.DefaultSlackURL, nil
	}
	ref := n.Slack.SecretRef
	key := ref.Key
	if key == "" {
		key = "address"
	}
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	data, err := credentials.Read(ctx, reader, ro.Namespace, ref.Name)
	if err != nil {
		return "", fmt.Errorf("spec.notifications.slack.secretRef: reading Secret %q: %v", ref.Name, err)
	}
	v, ok := data[key]
	if !ok || len(v) == 0 {
		return "", fmt.Errorf("spec.notifications.slack.secretRef: Secret %q has no key %q", ref.Name, key)
	}
	return strings.TrimSpace(string(v)), nil
}

func images(w *world) string {
	if w == nil || w.target == nil {
		return ""
	}
	var out []string
	for _, c := range w.target.Spec.Template.Spec.Containers {
		out = append(out, c.Image)
	}
	return strings.Join(out, ", ")
}
