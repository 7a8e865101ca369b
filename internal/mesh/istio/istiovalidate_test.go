package istio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// These tests run Istio's own validation (the code istiod's validating webhook runs, built
// from istio.io/istio as hack/istio/cmd/istio-validate) over what ramp renders: the Istio CRD
// schema alone accepts VirtualServices istiod then rejects (a regex that is not RE2, a
// gateway that is not a name, an unknown retryOn condition).

var istioBins struct {
	once sync.Once
	dir  string
	err  error
}

// istioValidate is the path of istio-validate: in $ISTIO_BINS (make test sets it and
// RAMP_REQUIRE_ISTIO_BINS), else built once and cached by hack/istio-bins.sh.
func istioValidate(t *testing.T) string {
	t.Helper()
	istioBins.once.Do(func() {
		if dir := os.Getenv("ISTIO_BINS"); dir != "" {
			istioBins.dir = dir
			return
		}
		if v := os.Getenv("RAMP_REQUIRE_ISTIO_BINS"); v != "" {
			istioBins.err = fmt.Errorf("RAMP_REQUIRE_ISTIO_BINS=%s but ISTIO_BINS is not set: run the tests with ISTIO_BINS=\"$(hack/istio-bins.sh)\"", v)
			return
		}
		cmd := exec.Command(filepath.Join("..", "..", "..", "hack", "istio-bins.sh"), "istio-validate")
		cmd.Stderr = os.Stderr // a cold build takes minutes: show progress
		out, err := cmd.Output()
		if err != nil {
			istioBins.err = fmt.Errorf("hack/istio-bins.sh: %w", err)
			return
		}
		istioBins.dir = strings.TrimSpace(string(out))
	})
	if istioBins.err != nil {
		t.Fatal(istioBins.err)
	}
	bin := filepath.Join(istioBins.dir, "istio-validate")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("istio-validate: %v", err)
	}
	return bin
}

// istioCheck runs Istio's validation on one object; the error holds Istio's message.
func istioCheck(t *testing.T, bin string, doc []byte) error {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(doc)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		if !bytes.HasPrefix(out, []byte("ok ")) {
			t.Fatalf("istio-validate exited 0 without an ok:\n%s", out)
		}
		if bytes.Contains(out, []byte("warnings:")) {
			t.Logf("Istio warns: %s", out)
		}
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return errors.New(strings.TrimSpace(string(out)))
	default:
		t.Fatalf("istio-validate: %v\n%s", err, out)
		return nil
	}
}

// renderingTests render every VirtualService and DestinationRule shape ramp produces; each
// renders through renderVS and mustDR, which TestIstioAcceptsRendered records.
var renderingTests = []struct {
	name string
	run  func(*testing.T)
}{
	{"TestVirtualServiceMetadata", TestVirtualServiceMetadata},
	{"TestVirtualServiceWeights", TestVirtualServiceWeights},
	{"TestVirtualServiceHostsAndGateways", TestVirtualServiceHostsAndGateways},
	{"TestVirtualServiceNoPort", TestVirtualServiceNoPort},
	{"TestVirtualServiceHeaderRoute", TestVirtualServiceHeaderRoute},
	{"TestVirtualServiceFault", TestVirtualServiceFault},
	{"TestVirtualServiceRetriesAndTimeout", TestVirtualServiceRetriesAndTimeout},
	{"TestDestinationRule", TestDestinationRule},
	{"TestDestinationRuleHost", TestDestinationRuleHost},
	{"TestDeterministic", TestDeterministic},
	{"TestDeepCopy", TestDeepCopy},
	{"TestVirtualServiceMirror", TestVirtualServiceMirror},
	{"TestVirtualServiceSticky", TestVirtualServiceSticky},
	{"TestEditVirtualService", TestEditVirtualService},
	{"TestEditVirtualServiceLeavesForeignMirror", TestEditVirtualServiceLeavesForeignMirror},
	{"TestReleasedDestinationRule", TestReleasedDestinationRule},
	{"TestDecodesIntoIstioTypes", TestDecodesIntoIstioTypes},
	{"TestMatchesIstioCRDSchema", TestMatchesIstioCRDSchema},
}

// TestIstioAcceptsRendered feeds every object the rendering tests produce to Istio's own
// validation and expects each to be valid.
func TestIstioAcceptsRendered(t *testing.T) {
	bin := istioValidate(t)
	var objs []renderedObject
	recorded = &objs
	t.Run("render", func(t *testing.T) {
		defer func() { recorded = nil }()
		for _, rt := range renderingTests {
			t.Run(rt.name, rt.run)
		}
	})
	kinds := map[string]int{}
	for _, o := range objs {
		var u unstructured.Unstructured
		if err := json.Unmarshal(o.json, &u.Object); err != nil {
			t.Fatal(err)
		}
		kinds[u.GetKind()]++
	}
	// A floor, so that a rendering test no longer recording cannot go unnoticed.
	if kinds[KindVirtualService] < 30 || kinds[KindDestinationRule] < 10 {
		t.Fatalf("recorded %v; want at least 30 VirtualServices and 10 DestinationRules", kinds)
	}
	start := time.Now()
	for i, o := range objs {
		if err := istioCheck(t, bin, o.json); err != nil {
			t.Errorf("object %d rendered by %s: Istio rejects it: %v\n%s", i, o.test, err, o.json)
		}
	}
	t.Logf("Istio validated %d objects (%v) in %s", len(objs), kinds, time.Since(start).Round(time.Millisecond))
}

// TestIstioRejects proves the validator can fail: objects ramp would render from specs that
// admission (or Validate) must stop are rejected by Istio, with Istio's reason.
func TestIstioRejects(t *testing.T) {
	bin := istioValidate(t)
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		r    Routing
		want string
	}{
		{"header regex not RE2", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Regex: ptr("(unclosed")}
		}), Routing{HeaderRoute: true}, "error parsing regexp: missing closing )"},
		{"gateway not a name", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Gateways = []string{"not a gateway!!"}
		}), Routing{}, `domain name "not a gateway!!" invalid`},
		{"unknown retryOn", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Retries = &v1alpha1.HTTPRetry{Attempts: 2, RetryOn: "5xx,totally-bogus"}
		}), Routing{}, `"totally-bogus" is not a valid retryOn policy`},
		{"sub-millisecond timeout", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Timeout = dur(1500 * time.Microsecond)
		}), Routing{}, "only durations to ms precision are supported"},
		{"fault percentage below 0.0001", rollout(), Routing{HeaderRoute: true, Fault: &v1alpha1.FaultInjection{
			Abort: &v1alpha1.FaultAbort{Percentage: 0.00001, HTTPStatus: 503}}}, "is neither 0.0, nor in range [0.0001, 100.0]"},
		{"retries 0 with retryOn", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Retries = &v1alpha1.HTTPRetry{Attempts: 0, RetryOn: "5xx"}
		}), Routing{}, "http retry policy configured when attempts are set to 0"},
		{"wildcard host on the mesh", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Hosts = []string{"*"}
		}), Routing{}, "wildcard host * is not allowed"},
		{"overlapping hosts", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Hosts = []string{"*.example.com", "web.example.com"}
		}), Routing{}, "duplicate hosts in virtual service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := ApplyPatch(VirtualService(tc.ro, tc.r))
			if err != nil {
				t.Fatal(err)
			}
			err = istioCheck(t, bin, doc)
			if err == nil {
				t.Fatalf("Istio accepts it; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Istio's error lacks %q:\n%v", tc.want, err)
			}
		})
	}
	t.Run("MUTUAL TLS without credentialName", func(t *testing.T) {
		dr := mustDR(t, rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.TrafficPolicy = &v1alpha1.TrafficPolicy{TLS: &v1alpha1.ClientTLS{Mode: "MUTUAL"}}
		}))
		doc, err := ApplyPatch(dr)
		if err != nil {
			t.Fatal(err)
		}
		if err := istioCheck(t, bin, doc); err == nil || !strings.Contains(err.Error(), "client certificate required for mutual tls") {
			t.Errorf("got %v, want Istio to require a client certificate", err)
		}
	})
}
