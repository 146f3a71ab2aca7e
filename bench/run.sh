#!/usr/bin/env bash
# The benchmark command: makes sure the venv (requirements-dev.txt) and the Debian tools it
# runs (docker-registry, skopeo, nginx) are there, then runs `python -m bench.run` with the
# given arguments (see `bench/run.sh --help`). Loopback only; stops everything it starts.
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

missing=""
for tool in docker-registry skopeo nginx; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing benchmark tools:$missing"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086  # a list of package names
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing ca-certificates >/dev/null
fi

BENCH_ENTRY=bench/run.sh exec "$venv/bin/python" -m bench.run "$@"
