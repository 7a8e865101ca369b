// Package demo runs ramp's local demo (internal/demo, the story cmd/ramp-demo shows) end to
// end, with --keep, and checks its outcome: v2 promoted on healthy metrics, v3 rolled back at the
// first step; examples/podinfo-bluegreen-load's preview promoted on the load generator's
// requests alone (every request on the preview route its own); and, while --keep holds
// everything running, a release of v3 in that namespace rolled back on the load's requests.
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) PROMETHEUS=$(hack/prometheus.sh) \
//	  RAMP_REQUIRE_PROMETHEUS=1 go test ./e2e/demo/ -count=1 -v
package demo
