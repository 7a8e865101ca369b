// Package gitops tests ramp under GitOps tools, on a local cluster (a real API server,
// controller manager, scheduler and fake nodes) with ramp's manager running in-process and a
// fake analyzer:
//
//   - Flux: every phase's kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, what Flux's health
//     checks compute), and Git's manifests applied by Flux's own engine (fluxcd/pkg/ssa's
//     ResourceManager, configured as kustomize-controller's apply()): a rollout under applies
//     every 200 ms with no restart, conflict, lost field or drift reported; force: true
//     recreating the target after a selector change; replicas and spec.paused in Git;
//   - Argo CD: config/argocd's Lua health checks, run with gopher-lua the way Argo CD runs
//     them, against the objects of every phase, and the argocd-cm snippets embedding them.
//
// Run with KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) go test ./e2e/gitops/ -count=1 -v.
package gitops
