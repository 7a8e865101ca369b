#!/usr/bin/env bash
# tool.sh NAME — install a pinned Go tool from the module proxy into $HOME/.cache/ramp/tools
# once, and print its path.
set -euo pipefail
case "$1" in
  controller-gen) pkg=sigs.k8s.io/controller-tools/cmd/controller-gen; ver=v0.23.0 ;;
  *) echo "tool.sh: unknown tool $1" >&2; exit 2 ;;
esac
dir="${RAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ramp}/tools/$1-$ver"
if [[ ! -x "$dir/$1" ]]; then
  echo "[tool] installing $pkg@$ver" >&2
  GOBIN="$dir" GOFLAGS=-mod=mod go install "$pkg@$ver"
fi
echo "$dir/$1"
