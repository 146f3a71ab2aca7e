#!/usr/bin/env bash
# The benchmark command: makes sure the venv (requirements-dev.txt, with the Go that builds
# registry 3.1.1 once) and the Debian tools it runs (docker-registry as the upstream, skopeo,
# nginx) are there, then runs `python -m bench.run` with the given arguments (see
# `bench/run.sh --help`). Loopback only; stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_dev_venv
ensure_debian_tools "docker-registry skopeo nginx" "docker-registry skopeo nginx ca-certificates"

# `--cache` (first): the bounded cache's benchmark (bench/cache.py) instead
if [ "${1:-}" = "--cache" ]; then
  shift
  exec .venv/bin/python -m bench.cache "$@"
fi
BENCH_ENTRY=bench/run.sh exec .venv/bin/python -m bench.run "$@"
