"""Run the blob-collapsing front (`bench/collapse.py`) with Debian's nginx on loopback.

`collapse_front(root, upstream_url, nginx=...)` renders the front's nginx.conf with every
container path re-rooted under `root`, starts `nginx -g 'daemon off;'`, waits (bounded)
until it answers, and stops it at exit. `Front.entries()` parses its access log (the
`front` log format of bench/collapse.py), so a caller can count what it served from its
cache and what it sent upstream.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.collapse import render_collapse_config

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LogEntry:
    method: str
    uri: str
    status: int
    body_bytes: int
    cache: str  # $upstream_cache_status: MISS, HIT, BYPASS, ... or "-"
    upstream: str  # $upstream_status: "-" when nothing went upstream


@dataclass
class Front:
    url: str  # http://127.0.0.1:PORT
    host_port: str
    root: Path
    config_path: Path
    access_log: Path
    error_log: Path
    process: subprocess.Popen[bytes]

    def entries(self) -> list[LogEntry]:
        if not self.access_log.exists():
            return []
        found = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 7:
                continue
            _, method, uri, status, size, cache, upstream = parts
            found.append(
                LogEntry(method, uri, int(status), int(size), cache.removeprefix("cache="),
                         upstream.removeprefix("upstream="))
            )  # fmt: skip
        return found


@contextlib.contextmanager
def collapse_front(
    root: Path,
    upstream_url: str,
    *,
    nginx: str,
    auth_realm: str | None = None,
    follow_redirects: bool = True,
    lock_timeout: str = "10m",
) -> Iterator[Front]:
    """An nginx front for `upstream_url` listening on 127.0.0.1 (a free port)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    front_url = f"http://127.0.0.1:{port}"
    config = render_collapse_config(
        upstream_url=upstream_url,
        front_url=front_url,
        auth_realm=auth_realm,
        follow_redirects=follow_redirects,
        resolver=None,  # loopback addresses only
        port=port,
        listen_address="127.0.0.1",
        cache_dir=str(root / "cache"),
        temp_dir=str(root / "temp"),
        pid_path=str(root / "nginx.pid"),
        access_log=str(root / "access.log"),
        error_log=str(root / "error.log"),
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        lock_timeout=lock_timeout,
        worker_processes="1",
        # as root, nginx's workers would run as nobody, who cannot enter a 0700 temp dir
        user="root" if os.geteuid() == 0 else None,
    )
    (root / "temp").mkdir(exist_ok=True)
    config_path = root / "nginx.conf"
    config_path.write_text(config)
    error_log = root / "error.log"
    with (root / "nginx.out").open("ab") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(root), "-c", str(config_path), "-e", str(error_log), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    front = Front(front_url, f"127.0.0.1:{port}", root, config_path, root / "access.log", error_log, process)
    try:
        _wait_listening(front)
        yield front
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)


def _wait_listening(front: Front) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if front.process.poll() is not None:
            log = front.error_log.read_text(errors="replace") if front.error_log.exists() else ""
            raise RuntimeError(f"nginx exited with {front.process.returncode}:\n{log[-3000:]}")
        port = int(front.host_port.rsplit(":", 1)[1])
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nginx not listening at {front.url} after {START_TIMEOUT}s")
