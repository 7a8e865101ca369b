# debian-bin.sh — sourced by hack/prometheus.sh and hack/chromium.sh: print the path of a
# program that comes from a Debian package, installing the package once when missing.
#
#   debian_bin NAME PACKAGE BIN VAR
#
#   1. $VAR if it names an executable, else BIN (Debian's path), else NAME on PATH;
#   2. otherwise, when root, installs PACKAGE:
#        apt-get install -y --no-install-recommends PACKAGE
#      running `apt-get update` first only if the install fails for lack of package lists;
#   3. otherwise exits 1 and prints the install command to run.
#
# Logs go to stderr; stdout carries only the path.

debian_bin() {
  local name="$1" package="$2" bin="$3" var="$4"
  local log_prefix="[$name]"
  local install=(apt-get install -y --no-install-recommends "$package")
  local given="${!var:-}"

  if [[ -n "$given" && -x "$given" ]]; then
    echo "$given"; return 0
  fi
  if [[ -x "$bin" ]]; then
    echo "$bin"; return 0
  fi
  local p
  if p="$(command -v "$name" 2>/dev/null)"; then
    echo "$p"; return 0
  fi

  if [[ "$(id -u)" != 0 ]]; then
    printf '%s %s\n' "$log_prefix" "$name is not installed; install it with:" "$log_prefix" "  sudo ${install[*]}" >&2
    return 1
  fi

  export DEBIAN_FRONTEND=noninteractive
  printf '%s installing: %s\n' "$log_prefix" "${install[*]}" >&2
  if ! "${install[@]}" >&2; then
    printf '%s install failed; refreshing package lists (apt-get update) and retrying\n' "$log_prefix" >&2
    apt-get update >&2
    "${install[@]}" >&2
  fi
  if [[ ! -x "$bin" ]]; then
    printf '%s installed the package but %s is missing\n' "$log_prefix" "$bin" >&2
    return 1
  fi
  echo "$bin"
}
