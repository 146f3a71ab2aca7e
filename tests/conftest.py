"""Shared test plumbing.

`require_tool` is the one place that decides what happens when a rehearsal binary is
missing: on a developer machine the test is skipped with the package to install; under
CI=true it fails, because CI must prove every rehearsal.
"""

from __future__ import annotations

import os
import shutil

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
    "dockerd": "docker.io",
    "docker": "docker.io",
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "busybox": "busybox-static",
}


def require_tool(name: str) -> str:
    """Return the path of a rehearsal binary; skip locally, fail under CI=true."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path:
        return path
    package = TOOL_PACKAGES.get(name, name)
    message = f"rehearsal tool {name!r} is missing (apt-get install -y {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
