package analysis

import (
	"fmt"
	"regexp"
	"strings"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// The built-in metrics read Istio's standard telemetry as the calling proxies report it
// (reporter="source": the client's sidecar or a gateway). Only the caller sees the failures
// its own proxy produces: the route timeout ramp writes (504 UT; the pod's proxy reports the
// reset request as code 0), connection failures (503 UF, UF,URX; the pod reports nothing),
// retries that ran out, and requests that found no host because outlier detection ejected
// them all or none is ready (503 UH; no pod involved). The pod's own proxy (reporter=
// "destination") reports these as something else or not at all, so a canary failing that way
// would pass on its numbers.
//
// Requests are scoped by destination_workload (the Deployment name: <target>-canary or
// <target>) and destination_workload_namespace, which Istio reads from the chosen host's
// endpoint metadata (also when the connection to it failed). Requests that found none carry destination_workload="unknown" (and an
// unknown namespace): nothing in Istio's labels tells which subset they were for. The
// canary's queries charge the canary with those of the Rollout's Service (flag UH or NC):
// failures that cannot be attributed must fail the canary rather than let it pass, and a
// rollback is the safe side. The stable queries do not count them, so a comparison with
// stable is biased against the canary, never for it. Fault aborts ramp injects (FI) are not
// counted: a fault step means them.
//
// Istio's proxies create a counter on a label set's first request, so a fresh canary's first
// requests (and its first 5xx) appear as new series whose first scraped value already counts
// them; rate() and increase() only see growth between samples and lose those, or a whole
// burst first scraped near the end of the window. Every count here is therefore
// windowed(): increase() for series that existed when the window began, the last value of
// series born inside it (counted from zero, as Envoy did).

// Label selectors of the built-ins. failed is what the caller got as a failure: a 5xx, or no
// response at all (code 0).
const (
	failed     = `response_code=~"0|5.."`
	noHost     = `reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?"`
	requests   = "istio_requests_total"
	durationMs = "istio_request_duration_milliseconds_bucket"
)

// BuiltinQuery returns the PromQL of a built-in metric for workload in namespace over window
// (a PromQL duration such as 1m), counting only requests whose chosen host was one of
// workload's pods: use it for the stable side. CanaryBuiltinQuery is the canary's.
//
//   - error-rate, percent of requests that failed (5xx or no response). With requests but no
//     failure it is 0 (the "or vector(0)"); with no requests at all the denominator is
//     empty, so the result is empty (no data), never 0%.
//   - latency-p99, the 99th percentile duration in milliseconds as the callers measured it
//     (retries, back-off and timeouts included), over requests that found a host.
func BuiltinQuery(builtin, namespace, workload, window string) (string, error) {
	return builtinQuery(builtin, namespace, "", workload, window)
}

// CanaryBuiltinQuery is BuiltinQuery for the canary workload behind service (the Rollout's
// Service, in namespace): error-rate also counts, as failed requests of the canary, the
// requests for service that reached no pod (503 UH or NC), and for its backends: the Services
// a route sends service's traffic to (the Gateway API router's <service>-stable and
// <service>-canary), whose names a failed request carries instead.
func CanaryBuiltinQuery(builtin, namespace, service, workload, window string, backends ...string) (string, error) {
	services, err := validServices(service, backends)
	if err != nil {
		return "", err
	}
	return builtinQuery(builtin, namespace, services, workload, window)
}

// validServices is service and its backends, each checked to be a Service name.
func validServices(service string, backends []string) (string, error) {
	all := append([]string{service}, backends...)
	for _, s := range all {
		if err := validateName("service", s, dns1123Label); err != nil {
			return "", err
		}
	}
	if len(all) == 1 {
		return service, nil
	}
	// A regular expression alternative: names hold nothing but [a-z0-9-].
	return "(" + strings.Join(all, "|") + ")", nil
}

// DestinationBuiltinQuery is BuiltinQuery as the workload's own proxies report it
// (reporter="destination"): for a canary that gets mirrored copies of live requests, whose
// answers no caller sees and whose callers' proxies report nothing of them. It cannot see the
// failures only callers see; a mirror step judges the new version's own answers.
func DestinationBuiltinQuery(builtin, namespace, workload, window string) (string, error) {
	return builtinQueryAs(destination, builtin, namespace, "", workload, window)
}

// DestinationRequestCountQuery is RequestCountQuery as the workload's own proxies report it.
func DestinationRequestCountQuery(namespace, workload, window string) (string, error) {
	sel, err := istioSelectorAs(destination, namespace, workload, window)
	if err != nil {
		return "", err
	}
	return count(requests, window, sel), nil
}

func builtinQuery(builtin, namespace, service, workload, window string) (string, error) {
	return builtinQueryAs(source, builtin, namespace, service, workload, window)
}

func builtinQueryAs(reporter, builtin, namespace, service, workload, window string) (string, error) {
	sel, err := istioSelectorAs(reporter, namespace, workload, window)
	if err != nil {
		return "", err
	}
	switch builtin {
	case rampv1.BuiltinErrorRate:
		all, failures := []string{sel}, []string{sel + "," + failed}
		if service != "" {
			u := unattributed(namespace, service)
			all, failures = append(all, u...), append(failures, u...)
		}
		return fmt.Sprintf(`100 * (%s or vector(0)) / %s`, count(requests, window, failures...), count(requests, window, all...)), nil
	case rampv1.BuiltinLatencyP99:
		return fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (%s))`, windowed(durationMs, sel, window)), nil
	}
	return "", fmt.Errorf("unknown builtin metric %q (want %s or %s)", builtin, rampv1.BuiltinErrorRate, rampv1.BuiltinLatencyP99)
}

// RequestCountQuery returns the PromQL of the number of requests whose chosen host was one of
// workload's pods over window, checked against a built-in metric's minRequests on the stable
// side.
func RequestCountQuery(namespace, workload, window string) (string, error) {
	sel, err := istioSelector(namespace, workload, window)
	if err != nil {
		return "", err
	}
	return count(requests, window, sel), nil
}

// CanaryRequestCountQuery is RequestCountQuery for the canary: the denominator of its
// error-rate, its requests plus the requests for service (and its backends, as for
// CanaryBuiltinQuery) that found no host, so a canary
// whose every request fails with UH has the evidence to fail.
func CanaryRequestCountQuery(namespace, service, workload, window string, backends ...string) (string, error) {
	sel, err := istioSelector(namespace, workload, window)
	if err != nil {
		return "", err
	}
	services, err := validServices(service, backends)
	if err != nil {
		return "", err
	}
	return count(requests, window, append([]string{sel}, unattributed(namespace, services)...)...), nil
}

// count sums windowed() over the series of metric matched by any of the selectors (disjoint:
// each names its own destination_workload).
func count(metric, window string, selectors ...string) string {
	parts := make([]string, len(selectors))
	for i, s := range selectors {
		parts[i] = windowed(metric, s, window)
	}
	return "sum(" + strings.Join(parts, " or ") + ")"
}

// windowed is, per series of metric matched by sel, what it counted over the last window: the
// increase() of a series that already existed when the window began, the last value of one
// born inside it (last_over_time: also when its caller has gone since). A series counts as
// existing when `offset window` finds a sample (within Prometheus' 5m lookback before the
// window's start). A series born up to a scrape interval before the window counts whole: a
// little more evidence, never less.
func windowed(metric, sel, window string) string {
	m := metric + "{" + sel + "}"
	return fmt.Sprintf(`(increase(%[1]s[%[2]s]) and %[1]s offset %[2]s) or (last_over_time(%[1]s[%[2]s]) unless %[1]s offset %[2]s)`, m, window)
}

// unattributed selects what the callers report for requests to service (a name, or an
// alternative of names from validServices) in namespace that reached no pod: destination_service is the cluster's host (service.namespace.svc...) for
// UH, and the Host header the client sent for NC, where Envoy has no cluster. A qualified
// name (service.namespace...) names this Service from any caller; a bare one (service,
// service:port) only from callers in namespace, as DNS resolves it: a Service of the same
// name in another namespace must not charge its failures to this canary.
func unattributed(namespace, service string) []string {
	return []string{
		fmt.Sprintf(`%s,destination_service=~"%s[.]%s([.:].+)?"`, noHost, service, namespace),
		fmt.Sprintf(`%s,destination_service=~"%s(:[0-9]+)?",source_workload_namespace=%q`, noHost, service, namespace),
	}
}

// Reporters: the calling proxy, or the workload's own.
const (
	source      = "source"
	destination = "destination"
)

func istioSelector(namespace, workload, window string) (string, error) {
	return istioSelectorAs(source, namespace, workload, window)
}

func istioSelectorAs(reporter, namespace, workload, window string) (string, error) {
	if err := validateName("namespace", namespace, dns1123Label); err != nil {
		return "", err
	}
	if err := validateName("workload", workload, dns1123Subdomain); err != nil {
		return "", err
	}
	if err := ValidPromDuration(window); err != nil {
		return "", fmt.Errorf("window: %w", err)
	}
	return fmt.Sprintf(`reporter=%q,destination_workload_namespace=%q,destination_workload=%q`,
		reporter, namespace, workload), nil
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// validateName accepts Kubernetes names only, so no value taken from a Rollout can ever
// leave a PromQL string literal: they contain nothing but [a-z0-9.-].
func validateName(what, v string, re *regexp.Regexp) error {
	max := 253
	if re == dns1123Label {
		max = 63
	}
	if v == "" || len(v) > max || !re.MatchString(v) {
		return fmt.Errorf("invalid %s %q: not a Kubernetes name ([a-z0-9.-], at most %d characters)", what, v, max)
	}
	return nil
}
