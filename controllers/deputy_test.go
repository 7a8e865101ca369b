package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Issue 15, the hole: whoever may create a Rollout must not make ramp contact an endpoint the
// platform did not allow. The Rollout is Stalled, and neither a connection nor an analysis
// round happens.
func TestAnalysisEndpointNotAllowedIsNeverContacted(t *testing.T) {
	ctx := context.Background()
	addr, accepted := testenv.CountConnections(t)

	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Analysis.Prometheus.Address = "http://" + addr
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "AnalysisEndpointNotAllowed")
	if !strings.Contains(c.Message, "spec.analysis.prometheus.address") || !strings.Contains(c.Message, "http://prometheus.invalid:9090") {
		t.Errorf("Stalled message %q does not name the field and what is allowed", c.Message)
	}
	// A new revision changes nothing: still no round, no connection.
	setImage(t, target, "podinfo:2")
	holdsFor(t, 2*time.Second, "stalled, nothing contacted", func(ctx context.Context) (bool, string, error) {
		verdicts.mu.Lock()
		rounds := verdicts.rounds[ns+"/"+ro.Name]
		verdicts.mu.Unlock()
		if n := accepted.Load(); n != 0 || rounds != 0 {
			return false, "connections or rounds", nil
		}
		return true, "", nil
	})
	if ro.Status.Phase != rampv1.PhaseStalled {
		t.Errorf("phase %q", ro.Status.Phase)
	}
}

// Issue 15, the hole: ramp reads only Secrets marked for it. A Rollout naming another is
// Stalled, and the only request ramp made for that Secret asked for its metadata alone.
func TestSecretNotMarkedIsNeverRead(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	must(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db-admin", Namespace: ns},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "admin", "password": "hunter2"},
	}))
	ro := canaryRollout(ns)
	ro.Spec.Analysis.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: "db-admin"}
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "SecretNotMarked")
	if !strings.Contains(c.Message, "spec.analysis.prometheus.secretRef") || !strings.Contains(c.Message, credentials.Label+"=true") {
		t.Errorf("Stalled message %q does not name the field and the label", c.Message)
	}
	onlyMetadataRead(t, ns, "db-admin")

	// Marked by whoever may change it, the Secret is read and the rollout goes on.
	p := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-admin", Namespace: ns}}
	must(t, env.Client.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+credentials.Label+`":"true"}}}`))))
	// Secrets are not watched (ramp may not list them): it looks again within a minute, or at
	// once on any change of the Rollout.
	annotate(t, ro, "example.com/touch", ptr.To("1"))
	waitPhase(t, ro, rampv1.PhaseIdle)
}
