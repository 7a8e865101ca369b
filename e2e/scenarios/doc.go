// Package scenarios holds ramp's end-to-end delivery scenarios, as tests: one local cluster
// (real API server, controller manager, scheduler and KWOK fake nodes), one real Prometheus
// scraping every second, and ramp's manager in-process with its real Prometheus analysis and
// Slack sender. Each scenario runs in its own namespace with its own Deployment (3 replicas),
// Service, Rollout and mesh simulator (internal/meshsim: traffic routed by the Envoy
// configuration istiod generates from the live VirtualService and DestinationRule and serves
// it over xDS, Istio's telemetry for Prometheus), and asserts on the live
// VirtualService weights, the Rollout's status and the simulated clients' view:
//
//   - canary success, rollback on errors, rollback on P99 latency;
//   - blue/green flip with the preview header route;
//   - header-match A/B routing at a 10% step;
//   - a fault-injection step (source-reported aborts; analysis unaffected);
//   - a canary that never becomes ready (progress deadline);
//   - a promotion window that opens during the rollout;
//   - kubectl ramp promote and abort, run in-process;
//   - Slack notifications (Block Kit) to a local receiver;
//   - a mirror step before the first weight: v2's errors on mirrored requests roll it back
//     while clients only ever get v1's answers;
//   - sticky sessions: requests with the canary's cookie all reach it on the sticky route;
//   - the team's own VirtualService (spec.service.virtualServiceRef) re-applied by a Flux-like
//     loop every 200 ms: Git's fields never change, the weights only move forward;
//   - gates (docs/gates.md) against a gate server in the test that records every body: called
//     before the rollout, at each step, before promotion and after it, in order; a 503 holding
//     step 2 through passing analysis rounds; a RollBack gate's 500 rolling back; a gate URL
//     outside the manager's allow-list stalling the Rollout with no connection made;
//   - load (examples/podinfo-bluegreen-load, as built by kustomize): a blue/green preview no
//     user reaches passes minRequests on ramp's load generator's requests (sent through the
//     mesh simulator as through a sidecar) and is promoted; without the load gate it rolls back;
//   - the Gateway API router (spec.service.gatewayAPI): istiod serves ramp's HTTPRoute (its
//     parent the Service, GAMMA) as weighted clusters of podinfo-stable and podinfo-canary;
//     the header rule reaches the canary alone, the weighted rule ~10% at a 10% step.
//
// The manager allows Prometheus and gateBase (one loopback server under which each scenario
// serves its gates) only, as --analysis-allowed-endpoints would.
//
// Run:
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) PROMETHEUS=$(hack/prometheus.sh) \
//	RAMP_REQUIRE_PROMETHEUS=1 go test ./e2e/scenarios/ -count=1 -v -timeout 20m
//
// Without Prometheus the scenarios skip, unless RAMP_REQUIRE_PROMETHEUS is set (then the
// package fails); -short skips them. RAMP_E2E_VERBOSE=1 shows the controller's logs.
// e2e/kind runs the podinfo canary story on a real cluster with real Istio (needs Docker).
package scenarios
