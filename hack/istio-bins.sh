#!/usr/bin/env bash
# istio-bins.sh — build (once) the Istio binaries ramp's tests run, from the nested module
# hack/istio (its go.mod pins istio.io/istio), and cache them under
# $HOME/.cache/ramp/istio/<istio.io/istio version>/.
#
#   hack/istio-bins.sh [BINARY...]   default: every binary below
#
#   istio-validate   Istio's own VirtualService/DestinationRule validation (hack/istio/cmd/istio-validate)
#   pilot-discovery  istiod itself (istio.io/istio/pilot/cmd/pilot-discovery, a `tool` of hack/istio's
#                    go.mod): internal/testenv's local cluster runs it with its validating webhook
#
# Next to the binaries it copies crd-all.gen.yaml, Istio's full CRD set from the same
# istio.io/istio module, which the local cluster installs before starting istiod.
#
# Prints the cache directory on stdout; logs go to stderr. A binary is rebuilt when the
# sources it is built from (hack/istio's go.mod, go.sum and Go files) change; otherwise the
# script returns in well under a second. Cold on 2 shared cores (empty build cache, measured
# 2026-11-27 under other load): istio-validate 4.5-5.5 min, then pilot-discovery about 7 min
# (11 min in all); with Istio's packages in the Go build cache, 10-15 s for both.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOD="$HERE/istio"
# name=package, built in $MOD (a package outside it must be a `tool` in its go.mod, so that
# go.sum holds every module it needs).
ALL=(
  "istio-validate=./cmd/istio-validate"
  "pilot-discovery=istio.io/istio/pilot/cmd/pilot-discovery"
)
CRDS=crd-all.gen.yaml

log() { printf '[istio-bins] %s\n' "$*" >&2; }
VERSION="$(sed -n 's/^[[:space:]]*istio\.io\/istio \(v[^ ]*\).*/\1/p' "$MOD/go.mod" | head -n1)"
[[ -n "$VERSION" ]] || { log "cannot read the istio.io/istio version from $MOD/go.mod"; exit 1; }
ROOT="${RAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ramp}/istio"
DEST="$ROOT/$VERSION"

pkg_of() { local e; for e in "${ALL[@]}"; do [[ "${e%%=*}" == "$1" ]] && { echo "${e#*=}"; return 0; }; done; return 1; }
wanted=("$@")
if [[ ${#wanted[@]} -eq 0 ]]; then for e in "${ALL[@]}"; do wanted+=("${e%%=*}"); done; fi
for b in "${wanted[@]}"; do pkg_of "$b" >/dev/null || { log "unknown binary $b (known: ${ALL[*]%%=*})"; exit 2; }; done

# What a binary is built from: a change to any of it invalidates the cached binary.
stamp="$(cd "$MOD" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
ok() { [[ -x "$DEST/$1" ]] && [[ "$(cat "$DEST/$1.stamp" 2>/dev/null)" == "$stamp" ]]; }
missing() {
  missing=(); local b; for b in "${wanted[@]}"; do ok "$b" || missing+=("$b"); done
  [[ -s "$DEST/$CRDS" ]] || missing+=("$CRDS")
}

missing
if [[ ${#missing[@]} -eq 0 ]]; then echo "$DEST"; exit 0; fi

mkdir -p "$DEST"
# Serialise concurrent callers on the same cache (parallel test packages, make -j).
exec 9>"$ROOT/.lock"; flock 9
# Re-check after taking the lock: another caller may have built them meanwhile.
missing
if [[ ${#missing[@]} -eq 0 ]]; then echo "$DEST"; exit 0; fi
log "building: ${missing[*]} (istio.io/istio $VERSION) into $DEST"

work="$(mktemp -d "${TMPDIR:-/tmp}/ramp-istio-bins.XXXXXX")"
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# The user's Go build cache: Istio's binaries share most packages, and a change to our own
# small mains then rebuilds in seconds.
export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
for b in "${missing[@]}"; do
  if [[ "$b" == "$CRDS" ]]; then
    dir="$(cd "$MOD" && go list -m -f '{{.Dir}}' istio.io/istio)"
    install -m 0644 "$dir/manifests/charts/base/files/$CRDS" "$DEST/.$CRDS.tmp" && mv -f "$DEST/.$CRDS.tmp" "$DEST/$CRDS"
    continue
  fi
  log "building $b"; s=$SECONDS
  (cd "$MOD" && go build -trimpath -ldflags "-s -w" -o "$work/$b" "$(pkg_of "$b")")
  log "built $b in $((SECONDS - s))s"
  # Install as soon as built: a later failure keeps what already succeeded.
  install -m 0755 "$work/$b" "$DEST/.$b.tmp" && mv -f "$DEST/.$b.tmp" "$DEST/$b"
  echo "$stamp" > "$DEST/$b.stamp"
done
log "ready: $DEST"
echo "$DEST"
