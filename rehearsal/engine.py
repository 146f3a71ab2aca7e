"""A real Docker engine and containerd, in network and mount namespaces of their own.

    with running_engine(tmp, hosts={"mirror.test": ADDRESS}) as engine:
        engine.docker("pull", "mirror.test:6000/library/busybox:latest")
        engine.api("GET", "/containers/json")
        engine.run(["curl", "-sS", "http://127.0.0.1:9090/-/ready"])   # inside the namespaces

What a user's host is, made private (shared/FIELD-NOTES.md "What can and cannot run on our
machines" has the recipe and why each part is there):

* a network namespace of its own (`unshare --net`, no `ip netns` entry to clean up) whose
  `lo` carries `ADDRESS` (192.0.2.10/32, TEST-NET-1): Docker skips TLS verification for
  127.0.0.0/8, so a trust rehearsal must reach the mirror on another address. The namespace
  has no route anywhere else, so Docker Hub cannot be reached from it.
* a mount namespace (`unshare --mount --propagation slave`) in which a temp dir is bound
  over `/etc/docker` (dockerd's fixed `certs.d` and the `daemon.json` the trust script
  edits), private files over `/etc/hosts` and `/etc/resolv.conf` (so `mirror.test` resolves
  to `ADDRESS` and nothing else resolves), and a tmpfs over `/run` (containerd 1.6 puts shim
  sockets in `/run/containerd/s`, dockerd its plugin dir in `/run/docker` whatever their
  roots are). Nothing written there reaches the host; when the last process in the
  namespaces exits, they and every mount in them are gone.
* `containerd` and `dockerd` with every root, state dir and socket under the temp dir;
  dockerd without iptables, bridge, forwarding or masquerading (the host's firewall is never
  touched), with the userland proxy (published ports work through docker-proxy), and with
  `--config-file /etc/docker/daemon.json`: the file a user's trust install edits.

A "holder" process (`sleep`) keeps the namespaces; every other process enters them with
`nsenter --target <holder> --mount --net` (not `ip netns exec`, which remounts /sys and
leaves dockerd without its cgroups). Everything is bounded by a timeout and stopped by
`Engine.stop` (which `running_engine` always calls): containers removed, dockerd, containerd
and any process still in the namespace terminated, then killed.

Needs root and the Debian packages docker.io, containerd, runc, iptables (dockerd writes the
embedded-DNS redirect inside each container's own namespace) and util-linux.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rehearsal.tools import TOOL_PACKAGES

ADDRESS = "192.0.2.10"  # TEST-NET-1 (RFC 5737): never routed, only inside our namespace
API_VERSION = "1.41"  # dockerd 20.10 (Debian 12's docker.io)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 120.0

# binary -> the Debian package that ships it (the packages are written once, in tools.py)
ENGINE_TOOLS = {tool: TOOL_PACKAGES[tool] for tool in (
    "dockerd", "docker", "containerd", "ctr", "runc", "iptables", "unshare", "nsenter", "ip")}

_HOLDER = r"""
set -eu
root=$1
address=$2
mount -t tmpfs -o mode=0755 registry-mirror-run /run
mount --bind "$root/etc-docker" /etc/docker
mount --bind "$root/hosts" /etc/hosts
mount --bind "$root/resolv.conf" /etc/resolv.conf
ip link set lo up
ip addr add "$address/32" dev lo
: >"$root/holder.ready"
exec sleep 2147483647
"""


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (not root, a tool missing) or did not start; says why."""


def missing_tools() -> list[str]:
    """`binary (package)` for each engine tool not found on PATH or in /usr/sbin, /sbin."""
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [f"{tool} ({package})" for tool, package in ENGINE_TOOLS.items()
            if shutil.which(tool, path=search) is None]


def why_unavailable() -> str | None:
    """Why no engine can start on this machine, or None when it can be tried."""
    if os.geteuid() != 0:
        return "the engine rehearsal needs root (namespaces, mounts, dockerd)"
    missing = missing_tools()
    if missing:
        return "engine tools missing: " + ", ".join(missing)
    if not Path("/etc/docker").is_dir():
        # The private /etc/docker is bound over the host's directory, which must exist: we
        # never create anything under /etc on the host.
        return "/etc/docker does not exist on this host (apt-get install docker.io creates it)"
    return None


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise EngineUnavailable(f"{name} not found ({ENGINE_TOOLS.get(name, name)})")
    return path


def docker_cli() -> str:
    """The docker client shipped with dockerd (Debian's /usr/bin/docker) when there is one:
    another docker CLI earlier on PATH may speak a newer API than dockerd 20.10."""
    beside = Path(_tool("dockerd")).parent.parent / "bin" / "docker"
    return str(beside) if beside.is_file() else _tool("docker")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body.decode(errors='replace')[:2000]}")
        self.status = status
        self.body = body


@dataclass
class Engine:
    root: Path
    address: str
    holder: subprocess.Popen[bytes]
    # sockets and dockerd's exec-root: unix socket paths must stay under 108 bytes, which
    # a pytest tmp_path does not guarantee
    short: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ------------------------------------------------------------------ paths

    @property
    def etc_docker(self) -> Path:
        """What the engine's processes see as /etc/docker."""
        return self.root / "etc-docker"

    @property
    def daemon_json(self) -> Path:
        """What they see as /etc/docker/daemon.json: dockerd's --config-file."""
        return self.etc_docker / "daemon.json"

    @property
    def certs_d(self) -> Path:
        return self.etc_docker / "certs.d"

    @property
    def docker_socket(self) -> Path:
        return self.short / "docker.sock"

    @property
    def containerd_socket(self) -> Path:
        return self.short / "containerd.sock"

    @property
    def data_root(self) -> Path:
        return self.root / "docker-data"

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ commands

    def enter(self) -> list[str]:
        """The prefix that runs a command inside the engine's namespaces."""
        return [_tool("nsenter"), f"--target={self.holder.pid}", "--mount", "--net", "--"]

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespaces, as a user on that host would."""
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            [*self.enter(), *args],
            input=data,
            capture_output=True,
            env=dict(env) if env is not None else _base_env(),
            timeout=timeout,
            check=False,
        )
        completed = subprocess.CompletedProcess(
            result.args, result.returncode,
            result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise subprocess.CalledProcessError(completed.returncode, list(args), completed.stdout,
                                                completed.stderr)
        return completed

    def spawn(self, name: str, args: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the namespaces; `stop` ends it."""
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [*self.enter(), *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=dict(env) if env is not None else _base_env(),
            )
        self.processes[name] = process
        return process

    def end(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """Stop one process started with `spawn`: TERM, then KILL after `timeout`."""
        process = self.processes.pop(name, None)
        if process is not None:
            _terminate(process, timeout)

    def docker(self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True,
               input: bytes | str | None = None) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this engine (no user config or credentials)."""
        config = self.root / "docker-cli"
        config.mkdir(exist_ok=True)
        env = _base_env() | {"DOCKER_CONFIG": str(config), "HOME": str(config)}
        return self.run([docker_cli(), "-H", f"unix://{self.docker_socket}", *args],
                        env=env, timeout=timeout, check=check, input=input)

    def ctr(self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
        """containerd's ctr against this containerd (it fetches images itself, so it runs
        inside the namespaces and resolves names through the private /etc/hosts)."""
        return self.run([_tool("ctr"), "--address", str(self.containerd_socket), *args],
                        timeout=timeout, check=check)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = COMMAND_TIMEOUT,
        ok: Sequence[int] = (200, 201, 204, 304),
    ) -> Any:
        """Docker Engine API call over the unix socket; JSON answer decoded (or raw bytes)."""
        connection = _UnixConnection(str(self.docker_socket), timeout)
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": content_type} if payload is not None else {}
        try:
            connection.request(method, f"/v{API_VERSION}{path}", body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status not in ok:
            raise ApiError(method, path, response.status, data)
        if response.getheader("Content-Type", "").startswith("application/json") and data:
            return json.loads(data)
        return data

    # ------------------------------------------------------------------ daemons

    def start_containerd(self) -> None:
        state = self.root / "containerd"
        config = state / "config.toml"
        state.mkdir(exist_ok=True)
        config.write_text(
            "version = 2\n"
            f'root = "{state / "root"}"\n'
            f'state = "{state / "state"}"\n'
            "[grpc]\n"
            f'  address = "{self.containerd_socket}"\n'
            "[ttrpc]\n"
            f'  address = "{self.containerd_socket}.ttrpc"\n'
            "[debug]\n"
            '  address = ""\n'
            # the opt plugin would otherwise create /opt/containerd on the host
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{state / "opt"}"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n'
            "  disable_tcp_service = true\n"
        )
        self.spawn("containerd", [_tool("containerd"), "--config", str(config)])
        self._wait(lambda: self.containerd_socket.exists()
                   and self.ctr("version", timeout=10, check=False).returncode == 0, "containerd")

    def start_dockerd(self) -> None:
        self.spawn("dockerd", [
            _tool("dockerd"),
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
            "--ip-masq=false", "--userland-proxy=true",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.short / "exec"),
            "--pidfile", str(self.root / "docker.pid"),
            "-H", f"unix://{self.docker_socket}",
            "--containerd", str(self.containerd_socket),
            # the path a user's daemon.json has: the trust scripts edit exactly this file
            "--config-file", "/etc/docker/daemon.json",
        ])
        self._wait(self._dockerd_answers, "dockerd")

    def _dockerd_answers(self) -> bool:
        if not self.docker_socket.exists():
            return False
        try:
            self.api("GET", "/_ping", timeout=2)
            return True
        except (OSError, ApiError):
            return False

    def _wait(self, ready: Any, name: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise EngineUnavailable(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")
            if ready():
                return
            time.sleep(0.1)
        raise EngineUnavailable(f"{name} not ready after {timeout}s:\n{self.log(name)[-3000:]}")

    def reload_dockerd(self, timeout: float = START_TIMEOUT) -> None:
        """`kill -HUP dockerd`, as `systemctl reload docker` does; returns once dockerd says
        it reloaded (its log), failing with the log when it does not."""
        before = self.log("dockerd").count("Reloaded configuration")
        self.processes["dockerd"].send_signal(signal.SIGHUP)
        self._wait(lambda: self.log("dockerd").count("Reloaded configuration") > before, "dockerd", timeout)

    def restart_dockerd(self) -> None:
        """Stop and start dockerd (what removing a registry mirror needs)."""
        self.end("dockerd")
        self.start_dockerd()

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", "/info")
        return result

    # ------------------------------------------------------------------ stop

    def stop(self) -> list[str]:
        """Stop everything; returns what had to be killed or could not be cleaned (empty
        when all went as it should)."""
        problems: list[str] = []
        if self.processes.get("dockerd") is not None and self.processes["dockerd"].poll() is None:
            with contextlib.suppress(OSError, ApiError, TimeoutError):
                for item in self.api("GET", "/containers/json?all=1", timeout=10):
                    # containers first, so that no shim outlives containerd
                    self.api("DELETE", f"/containers/{item['Id']}?force=1&v=0", timeout=30)
        for name in [n for n in ("dockerd", "containerd") if n in self.processes] + list(self.processes):
            if name in self.processes:
                process = self.processes[name]
                if not _terminate_quietly(process, STOP_TIMEOUT):
                    problems.append(f"{name} had to be killed")
                self.processes.pop(name, None)
        problems += self._sweep_namespace()
        _terminate(self.holder, STOP_TIMEOUT)
        shutil.rmtree(self.short, ignore_errors=True)
        return problems

    def _sweep_namespace(self) -> list[str]:
        """Kill whatever still runs in our network namespace (a shim, a docker-proxy): only
        processes we started can be in it."""
        try:
            ours = os.readlink(f"/proc/{self.holder.pid}/ns/net")
        except OSError:
            return []
        left: list[str] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.holder.pid:
                continue
            try:
                if os.readlink(entry / "ns" / "net") != ours:
                    continue
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                os.kill(int(entry.name), signal.SIGKILL)
                left.append(f"left running and killed: {entry.name} {command[:120]}")
            except (OSError, ProcessLookupError):
                continue
        return left


def push_inside(engine: Engine, skopeo: str, layout: Path, tag: str, destination: str, home: Path) -> None:
    """skopeo, inside the namespaces, copies the OCI layout's `tag` to the plain-HTTP registry
    reference `destination` (host:port/repository:tag), digests kept, no credentials; `home`
    is its HOME and temp dir."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "auth.json").write_text('{"auths": {}}')
    engine.run([skopeo, "--insecure-policy", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-no-creds", f"oci:{layout}:{tag}", f"docker://{destination}"],
               env={"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home),
                    "REGISTRY_AUTH_FILE": str(home / "auth.json")}, timeout=120)


def pulled_digest(engine: Engine, reference: str, *, keep: bool = False, timeout: float = 180) -> str:
    """`docker pull reference` (which checks every blob against its digest), then the manifest
    digest Docker recorded for it; the image is removed again unless `keep`, so the next pull
    fetches every layer. AssertionError with Docker's words when the pull fails."""
    result = engine.docker("pull", reference, check=False, timeout=timeout)
    assert result.returncode == 0, f"docker pull {reference}: {result.stderr}{result.stdout}"
    inspected = json.loads(engine.docker("image", "inspect", reference).stdout)
    name = reference.split("@", 1)[0] if "@" in reference else reference.rsplit(":", 1)[0]
    [digest] = [d for d in inspected[0]["RepoDigests"] if d.startswith(name + "@")]
    if not keep:
        engine.docker("image", "rm", reference, check=False)
    return digest.split("@", 1)[1]


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin", "LANG": "C.UTF-8"}


def _terminate_quietly(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """TERM and wait; KILL when it does not exit in time. True when TERM was enough."""
    if process.poll() is not None:
        return True
    process.terminate()
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
        return False


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    _terminate_quietly(process, timeout)


def start_engine(tmp: Path, *, hosts: Mapping[str, str], address: str = ADDRESS,
                 daemon_json: Mapping[str, Any] | None = None) -> Engine:
    """Start the namespaces, containerd and dockerd (see the module docstring). The caller
    must call `stop()`; prefer `running_engine`.

    `hosts`: name -> address for the private /etc/hosts. `daemon_json`: the initial
    /etc/docker/daemon.json (merged over the key-path setting dockerd 20.10 needs).
    """
    reason = why_unavailable()
    if reason is not None:
        raise EngineUnavailable(reason)
    root = Path(tmp).resolve()
    (root / "etc-docker").mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in hosts.items())]
    (root / "hosts").write_text("\n".join(lines) + "\n")
    # nothing answers on 127.0.0.1:53 in the namespace: every name not in hosts fails fast
    (root / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # dockerd 20.10 writes its trust key to /etc/docker/key.json unless told otherwise
    settings = {"deprecated-key-path": str(root / "docker-key.json")} | dict(daemon_json or {})
    (root / "etc-docker" / "daemon.json").write_text(json.dumps(settings, indent=2) + "\n")

    holder = subprocess.Popen(
        [_tool("unshare"), "--mount", "--net", "--propagation", "slave", "--",
         "/bin/sh", "-c", _HOLDER, "holder", str(root), address],
        stdout=(root / "holder.log").open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=_base_env(),
    )
    engine = Engine(root=root, address=address, holder=holder, short=Path(tempfile.mkdtemp(prefix="rme-")))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (root / "holder.ready").exists():
            if holder.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(f"namespace set-up failed:\n{(root / 'holder.log').read_text()}")
            time.sleep(0.05)
        engine.start_containerd()
        engine.start_dockerd()
    except BaseException:
        engine.stop()
        raise
    return engine


@contextlib.contextmanager
def running_engine(tmp: Path, *, hosts: Mapping[str, str], address: str = ADDRESS,
                   daemon_json: Mapping[str, Any] | None = None) -> Iterator[Engine]:
    """`start_engine` ... `stop`, always."""
    engine = start_engine(tmp, hosts=hosts, address=address, daemon_json=daemon_json)
    try:
        yield engine
    finally:
        engine.stop()
