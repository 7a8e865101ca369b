#!/usr/bin/env bash
# chromium.sh — print the path of a Chromium binary for the dashboard's browser test
# (CHROMIUM=$(hack/chromium.sh) go test ./e2e/dashboard/...): $CHROMIUM, Debian's
# /usr/bin/chromium, or `chromium` on PATH; else, as root, installs Debian's package (~1 min;
# see hack/lib/debian-bin.sh).
#
# The test starts Chromium headless with a fresh profile and its background networking off
# (see e2e/dashboard).
set -euo pipefail
source "$(dirname "$0")/lib/debian-bin.sh"
debian_bin chromium chromium /usr/bin/chromium CHROMIUM
