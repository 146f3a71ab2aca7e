"""Issue 20: every container runs without CAP_NET_RAW and with no-new-privileges.

The registry, Prometheus and blackbox containers run that way on the real engine
(tests/engine/test_program_containers.py). The upstream front and the router run the
official nginx image, which has no stand-in here: its way of working that the two settings
could break is nginx's own (a root master that switches its workers to an unprivileged
user with setuid(), which no-new-privileges does not restrict, unlike a setuid binary).
That is rehearsed here with Debian's nginx running the program's rendered front config,
started through `setpriv` with the same two restrictions a container gets.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from configs.front import render_front_config
from rehearsal.tools import require_tool, unavailable
from rehearsal.upstream_front import rehearsal_paths

NET_RAW_BIT = 13  # linux/capability.h CAP_NET_RAW


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory the unprivileged workers can enter (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="registry-mirror-hardening-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_fronts_nginx_serves_with_no_new_privileges_and_no_net_raw(home: Path) -> None:
    if os.geteuid() != 0:
        unavailable("the master must start as root to switch its workers to another user")
    nginx, setpriv = require_tool("nginx"), require_tool("setpriv")
    (home / "temp").mkdir()
    port = 18000 + os.getpid() % 1000
    config = home / "nginx.conf"
    config.write_text(render_front_config(
        upstream_url="https://registry-1.docker.io", front_url=f"http://127.0.0.1:{port}",
        listen=f"127.0.0.1:{port}", resolver="127.0.0.1:53", user="www-data", paths=rehearsal_paths(home)))
    process = subprocess.Popen(
        [setpriv, "--no-new-privs", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
         nginx, "-p", str(home), "-c", str(config), "-e", str(home / "error.log"), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (home / "error.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            except urllib.error.HTTPError as answer:
                # the front's own challenge, answered by a worker
                assert answer.code == 401 and "Bearer realm=" in answer.headers["WWW-Authenticate"]
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.1)
        workers = [int(p) for p in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        assert workers
        for pid in (process.pid, *workers):
            status = _status(pid)
            assert status["NoNewPrivs"] == "1", pid
            assert not int(status["CapBnd"], 16) >> NET_RAW_BIT & 1, pid
        # the workers did switch to the unprivileged user
        www_data = pwd.getpwnam("www-data").pw_uid
        assert all(_status(pid)["Uid"].split()[0] == str(www_data) for pid in workers)
    finally:
        process.terminate()
        process.wait(10)
