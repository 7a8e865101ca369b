#!/usr/bin/env bash
# prometheus.sh — print the path of a Prometheus server binary for analysis/'s integration
# tests (PROMETHEUS=$(hack/prometheus.sh) go test ./analysis/...): $PROMETHEUS, Debian's
# /usr/bin/prometheus, or `prometheus` on PATH; else, as root, installs Debian's package
# (~15 s; see hack/lib/debian-bin.sh).
#
# The Debian package's postinst may start a prometheus service where an init system runs; the
# tests never use it (they start their own server on a free loopback port with a temporary TSDB).
set -euo pipefail
source "$(dirname "$0")/lib/debian-bin.sh"
debian_bin prometheus prometheus /usr/bin/prometheus PROMETHEUS
