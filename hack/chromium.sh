#!/usr/bin/env bash
# chromium.sh — print the path of a Chromium binary for the dashboard's browser test
# (CHROMIUM=$(hack/chromium.sh) go test ./e2e/dashboard/...).
#
#   1. $CHROMIUM if it names an executable, else /usr/bin/chromium (Debian), else `chromium` on PATH;
#   2. otherwise, when root, installs Debian's package (~1 min):
#        apt-get install -y --no-install-recommends chromium
#      running `apt-get update` first only if the install fails for lack of package lists;
#   3. otherwise exits 1 and prints the install command to run.
#
# Logs go to stderr; stdout carries only the path. The test starts Chromium headless with a fresh
# profile and its background networking off (see e2e/dashboard).
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }
INSTALL=(apt-get install -y --no-install-recommends chromium)

if [[ -n "${CHROMIUM:-}" && -x "${CHROMIUM}" ]]; then
  echo "$CHROMIUM"; exit 0
fi
if [[ -x /usr/bin/chromium ]]; then
  echo /usr/bin/chromium; exit 0
fi
if p="$(command -v chromium 2>/dev/null)"; then
  echo "$p"; exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  log "chromium is not installed; install it with:"
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
if [[ ! -x /usr/bin/chromium ]]; then
  log "installed the package but /usr/bin/chromium is missing"
  exit 1
fi
echo /usr/bin/chromium
