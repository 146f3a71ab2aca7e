#!/usr/bin/env bash
# The test command: installs what the tests need (a venv with requirements-dev.txt, the
# Debian tools the rehearsals run, the npm tools pinned under tools/, the Go toolchain of
# tools/go/toolchain.toml built once), then runs the linter, the type checker and every test.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_dev_venv
ensure_debian_tools \
  "docker-registry skopeo openssl nginx shellcheck setpriv make wget curl dockerd containerd ctr runc iptables ip busybox /usr/bin/python3.11" \
  "$(grep -v '^#' tests/debian-packages.txt | xargs)"
ensure_npm_tools tools/renovate
ensure_toolchain registry prometheus promtool blackbox_exporter pulumi pulumi-language-python conformance

.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
