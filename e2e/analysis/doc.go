// Package analysis holds ramp's end-to-end analysis test: a local cluster (real API server,
// controller manager, scheduler and KWOK nodes), a real Prometheus scraping an in-test
// exporter of Istio telemetry whose error rates and latencies the tests set and change, and
// ramp's manager in-process with the real Prometheus analyzer. Each test rolls a release out
// and checks the live VirtualService weights and the analysis results in status.
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) PROMETHEUS=$(hack/prometheus.sh) \
//	  RAMP_REQUIRE_PROMETHEUS=1 go test ./e2e/analysis/ -count=1 -v
//
// Without a Prometheus binary the tests skip, unless RAMP_REQUIRE_PROMETHEUS is set: then
// they fail with the command that installs one.
package analysis
