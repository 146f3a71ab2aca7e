"""Run registries and `skopeo` against loopback.

Two registry binaries, with one role each:

- the mirror under test is distribution 3.1.1, the `registry` of the `registry:3.1.1`
  image the stack ships (`mirror_binary()`: the toolchain builds it once);
- the upstream stand-in for Docker Hub is Debian's `docker-registry` 2.8.2
  (`upstream_binary()`): any registry serving pushed images will do there.

Building blocks for rehearsals:

- `free_port()`; `registry_process(config, binary=..., env=..., log_path=..., probe_url=...)`:
  a context manager that starts `BINARY serve CONFIG`, waits (bounded) until it answers,
  captures its output to a log file and terminates it at exit.
- `start_upstream(tmp)`: a plain-HTTP local registry with filesystem storage, the stand-in
  for Docker Hub. Start it first: 3.1.1 panics at start when `<remoteurl>/v2/` does not
  answer (registry/proxy/proxyauth.go `getAuthURLs`, registry/handlers/app.go).
- `map_registry_config(...)`: lay a rendered `config.yml` and the files the program uploads
  into the container out under a temp root, rewriting only container paths, listen
  addresses and the proxy upstream.
- `registry_env(...)`: the container's envs, with the tracing endpoint (a stack container
  name) pointed at a loopback stand-in or tracing turned off.
- skopeo: `push`, `pull_through` (trusting ONLY a given root CA), `inspect_raw`.
- `https_get` / `http_get`: tiny clients (stdlib) for catalog, metrics and health.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contract import Registry
from rehearsal.http_stub import serve_http
from rehearsal.registry3 import require_registry3
from rehearsal.tools import require_tool

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
SKOPEO_TIMEOUT = 120.0

# Keys of a rendered config that hold a file or directory path inside the container.
# Every one present is re-rooted under the rehearsal root (distribution configuration.md).
PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("storage", "filesystem", "rootdirectory"),
    ("http", "tls", "certificate"),
    ("http", "tls", "key"),
    ("http", "tls", "clientcas"),  # list of paths
    ("auth", "htpasswd", "path"),
    ("auth", "token", "rootcertbundle"),
    ("auth", "token", "jwks"),
    ("http", "tls", "letsencrypt", "cachefile"),
)
# Env overrides of the keys the mapping rewrites: a program env setting one would silently
# win over the mapping, so `registry_env` refuses them.
REWRITTEN_ENV = (
    "REGISTRY_HTTP_ADDR",
    "REGISTRY_HTTP_DEBUG_ADDR",
    "REGISTRY_PROXY_REMOTEURL",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "REGISTRY_HTTP_TLS_CERTIFICATE",
    "REGISTRY_HTTP_TLS_KEY",
    "REGISTRY_HTTP_TLS_CLIENTCAS",
)
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
# What the registry:3 image sets (its Dockerfile): without it the binary would export
# traces to localhost:4318, which on a shared machine may be anybody's server.
IMAGE_ENV = {"OTEL_TRACES_EXPORTER": "none"}


def mirror_binary() -> str:
    """The mirror under test: registry 3.1.1 (skip locally / fail in CI when unavailable)."""
    return str(require_registry3())


def upstream_binary() -> str:
    """The Docker Hub stand-in: Debian's docker-registry 2.8.2."""
    return require_tool("docker-registry")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- processes


@dataclass
class RunningRegistry:
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    binary: str = "registry"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no inherited REGISTRY_*, proxies or CA overrides."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def registry_process(
    config_path: Path,
    *,
    binary: str,
    log_path: Path,
    probe_url: str,
    env: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[RunningRegistry]:
    """Run `BINARY serve CONFIG` until the block exits.

    The environment is the image's (`IMAGE_ENV`) plus `env`. Ready when `probe_url` answers
    any HTTP status (a 401 is an answer); fails with the log when the process exits first or
    `timeout` passes.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env({**IMAGE_ENV, **(env or {})}),
            cwd=str(config_path.parent),
        )
    running = RunningRegistry(process, config_path, log_path, binary)
    try:
        _wait_ready(running, probe_url, ssl_context, timeout)
        yield running
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def wait_started(process: subprocess.Popen[Any], probe: Callable[[], str | None], *, what: str,
                 log: Callable[[], str], timeout: float, interval: float = 0.1) -> None:
    """Until `probe()` answers None (ready; otherwise it says why not). RuntimeError with the
    log's tail when the process exits first, TimeoutError with the last reason at the deadline."""
    deadline = time.monotonic() + timeout
    reason = ""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready:\n{log()[-4000:]}")
        reason = probe() or ""
        if not reason:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s ({reason}):\n{log()[-4000:]}")
        time.sleep(interval)


def answers_http(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0, *,
                 any_status: bool = True) -> str | None:
    """A `wait_started` probe: any HTTP answer means it serves (with `any_status` false, only
    a 2xx)."""
    try:
        http_get(url, context=context, timeout=timeout)
    except urllib.error.HTTPError as error:
        if not any_status:
            return repr(error)
    except (OSError, ssl.SSLError) as error:
        return repr(error)
    return None


def listens(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> str | None:
    """A `wait_started` probe: something accepts connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return repr(error)
    return None


def _wait_ready(running: RunningRegistry, url: str, context: ssl.SSLContext | None, timeout: float) -> None:
    wait_started(running.process, lambda: answers_http(url, context), what=f"{running.binary} at {url}",
                 log=running.log, timeout=timeout)


# ---------------------------------------------------------------------------- upstream


@dataclass
class Upstream:
    url: str  # http://127.0.0.1:PORT
    host_port: str  # 127.0.0.1:PORT
    storage: Path
    log_path: Path
    registry: RunningRegistry


def upstream_config(storage: Path, addr: str) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
        },
        "http": {"addr": addr},
    }


@contextlib.contextmanager
def start_upstream(tmp: Path, name: str = "upstream") -> Iterator[Upstream]:
    """A plain-HTTP local registry (filesystem storage under `tmp/name`), Debian's 2.8.2."""
    base = Path(tmp) / name
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host_port = f"127.0.0.1:{port}"
    config = base / "config.yml"
    config.write_text(yaml.safe_dump(upstream_config(base / "data", host_port), sort_keys=True))
    log_path = base / "registry.log"
    with registry_process(
        config, binary=upstream_binary(), log_path=log_path, probe_url=f"http://{host_port}/v2/"
    ) as reg:
        yield Upstream(f"http://{host_port}", host_port, base / "data", log_path, reg)


# ---------------------------------------------------------------------------- config mapping


def container_path_under(root: Path, container_path: str) -> Path:
    """Where a container path lives under the rehearsal root."""
    if not container_path.startswith("/"):
        raise ValueError(f"not an absolute container path: {container_path!r}")
    relative = Path(container_path.lstrip("/"))
    if ".." in relative.parts:
        raise ValueError(f"refusing a container path with '..': {container_path!r}")
    return Path(root) / relative


def map_registry_config(
    text: str,
    uploads: Mapping[str, str],
    root: Path,
    addr: str,
    debug_addr: str,
    upstream_url: str,
    *,
    output_name: str = "rehearsal-config.yml",
    notification_url: str | None = None,
) -> Path:
    """Lay the program's registry files out under `root`; return the mapped config path.

    Every upload is written to `root/<container path>`. In the config, only the container
    paths (`PATH_KEYS`, plus any string equal to an uploaded path), `http.addr`,
    `http.debug.addr`, `proxy.remoteurl` and the notification endpoints' `url` change. Every
    other key stays exactly as rendered.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for container_path, content in uploads.items():
        target = container_path_under(root, container_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError("registry config is not a mapping")
    mapped = copy.deepcopy(config)

    for key_path in PATH_KEYS:
        value = _get(mapped, key_path)
        if value is None:
            continue
        if isinstance(value, list):
            _set(mapped, key_path, [str(container_path_under(root, v)) for v in value])
        else:
            _set(mapped, key_path, str(container_path_under(root, str(value))))
    _rewrite_uploaded_paths(mapped, set(uploads), root)

    if _get(mapped, ("http",)) is None:
        raise ValueError("registry config has no http section")
    _set(mapped, ("http", "addr"), addr)
    if _get(mapped, ("http", "debug")) is not None:
        _set(mapped, ("http", "debug", "addr"), debug_addr)
    if _get(mapped, ("proxy",)) is not None:
        _set(mapped, ("proxy", "remoteurl"), upstream_url)
    # the cache keeper's endpoint names a stack container: `notification_url` stands in for it
    for endpoint in _get(mapped, ("notifications", "endpoints")) or []:
        if notification_url is None:
            raise ValueError("the config notifies an endpoint: give its loopback stand-in (notification_url)")
        endpoint["url"] = notification_url

    storage = _get(mapped, ("storage", "filesystem", "rootdirectory"))
    if isinstance(storage, str):
        Path(storage).mkdir(parents=True, exist_ok=True)
    out = root / output_name
    out.write_text(yaml.safe_dump(mapped, sort_keys=True, default_flow_style=False))
    return out


def registry_env(envs: Sequence[str], otlp_endpoint: str | None = None) -> dict[str, str]:
    """The container's `envs` ("K=V") as a dict; refuses overrides of rewritten keys.

    A tracing endpoint names a stack container (`http://jaeger:4318`), which must never be
    looked up on the host's resolver: it becomes `otlp_endpoint` (a loopback stand-in), or
    without one tracing is turned off.
    """
    result: dict[str, str] = {}
    for item in envs:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"env entry without '=': {item!r}")
        result[name] = value
    clashing = sorted(set(result) & set(REWRITTEN_ENV))
    if clashing:
        raise ValueError(f"env overrides keys the rehearsal must rewrite: {clashing}")
    if OTLP_ENDPOINT_ENV in result:
        if otlp_endpoint is not None:
            result[OTLP_ENDPOINT_ENV] = otlp_endpoint
        else:
            del result[OTLP_ENDPOINT_ENV]
            result["OTEL_TRACES_EXPORTER"] = "none"
    return result


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?(\[[^\]]+\]|[^/:\s]+)")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback  # all of 127.0.0.0/8
    except ValueError:
        return False


def refuse_non_loopback_urls(
    env: Mapping[str, str], config_path: Path, loopback_names: Collection[str] = ()
) -> None:
    """Fail before a rehearsal binary starts with a URL to anything but loopback in its env
    or config: a stack name (`jaeger`, `registry-1.docker.io`) would go to the host's
    resolver and maybe out of the machine. `loopback_names` are names the caller itself
    resolves to loopback for that process (a hosts file in its own mount namespace)."""
    texts = [f"{name}={value}" for name, value in env.items()] + [config_path.read_text()]
    hosts = {match.group(1) for text in texts for match in _URL.finditer(text)}
    outside = sorted(host for host in hosts if not _is_loopback(host) and host not in loopback_names)
    if outside:
        raise ValueError(f"rehearsal registry would contact non-loopback hosts: {outside}")


def flatten(document: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf paths of a nested mapping (lists are leaves)."""
    if isinstance(document, dict) and document:
        out: dict[tuple[str, ...], Any] = {}
        for key, value in document.items():
            out.update(flatten(value, (*prefix, str(key))))
        return out
    return {prefix: document}


def _get(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _rewrite_uploaded_paths(node: Any, uploaded: set[str], root: Path) -> Any:
    """Any other string that names an uploaded file is a file path too."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _rewrite_uploaded_paths(value, uploaded, root)
        return node
    if isinstance(node, list):
        return [_rewrite_uploaded_paths(v, uploaded, root) for v in node]
    if isinstance(node, str) and node in uploaded:
        return str(container_path_under(root, node))
    return node


# ---------------------------------------------------------------------------- HTTP clients


def ca_context(ca_file: Path) -> ssl.SSLContext:
    """Verify the server against this CA file only (no system trust store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    return context


def http_get(
    url: str, *, context: ssl.SSLContext | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """GET without proxies; raises urllib.error.HTTPError for 4xx/5xx."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    with opener.open(url, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def catalog(base_url: str, *, context: ssl.SSLContext | None = None) -> list[str]:
    _, _, body = http_get(f"{base_url}/v2/_catalog", context=context)
    repositories: list[str] = json.loads(body)["repositories"]
    return repositories


# ---------------------------------------------------------------------------- skopeo


def _skopeo(args: list[str], *, tmp: Path, extra_env: Mapping[str, str] | None = None) -> str:
    binary = require_tool("skopeo")
    tmp.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        {
            "TMPDIR": str(tmp),
            "HOME": str(tmp),
            # no credentials file of the user, no system registries config surprises
            "REGISTRY_AUTH_FILE": str(tmp / "auth.json"),
            **(extra_env or {}),
        }
    )
    (tmp / "auth.json").write_text('{"auths": {}}')
    result = subprocess.run(
        [binary, "--insecure-policy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=SKOPEO_TIMEOUT,
    )
    if result.returncode != 0:
        raise SkopeoError(args, result.returncode, result.stderr)
    return result.stdout


class SkopeoError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"skopeo {' '.join(args)} failed ({returncode}):\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


_TRANSPORTS = ("docker://", "oci:", "oci-archive:", "dir:", "docker-archive:")


def _docker_ref(reference: str) -> str:
    """`host:port/repo:tag` -> `docker://...`; references with a transport pass through."""
    return reference if reference.startswith(_TRANSPORTS) else f"docker://{reference}"


def push(
    oci_dir: Path,
    url: str,
    tls_verify: bool = False,
    *,
    tag: str = "latest",
    cert_dir: Path | None = None,
) -> None:
    """`skopeo copy oci:DIR:TAG docker://URL` (URL = host:port/repo:tag), digests preserved.

    With `cert_dir`, TLS is verified against its `ca.crt` only.
    """
    args = [
        "copy",
        "--quiet",
        "--preserve-digests",  # fail rather than re-compress or convert anything
        f"--dest-tls-verify={'true' if tls_verify else 'false'}",
        "--dest-no-creds",
    ]
    env: dict[str, str] = {}
    if cert_dir is not None:
        args.append(f"--dest-cert-dir={cert_dir}")
        env = _trust_only(cert_dir)
    args += [f"oci:{oci_dir}:{tag}", _docker_ref(url)]
    _skopeo(args, tmp=Path(oci_dir).parent / ".skopeo-push", extra_env=env)


def _trust_only(ca_dir: Path) -> dict[str, str]:
    """Check `ca_dir` holds only `ca.crt`; empty the system trust store for Go."""
    entries = sorted(p.name for p in Path(ca_dir).iterdir())
    if entries != ["ca.crt"]:
        raise ValueError(f"{ca_dir} must hold only ca.crt, found {entries}")
    empty = Path(ca_dir).parent / ".empty-trust"
    empty.mkdir(exist_ok=True)
    (empty / "none.pem").write_text("")
    # Go's SystemCertPool reads SSL_CERT_FILE / SSL_CERT_DIR: point both at nothing, so the
    # only anchor skopeo has is the ca.crt of --src-cert-dir.
    return {"SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}


def pull_through(mirror_host_port: str, repo_tag: str, ca_dir: Path, dest_dir: Path, *, tag: str | None = None) -> Path:
    """Pull `mirror/repo:tag` into an OCI layout, verifying TLS against `ca_dir/ca.crt` only."""
    dest_dir = Path(dest_dir)
    dest_tag = tag or repo_tag.rsplit(":", 1)[-1]
    _skopeo(
        [
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=true",
            f"--src-cert-dir={ca_dir}",
            "--src-no-creds",
            f"docker://{mirror_host_port}/{repo_tag}",
            f"oci:{dest_dir}:{dest_tag}",
        ],
        tmp=dest_dir.parent / f".skopeo-{dest_dir.name}",
        extra_env=_trust_only(ca_dir),
    )
    return dest_dir


def inspect_raw(reference: str, *, ca_dir: Path | None = None, tmp: Path, tls_verify: bool = True) -> bytes:
    """`skopeo inspect --raw`: the manifest bytes exactly as the registry serves them."""
    args = ["inspect", "--raw", "--no-creds", f"--tls-verify={'true' if tls_verify else 'false'}"]
    env: dict[str, str] = {}
    if ca_dir is not None:
        args.append(f"--cert-dir={ca_dir}")
        env = _trust_only(ca_dir)
    args.append(_docker_ref(reference))
    return _skopeo(args, tmp=tmp, extra_env=env).encode()


def write_ca_dir(directory: Path, root_ca_pem: str) -> Path:
    """A cert dir holding only the root CA as `ca.crt` (Docker's certs.d layout)."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_text(root_ca_pem)
    return directory


# ---------------------------------------------------------------------------- OTLP stand-in


@dataclass
class OtlpCollector:
    """A loopback stand-in for Jaeger's OTLP/HTTP receiver: answers 200, records each POST."""

    url: str = ""  # http://127.0.0.1:PORT, the OTEL_EXPORTER_OTLP_ENDPOINT base
    posts: list[tuple[str, bytes]] = field(default_factory=list)  # (path, body)


@contextlib.contextmanager
def otlp_collector() -> Iterator[OtlpCollector]:
    collector = OtlpCollector()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            collector.posts.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    with serve_http(Handler) as port:
        collector.url = f"http://127.0.0.1:{port}"
        yield collector


# ---------------------------------------------------------------------------- rehearsal mirror


@dataclass
class RehearsalMirror:
    """The program's registry container, run by registry 3.1.1 on loopback.

    Built from an `Evaluation` (rehearsal.fakes.program): the registry container's `uploads`
    and `envs` exactly as the program registers them, laid out by `map_registry_config`,
    with a local plain-HTTP upstream standing in for Docker Hub and, when the program turns
    tracing on, a loopback OTLP stand-in for Jaeger. Use `RehearsalMirror.start(...)`.
    """

    root: Path  # everything of this rehearsal lives under here
    host_port: str  # 127.0.0.1:PORT of the TLS API
    port: int
    debug_host_port: str  # 127.0.0.1:PORT of the plain-HTTP debug server
    debug_port: int
    ca_dir: Path  # holds only ca.crt = the stack output caCertPem (the root CA)
    config_path: Path  # the mapped config the registry runs with
    storage: Path  # the cache (storage.filesystem.rootdirectory, mapped)
    log_path: Path
    uploads: dict[str, str]  # container path -> content, as the program uploads them
    env: dict[str, str]  # the container's envs, as the program sets them
    upstream: Upstream
    registry: RunningRegistry
    otlp: OtlpCollector

    @property
    def url(self) -> str:
        return f"https://{self.host_port}"

    @property
    def debug_url(self) -> str:
        return f"http://{self.debug_host_port}"

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        return ca_context(self.ca_file)

    def uploaded(self, container_path: str) -> Path:
        """Where an uploaded file landed under the rehearsal root."""
        return container_path_under(self.root / "container", container_path)

    def stop_upstream(self) -> None:
        stop_process(self.upstream.registry.process)

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        evaluation: Any,
        tmp: Path,
        *,
        images: Sequence[tuple[Path, str]] = (),
        service: str = "registry",
        config_path: str = "/etc/distribution/config.yml",
        extra_env: Mapping[str, str] | None = None,
        probe_debug: bool = False,
    ) -> Iterator[RehearsalMirror]:
        """Start upstream (with `images` = [(oci_dir, "repo:tag")] pushed), then the mirror.

        The root CA is the stack output `caCertPem`; nothing else is trusted. `extra_env` is
        added to the container's envs (e.g. a shorter OTel export delay).
        """
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        binary = mirror_binary()
        container = evaluation.container(service)
        uploads: dict[str, str] = {u["file"]: u["content"] for u in container.inputs.get("uploads", [])}
        if config_path not in uploads:
            raise LookupError(f"{service} uploads no {config_path}: {sorted(uploads)}")
        ca_dir = write_ca_dir(tmp / "trust", evaluation.outputs["caCertPem"])
        with otlp_collector() as otlp, start_upstream(tmp) as upstream:
            # chosen once the upstream listens, so free_port cannot hand out its port again
            port, debug_port = free_port(), free_port()
            env = {**registry_env(container.inputs.get("envs", []), otlp_endpoint=otlp.url), **(extra_env or {})}
            for oci_dir, repo_tag in images:
                push(oci_dir, f"{upstream.host_port}/{repo_tag}", tag=repo_tag.rsplit(":", 1)[1])
            root = tmp / "mirror"
            mapped = map_registry_config(
                uploads[config_path],
                uploads,
                root / "container",
                addr=f"127.0.0.1:{port}",
                debug_addr=f"127.0.0.1:{debug_port}",
                upstream_url=upstream.url,
            )
            refuse_non_loopback_urls(env, mapped)
            storage = Path(yaml.safe_load(mapped.read_text())["storage"]["filesystem"]["rootdirectory"])
            log_path = root / "registry.log"
            with registry_process(
                mapped,
                binary=binary,
                log_path=log_path,
                # a registry that requires client certificates answers no TLS client without one:
                # `probe_debug` waits on the plain debug server's health instead
                probe_url=(f"http://127.0.0.1:{debug_port}{Registry.HEALTH_PATH}" if probe_debug
                           else f"https://127.0.0.1:{port}/v2/"),
                env=env,
                ssl_context=ca_context(ca_dir / "ca.crt"),
            ) as running:
                yield cls(
                    root=root,
                    host_port=f"127.0.0.1:{port}",
                    port=port,
                    debug_host_port=f"127.0.0.1:{debug_port}",
                    debug_port=debug_port,
                    ca_dir=ca_dir,
                    config_path=mapped,
                    storage=storage,
                    log_path=log_path,
                    uploads=uploads,
                    env=env,
                    upstream=upstream,
                    registry=running,
                    otlp=otlp,
                )
