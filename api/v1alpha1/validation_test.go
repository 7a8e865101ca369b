package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// These tests run the generated CRD in a real API server: OpenAPI bounds, enums and CEL rules
// are only checked there (the Go types accept anything), and a CEL rule can compile yet be
// wrong, e.g. never fire, or fire with an unhelpful message.

var (
	env       *testenv.Env
	startedIn time.Duration
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // may build binaries
	start := time.Now()
	var err error
	env, err = testenv.Start(ctx, testenv.Options{})
	cancel()
	startedIn = time.Since(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// TestSamplesAreValid creates every Rollout in config/samples, and checks kustomization.yaml
// lists every sample file.
func TestSamplesAreValid(t *testing.T) {
	t.Logf("API server with the CRDs started in %s", startedIn.Round(time.Millisecond))
	dir := filepath.Join("..", "..", "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct{ Resources []string }
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &kust); err != nil {
		t.Fatal(err)
	}

	ns := env.Namespace(t)
	rollouts := 0
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		if !slices.Contains(kust.Resources, base) {
			t.Errorf("%s is not listed in kustomization.yaml", base)
		}
		objs, err := testenv.ReadObjects(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			if obj.GetKind() != "Rollout" {
				continue
			}
			rollouts++
			obj.SetNamespace(ns) // the samples name a namespace that does not exist here
			if err := env.Client.Create(t.Context(), obj); err != nil {
				t.Errorf("%s: Rollout %s rejected: %v", base, obj.GetName(), err)
			}
		}
	}
	if rollouts < 2 {
		t.Errorf("found %d Rollouts in %s, want the canary and blue/green samples at least", rollouts, dir)
	}
}

// base is a valid Rollout using every field the invalid cases mutate.
const base = `
apiVersion: ramp.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  targetRef:
    name: web
  service:
    port: 8080
    trafficPolicy:
      tls:
        mode: ISTIO_MUTUAL
  strategy:
    canary:
      headerMatch:
        name: x-canary
        exact: "true"
      steps:
        - setWeight: 5
          pause:
            duration: 1m
        - setWeight: 25
        - setWeight: 100
  analysis:
    interval: 30s
    failureLimit: 2
    prometheus:
      address: http://prometheus.istio-system:9090
    metrics:
      - name: error-rate
        builtin: error-rate
        thresholdRange:
          max: 1
      - name: success-rate
        query: sum(rate(istio_requests_total{destination_workload="{{ .Workload }}"}[{{ .Interval }}]))
        compareToStable:
          tolerance: 5
  faultInjection:
    abort:
      percentage: 1
      httpStatus: 503
  promotionWindows:
    - schedule: "0 9 * * 1-5"
      duration: 8h
`

// A mutation sets (or, with a nil value, removes) one field of base, addressed by a dotted
// path with list indexes, e.g. spec.strategy.canary.steps[0].setWeight; the value is YAML.
type mutation struct {
	path  string
	value *string
}

func set(path, yamlValue string) mutation { return mutation{path, &yamlValue} }
func del(path string) mutation            { return mutation{path, nil} }

func TestInvalidRolloutsAreRejected(t *testing.T) {
	ns := env.Namespace(t)
	if err := env.Client.Create(t.Context(), rollout(t, ns, "base")); err != nil {
		t.Fatalf("the base Rollout must be valid: %v", err)
	}

	const durPattern = "should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'"
	cases := []struct {
		name string
		muts []mutation
		want []string // substrings of the API server's error
	}{
		{"both strategies", []mutation{set("spec.strategy.blueGreen", "{}")},
			[]string{"spec.strategy: Invalid value", "exactly one of strategy.canary or strategy.blueGreen must be set"}},
		{"no strategy", []mutation{set("spec.strategy", "{}")},
			[]string{"spec.strategy: Invalid value", "exactly one of strategy.canary or strategy.blueGreen must be set"}},
		{"setWeight 0", []mutation{set("spec.strategy.canary.steps[0].setWeight", "0")},
			[]string{"spec.strategy.canary.steps[0].setWeight", "greater than or equal to 1"}},
		{"setWeight 101", []mutation{set("spec.strategy.canary.steps[2].setWeight", "101")},
			[]string{"spec.strategy.canary.steps[2].setWeight", "less than or equal to 100"}},
		{"weights decrease", []mutation{set("spec.strategy.canary.steps", "[{setWeight: 5}, {setWeight: 25}, {setWeight: 10}]")},
			[]string{"spec.strategy.canary.steps", "steps[].setWeight must not decrease"}},
		{"pause -1s", []mutation{set("spec.strategy.canary.steps[0].pause.duration", "-1s")},
			[]string{"spec.strategy.canary.steps[0].pause.duration", durPattern}},
		{"pause abc", []mutation{set("spec.strategy.canary.steps[0].pause.duration", "abc")},
			[]string{"spec.strategy.canary.steps[0].pause.duration", durPattern}},
		{"pause 0s", []mutation{set("spec.strategy.canary.steps[0].pause.duration", "0s")},
			[]string{"spec.strategy.canary.steps[0].pause.duration", `Invalid value: "0s": pause.duration must be greater than 0s and at most 8760h`}},
		{"analysis interval 0s", []mutation{set("spec.analysis.interval", "0s")},
			[]string{"spec.analysis.interval", `Invalid value: "0s": interval must be between 1s and 8760h`}},
		{"prometheus secretRef name not an object name", []mutation{set("spec.analysis.prometheus.secretRef", "{name: ../kube-system/admin}")},
			[]string{"spec.analysis.prometheus.secretRef.name", "should match"}},
		{"slack secretRef name not an object name", []mutation{set("spec.notifications", "{slack: {secretRef: {name: Slack_Hook}}}")},
			[]string{"spec.notifications.slack.secretRef.name", "should match"}},
		{"failureLimit 0", []mutation{set("spec.analysis.failureLimit", "0")},
			[]string{"spec.analysis.failureLimit", "greater than or equal to 1"}},
		{"fault percentage 101", []mutation{set("spec.faultInjection.abort.percentage", "101")},
			[]string{"spec.faultInjection.abort.percentage", "less than or equal to 100"}},
		{"fault percentage -1", []mutation{set("spec.faultInjection.abort.percentage", "-1")},
			[]string{"spec.faultInjection.abort.percentage", "greater than or equal to 0"}},
		{"abort httpStatus 199", []mutation{set("spec.faultInjection.abort.httpStatus", "199")},
			[]string{"spec.faultInjection.abort.httpStatus", "greater than or equal to 200"}},
		{"abort httpStatus 600", []mutation{set("spec.faultInjection.abort.httpStatus", "600")},
			[]string{"spec.faultInjection.abort.httpStatus", "less than or equal to 599"}},
		{"fault injection without headerMatch", []mutation{del("spec.strategy.canary.headerMatch")},
			[]string{"faultInjection needs strategy.canary.headerMatch"}},
		{"step fault injection without headerMatch", []mutation{
			del("spec.faultInjection"), del("spec.strategy.canary.headerMatch"),
			set("spec.strategy.canary.steps[1].faultInjection", "{delay: {percentage: 50, fixedDelay: 1s}}")},
			[]string{"spec.strategy.canary", "steps[].faultInjection needs headerMatch"}},
		{"fault injection empty", []mutation{set("spec.faultInjection", "{}")},
			[]string{"spec.faultInjection", "faultInjection needs delay, abort or both"}},
		{"header match exact and prefix", []mutation{set("spec.strategy.canary.headerMatch.prefix", "t")},
			[]string{"spec.strategy.canary.headerMatch", "set exactly one of exact, prefix or regex"}},
		{"metric builtin and query", []mutation{set("spec.analysis.metrics[0].query", "up")},
			[]string{"spec.analysis.metrics[0]", "set exactly one of builtin, query or templateRef"}},
		{"metric neither builtin nor query", []mutation{del("spec.analysis.metrics[0].builtin")},
			[]string{"spec.analysis.metrics[0]", "set exactly one of builtin, query or templateRef"}},
		{"compared metric without builtin or query", []mutation{del("spec.analysis.metrics[1].query")},
			[]string{"spec.analysis.metrics[1]", "set exactly one of builtin, query or templateRef"}},
		{"metric builtin and templateRef", []mutation{set("spec.analysis.metrics[0].templateRef", "{kind: ClusterMetricTemplate, name: errors}")},
			[]string{"spec.analysis.metrics[0]", "set exactly one of builtin, query or templateRef"}},
		{"metric query and templateRef", []mutation{set("spec.analysis.metrics[1].templateRef", "{kind: MetricTemplate, name: errors}")},
			[]string{"spec.analysis.metrics[1]", "set exactly one of builtin, query or templateRef"}},
		{"metric stableQuery with templateRef", []mutation{del("spec.analysis.metrics[1].query"),
			set("spec.analysis.metrics[1].templateRef", "{kind: MetricTemplate, name: errors}"), set("spec.analysis.metrics[1].stableQuery", "sum(up)")},
			[]string{"spec.analysis.metrics[1]", "stableQuery comes from the template with templateRef"}},
		{"templateRef of another kind", []mutation{del("spec.analysis.metrics[0].builtin"), set("spec.analysis.metrics[0].templateRef", "{kind: AnalysisTemplate, name: errors}")},
			[]string{"spec.analysis.metrics[0].templateRef.kind", `Unsupported value: "AnalysisTemplate"`}},
		{"templateRef name not an object name", []mutation{del("spec.analysis.metrics[0].builtin"), set("spec.analysis.metrics[0].templateRef", "{kind: MetricTemplate, name: ../errors}")},
			[]string{"spec.analysis.metrics[0].templateRef.name", "should match"}},
		{"no prometheus for a metric without templateRef", []mutation{del("spec.analysis.prometheus"),
			del("spec.analysis.metrics[0].builtin"), set("spec.analysis.metrics[0].templateRef", "{kind: ClusterMetricTemplate, name: errors}")},
			[]string{"spec.analysis: Invalid value", "prometheus is required unless every metric has a templateRef"}},
		{"metric without thresholdRange or compareToStable", []mutation{del("spec.analysis.metrics[0].thresholdRange")},
			[]string{"spec.analysis.metrics[0]", "set thresholdRange, compareToStable or both"}},
		{"thresholdRange min > max", []mutation{set("spec.analysis.metrics[0].thresholdRange.min", "2")},
			[]string{"spec.analysis.metrics[0].thresholdRange", "min must not exceed max"}},
		{"thresholdRange empty", []mutation{set("spec.analysis.metrics[0].thresholdRange", "{}")},
			[]string{"spec.analysis.metrics[0].thresholdRange", "set min, max or both"}},
		{"compareToStable custom query without workload", []mutation{set("spec.analysis.metrics[1].query", "sum(up)")},
			[]string{"spec.analysis.metrics[1]", "compareToStable with a custom query needs stableQuery or the {{ .Workload }} variable"}},
		{"unknown builtin", []mutation{set("spec.analysis.metrics[0].builtin", "error-ratio")},
			[]string{"spec.analysis.metrics[0].builtin", `Unsupported value: "error-ratio"`}},
		{"duplicate metric names", []mutation{set("spec.analysis.metrics[1].name", "error-rate")},
			[]string{"spec.analysis.metrics[1]", "Duplicate value"}},
		{"service port 0", []mutation{set("spec.service.port", "0")},
			[]string{"spec.service.port", "greater than or equal to 1"}},
		{"service port 70000", []mutation{set("spec.service.port", "70000")},
			[]string{"spec.service.port", "less than or equal to 65535"}},
		{"TLS mode bogus", []mutation{set("spec.service.trafficPolicy.tls.mode", "BOGUS")},
			[]string{"spec.service.trafficPolicy.tls.mode", `Unsupported value: "BOGUS"`}},
		{"targetRef kind StatefulSet", []mutation{set("spec.targetRef.kind", "StatefulSet")},
			[]string{"spec.targetRef.kind", `Unsupported value: "StatefulSet"`}},
		{"promotion window duration 0s", []mutation{set("spec.promotionWindows[0].duration", "0s")},
			[]string{"spec.promotionWindows[0].duration", `Invalid value: "0s": duration must be greater than 0s and at most 8760h`}},
		{"prometheus address ftp", []mutation{set("spec.analysis.prometheus.address", "ftp://x")},
			[]string{"spec.analysis.prometheus.address", "address must be an http or https URL"}},
		{"prometheus address not a URL", []mutation{set("spec.analysis.prometheus.address", "not a url")},
			[]string{"spec.analysis.prometheus.address", "address must be an http or https URL"}},

		// Names that flow into label values and derived names (issue #12 item 4).
		{"rollout name of 64 characters", []mutation{set("metadata.name", strings.Repeat("a", 64))},
			[]string{"metadata: Invalid value", "metadata.name must be at most 63 characters"}},
		{"target name not a Service name without service.name", []mutation{set("spec.targetRef.name", "web.v2")},
			[]string{"spec.targetRef.name: Invalid value", "targetRef.name web.v2 is also the Service name", "set service.name"}},
		{"target name of 64 characters without service.name", []mutation{set("spec.targetRef.name", strings.Repeat("w", 64))},
			[]string{"targetRef.name " + strings.Repeat("w", 64) + " is also the Service name"}},
		{"service name of 64 characters", []mutation{set("spec.service.name", strings.Repeat("s", 64))},
			[]string{"spec.service.name", "may not be more than 63 bytes"}},

		// Durations: the value and the allowed range in the message, never a conversion error
		// (item 11); millisecond precision where Istio needs it (item 10).
		{"pause 99999999999h", []mutation{set("spec.strategy.canary.steps[0].pause.duration", "99999999999h")},
			[]string{"spec.strategy.canary.steps[0].pause.duration", `Invalid value: "99999999999h": pause.duration must be greater than 0s and at most 8760h`}},
		{"pause 8761h", []mutation{set("spec.strategy.canary.steps[0].pause.duration", "8761h")},
			[]string{`Invalid value: "8761h": pause.duration must be greater than 0s and at most 8760h`}},
		{"progressDeadline 9999999999999ms", []mutation{set("spec.progressDeadline", "9999999999999ms")},
			[]string{"spec.progressDeadline", `Invalid value: "9999999999999ms": progressDeadline must be greater than 0s and at most 8760h`}},
		{"progressDeadline 0s", []mutation{set("spec.progressDeadline", "0s")},
			[]string{"spec.progressDeadline", `Invalid value: "0s": progressDeadline must be greater than 0s`}},
		{"analysis interval 99999999999h", []mutation{set("spec.analysis.interval", "99999999999h")},
			[]string{"spec.analysis.interval", `Invalid value: "99999999999h": interval must be between 1s and 8760h`}},
		{"prometheus timeout 9999999999s", []mutation{set("spec.analysis.prometheus.timeout", "9999999999s")},
			[]string{"spec.analysis.prometheus.timeout", `Invalid value: "9999999999s": timeout must be between 1ms and 8760h`}},
		{"metric window 99999999999h", []mutation{set("spec.analysis.metrics[0].window", "99999999999h")},
			[]string{"spec.analysis.metrics[0].window", `Invalid value: "99999999999h": window must be between 1s and 8760h`}},
		{"promotion window 99999999999h", []mutation{set("spec.promotionWindows[0].duration", "99999999999h")},
			[]string{"spec.promotionWindows[0].duration", `Invalid value: "99999999999h": duration must be greater than 0s and at most 8760h`}},
		{"service timeout 99999999999h", []mutation{set("spec.service.timeout", "99999999999h")},
			[]string{"spec.service.timeout", `Invalid value: "99999999999h": timeout must be between 1ms and 8760h`}},
		{"service timeout 1500us", []mutation{set("spec.service.timeout", "1.5ms")},
			[]string{"spec.service.timeout", `Invalid value: "1.5ms": timeout must be a whole number of milliseconds`}},
		{"service timeout 0.5ms", []mutation{set("spec.service.timeout", "0.5ms")},
			[]string{"spec.service.timeout", `Invalid value: "0.5ms": timeout must be between 1ms and 8760h`}},
		{"perTryTimeout 1.0001s", []mutation{set("spec.service.retries", "{attempts: 2, perTryTimeout: 1.0001s}")},
			[]string{"spec.service.retries.perTryTimeout", "perTryTimeout must be a whole number of milliseconds"}},
		{"fixedDelay 99999999999h", []mutation{set("spec.faultInjection.delay", "{percentage: 1, fixedDelay: 99999999999h}")},
			[]string{"spec.faultInjection.delay.fixedDelay", `Invalid value: "99999999999h": fixedDelay must be between 1ms and 8760h`}},
		{"step fixedDelay 2.5ms", []mutation{set("spec.strategy.canary.steps[1].faultInjection", "{delay: {percentage: 1, fixedDelay: 2.5ms}}")},
			[]string{"spec.strategy.canary.steps[1].faultInjection.delay.fixedDelay", "fixedDelay must be a whole number of milliseconds"}},
		{"connectTimeout 99999999999h", []mutation{set("spec.service.trafficPolicy.connectionPool", "{tcp: {connectTimeout: 99999999999h}}")},
			[]string{"spec.service.trafficPolicy.connectionPool.tcp.connectTimeout", `Invalid value: "99999999999h": connectTimeout must be between 1ms and 8760h`}},
		{"idleTimeout 1.5ms", []mutation{set("spec.service.trafficPolicy.connectionPool", "{http: {idleTimeout: 1.5ms}}")},
			[]string{"spec.service.trafficPolicy.connectionPool.http.idleTimeout", "idleTimeout must be a whole number of milliseconds"}},
		{"outlier interval 99999999999h", []mutation{set("spec.service.trafficPolicy.outlierDetection", "{interval: 99999999999h}")},
			[]string{"spec.service.trafficPolicy.outlierDetection.interval", `Invalid value: "99999999999h": interval must be between 1ms and 8760h`}},
		{"baseEjectionTime 0.1ms", []mutation{set("spec.service.trafficPolicy.outlierDetection", "{baseEjectionTime: 0.1ms}")},
			[]string{"spec.service.trafficPolicy.outlierDetection.baseEjectionTime", `Invalid value: "0.1ms": baseEjectionTime must be between 1ms and 8760h`}},

		// Strings ramp copies into Istio objects, checked as Istio checks them (item 10).
		{"gateway not a name", []mutation{set("spec.service.gateways", `["not a gateway!!"]`)},
			[]string{`spec.service.gateways[0]: Invalid value: "not a gateway!!": gateways must be <namespace>/<name>`}},
		{"gateway with an empty namespace", []mutation{set("spec.service.gateways", `["/public"]`)},
			[]string{`spec.service.gateways[0]: Invalid value: "/public": gateways must be`}},
		{"gateway with a numeric top-level domain", []mutation{set("spec.service.gateways", `["gw.123"]`)},
			[]string{`spec.service.gateways[0]: Invalid value: "gw.123": gateways must be`}},
		{"gateway name of 64 characters", []mutation{set("spec.service.gateways", `["istio-system/`+strings.Repeat("g", 64)+`"]`)},
			[]string{`spec.service.gateways[0]: Invalid value: "istio-system/` + strings.Repeat("g", 64) + `": gateways must be`}},
		{"host not a name", []mutation{set("spec.service.hosts", `["web", "not a host"]`)},
			[]string{`spec.service.hosts[1]: Invalid value: "not a host": hosts must be host names`}},
		{"host wildcard not first", []mutation{set("spec.service.hosts", `["a.*.example.com"]`)},
			[]string{`spec.service.hosts[0]: Invalid value: "a.*.example.com": hosts must be host names`}},
		{"host label of 64 characters", []mutation{set("spec.service.hosts", `["`+strings.Repeat("h", 64)+`.example.com"]`)},
			[]string{`spec.service.hosts[0]: Invalid value: "` + strings.Repeat("h", 64) + `.example.com": hosts must be host names`}},
		{"hosts duplicated", []mutation{set("spec.service.hosts", `["web", "web"]`)},
			[]string{"spec.service.hosts[1]", "Duplicate value"}},
		{"hosts overlapping", []mutation{set("spec.service.hosts", `["*.example.com", "web.example.com"]`)},
			[]string{"spec.service.hosts", "hosts must not overlap"}},
		{"host * on the mesh", []mutation{set("spec.service.hosts", `["*"]`)},
			[]string{"spec.service", "hosts: * is allowed only on a VirtualService bound to gateways other than mesh"}},
		{"retryOn unknown", []mutation{set("spec.service.retries", "{attempts: 2, retryOn: '5xx,totally-bogus,503'}")},
			[]string{"spec.service.retries.retryOn", `Invalid value: "5xx,totally-bogus,503": retryOn holds a condition Istio does not know`}},
		{"retryOn unknown status code", []mutation{set("spec.service.retries", "{attempts: 2, retryOn: '599'}")},
			[]string{"spec.service.retries.retryOn", `Invalid value: "599": retryOn holds a condition Istio does not know`}},
		{"retries 0 attempts with retryOn", []mutation{set("spec.service.retries", "{attempts: 0, retryOn: 5xx}")},
			[]string{"spec.service.retries", "attempts 0 disables retries"}},
		{"header prefix empty", []mutation{del("spec.strategy.canary.headerMatch.exact"), set("spec.strategy.canary.headerMatch.prefix", `""`)},
			[]string{"spec.strategy.canary.headerMatch.prefix", "at least 1 chars long"}},
		{"header regex empty", []mutation{del("spec.strategy.canary.headerMatch.exact"), set("spec.strategy.canary.headerMatch.regex", `""`)},
			[]string{"spec.strategy.canary.headerMatch.regex", "at least 1 chars long"}},
		{"preview header regex empty", []mutation{del("spec.strategy.canary"), del("spec.faultInjection"),
			set("spec.strategy.blueGreen", `{previewHeader: {name: x-preview, regex: ""}}`)},
			[]string{"spec.strategy.blueGreen.previewHeader.regex", "at least 1 chars long"}},
		{"fault percentage below Istio's smallest share", []mutation{set("spec.faultInjection.abort.percentage", "0.00001")},
			[]string{"spec.faultInjection.abort.percentage", "Invalid value: 1e-05: percentage must be 0 or between 0.0001 and 100"}},
		{"TLS MUTUAL without credentialName", []mutation{set("spec.service.trafficPolicy.tls.mode", "MUTUAL")},
			[]string{"spec.service.trafficPolicy.tls", "mode MUTUAL needs credentialName"}},

		// Traffic mirroring, referenced VirtualService, sticky sessions (issue 16).
		{"mirror percentage 0", []mutation{set("spec.strategy.canary.steps", "[{mirror: {percentage: 0}}, {setWeight: 100}]")},
			[]string{"spec.strategy.canary.steps[0].mirror.percentage", "mirror.percentage must be more than 0 and at most 100"}},
		{"mirror percentage 100.5", []mutation{set("spec.strategy.canary.steps", "[{mirror: {percentage: 100.5}}, {setWeight: 100}]")},
			[]string{"spec.strategy.canary.steps[0].mirror.percentage", "mirror.percentage must be more than 0 and at most 100"}},
		{"mirror with setWeight", []mutation{set("spec.strategy.canary.steps", "[{setWeight: 5, mirror: {percentage: 50}}, {setWeight: 100}]")},
			[]string{"spec.strategy.canary.steps[0]", "a step sets exactly one of setWeight or mirror"}},
		{"step without setWeight or mirror", []mutation{set("spec.strategy.canary.steps", "[{pause: {duration: 1m}}, {setWeight: 100}]")},
			[]string{"spec.strategy.canary.steps[0]", "a step sets exactly one of setWeight or mirror"}},
		{"weights decrease around a mirror step", []mutation{set("spec.strategy.canary.steps", "[{setWeight: 25}, {mirror: {percentage: 50}}, {setWeight: 10}]")},
			[]string{"spec.strategy.canary.steps", "steps[].setWeight must not decrease"}},
		{"virtualServiceRef with hosts", []mutation{set("spec.service.virtualServiceRef", "{name: web, routes: [primary]}"), set("spec.service.hosts", `["web"]`)},
			[]string{"spec.service", "with virtualServiceRef they belong to the referenced VirtualService"}},
		{"virtualServiceRef without routes", []mutation{set("spec.service.virtualServiceRef", "{name: web, routes: []}")},
			[]string{"spec.service.virtualServiceRef.routes", "should have at least 1 items"}},
		{"virtualServiceRef route named ramp-", []mutation{set("spec.service.virtualServiceRef", "{name: web, routes: [ramp-web-canary]}")},
			[]string{"spec.service.virtualServiceRef.routes[0]", "routes must not start with ramp-"}},
		{"virtualServiceRef name not an object name", []mutation{set("spec.service.virtualServiceRef", "{name: ../web, routes: [primary]}")},
			[]string{"spec.service.virtualServiceRef.name", "should match"}},
		{"blue/green mirror percentage 0", []mutation{del("spec.strategy.canary"), del("spec.faultInjection"), set("spec.strategy.blueGreen", "{mirror: {percentage: 0}}")},
			[]string{"spec.strategy.blueGreen.mirror.percentage", "mirror.percentage must be more than 0 and at most 100"}},
		{"sticky cookie name with a space", []mutation{set("spec.strategy.canary.stickySessions", "{cookieName: 'a b'}")},
			[]string{"spec.strategy.canary.stickySessions.cookieName", "should match"}},

		// The Gateway API router: what an HTTPRoute has no field for is refused, naming the field.
		{"gatewayAPI with faultInjection", gatewayAPI(set("spec.faultInjection", "{abort: {percentage: 1, httpStatus: 503}}")),
			[]string{"spec: Invalid value", "faultInjection: the Gateway API's HTTPRoute has no field for fault injection"}},
		{"gatewayAPI with a step's faultInjection", gatewayAPI(set("spec.strategy.canary.steps[1].faultInjection", "{abort: {percentage: 1, httpStatus: 503}}")),
			[]string{"strategy.canary.steps[].faultInjection: the Gateway API's HTTPRoute has no field for fault injection"}},
		{"gatewayAPI with stickySessions", gatewayAPI(set("spec.strategy.canary.stickySessions", "{}")),
			[]string{"strategy.canary.stickySessions: a standard-channel HTTPRoute (Gateway API v1.6) has no field for session persistence"}},
		{"gatewayAPI with a header prefix", gatewayAPI(set("spec.strategy.canary.headerMatch", "{name: x-canary, prefix: t}")),
			[]string{"strategy.canary.headerMatch.prefix: an HTTPRoute header match is Exact or RegularExpression"}},
		{"gatewayAPI with a preview header prefix", gatewayAPI(del("spec.strategy.canary"), set("spec.strategy.blueGreen", "{previewHeader: {name: x-preview, prefix: t}}")),
			[]string{"strategy.blueGreen.previewHeader.prefix: an HTTPRoute header match is Exact or RegularExpression"}},
		{"gatewayAPI with trafficPolicy", gatewayAPI(set("spec.service.trafficPolicy", "{tls: {mode: ISTIO_MUTUAL}}")),
			[]string{"spec.service: Invalid value", "trafficPolicy configures Istio's DestinationRule"}},
		{"gatewayAPI with retries", gatewayAPI(set("spec.service.retries", "{attempts: 2}")),
			[]string{"spec.service: Invalid value", "retries: a standard-channel HTTPRoute (Gateway API v1.6) has no field for retries"}},
		{"gatewayAPI with hosts", gatewayAPI(set("spec.service.hosts", "[web.example.com]")),
			[]string{"spec.service: Invalid value", "with gatewayAPI set gatewayAPI.hostnames and gatewayAPI.parentRefs instead"}},
		{"gatewayAPI with virtualServiceRef", gatewayAPI(set("spec.service.virtualServiceRef", "{name: web, routes: [primary]}")),
			[]string{"spec.service: Invalid value", "gatewayAPI and virtualServiceRef are two routers"}},
		{"gatewayAPI with a 57-character service name", gatewayAPI(set("spec.service.name", strings.Repeat("s", 57))),
			[]string{"spec.service: Invalid value", "the Service name (service.name, or targetRef.name when unset) must be at most 56 characters"}},
		{"gatewayAPI with a 64-character target and no service name", gatewayAPI(set("spec.targetRef.name", strings.Repeat("t", 64))),
			[]string{"the Service name (service.name, or targetRef.name when unset) must be at most 56 characters"}},
		{"gatewayAPI parentRef of an unknown kind", gatewayAPI(set("spec.service.gatewayAPI.parentRefs", "[{kind: Mesh, name: web}]")),
			[]string{"spec.service.gatewayAPI.parentRefs[0].kind", "Unsupported value"}},
		{"gatewayAPI parentRef name too long", gatewayAPI(set("spec.service.gatewayAPI.parentRefs", "[{name: "+strings.Repeat("g", 254)+"}]")),
			[]string{"spec.service.gatewayAPI.parentRefs[0].name", "may not be more than 253"}},
		{"gatewayAPI httpRouteRef with parentRefs", gatewayAPI(set("spec.service.gatewayAPI", "{httpRouteRef: {name: web-routes, rules: [primary]}, parentRefs: [{name: public}]}")),
			[]string{"spec.service.gatewayAPI: Invalid value", "parentRefs and hostnames configure the HTTPRoute ramp generates"}},
		{"gatewayAPI httpRouteRef rule named ramp-", gatewayAPI(set("spec.service.gatewayAPI", "{httpRouteRef: {name: web-routes, rules: [ramp-web-header-primary]}}")),
			[]string{"spec.service.gatewayAPI.httpRouteRef.rules[0]", "rules must not start with ramp-"}},
		{"gatewayAPI httpRouteRef without rules", gatewayAPI(set("spec.service.gatewayAPI", "{httpRouteRef: {name: web-routes, rules: []}}")),
			[]string{"spec.service.gatewayAPI.httpRouteRef.rules", "should have at least 1 items"}},
		{"gatewayAPI httpRouteRef rule name too long", gatewayAPI(set("spec.service.gatewayAPI", "{httpRouteRef: {name: web-routes, rules: ["+strings.Repeat("r", 177)+"]}}")),
			[]string{"spec.service.gatewayAPI.httpRouteRef.rules[0]", "may not be more than 176"}},
		{"gatewayAPI hostname with a path", gatewayAPI(set("spec.service.gatewayAPI.hostnames", "[web.example.com/api]")),
			[]string{"spec.service.gatewayAPI.hostnames[0]", "should match"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := rollout(t, ns, "invalid-"+strconv.Itoa(i))
			for _, m := range c.muts {
				apply(t, obj.Object, m)
			}
			err := env.Client.Create(t.Context(), obj)
			assertInvalid(t, err, c.want)
		})
	}
}

// The new rules must not reject what Istio and ramp accept: values at the limits.
func TestBoundaryRolloutsAreAccepted(t *testing.T) {
	ns := env.Namespace(t)
	for i, muts := range [][]mutation{
		{set("metadata.name", strings.Repeat("a", 63))},
		{set("spec.targetRef.name", strings.Repeat("w", 246)), set("spec.service.name", "web")},
		{set("spec.strategy.canary.steps[0].pause.duration", "8760h")},
		{set("spec.strategy.canary.steps[0].pause.duration", "1h30m0.5s")},
		{set("spec.progressDeadline", "525600m")},
		{set("spec.service.timeout", "1ms")},
		{set("spec.service.timeout", "1.5s")},
		{set("spec.service.retries", "{attempts: 0}")},
		{set("spec.service.retries", "{attempts: 3, perTryTimeout: 250ms, retryOn: '5xx,503,retriable-status-codes,unavailable'}")},
		{set("spec.service.hosts", `["*.example.com", "web", "10.0.0.1", "web.shop.svc.cluster.local."]`), set("spec.service.gateways", `["istio-system/public"]`)},
		{set("spec.service.hosts", `["*"]`), set("spec.service.gateways", `["istio-system/public", "gw.example.com"]`)},
		{set("spec.service.gateways", `["mesh", "istio-system/public"]`)},
		{set("spec.faultInjection.abort.percentage", "0.0001")},
		{set("spec.faultInjection.abort.percentage", "0")},
		{set("spec.service.trafficPolicy.tls", "{mode: MUTUAL, credentialName: web-client}")},
		{set("spec.service.trafficPolicy.connectionPool", "{tcp: {connectTimeout: 8760h}, http: {idleTimeout: 0.001s}}")},
		{set("spec.strategy.canary.steps", "[{mirror: {percentage: 100}}, {setWeight: 5}, {mirror: {percentage: 0.5}}, {setWeight: 100}]")},
		{set("spec.service.virtualServiceRef", "{name: web, routes: [primary, api-v2]}"), set("spec.strategy.canary.stickySessions", "{}")},
		{set("spec.strategy.canary.stickySessions", "{cookieName: canary-session}")},
		{del("spec.strategy.canary"), del("spec.faultInjection"), set("spec.strategy.blueGreen", "{mirror: {percentage: 100}}")},
		gatewayAPI(set("spec.service.name", strings.Repeat("s", 56))),
		gatewayAPI(set("spec.service.gatewayAPI.parentRefs", "[{name: public, namespace: gateways, sectionName: http, port: 80}, {kind: Service, name: web}]"),
			set("spec.service.gatewayAPI.hostnames", `["web.example.com", "*.example.com"]`), set("spec.service.timeout", "1.5s")),
		gatewayAPI(set("spec.strategy.canary.headerMatch", "{name: x-canary, regex: '^(true|yes)$'}"),
			set("spec.strategy.canary.steps", "[{mirror: {percentage: 0.5}}, {setWeight: 5}, {setWeight: 100}]")),
		gatewayAPI(del("spec.strategy.canary"), set("spec.strategy.blueGreen", "{mirror: {percentage: 20}}")),
		gatewayAPI(set("spec.service.gatewayAPI", "{httpRouteRef: {name: web-routes, rules: [primary, "+strings.Repeat("r", 176)+"]}}")),
		// Every metric from a template: no spec.analysis.prometheus needed.
		{del("spec.analysis.prometheus"),
			del("spec.analysis.metrics[0].builtin"), set("spec.analysis.metrics[0].templateRef", "{kind: ClusterMetricTemplate, name: istio-error-rate}"),
			del("spec.analysis.metrics[1].query"), set("spec.analysis.metrics[1].templateRef", "{kind: MetricTemplate, name: success-rate}")},
	} {
		obj := rollout(t, ns, "ok-"+strconv.Itoa(i))
		for _, m := range muts {
			apply(t, obj.Object, m)
		}
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Errorf("case %d: rejected: %v", i, err)
		}
	}
}

// gatewayAPI turns base into a Rollout routed by the Gateway API router (base's Istio-only
// fields removed), then applies muts.
func gatewayAPI(muts ...mutation) []mutation {
	return append([]mutation{set("spec.service.gatewayAPI", "{}"), del("spec.service.trafficPolicy"), del("spec.faultInjection")}, muts...)
}

// Metric templates are checked at admission as the metrics of a Rollout are.
func TestInvalidMetricTemplatesAreRejected(t *testing.T) {
	ns := env.Namespace(t)
	const cluster = `
apiVersion: ramp.dev/v1alpha1
kind: ClusterMetricTemplate
metadata:
  name: NAME
spec:
  prometheus:
    address: http://thanos.monitoring:9090
    secretRef:
      namespace: ramp-system
      name: thanos
    timeout: 5s
  query: sum(rate(errors{workload="{{ .Workload }}"}[{{ .Interval }}]))
`
	const namespaced = `
apiVersion: ramp.dev/v1alpha1
kind: MetricTemplate
metadata:
  name: NAME
spec:
  prometheus:
    address: http://prometheus.istio-system:9090
    secretRef:
      name: prom-creds
  builtin: error-rate
`
	object := func(t *testing.T, text, name string) *unstructured.Unstructured {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(text), &obj.Object); err != nil {
			t.Fatal(err)
		}
		obj.SetName(name)
		if obj.GetKind() == "MetricTemplate" {
			obj.SetNamespace(ns)
		}
		return obj
	}
	for i, text := range []string{cluster, namespaced} {
		obj := object(t, text, "valid-"+strconv.Itoa(i))
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Fatalf("the valid %s must be accepted: %v", obj.GetKind(), err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}
	for i, c := range []struct {
		name, text string
		muts       []mutation
		want       []string
	}{
		{"cluster: builtin and query", cluster, []mutation{set("spec.builtin", "error-rate")},
			[]string{"spec: Invalid value", "set exactly one of builtin or query"}},
		{"cluster: neither builtin nor query", cluster, []mutation{del("spec.query")},
			[]string{"spec: Invalid value", "set exactly one of builtin or query"}},
		{"cluster: stableQuery without query", cluster, []mutation{del("spec.query"), set("spec.builtin", "error-rate"), set("spec.stableQuery", "sum(up)")},
			[]string{"spec: Invalid value", "stableQuery goes with query"}},
		{"cluster: Secret without a namespace", cluster, []mutation{set("spec.prometheus.secretRef", "{name: thanos}")},
			[]string{"spec.prometheus.secretRef.namespace", "Required value"}},
		{"cluster: address not http", cluster, []mutation{set("spec.prometheus.address", "file:///etc/passwd")},
			[]string{"spec.prometheus.address", "address must be an http or https URL"}},
		{"cluster: timeout out of range", cluster, []mutation{set("spec.prometheus.timeout", "9999999999s")},
			[]string{"spec.prometheus.timeout", "timeout must be between 1ms and 8760h"}},
		{"namespaced: unknown builtin", namespaced, []mutation{set("spec.builtin", "error-ratio")},
			[]string{"spec.builtin", `Unsupported value: "error-ratio"`}},
		{"namespaced: no prometheus", namespaced, []mutation{del("spec.prometheus")},
			[]string{"spec.prometheus", "Required value"}},
		{"namespaced: Secret name not an object name", namespaced, []mutation{set("spec.prometheus.secretRef.name", "../kube-system/admin")},
			[]string{"spec.prometheus.secretRef.name", "should match"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj := object(t, c.text, "invalid-"+strconv.Itoa(i))
			for _, m := range c.muts {
				apply(t, obj.Object, m)
			}
			assertInvalid(t, env.Client.Create(t.Context(), obj), c.want)
		})
	}
}

func TestTargetRefIsImmutable(t *testing.T) {
	ns := env.Namespace(t)
	obj := rollout(t, ns, "immutable")
	if err := env.Client.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	apply(t, obj.Object, set("spec.targetRef.name", "other"))
	err := env.Client.Update(t.Context(), obj)
	assertInvalid(t, err, []string{"spec.targetRef", "targetRef is immutable"})

	// Other changes stay allowed.
	apply(t, obj.Object, set("spec.targetRef.name", "web"))
	apply(t, obj.Object, set("spec.strategy.canary.steps[1].setWeight", "50"))
	if err := env.Client.Update(t.Context(), obj); err != nil {
		t.Fatalf("updating the steps: %v", err)
	}
}

func assertInvalid(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an error containing %q", want)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("got %v, want an Invalid error", err)
	}
	t.Logf("rejected: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	// A rule reading a field it did not check with has() fails at run time with this, next to
	// the real error, and confuses the user.
	if strings.Contains(err.Error(), "no such key") {
		t.Errorf("a CEL rule reads an absent field:\n%v", err)
	}
}

func rollout(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(base), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetNamespace(ns)
	obj.SetName(name)
	return obj
}

var segment = regexp.MustCompile(`^([A-Za-z0-9]+)(?:\[(\d+)\])?$`)

// apply applies m to obj, creating missing maps on the way.
func apply(t *testing.T, obj map[string]any, m mutation) {
	t.Helper()
	var value any
	if m.value != nil {
		if err := yaml.Unmarshal([]byte(*m.value), &value); err != nil {
			t.Fatalf("%s: %v", m.path, err)
		}
	}
	parts := strings.Split(m.path, ".")
	cur := obj
	for i, p := range parts {
		s := segment.FindStringSubmatch(p)
		if s == nil {
			t.Fatalf("bad path segment %q in %s", p, m.path)
		}
		last := i == len(parts)-1
		if s[2] == "" {
			switch {
			case last && m.value == nil:
				delete(cur, s[1])
			case last:
				cur[s[1]] = value
			default:
				next, ok := cur[s[1]].(map[string]any)
				if !ok {
					next = map[string]any{}
					cur[s[1]] = next
				}
				cur = next
			}
			continue
		}
		list, _ := cur[s[1]].([]any)
		idx, _ := strconv.Atoi(s[2])
		if idx >= len(list) {
			t.Fatalf("%s: index %d out of range", m.path, idx)
		}
		switch {
		case last && m.value == nil:
			cur[s[1]] = slices.Delete(list, idx, idx+1)
		case last:
			list[idx] = value
		default:
			next, ok := list[idx].(map[string]any)
			if !ok {
				t.Fatalf("%s: %s is not an object", m.path, p)
			}
			cur = next
		}
	}
}
