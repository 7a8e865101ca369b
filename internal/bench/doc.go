// Package bench measures ramp against a real API server (envtest): how fast it reacts to a
// Git change, how fast it rolls back after a failing analysis verdict, and what it costs to
// run many rollouts at once in one manager (reconcile durations, memory, CPU, API requests,
// Prometheus queries). The ramp-bench command runs it; docs/performance.md explains the
// method and records the figures.
//
// Each phase gets a fresh API server and runs ramp's manager in a separate process (this
// package's RunManager, started by re-executing the command), so the manager's resident
// memory, CPU time and API requests are measured on their own. The driver process plays the
// rest of the world: Git (it patches the targets' pod templates), the Deployment controller
// (plain envtest runs no kube-controller-manager, see FakeDeploymentController) and
// Prometheus (a stub /api/v1/query endpoint that counts queries).
package bench
