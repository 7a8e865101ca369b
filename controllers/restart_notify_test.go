package controllers

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
)

type recordingNotifier struct {
	mu   sync.Mutex
	sent []string
}

func (r *recordingNotifier) Enqueue(_ string, n notify.Notification) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, n.Reason)
	return true
}

type recordingEvents struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recordingEvents) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

// A controller that restarts finds every transition already recorded in status: it announces
// nothing again (notifications are sent only for transitions a pass decides).
func TestRestartedControllerSendsNoDuplicateNotifications(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "slack"}}}
	must(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: ns, Labels: map[string]string{credentials.Label: "true"}},
		StringData: map[string]string{"address": "http://127.0.0.1:1/services/never-called"},
	}))
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)

	// A fresh reconciler, as after a restart: no memory, a new cache (its own manager, with the
	// index the reconciler reads through and no controller, so it acts only when called).
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	must(t, err)
	must(t, mgr.GetFieldIndexer().IndexField(mctx, &rampv1.Rollout{}, targetIndex, func(o client.Object) []string {
		return []string{o.(*rampv1.Rollout).Spec.TargetRef.Name}
	}))
	go func() { _ = mgr.Start(mctx) }()
	if !mgr.GetCache().WaitForCacheSync(mctx) {
		t.Fatal("cache did not sync")
	}
	sent, evs := &recordingNotifier{}, &recordingEvents{}
	fresh := &RolloutReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: env.Scheme, Events: evs, Notifier: sent,
		Analyzer: verdicts, Config: plan.Config{SubsetSettle: 200 * time.Millisecond, RoutingGrace: plan.DefaultConfig().RoutingGrace}, Now: time.Now,
	}
	for i := 0; i < 3; i++ {
		if _, err := fresh.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(ro)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(sent.sent) != 0 || len(evs.reasons) != 0 {
		t.Errorf("a restarted controller re-announced transitions: notifications %v, events %v", sent.sent, evs.reasons)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Errorf("phase %s after the restart", ro.Status.Phase)
	}
}
