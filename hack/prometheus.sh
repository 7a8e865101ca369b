#!/usr/bin/env bash
# prometheus.sh — print the path of a Prometheus server binary for analysis/'s integration
# tests (PROMETHEUS=$(hack/prometheus.sh) go test ./analysis/...).
#
#   1. $PROMETHEUS if it names an executable, else `prometheus` on PATH (Debian: /usr/bin);
#   2. otherwise, when root, installs Debian's package (~15 s):
#        apt-get install -y --no-install-recommends prometheus
#      running `apt-get update` first only if the install fails for lack of package lists;
#   3. otherwise exits 1 and prints the install command to run.
#
# Logs go to stderr; stdout carries only the path. The Debian package's postinst may start a
# prometheus service where an init system runs; the tests never use it (they start their own
# server on a free loopback port with a temporary TSDB).
set -euo pipefail

log() { printf '[prometheus] %s\n' "$*" >&2; }
INSTALL=(apt-get install -y --no-install-recommends prometheus)

if [[ -n "${PROMETHEUS:-}" && -x "${PROMETHEUS}" ]]; then
  echo "$PROMETHEUS"; exit 0
fi
if [[ -x /usr/bin/prometheus ]]; then
  echo /usr/bin/prometheus; exit 0
fi
if p="$(command -v prometheus 2>/dev/null)"; then
  echo "$p"; exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  log "prometheus is not installed; install it with:"
  log "  sudo ${INSTALL[*]}"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing: ${INSTALL[*]}"
if ! "${INSTALL[@]}" >&2; then
  log "install failed; refreshing package lists (apt-get update) and retrying"
  apt-get update >&2
  "${INSTALL[@]}" >&2
fi
if [[ ! -x /usr/bin/prometheus ]]; then
  log "installed the package but /usr/bin/prometheus is missing"
  exit 1
fi
echo /usr/bin/prometheus
