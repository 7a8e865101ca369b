// Package demo runs ramp's local demo (internal/demo, the story cmd/ramp-demo shows) end to
// end and checks its outcome: v2 promoted on healthy metrics, v3 rolled back at the first step.
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) PROMETHEUS=$(hack/prometheus.sh) \
//	  RAMP_REQUIRE_PROMETHEUS=1 go test ./e2e/demo/ -count=1 -v
package demo
