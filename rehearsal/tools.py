"""What happens when a rehearsal binary is missing: the one policy for tests and helpers.

On a developer machine the test is skipped with the reason (the package to install, the
source to provide); under CI=true it fails, because CI must prove every rehearsal.
`tests/conftest.py` re-exports `require_tool`, so tests keep importing it from there.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

# binary -> Debian package that ships it
TOOL_PACKAGES = {
    "docker-registry": "docker-registry",
    "openssl": "openssl",
    "skopeo": "skopeo",
    "nginx": "nginx",
    "setpriv": "util-linux",
    "unshare": "util-linux",
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
    "nsenter": "util-linux",
    "ip": "iproute2",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> NoReturn:
    """Skip the running test with `message`; under CI=true, fail it."""
    # pytest is imported here, not at the top: the benchmark imports this package without it
    import pytest

    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


# binary -> the toolchain's tool (tools/go/toolchain.toml): these come at the pinned images'
# versions from the Go module proxy, never from Debian (whose Prometheus is 2.42)
TOOLCHAIN_TOOLS = {
    "prometheus": "prometheus",
    "promtool": "promtool",
    "prometheus-blackbox-exporter": "blackbox_exporter",
}


def require_tool(name: str) -> str:
    """Return the path of a rehearsal binary; skip locally, fail under CI=true."""
    if name in TOOLCHAIN_TOOLS:
        from rehearsal import toolchain

        try:
            return str(toolchain.ensure(TOOLCHAIN_TOOLS[name]))
        except toolchain.ToolchainError as error:
            unavailable(f"{name} from the toolchain is unavailable: {error}")
    path = find_tool(name)
    if path:
        return path
    package = TOOL_PACKAGES.get(name, name)
    unavailable(f"rehearsal tool {name!r} is missing (apt-get install -y {package})")
