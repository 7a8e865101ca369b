package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// TestIstiodValidatesIstioWrites: the local cluster runs istiod and every networking.istio.io
// write goes through its validating webhook. Istio's own messages come back for what only
// istiod checks (a header regex that does not compile, a gateway name that is not one); a
// valid VirtualService is admitted, counted by istiod and taken into its configuration.
func TestIstiodValidatesIstioWrites(t *testing.T) {
	if env.Istiod == nil {
		t.Fatal("the local cluster runs no istiod")
	}
	ctx := t.Context()
	ns := env.Namespace(t)

	// Istio's full CRD set from the istio.io/istio module istiod is built from, not only the
	// two kinds ramp writes.
	for _, name := range []string{"gateways.networking.istio.io", "serviceentries.networking.istio.io",
		"authorizationpolicies.security.istio.io", "telemetries.telemetry.istio.io"} {
		crd := &metav1.PartialObjectMetadata{}
		crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}

	var vwc admissionv1.ValidatingWebhookConfiguration
	if err := env.Client.Get(ctx, client.ObjectKey{Name: testenv.IstioWebhookName}, &vwc); err != nil {
		t.Fatal(err)
	}
	if wh := vwc.Webhooks; len(wh) != 1 || *wh[0].FailurePolicy != admissionv1.Fail || wh[0].ClientConfig.URL == nil ||
		*wh[0].ClientConfig.URL != env.Istiod.WebhookURL || !strings.HasPrefix(env.Istiod.WebhookURL, "https://127.0.0.1:") {
		t.Fatalf("webhook configuration %+v, want one webhook calling %s that fails closed", wh, env.Istiod.WebhookURL)
	}

	before, err := env.Istiod.Validations(ctx)
	if err != nil {
		t.Fatal(err)
	}

	err = env.Client.Create(ctx, testenv.InvalidVirtualService(ns, "invalid"))
	if !testenv.IsIstioDenial(err) {
		t.Fatalf("creating an invalid VirtualService: got %v, want istiod's denial", err)
	}
	for _, want := range []string{`domain name "not a gateway!!" invalid`, "error parsing regexp: missing closing )"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("istiod's denial %q does not say %q", err, want)
		}
	}

	valid := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{
			"hosts": []any{"web"},
			"http": []any{map[string]any{
				"match": []any{map[string]any{"headers": map[string]any{"x-canary": map[string]any{"regex": "^(true|yes)$"}}}},
				"route": []any{
					map[string]any{"destination": map[string]any{"host": "web", "subset": "stable"}, "weight": int64(95)},
					map[string]any{"destination": map[string]any{"host": "web", "subset": "canary"}, "weight": int64(5)},
				},
			}},
		},
	}}
	if err := env.Client.Create(ctx, valid); err != nil {
		t.Fatalf("creating a valid VirtualService: %v", err)
	}

	after, err := env.Istiod.Validations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Failed <= before.Failed || after.ByResource["virtualservices"] <= before.ByResource["virtualservices"] {
		t.Errorf("istiod's counts went from %+v to %+v, want one more denial and one more admitted VirtualService", before, after)
	}
	err = testenv.WaitFor(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		return env.Istiod.Holds(ctx, "VirtualService", ns, "web")
	})
	if err != nil {
		t.Errorf("istiod's configuration never held the admitted VirtualService: %v", err)
	}
}
