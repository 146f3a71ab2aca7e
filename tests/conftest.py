"""Shared test plumbing.

`require_tool` is the one place that decides what happens when a rehearsal binary is
missing: on a developer machine the test is skipped with the package to install; under
CI=true it fails, because CI must prove every rehearsal. `require_npm_tool` applies the same
policy to the npm tools pinned under tools/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

# binary -> Debian package that ships it
TOOL_PACKAGES = {
    "docker-registry": "docker-registry",
    "openssl": "openssl",
    "skopeo": "skopeo",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    "nginx": "nginx",
    "setpriv": "util-linux",
    "shellcheck": "shellcheck",
    "update-ca-certificates": "ca-certificates",
    "wget": "wget",
    "curl": "curl",
    "make": "make",
}


def require_tool(name: str) -> str:
    """Return the path of a rehearsal binary; skip locally, fail under CI=true."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path:
        return path
    package = TOOL_PACKAGES.get(name, name)
    _missing(f"rehearsal tool {name!r} is missing (apt-get install -y {package})")


# npm tool -> the folder whose package.json and package-lock.json pin it (scripts/lib.sh
# `ensure_npm_tools` runs `npm ci` there)
NPM_TOOLS = {
    "renovate": "tools/renovate",
    "renovate-config-validator": "tools/renovate",
}
REPO_ROOT = Path(__file__).resolve().parents[1]


def require_npm_tool(name: str) -> str:
    """Return the path of a pinned npm tool; skip locally, fail under CI=true."""
    folder = NPM_TOOLS[name]
    path = REPO_ROOT / folder / "node_modules" / ".bin" / name
    if path.exists() and shutil.which("node"):
        return str(path)
    _missing(f"npm tool {name!r} is missing (cd {folder} && npm ci --ignore-scripts; needs node and npm)")


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
