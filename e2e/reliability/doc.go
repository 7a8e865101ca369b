// Package reliability holds ramp's reliability and security tests: a local cluster (real API
// server, controller manager, scheduler and KWOK nodes) with ramp's manager run in-process,
// stopped and restarted at every write it makes (crash safety), run twice with leader
// election (high availability), faced with hand edits, deleted objects, status conflicts,
// duplicate Rollouts and a failing Prometheus, upgraded mid-step from the previous release's
// manager binary (docs/upgrades.md), and run under the RBAC it ships while its
// logs, events and status are searched for the credentials it handles.
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) go test ./e2e/reliability/ -count=1 -v
//
// docs/reliability.md lists each fault, what ramp does, and the test that proves it.
package reliability
