package v1alpha1_test

import (
	"strconv"
	"testing"
)

// validGates are gates at the limits the CRD allows.
const validGates = `[
  {name: pre, at: BeforeRollout, url: "http://gates.shop/pre", timeout: 1m, retries: 5, onFailure: RollBack, interval: 1s},
  {name: load, at: EachStep, url: "https://loadtester.shop:8443/run/load", metadata: {type: cmd}},
  {name: confirm, at: BeforePromotion, url: "http://10.0.0.1/"},
  {name: report, at: AfterRollout, url: "http://report"}]`

func TestGatesAreValidated(t *testing.T) {
	ns := env.Namespace(t)
	ok := rollout(t, ns, "gates-ok")
	apply(t, ok.Object, set("spec.gates", validGates))
	if err := env.Client.Create(t.Context(), ok); err != nil {
		t.Fatalf("valid gates rejected: %v", err)
	}
	gate := func(fields string) mutation {
		return set("spec.gates", "[{name: g, at: EachStep, url: 'http://gates.shop/g'"+fields+"}]")
	}
	for i, c := range []struct {
		name string
		muts []mutation
		want []string
	}{
		{"duplicate names", []mutation{set("spec.gates", `[{name: g, at: EachStep, url: "http://a"}, {name: g, at: AfterRollout, url: "http://b"}]`)},
			[]string{"spec.gates[1]", "Duplicate value"}},
		{"name not a DNS label", []mutation{set("spec.gates", `[{name: G_1, at: EachStep, url: "http://a"}]`)},
			[]string{"spec.gates[0].name", "should match"}},
		{"unknown point", []mutation{set("spec.gates", `[{name: g, at: Sometimes, url: "http://a"}]`)},
			[]string{"spec.gates[0].at", `Unsupported value: "Sometimes"`}},
		{"ftp url", []mutation{set("spec.gates", `[{name: g, at: EachStep, url: "ftp://a/b"}]`)},
			[]string{"spec.gates[0].url", "url must be an http or https URL"}},
		{"url with a query", []mutation{set("spec.gates", `[{name: g, at: EachStep, url: "http://a/b?c=d"}]`)},
			[]string{"spec.gates[0].url", "without credentials, query or fragment"}},
		{"url with credentials", []mutation{set("spec.gates", `[{name: g, at: EachStep, url: "http://u:p@a/b"}]`)},
			[]string{"spec.gates[0].url", "without credentials, query or fragment"}},
		{"url not a URL", []mutation{set("spec.gates", `[{name: g, at: EachStep, url: "not a url"}]`)},
			[]string{"spec.gates[0].url", "url must be an http or https URL"}},
		{"timeout above 1m", []mutation{gate(", timeout: 61s")},
			[]string{"spec.gates[0].timeout", "timeout must be between 1ms and 1m"}},
		{"retries above 5", []mutation{gate(", retries: 6")},
			[]string{"spec.gates[0].retries", "less than or equal to 5"}},
		{"unknown onFailure", []mutation{gate(", onFailure: Ignore")},
			[]string{"spec.gates[0].onFailure", `Unsupported value: "Ignore"`}},
		{"interval below 1s", []mutation{gate(", interval: 500ms")},
			[]string{"spec.gates[0].interval", "interval must be between 1s and 24h"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj := rollout(t, ns, "gates-invalid-"+strconv.Itoa(i))
			for _, m := range c.muts {
				apply(t, obj.Object, m)
			}
			assertInvalid(t, env.Client.Create(t.Context(), obj), c.want)
		})
	}
}
