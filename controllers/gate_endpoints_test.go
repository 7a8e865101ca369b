package controllers

import (
	"testing"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
)

// The refusal of a gate URL names the gate's field and calls the URL a gate endpoint, not an
// analysis endpoint (the allow-list is the same; the field is not).
func TestGateEndpointsBlocker(t *testing.T) {
	allowed := endpoints.MustParse("http://prometheus.istio-system:9090,http://ramp-load.shop")
	gate := func(name, url string) rampv1.Gate { return rampv1.Gate{Name: name, At: rampv1.GateEachStep, URL: url} }
	for _, tc := range []struct {
		name    string
		allowed *endpoints.List
		gates   []rampv1.Gate
		want    string // "" for no blocker
	}{
		{name: "no allow-list", gates: []rampv1.Gate{gate("load", "http://anywhere")}},
		{name: "allowed", allowed: &allowed, gates: []rampv1.Gate{gate("load", "http://ramp-load.shop/"), gate("smoke", "http://ramp-load.shop/smoke")}},
		{name: "no gates", allowed: &allowed},
		{name: "the first refused is named", allowed: &allowed,
			gates: []rampv1.Gate{gate("load", "http://ramp-load.shop/"), gate("smoke", "http://tests.qa/run"), gate("other", "http://x")},
			want: "spec.gates[smoke].url: http://tests.qa/run is not a gate endpoint the platform allows (allowed: http://prometheus.istio-system:9090, http://ramp-load.shop); " +
				"ramp contacts no other: use one of those, or ask the platform team to allow it (manager flag --analysis-allowed-endpoints)"},
		{name: "another port", allowed: &allowed, gates: []rampv1.Gate{gate("load", "http://ramp-load.shop:8080/")},
			want: "spec.gates[load].url: http://ramp-load.shop:8080/ is not a gate endpoint the platform allows (allowed: http://prometheus.istio-system:9090, http://ramp-load.shop); " +
				"ramp contacts no other: use one of those, or ask the platform team to allow it (manager flag --analysis-allowed-endpoints)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := gateEndpointsBlocker(tc.allowed, tc.gates)
			switch {
			case tc.want == "" && b != nil:
				t.Errorf("blocked: %+v", b)
			case tc.want != "" && b == nil:
				t.Errorf("not blocked, want %q", tc.want)
			case tc.want != "" && (b.Reason != "GateEndpointNotAllowed" || b.Message != tc.want):
				t.Errorf("got %s %q\nwant GateEndpointNotAllowed %q", b.Reason, b.Message, tc.want)
			}
		})
	}
}
