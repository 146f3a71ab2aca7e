#!/usr/bin/env bash
# The test command: installs what the tests need (a venv with requirements-dev.txt, and the
# Debian tools the rehearsals run), then runs the linter, the type checker and every test.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements-dev.txt "$venv/.requirements-dev.txt" \
    || ! cmp -s requirements.txt "$venv/.requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r requirements-dev.txt
  cp requirements-dev.txt "$venv/.requirements-dev.txt"
  cp requirements.txt "$venv/.requirements.txt"
fi

packages=$(grep -v '^#' tests/debian-packages.txt | xargs)
tools="docker-registry promtool prometheus prometheus-blackbox-exporter skopeo openssl nginx shellcheck setpriv"
missing=""
for tool in $tools; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing rehearsal tools (missing:$missing): $packages"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086  # a list of package names
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
  else
    echo "warning: rehearsal tools missing:$missing (install the Debian packages: $packages)" >&2
  fi
fi

"$venv/bin/ruff" check .
"$venv/bin/mypy"
exec "$venv/bin/pytest" "$@"
