#!/usr/bin/env bash
# cluster-bins.sh — build the Kubernetes binaries ramp's tests and demo run, from the Go
# module proxy only (pre-built envtest downloads are unreachable on our machines), and cache
# them under $HOME/.cache/ramp/k8s/<version>/.
#
#   hack/cluster-bins.sh envtest   kube-apiserver + etcd                      (envtest)
#   hack/cluster-bins.sh local     + kube-controller-manager, kube-scheduler, kwok
#                                  (a local cluster where Deployments really roll out)
#
# Prints the cache directory on stdout (use it as KUBEBUILDER_ASSETS); logs go to stderr.
# When the binaries are cached and report the pinned versions it returns in well under a second.
# Cold on 2 cores: kube-apiserver 6-11 min, kube-controller-manager ~5 min after it (shared
# build cache), kube-scheduler ~20 s, etcd ~50 s, kwok ~90 s.
set -euo pipefail

MODE="${1:-envtest}"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
ROOT="${RAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ramp}/k8s"
DEST="$ROOT/$K8S_VERSION"
STAGING_VERSION="v0.${K8S_VERSION#*.}"
K8S_MINOR="${K8S_VERSION#*.}"; K8S_MINOR="${K8S_MINOR%%.*}"

log() { printf '[cluster-bins] %s\n' "$*" >&2; }
kube_ok() { [[ -x "$DEST/$1" ]] && [[ "$("$DEST/$1" --version 2>/dev/null)" == "Kubernetes v$K8S_VERSION" ]]; }
etcd_ok() { [[ -x "$DEST/etcd" ]] && [[ "$("$DEST/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p')" == "$ETCD_VERSION" ]]; }
kwok_ok() { [[ -x "$DEST/kwok" ]] && [[ "$(cat "$DEST/kwok.version" 2>/dev/null)" == "$KWOK_VERSION" ]]; }
kwok_stages_ok() { [[ -s "$DEST/kwok-stages.yaml" ]]; }

missing=()
kube_ok kube-apiserver || missing+=(kube-apiserver)
etcd_ok || missing+=(etcd)
if [[ "$MODE" == local ]]; then
  kube_ok kube-controller-manager || missing+=(kube-controller-manager)
  kube_ok kube-scheduler || missing+=(kube-scheduler)
  kwok_ok || missing+=(kwok)
  kwok_stages_ok || missing+=(kwok-stages)
elif [[ "$MODE" != envtest ]]; then
  log "usage: $0 envtest|local"; exit 2
fi
if [[ ${#missing[@]} -eq 0 ]]; then echo "$DEST"; exit 0; fi

mkdir -p "$DEST"
# Serialise concurrent callers on the same cache (parallel test packages, make -j).
exec 9>"$ROOT/.lock"; flock 9
# Re-check after taking the lock: another caller may have built them meanwhile.
missing=()
kube_ok kube-apiserver || missing+=(kube-apiserver)
etcd_ok || missing+=(etcd)
if [[ "$MODE" == local ]]; then
  kube_ok kube-controller-manager || missing+=(kube-controller-manager)
  kube_ok kube-scheduler || missing+=(kube-scheduler)
  kwok_ok || missing+=(kwok)
  kwok_stages_ok || missing+=(kwok-stages)
fi
if [[ ${#missing[@]} -eq 0 ]]; then echo "$DEST"; exit 0; fi
log "building: ${missing[*]} into $DEST"

work="$(mktemp -d "${TMPDIR:-/tmp}/ramp-bins.XXXXXX")"
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
# One throw-away build cache for the whole run: the Kubernetes binaries share most packages.
export GOCACHE="$work/gocache"
GOOS="$(go env GOHOSTOS)"; GOARCH="$(go env GOHOSTARCH)"; export GOOS GOARCH
mkdir -p "$work/out"
want() { local m; for m in "${missing[@]}"; do [[ "$m" == "$1" ]] && return 0; done; return 1; }
modfield() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p"; }
# Install each binary as soon as it is built: a later failure keeps what already succeeded.
install_bin() { install -m 0755 "$work/out/$1" "$DEST/.$1.tmp" && mv -f "$DEST/.$1.tmp" "$DEST/$1"; }

# --- Kubernetes components: a throw-away module pinning every staging repo -----------------
kube=()
for t in kube-apiserver kube-controller-manager kube-scheduler; do want "$t" && kube+=("$t"); done
if [[ ${#kube[@]} -gt 0 ]]; then
  dl="$(cd "$work" && GOFLAGS="" go mod download -json "k8s.io/kubernetes@v$K8S_VERSION")"
  gomod="$(modfield GoMod <<<"$dl")"; build_date="$(modfield Time <<<"$dl")"
  [[ -f "$gomod" ]] || { log "cannot resolve k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
  mkdir -p "$work/kube"
  {
    printf 'module rampbins/kubernetes\n\n%s\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' \
      "$(grep -m1 -E '^go [0-9]' "$gomod")" "$K8S_VERSION"
    # k8s.io/kubernetes requires its staging repos at v0.0.0 and replaces them with local paths;
    # a dependency's replace directives are ignored, so point each at the published tag.
    grep -E '^[[:space:]]+k8s\.io/[A-Za-z0-9._-]+ v0\.0\.0$' "$gomod" |
      awk -v v="$STAGING_VERSION" '{ printf "\t%s => %s %s\n", $1, $1, v }'
    printf ')\n'
  } > "$work/kube/go.mod"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  for t in "${kube[@]}"; do
    log "building $t v$K8S_VERSION"; s=$SECONDS
    (cd "$work/kube" && go build -trimpath -ldflags "$ldflags" -o "$work/out/$t" "k8s.io/kubernetes/cmd/$t")
    log "built $t in $((SECONDS - s))s"
    install_bin "$t"
  done
fi

# --- etcd: a five-line main around etcdmain -------------------------------------------------
if want etcd; then
  log "building etcd v$ETCD_VERSION"; s=$SECONDS
  mkdir -p "$work/etcd"
  gomod="$(cd "$work" && GOFLAGS="" go mod download -json "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" | modfield GoMod)"
  printf 'module rampbins/etcd\n\n%s\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
    "$(grep -m1 -E '^go [0-9]' "$gomod")" "$ETCD_VERSION" > "$work/etcd/go.mod"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$work/etcd/main.go"
  (cd "$work/etcd" && go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" .)
  log "built etcd in $((SECONDS - s))s"
  install_bin etcd
fi

# --- kwok: fake nodes and pod lifecycle; its stage files ship in its module --------------------
if want kwok || want kwok-stages; then
  dir="$(cd "$work" && GOFLAGS="" go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | modfield Dir)"
  [[ -d "$dir" ]] || { log "cannot resolve sigs.k8s.io/kwok@v$KWOK_VERSION"; exit 1; }
  if want kwok; then
    log "building kwok v$KWOK_VERSION"; s=$SECONDS
    GOBIN="$work/out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
    log "built kwok in $((SECONDS - s))s"
    install_bin kwok
    echo "$KWOK_VERSION" > "$DEST/kwok.version"
  fi
  st="$dir/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f "$st/$f" ]] || { log "kwok stage $f missing in $dir"; exit 1; }
    printf -- '---\n'; cat "$st/$f"; printf '\n'
  done > "$work/out/kwok-stages.yaml"
  install_bin kwok-stages.yaml
fi

kube_ok kube-apiserver && etcd_ok || { log "post-install check failed in $DEST"; ls -la "$DEST" >&2; exit 1; }
log "ready: $DEST"
echo "$DEST"
