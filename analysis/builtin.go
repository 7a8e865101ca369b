package analysis

import (
	"fmt"
	"regexp"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// The built-in metrics read Istio's standard telemetry as reported by the server side
// (reporter="destination"), so they measure what the workload's own sidecar saw, scoped by
// destination_workload (the Deployment name: <target>-canary or <target>) and
// destination_workload_namespace.

// BuiltinQuery returns the PromQL of a built-in metric for workload in namespace over
// window (a PromQL duration such as 1m).
//
//   - error-rate, percent of requests answered 5xx. With requests but no 5xx series it is 0
//     (the "or vector(0)"); with no requests at all the denominator is empty, so the result
//     is empty (no data), never 0%.
//   - latency-p99, the 99th percentile request duration in milliseconds.
func BuiltinQuery(builtin, namespace, workload, window string) (string, error) {
	sel, err := istioSelector(namespace, workload, window)
	if err != nil {
		return "", err
	}
	switch builtin {
	case rampv1.BuiltinErrorRate:
		return fmt.Sprintf(`100 * (sum(rate(istio_requests_total{%s,response_code=~"5.."}[%s])) or vector(0)) / sum(rate(istio_requests_total{%s}[%s]))`,
			sel, window, sel, window), nil
	case rampv1.BuiltinLatencyP99:
		return fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`,
			sel, window), nil
	}
	return "", fmt.Errorf("unknown builtin metric %q (want %s or %s)", builtin, rampv1.BuiltinErrorRate, rampv1.BuiltinLatencyP99)
}

// RequestCountQuery returns the PromQL of the number of requests workload served over
// window, checked against a built-in metric's minRequests.
func RequestCountQuery(namespace, workload, window string) (string, error) {
	sel, err := istioSelector(namespace, workload, window)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, sel, window), nil
}

func istioSelector(namespace, workload, window string) (string, error) {
	if err := validateName("namespace", namespace, dns1123Label); err != nil {
		return "", err
	}
	if err := validateName("workload", workload, dns1123Subdomain); err != nil {
		return "", err
	}
	if err := ValidPromDuration(window); err != nil {
		return "", fmt.Errorf("window: %w", err)
	}
	return fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q,destination_workload=%q`,
		namespace, workload), nil
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
