package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Issue 14.2: a write Istio's own validation (istiod's webhook, registered with the local
// cluster's API server) rejects is reported on the Rollout with Istio's message.
//
// The value: a client TLS credentialName that names a ConfigMap of another namespace
// (configmap://<namespace>/<name>). Istio accepts such a reference only from its own
// namespace, which ramp's admission cannot check: a CRD's validation rules do not see the
// object's namespace. (Every VirtualService field ramp renders is checked by its CRD rules or,
// for the header regex, by ramp before it writes; this DestinationRule field is the one
// found that only istiod catches.)
func TestIstioRejectionIsReportedOnTheRollout(t *testing.T) {
	if env.Istiod == nil {
		t.Fatal("the local cluster runs no istiod")
	}
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")

	ro := plainRollout(ns)
	ro.Spec.Service.TrafficPolicy = &rampv1.TrafficPolicy{TLS: &rampv1.ClientTLS{
		Mode: "SIMPLE", CredentialName: "configmap://" + testenv.IstioNamespace + "/ca-bundle"}}
	must(t, env.Client.Create(ctx, ro)) // ramp's admission accepts it

	c := waitStalled(t, ro, plan.ReasonApplyFailed)
	t.Logf("Stalled: %s", c.Message)
	for _, want := range []string{
		istio.KindDestinationRule,
		`admission webhook "validation.istio.io" denied the request`,
		`invalid configmap:// credentialName: namespace must match the configuration namespace "` + ns + `"`,
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Stalled message %q does not say %q", c.Message, want)
		}
	}
	waitEvent(t, ro, plan.ReasonApplyFailed)

	// The reference Istio accepts: a ConfigMap of the Rollout's own namespace.
	fixed := "configmap://" + ns + "/ca-bundle"
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	patch := client.MergeFrom(ro.DeepCopy())
	ro.Spec.Service.TrafficPolicy.TLS.CredentialName = fixed
	must(t, env.Client.Patch(ctx, ro, patch))
	waitRollout(t, ro, "Ready=True once Istio admits the DestinationRule", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionTrue && cond(ro, meta.StalledCondition) == nil
	})
	dr := mustIstioObject(t, ns, istio.KindDestinationRule, ro.Name)
	if got, _, _ := unstructured.NestedString(dr.Object, "spec", "trafficPolicy", "tls", "credentialName"); got != fixed {
		t.Errorf("DestinationRule credentialName %q, want %q", got, fixed)
	}
}
