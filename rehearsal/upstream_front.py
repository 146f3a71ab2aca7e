"""Run the stack's upstream front (`configs/front.py`) with Debian's nginx on loopback.

The config is the one the stack uploads, rendered by the same function with the same
timeouts, lock and cache settings; only what names a place differs: the listen address,
the front's own URL (in its challenge), the upstream URL and realm, the resolver (a
loopback DNS stand-in instead of Docker's 127.0.0.11), the file paths (under `root`, and the
CA bundle it verifies the upstream against) and the worker user (root, who can enter
pytest's 0700 directories).
`tests/unit/test_front_config.py` checks that nothing else differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.front import DOCKER_HUB_REALM, DOCKER_HUB_SERVICE, FrontPaths, render_front_config
from rehearsal.registry_proc import listens, stop_process, wait_started

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def rehearsal_paths(root: Path, ca_bundle: Path | str = SYSTEM_CA_BUNDLE) -> FrontPaths:
    return FrontPaths(
        cache_dir=str(root / "cache"),
        temp_dir=str(root / "temp"),
        pid=str(root / "nginx.pid"),
        access_log=str(root / "access.log"),
        error_log=str(root / "error.log"),
        ca_bundle=str(ca_bundle),
    )


def rehearsal_config(
    root: Path,
    *,
    port: int,
    upstream_url: str,
    upstream_realm: str | None,
    resolver: str,
    service: str = DOCKER_HUB_SERVICE,
    ca_bundle: Path | str = SYSTEM_CA_BUNDLE,
    redirect_hosts: tuple[str, ...] | None = None,
) -> str:
    """`ca_bundle`: what upstream TLS is verified with (a stand-in's test CA); `redirect_hosts`
    as in the stack (None: a preset, which follows redirects to any public name)."""
    return render_front_config(
        upstream_url=upstream_url,
        upstream_realm=upstream_realm,
        service=service,
        front_url=f"http://127.0.0.1:{port}",
        listen=f"127.0.0.1:{port}",
        resolver=resolver,
        user="root" if os.geteuid() == 0 else None,
        paths=rehearsal_paths(root, ca_bundle),
        redirect_hosts=redirect_hosts,
    )


@dataclass
class RunningFront:
    url: str  # http://127.0.0.1:PORT: the registry's proxy.remoteurl
    root: Path
    config_path: Path
    process: subprocess.Popen[bytes]

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    def entries(self) -> list[dict[str, Any]]:
        """The access log (the `front` JSON format), one dict per request."""
        if not self.access_log.exists():
            return []
        found = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def upstream_front(
    root: Path,
    *,
    nginx: str,
    upstream_url: str,
    resolver: str,
    upstream_realm: str | None = DOCKER_HUB_REALM,
    port: int | None = None,
    service: str = DOCKER_HUB_SERVICE,
    ca_bundle: Path | str = SYSTEM_CA_BUNDLE,
    redirect_hosts: tuple[str, ...] | None = None,
) -> Iterator[RunningFront]:
    """The front on 127.0.0.1 (a free port unless `port`), stopped at exit. `service` is the
    upstream's (the front's challenge names it); `ca_bundle` the roots the front verifies its
    upstream against (the image's bundle in the stack)."""
    root = Path(root)
    (root / "temp").mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    config_path = root / "nginx.conf"
    config_path.write_text(rehearsal_config(
        root, port=port, upstream_url=upstream_url, upstream_realm=upstream_realm, resolver=resolver,
        service=service, ca_bundle=ca_bundle, redirect_hosts=redirect_hosts,
    ))  # fmt: skip
    with (root / "nginx.out").open("ab") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(root), "-c", str(config_path), "-e", str(root / "error.log"), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    front = RunningFront(f"http://127.0.0.1:{port}", root, config_path, process)
    try:
        wait_started(process, lambda: listens(port, timeout=0.5), what=f"nginx at {front.url}", log=front.error_log,
                     timeout=START_TIMEOUT, interval=0.05)
        yield front
    finally:
        stop_process(process, STOP_TIMEOUT)
