"""Issue 13 rehearsed with real binaries: several upstreams behind one URL, a private registry.

Mirrors and private registry: registry 3.1.1 built from source (rehearsal/registry3.py).
One stack with Docker Hub, ghcr.io and quay.io mirrors, a private registry, and access
control on (requireClientCert and registryUsers), evaluated under mocks; then:

- two upstream stand-ins (Debian's docker-registry, plain HTTP on loopback) hold an image of
  the SAME name with DIFFERENT content, so a pull proves which upstream served it;
- each mirror runs the program's rendered config on the port the stack gives it;
- the router runs the program's rendered nginx.conf in Debian's nginx (only paths, the
  listen address and the backends' addresses are rewritten, each replacement checked);
- a real containerd (1.6, in a mount namespace of its own where the rendered `clientConfigs`
  files sit at their printed paths under /etc/containerd) pulls with `ctr image pull
  --hosts-dir /etc/containerd/certs.d` and through the CRI (`PullImage` over its socket),
  its config.toml being the rendered 1.x fragment;
- skopeo pushes to the private registry and pulls it back, and its push to a mirror is
  refused by the registry with the `UNSUPPORTED` error code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from configs import clients
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import make_oci_image, read_manifest
from rehearsal.registry_proc import (
    Upstream,
    free_port,
    map_registry_config,
    mirror_binary,
    push,
    registry_env,
    registry_process,
    start_upstream,
    stop_process,
)
from rehearsal.router import router_process
from rehearsal.tools import unavailable
from tests.conftest import require_tool

USER, PASSWORD = "alice", "correct-horse-battery"
HUB_IMAGE, GHCR_IMAGE = "shared/app:1", "shared/app:1"  # one name, two upstreams, two contents
START_TIMEOUT = 20.0


@dataclass
class Stack:
    root: Path
    evaluation: Evaluation
    router_port: int
    ports: dict[str, int]  # service -> 127.0.0.1 port
    digests: dict[str, str]  # upstream -> manifest digest of shared/app:1 there
    access_log: Path
    client_ctx: ssl.SSLContext  # trusts the root CA, presents the client certificate
    ca_only_ctx: ssl.SSLContext
    cert_dir: Path  # skopeo/Docker layout: ca.crt, client.cert, client.key


def _tls_contexts(ev: Evaluation, root: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    cert_dir = root / "client-certs"
    cert_dir.mkdir(parents=True)
    (cert_dir / "ca.crt").write_text(ev.outputs["caCertPem"])
    # the leaf alone does not verify against the root: the intermediate travels with it
    (cert_dir / "client.cert").write_text(ev.outputs["clientCertPem"] + ev.outputs["intermediateCaPem"])
    (cert_dir / "client.key").write_text(ev.outputs["clientKeyPem"])
    with_client = ssl.create_default_context(cafile=str(cert_dir / "ca.crt"))
    with_client.load_cert_chain(str(cert_dir / "client.cert"), str(cert_dir / "client.key"))
    return with_client, ssl.create_default_context(cafile=str(cert_dir / "ca.crt")), cert_dir


@contextlib.contextmanager
def _registry(ev: Evaluation, service: str, root: Path, port: int, upstream_url: str,
              ctx: ssl.SSLContext) -> Iterator[None]:
    container = ev.container(service)
    uploads = {u["file"]: u["content"] for u in container.inputs["uploads"]}
    mapped = map_registry_config(uploads["/etc/distribution/config.yml"], uploads, root / service / "container",
                                 addr=f"127.0.0.1:{port}", debug_addr=f"127.0.0.1:{free_port()}",
                                 upstream_url=upstream_url)
    # the mirrors and the private registry run registry 3.1.1 (the image's version)
    with registry_process(mapped, binary=mirror_binary(), log_path=root / service / "registry.log",
                          env=registry_env(container.inputs["envs"]),
                          probe_url=f"https://127.0.0.1:{port}/v2/", ssl_context=ctx):
        yield


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the rendered router config no longer holds {old!r}"
    return text.replace(old, new)


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, "nginx exited at start"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _seed_upstream(upstream: Upstream, root: Path, seed: int) -> str:
    directory = root / f"oci-{seed}"
    image = make_oci_image(directory, [4096, 8192], seed=seed, tag="1")
    push(directory, f"{upstream.host_port}/{HUB_IMAGE}", tag="1")
    return image.manifest_digest


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_tool("docker-registry")
    require_tool("skopeo")
    root = tmp_path_factory.mktemp("upstreams")
    router_port, ghcr_port, quay_port, private_port = (free_port() for _ in range(4))
    ev = evaluate({
        "installTrust": "false", "tracing": "false", "logging": "false", "hostname": "127.0.0.1",
        "registryBindAddress": "127.0.0.1", "registryPort": str(router_port), "requireClientCert": "true",
        "privateRegistry": "true", "privateRegistryPort": str(private_port),
        "mirrors": json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": ghcr_port},
                               {"upstream": "quay.io", "port": quay_port}]),
    }, secrets={"registryUsers": json.dumps({USER: PASSWORD})})
    client_ctx, ca_only_ctx, cert_dir = _tls_contexts(ev, root)
    hub_port = free_port()  # Docker Hub's mirror publishes nothing behind the router
    ports = {"registry": hub_port, "registry-ghcr": ghcr_port, "registry-quay": quay_port,
             "registry-private": private_port}
    with contextlib.ExitStack() as stack_:
        hub = stack_.enter_context(start_upstream(root / "hub", "hub"))
        ghcr = stack_.enter_context(start_upstream(root / "ghcr", "ghcr"))
        quay = stack_.enter_context(start_upstream(root / "quay", "quay"))
        digests = {"docker.io": _seed_upstream(hub, root, 1), "ghcr.io": _seed_upstream(ghcr, root, 2)}
        assert digests["docker.io"] != digests["ghcr.io"]
        for service, upstream in (("registry", hub), ("registry-ghcr", ghcr), ("registry-quay", quay),
                                  ("registry-private", hub)):
            # the private registry has no proxy section: map_registry_config leaves it without one
            stack_.enter_context(_registry(ev, service, root, ports[service], upstream.url, client_ctx))
        mirrors = {k: v for k, v in ports.items() if k != "registry-private"}
        access_log = stack_.enter_context(router_process(
            ev.container("registry-router"), root / "router", router_port,
            {alias: f"127.0.0.1:{backend_port}" for alias, backend_port in mirrors.items()}, require_tool("nginx")))
        yield Stack(root, ev, router_port, ports, digests, access_log, client_ctx, ca_only_ctx, cert_dir)


# --- containerd in a mount namespace where /etc/containerd is the rendered files ----------------


@dataclass
class Containerd:
    pid: int
    address: str
    etc: Path  # what /etc/containerd is inside the namespace

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", *args], capture_output=True,
                              text=True, timeout=timeout)


def _mirrorctl_client_config(ev: Evaluation, kind: str, root: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`mirrorctl client-config KIND --root ROOT` from the evaluation's outputs, as an operator runs it."""
    outputs = work / "outputs.json"
    outputs.write_text(json.dumps(ev.outputs))
    key = work / "client.key"
    key.write_text(ev.outputs["clientKeyPem"])
    return subprocess.run([sys.executable, "-m", "mirrorctl", "--outputs", str(outputs), "client-config", kind,
                           "--root", str(root), "--client-key", str(key)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
                          check=True)


@pytest.fixture(scope="module")
def containerd(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    binary = require_tool("containerd")
    require_tool("ctr")
    require_tool("unshare")
    require_tool("nsenter")
    if not Path("/etc/containerd").is_dir():
        unavailable("/etc/containerd is missing (apt-get install -y containerd): the namespace mounts the "
                    "rendered files over it")
    base = tmp_path_factory.mktemp("containerd")
    written = _mirrorctl_client_config(stack.evaluation, "containerd", base / "host", base)
    etc = base / "host" / "etc" / "containerd"
    assert f"wrote {etc}/certs.d/ghcr.io/hosts.toml" in written.stdout
    # the printed 1.x fragment, unchanged, is the whole config of this containerd
    fragment = stack.evaluation.outputs["clientConfigs"]["containerd"][clients.CONTAINERD_1_CONFIG]
    assert fragment.rstrip("\n") in written.stdout
    (etc / "config.toml").write_text(fragment)
    with _run_containerd(binary, etc, base) as running:
        yield running


@contextlib.contextmanager
def _run_containerd(binary: str, etc: Path, base: Path) -> Iterator[Containerd]:
    """containerd in its own mount namespace, where /etc/containerd is `etc`."""
    address = str(base / "containerd.sock")
    # /opt is a tmpfs of the namespace: with the printed fragment as its whole config, the opt
    # plugin would create /opt/containerd on the host
    script = ('mount --make-rprivate / && mount --bind "$1" /etc/containerd && mount -t tmpfs tmpfs /opt && '
              'exec "$2" --config /etc/containerd/config.toml --root "$3" --state "$4" --address "$5"')
    log = (base / "containerd.log").open("w")
    process = subprocess.Popen(["unshare", "--mount", "sh", "-c", script, "sh", str(etc), binary,
                                str(base / "root"), str(base / "state"), address], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not Path(address).exists():
            assert process.poll() is None, (base / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not create its socket"
            time.sleep(0.1)
        yield Containerd(process.pid, address, etc)
    finally:
        stop_process(process)
        log.close()


def _ctr_pull(c: Containerd, image: str) -> str:
    result = c.run("ctr", "--address", c.address, "--namespace", "rehearsal", "image", "pull",
                   "--hosts-dir", "/etc/containerd/certs.d", "--user", f"{USER}:{PASSWORD}", image)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = c.run("ctr", "--address", c.address, "--namespace", "rehearsal", "image", "ls")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(image + " "))
    return row.split()[2]


def _ns_hits(access_log: Path) -> list[str]:
    return [line for line in access_log.read_text().splitlines() if "ns=" in line]


def test_containerd_pulls_one_name_from_two_upstreams_each_through_its_own_mirror_at_one_url(
        stack: Stack, containerd: Containerd) -> None:
    hub_digest = _ctr_pull(containerd, f"docker.io/{HUB_IMAGE}")
    ghcr_digest = _ctr_pull(containerd, f"ghcr.io/{GHCR_IMAGE}")
    assert (hub_digest, ghcr_digest) == (stack.digests["docker.io"], stack.digests["ghcr.io"])
    hits = _ns_hits(stack.access_log)
    assert any("ns=docker.io" in line for line in hits) and any("ns=ghcr.io" in line for line in hits)
    # each upstream's manifest landed in its own mirror's cache and not in the other's
    def cached(service: str, digest: str) -> bool:
        hexdigest = digest.removeprefix("sha256:")
        blobs = stack.root / service / "container" / "var/lib/registry/docker/registry/v2/blobs/sha256"
        return (blobs / hexdigest[:2] / hexdigest / "data").is_file()

    assert cached("registry", stack.digests["docker.io"]) and not cached("registry", stack.digests["ghcr.io"])
    assert cached("registry-ghcr", stack.digests["ghcr.io"]) and not cached("registry-ghcr", stack.digests["docker.io"])
    quay_repos = stack.root / "registry-quay" / "container" / "var/lib/registry/docker/registry/v2/repositories"
    assert not quay_repos.exists()


def _grpc_pull(socket_path: str, image: str) -> str:
    import grpc

    def field(number: int, payload: bytes) -> bytes:
        # protobuf: tag (field number, wire type 2) then a varint length; payloads stay < 128 bytes
        assert len(payload) < 128
        return bytes([number << 3 | 2, len(payload)]) + payload

    # PullImageRequest{image: ImageSpec{image}, auth: AuthConfig{username, password}} (CRI api.proto)
    request = field(1, field(1, image.encode())) + field(2, field(1, USER.encode()) + field(2, PASSWORD.encode()))
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        pull = channel.unary_unary("/runtime.v1.ImageService/PullImage")
        response: bytes = pull(request, timeout=120)
    assert response[0] == 0x0A  # PullImageResponse.image_ref
    return response[2:2 + response[1]].decode()


def test_the_cri_with_the_printed_config_path_pulls_through_the_mirror(stack: Stack, containerd: Containerd) -> None:
    before = len(_ns_hits(stack.access_log))
    ref = _grpc_pull(containerd.address, f"ghcr.io/{GHCR_IMAGE}")
    assert ref.startswith("sha256:")
    listed = containerd.run("ctr", "--address", containerd.address, "--namespace", "k8s.io", "image", "ls")
    assert f"ghcr.io/{GHCR_IMAGE}" in listed.stdout and stack.digests["ghcr.io"] in listed.stdout
    assert any("ns=ghcr.io" in line for line in _ns_hits(stack.access_log)[before:])


def test_without_the_printed_config_path_the_cri_ignores_the_hosts_toml(
        stack: Stack, containerd: Containerd, tmp_path: Path) -> None:
    """The control of the CRI test: the same files, a config.toml without `config_path`."""
    import grpc

    etc = tmp_path / "etc-containerd"
    shutil.copytree(containerd.etc, etc)
    (etc / "config.toml").write_text("version = 2\n")
    before = len(_ns_hits(stack.access_log))
    with _run_containerd(require_tool("containerd"), etc, tmp_path) as bare:
        with pytest.raises(grpc.RpcError) as failed:
            _grpc_pull(bare.address, f"ghcr.io/{GHCR_IMAGE}")
    # it went to ghcr.io itself, which has no name here
    assert "ghcr.io" in str(failed.value.details())
    assert len(_ns_hits(stack.access_log)) == before


def _in_etc(etc_containerd: Path, etc_docker: Path, script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run a trust script as `pulumi up` does (/bin/sh -c TEXT), in a mount namespace where
    /etc/containerd and /etc/docker are temp dirs: the host's are never touched."""
    wrapper = 'mount --make-rprivate / && mount --bind "$1" /etc/containerd && mount --bind "$2" /etc/docker && ' \
              'exec /bin/sh -c "$3"'
    return subprocess.run(["unshare", "--mount", "sh", "-c", wrapper, "sh", str(etc_containerd), str(etc_docker),
                           script], input=stdin, capture_output=True, text=True, timeout=60)


def test_the_trust_step_installs_containerd_files_that_pull_through_the_router_and_removes_only_its_own(
        stack: Stack, tmp_path: Path) -> None:
    from trust.render import TrustParams, render_install_script, render_remove_script

    binary = require_tool("containerd")
    if not Path("/etc/docker").is_dir():
        unavailable("/etc/docker is missing (apt-get install -y docker.io): the namespace mounts a temp dir over it")
    ev = stack.evaluation
    params = TrustParams(
        registry_host=f"127.0.0.1:{stack.router_port}", mirror_url=f"https://127.0.0.1:{stack.router_port}",
        docker_certs_dir="/etc/docker/certs.d", install_system_trust=False, configure_docker_mirror=False,
        docker_daemon_json_path="/etc/docker/daemon.json", use_sudo=False, instance="registry-mirror-dev",
        client_cert=True, containerd_upstreams=(("docker.io", "https://registry-1.docker.io"),
                                                ("ghcr.io", "https://ghcr.io"), ("quay.io", "https://quay.io")))
    etc, docker = tmp_path / "etc-containerd", tmp_path / "etc-docker"
    etc.mkdir()
    docker.mkdir()
    (etc / "certs.d" / "gcr.io").mkdir(parents=True)
    (etc / "certs.d" / "gcr.io" / "hosts.toml").write_text('server = "https://gcr.io"\n')  # the user's own
    stdin = ev.outputs["caCertPem"] + ev.outputs["clientCertPem"] + ev.outputs["intermediateCaPem"] + \
        ev.outputs["clientKeyPem"]
    installed = _in_etc(etc, docker, render_install_script(params), stdin)
    assert installed.returncode == 0, installed.stderr
    # the file the trust step wrote is the serializer's file, after the stack's mark
    hosts = (etc / "certs.d/ghcr.io/hosts.toml").read_text()
    mark, _, body = hosts.partition("\n")
    assert mark == "# registry-mirror:registry-mirror-dev installed this file; pulumi destroy removes it"
    assert body == clients.containerd_upstream_hosts_toml(
        "ghcr.io", "https://ghcr.io", params.mirror_url, "/etc/containerd/certs.d/ghcr.io", True)
    assert oct((etc / "certs.d/ghcr.io/client.key").stat().st_mode & 0o777) == "0o600"
    (etc / "config.toml").write_text(ev.outputs["clientConfigs"]["containerd"][clients.CONTAINERD_1_CONFIG])
    with _run_containerd(binary, etc, tmp_path) as running:
        assert _ctr_pull(running, f"ghcr.io/{GHCR_IMAGE}") == stack.digests["ghcr.io"]
    removed = _in_etc(etc, docker, render_remove_script(params))
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in (etc / "certs.d").iterdir()) == ["gcr.io"]
    assert (etc / "certs.d/gcr.io/hosts.toml").read_text() == 'server = "https://gcr.io"\n'


def test_the_trust_step_refuses_to_replace_a_hosts_toml_it_did_not_write(stack: Stack, tmp_path: Path) -> None:
    from trust.render import TrustParams, render_install_script

    params = TrustParams(
        registry_host=f"127.0.0.1:{stack.router_port}", mirror_url=f"https://127.0.0.1:{stack.router_port}",
        docker_certs_dir="/etc/docker/certs.d", install_system_trust=False, configure_docker_mirror=False,
        docker_daemon_json_path="/etc/docker/daemon.json", use_sudo=False, instance="registry-mirror-dev",
        containerd_upstreams=(("docker.io", "https://registry-1.docker.io"),))
    etc, docker = tmp_path / "etc-containerd", tmp_path / "etc-docker"
    (etc / "certs.d/docker.io").mkdir(parents=True)
    docker.mkdir()
    (etc / "certs.d/docker.io/hosts.toml").write_text('server = "https://registry-1.docker.io"\n')
    refused = _in_etc(etc, docker, render_install_script(params), stack.evaluation.outputs["caCertPem"])
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "registry-mirror: /etc/containerd/certs.d/docker.io/hosts.toml exists and was not written by this stack: "
        "move it away, or run: pulumi config set registry-mirror:installContainerdConfig false"]
    assert (etc / "certs.d/docker.io/hosts.toml").read_text() == 'server = "https://registry-1.docker.io"\n'
    assert not (docker / "certs.d").exists()  # refused before the first change


def test_the_blackbox_module_probes_the_router_and_a_further_mirror_by_their_aliases(
        stack: Stack, tmp_path: Path) -> None:
    """The exporter resolves the aliases as on the stack's network (a private /etc/hosts in a
    mount namespace), with the rendered module, CA and client pair; control: an alias the
    certificate does not name fails verification."""
    binary = require_tool("prometheus-blackbox-exporter")
    from rehearsal.registry_proc import http_get

    uploads = {u["file"]: u["content"] for u in stack.evaluation.container("blackbox").inputs["uploads"]}
    home = tmp_path / "blackbox"
    home.mkdir()
    config = uploads["/etc/blackbox_exporter/config.yml"]
    for path, content in uploads.items():
        if path.startswith("/etc/blackbox/"):
            (home / path.removeprefix("/etc/blackbox/")).write_text(content)
            config = _replace(config, path, str(home / path.removeprefix("/etc/blackbox/")))
    (home / "config.yml").write_text(config)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost registry registry-router registry-ghcr registry-unnamed\n")
    address = f"127.0.0.1:{free_port()}"
    script = 'mount --make-rprivate / && mount --bind "$1" /etc/hosts && exec "$2" --config.file="$3" ' \
             '--web.listen-address="$4"'
    log = (home / "blackbox.log").open("w")
    process = subprocess.Popen(["unshare", "--mount", "sh", "-c", script, "sh", str(hosts), binary,
                                str(home / "config.yml"), address], stdout=log, stderr=log)
    try:
        _wait_port(int(address.rsplit(":", 1)[1]), process)

        def success(host: str, port: int) -> float:
            query = urllib.parse.urlencode({"module": "registry_tls", "target": f"https://{host}:{port}/v2/"})
            _, _, body = http_get(f"http://{address}/probe?{query}", timeout=15.0)
            line = next(x for x in body.decode().splitlines() if x.startswith("probe_success "))
            return float(line.split()[1])

        assert success("registry-router", stack.router_port) == 1.0
        assert success("registry-ghcr", stack.ports["registry-ghcr"]) == 1.0
        assert success("registry-unnamed", stack.router_port) == 0.0
    finally:
        stop_process(process)
        log.close()


def _get(stack: Stack, path: str, ctx: ssl.SSLContext, *, auth: bool = True,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"https://127.0.0.1:{stack.router_port}{path}",
                                     headers={"Accept": ACCEPT} | (headers or {}))
    if auth:
        request.add_header("Authorization", _basic())
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def test_the_router_matches_ns_exactly_and_sends_requests_without_ns_to_docker_hub(stack: Stack) -> None:
    status, body = _get(stack, f"/v2/shared/app/manifests/{stack.digests['docker.io']}", stack.client_ctx)
    assert status == 200, body
    status, body = _get(stack, f"/v2/shared/app/manifests/{stack.digests['ghcr.io']}?ns=ghcr.io", stack.client_ctx)
    assert status == 200, body
    # a prefix, a case change or an unmirrored upstream is no match: the registry's own error
    for ns in ("ghcr.io.evil", "GHCR.IO", "ghcr", "quay.io.", "gcr.io"):
        status, body = _get(stack, f"/v2/shared/app/manifests/1?ns={ns}", stack.client_ctx)
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN", ns
    # Docker Hub's content is not ghcr.io's: the digest of one is unknown at the other
    # the mirror answers 404 or 500 for a digest its upstream lacks: either way no manifest
    status, _ = _get(stack, f"/v2/shared/app/manifests/{stack.digests['docker.io']}?ns=ghcr.io", stack.client_ctx)
    assert status in (404, 500)


def test_the_router_demands_the_client_certificate_and_passes_credentials_to_the_mirrors(stack: Stack) -> None:
    # nginx completes the handshake and answers 400 itself; no byte reaches a mirror
    status, body = _get(stack, "/v2/", stack.ca_only_ctx)
    assert status == 400 and b"No required SSL certificate was sent" in body
    status, _ = _get(stack, "/v2/", stack.client_ctx, auth=False)
    assert status == 401  # the mirror's htpasswd asked: the router let the request through
    status, _ = _get(stack, "/v2/", stack.client_ctx)
    assert status == 200
    status, _ = _get(stack, "/v2/?ns=ghcr.io", stack.client_ctx, auth=False)
    assert status == 401


SPOOFED = "203.0.113.66"  # TEST-NET-3: never a real client here


def test_the_router_tells_the_mirror_the_connections_address_never_the_clients_x_forwarded_for(
        stack: Stack) -> None:
    """Issue 20 finding 7: a client's own X-Forwarded-For never reaches the registry, which
    logs the first address of that header as the client's (distribution's
    dcontext.RemoteAddr): the router sets it from the connection ($remote_addr)."""
    log = stack.root / "registry" / "registry.log"
    before = len(log.read_text().splitlines())
    status, _ = _get(stack, "/v2/", stack.client_ctx, headers={"X-Forwarded-For": SPOOFED})
    assert status == 200
    deadline = time.monotonic() + 10
    while True:
        new = [line for line in log.read_text().splitlines()[before:] if '"http.request.uri":"/v2/"' in line]
        if new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert new, "the registry logged no request for /v2/"
    assert not any(SPOOFED in line for line in new), new
    assert all('"http.request.remoteaddr":"127.0.0.1"' in line for line in new), new


def _skopeo(*args: str, cert_dir: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    empty = tmp / "empty-trust"
    empty.mkdir(parents=True, exist_ok=True)
    (empty / "none.pem").write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "TMPDIR": str(tmp),
           "SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}
    return subprocess.run([require_tool("skopeo"), *args], capture_output=True, text=True, timeout=120, env=env)


def test_skopeo_pushes_to_the_private_registry_and_pulls_it_back(stack: Stack, tmp_path: Path) -> None:
    make_oci_image(tmp_path / "app", [2048], seed=7, tag="1")
    target = f"docker://127.0.0.1:{stack.ports['registry-private']}/team/app:1"
    creds = f"{USER}:{PASSWORD}"
    pushed = _skopeo("copy", "--preserve-digests", f"--dest-cert-dir={stack.cert_dir}", f"--dest-creds={creds}",
                     f"oci:{tmp_path / 'app'}:1", target, cert_dir=stack.cert_dir, tmp=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    pulled = _skopeo("copy", "--preserve-digests", f"--src-cert-dir={stack.cert_dir}", f"--src-creds={creds}",
                     target, f"oci:{tmp_path / 'back'}:1", cert_dir=stack.cert_dir, tmp=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert read_manifest(tmp_path / "back", "1") == read_manifest(tmp_path / "app", "1")
    deleted = _skopeo("delete", f"--cert-dir={stack.cert_dir}", f"--creds={creds}", target,
                      cert_dir=stack.cert_dir, tmp=tmp_path)
    assert deleted.returncode == 0, deleted.stderr


def test_a_push_to_a_mirror_is_refused_with_the_registrys_unsupported_error(stack: Stack, tmp_path: Path) -> None:
    make_oci_image(tmp_path / "app", [2048], seed=8, tag="1")
    for port in (stack.router_port, stack.ports["registry-ghcr"]):
        pushed = _skopeo("copy", f"--dest-cert-dir={stack.cert_dir}", f"--dest-creds={USER}:{PASSWORD}",
                         f"oci:{tmp_path / 'app'}:1", f"docker://127.0.0.1:{port}/team/app:1",
                         cert_dir=stack.cert_dir, tmp=tmp_path)
        assert pushed.returncode != 0
        assert "initiating layer upload to /v2/team/app/blobs/uploads/" in pushed.stderr, pushed.stderr
        assert pushed.stderr.rstrip().endswith('unsupported"'), pushed.stderr
        # what skopeo shortens: distribution's errcode.ErrorCodeUnsupported on the upload POST
        request = urllib.request.Request(f"https://127.0.0.1:{port}/v2/team/app/blobs/uploads/", method="POST",
                                         headers={"Authorization": _basic()})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=stack.client_ctx, timeout=30)
        assert refused.value.code == 405
        assert json.loads(refused.value.read())["errors"][0]["code"] == "UNSUPPORTED"


def test_the_printed_client_files_are_what_the_rehearsal_ran(stack: Stack) -> None:
    """Guards the rehearsal itself: the containerd files hold the one URL and no Docker path."""
    files = stack.evaluation.outputs["clientConfigs"]["containerd"]
    hub = files["/etc/containerd/certs.d/docker.io/hosts.toml"]
    assert f'[host."https://127.0.0.1:{stack.router_port}"]' in hub
    assert "/etc/docker" not in "".join(files.values())
