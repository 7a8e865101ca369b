#!/usr/bin/env bash
# End-to-end run of ramp on a real cluster: kind + Istio (real Envoy sidecars) + Prometheus.
# Needs Docker; see e2e/kind/README.md. From the repository root:
#
#   e2e/kind/run.sh
#
# Environment:
#   CLUSTER         kind cluster name (default ramp-e2e)
#   KIND_NODE_IMAGE kind node image (default: kind's own default)
#   ISTIO_VERSION   Istio release (default 1.27.1); istioctl of that version is downloaded
#                   unless one is on the PATH already
#   KEEP_CLUSTER=1  keep the cluster on exit (for debugging)
#   TIMEOUT         per-release wait (default 15m)
set -euo pipefail

CLUSTER=${CLUSTER:-ramp-e2e}
ISTIO_VERSION=${ISTIO_VERSION:-1.27.1}
ISTIO_MINOR=${ISTIO_VERSION%.*}
TIMEOUT=${TIMEOUT:-15m}
# The image e2e/kind/ramp/kustomization.yaml deploys.
IMAGE=ramp:e2e
NS=podinfo
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ramp-kind.XXXXXX")
CTX="kind-${CLUSTER}"

log() { printf '\n[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || { echo "run.sh needs '$tool' on the PATH (see e2e/kind/README.md)" >&2; exit 1; }
	done
}

cleanup() {
	local rc=$?
	if [[ $rc -ne 0 ]]; then
		log "FAILED (exit $rc); state for debugging:"
		kubectl --context "$CTX" -n "$NS" get rollout,deploy,pods,virtualservice,destinationrule -o wide 2>/dev/null || true
		kubectl --context "$CTX" -n "$NS" describe rollout podinfo 2>/dev/null | tail -40 || true
		kubectl --context "$CTX" -n ramp-system logs deploy/ramp-controller --tail=100 2>/dev/null || true
	fi
	if [[ "${KEEP_CLUSTER:-}" == 1 ]]; then
		log "keeping kind cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
	else
		kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

need docker kind kubectl curl
docker info >/dev/null 2>&1 || { echo "run.sh needs a running Docker engine" >&2; exit 1; }

k() { kubectl --context "$CTX" "$@"; }

# wait_phase PHASE: waits for the Rollout to reach PHASE (kubectl wait on a jsonpath).
wait_phase() {
	log "waiting (up to $TIMEOUT) for Rollout $NS/podinfo to be $1"
	k -n "$NS" wait rollout/podinfo --for=jsonpath='{.status.phase}'="$1" --timeout="$TIMEOUT"
	k -n "$NS" get rollout podinfo -o jsonpath='{.status.phase}{": "}{.status.message}{"\n"}'
}

# wait_new_rollout: waits until ramp has picked up a new revision (phase no longer the
# previous one's terminal phase), so the next wait_phase does not match a stale phase.
wait_new_rollout() {
	local deadline=$((SECONDS + 300)) phase
	while ((SECONDS < deadline)); do
		phase=$(k -n "$NS" get rollout podinfo -o jsonpath='{.status.phase}')
		case "$phase" in
		Progressing | Paused | WaitingForWindow | Promoting | RollingBack) return 0 ;;
		esac
		sleep 2
	done
	echo "ramp did not start a rollout for the new revision within 5m" >&2
	return 1
}

log "creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 180s

ISTIOCTL=$(command -v istioctl || true)
if [[ -z "$ISTIOCTL" ]]; then
	log "downloading istioctl $ISTIO_VERSION"
	(cd "$WORK" && curl -fsSL https://istio.io/downloadIstio | ISTIO_VERSION="$ISTIO_VERSION" sh -)
	ISTIOCTL="$WORK/istio-$ISTIO_VERSION/bin/istioctl"
fi
log "installing Istio with $ISTIOCTL (profile minimal)"
"$ISTIOCTL" install --context "$CTX" --set profile=minimal -y
k -n istio-system rollout status deploy/istiod --timeout=5m

log "installing Prometheus (Istio $ISTIO_MINOR samples/addons)"
k apply -f "https://raw.githubusercontent.com/istio/istio/release-${ISTIO_MINOR}/samples/addons/prometheus.yaml"
k -n istio-system rollout status deploy/prometheus --timeout=5m

log "building $IMAGE and loading it into kind"
docker build -f "$ROOT/e2e/kind/Dockerfile" -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing ramp (config/default, image $IMAGE)"
k apply --server-side -k "$ROOT/e2e/kind/ramp"
k wait --for=condition=Established crd/rollouts.ramp.dev --timeout=2m
k -n ramp-system rollout status deploy/ramp-controller --timeout=5m

log "deploying podinfo v1 with its Rollout and a load generator in namespace $NS (sidecar injection on)"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k label namespace "$NS" istio-injection=enabled --overwrite
k apply -k "$ROOT/e2e/kind/overlay"
k -n "$NS" wait deploy/podinfo deploy/loadgen --for=condition=Available --timeout=5m
wait_phase Idle

log "Git commit: podinfo v2 (6.7.1), healthy"
k -n "$NS" set image deploy/podinfo podinfo=ghcr.io/stefanprodan/podinfo:6.7.1
wait_new_rollout
wait_phase Succeeded

log "Git commit: podinfo 6.8.0 with random errors (PODINFO_RANDOM_ERROR=true)"
k -n "$NS" patch deploy/podinfo --type=strategic -p '{"spec":{"template":{"spec":{"containers":[{"name":"podinfo","image":"ghcr.io/stefanprodan/podinfo:6.8.0","env":[{"name":"PODINFO_RANDOM_ERROR","value":"true"}]}]}}}}'
wait_new_rollout
wait_phase Failed

log "PASS: v2 promoted, the erroring release rolled back"
k -n "$NS" get rollout podinfo -o wide
