"""Issue 13 with the real Docker client: Docker sends no `?ns=`, so it reaches Docker Hub's
mirror through the one URL and every other upstream by that mirror's own port.

Inside the session engine's namespaces (tests/engine/conftest.py: `mirror.test` is
192.0.2.10, where Docker verifies TLS), with access control on (requireClientCert and
registryUsers):

- two upstream stand-ins (Debian's docker-registry, plain HTTP) hold `shared/app:1` with
  different content;
- Docker Hub's and ghcr.io's mirrors run registry 3.1.1 with the program's rendered configs,
  the router Debian's nginx with the rendered nginx.conf (paths, listen and backend
  addresses rewritten, each checked);
- `mirrorctl client-config docker` writes the CA and the client pair, which go to the
  engine's /etc/docker/certs.d; `docker login` with the htpasswd user; `docker pull`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rehearsal.engine import ADDRESS, Engine, pulled_digest, push_inside
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import map_registry_config, mirror_binary, registry_env, upstream_config
from rehearsal.router import lay_out_router
from rehearsal.tools import require_tool

HOSTNAME = "mirror.test"
ROUTER_PORT, GHCR_PORT, PRIVATE_PORT = 6600, 6601, 6620
HUB_PORT = 6610  # Docker Hub's mirror behind the router: not published by the stack
STAND_IN_PORTS = {"hub": 5601, "ghcr": 5602}
USER, PASSWORD = "alice", "correct-horse-battery"
READY_TIMEOUT = 30.0


@dataclass
class Upstreams:
    evaluation: Evaluation
    digests: dict[str, str]  # "docker.io" / "ghcr.io" -> manifest digest of shared/app:1


def _wait(engine: Engine, name: str, url: str, ca: Path | None = None) -> None:
    curl = require_tool("curl")
    args = [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url]
    if ca is not None:
        args[1:1] = ["--cacert", str(ca)]
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        process = engine.processes.get(name)
        assert process is not None and process.poll() is None, engine.log(name)[-3000:]
        # any HTTP answer is an answer: a mirror asking for a client certificate or a user too
        if engine.run(args, check=False).stdout.strip() not in ("", "000"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name} not answering at {url}:\n{engine.log(name)[-3000:]}")


@pytest.fixture(scope="module")
def upstreams(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    stand_in = require_tool("docker-registry")
    skopeo = require_tool("skopeo")
    nginx = require_tool("nginx")
    registry = mirror_binary()
    root = tmp_path_factory.mktemp("upstreams-docker")
    ev = evaluate({
        "installTrust": "true", "monitoring": "false", "hostname": HOSTNAME, "registryPort": str(ROUTER_PORT),
        "requireClientCert": "true", "privateRegistry": "true", "privateRegistryPort": str(PRIVATE_PORT),
        "mirrors": json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": GHCR_PORT}]),
    }, secrets={"registryUsers": json.dumps({USER: PASSWORD})})
    ca = root / "ca.crt"
    ca.write_text(ev.outputs["caCertPem"])
    started: list[str] = []
    try:
        digests = {}
        for (name, port), (upstream, seed) in zip(STAND_IN_PORTS.items(), (("docker.io", 1), ("ghcr.io", 2)),
                                                  strict=True):
            config = root / f"{name}-upstream.yml"
            config.write_text(json.dumps(upstream_config(root / f"{name}-storage", f"{ADDRESS}:{port}")))
            engine.spawn(f"stand-in-{name}", [stand_in, "serve", str(config)])
            started.append(f"stand-in-{name}")
            _wait(engine, f"stand-in-{name}", f"http://{ADDRESS}:{port}/v2/")
            image = make_oci_image(root / f"oci-{name}", [4096], seed=seed, tag="1")
            digests[upstream] = image.manifest_digest
            push_inside(engine, skopeo, root / f"oci-{name}", "1", f"{ADDRESS}:{port}/shared/app:1",
                        root / f"skopeo-{name}")
        client = root / "client.pem"
        client.write_text(ev.outputs["clientCertPem"] + ev.outputs["intermediateCaPem"])
        key = root / "client.key"
        key.write_text(ev.outputs["clientKeyPem"])
        # the private registry has no proxy section: map_registry_config leaves it without one
        for service, port, stand_in_port in (("registry", HUB_PORT, STAND_IN_PORTS["hub"]),
                                             ("registry-ghcr", GHCR_PORT, STAND_IN_PORTS["ghcr"]),
                                             ("registry-private", PRIVATE_PORT, STAND_IN_PORTS["hub"])):
            container = ev.container(service)
            uploads = {u["file"]: u["content"] for u in container.inputs["uploads"]}
            mapped = map_registry_config(uploads["/etc/distribution/config.yml"], uploads,
                                         root / service, addr=f"{ADDRESS}:{port}", debug_addr=f"{ADDRESS}:{port + 100}",
                                         upstream_url=f"http://{ADDRESS}:{stand_in_port}")
            engine.spawn(service, [registry, "serve", str(mapped)], env=registry_env(container.inputs["envs"]))
            started.append(service)
            _wait(engine, service, f"http://{ADDRESS}:{port + 100}/debug/health")
        # the router, as configs/router.py rendered it for the container
        home = root / "router"
        lay_out_router(ev.container("registry-router"), home, f"{ADDRESS}:{ROUTER_PORT}",
                       {"registry": f"{ADDRESS}:{HUB_PORT}", "registry-ghcr": f"{ADDRESS}:{GHCR_PORT}"})
        engine.spawn("router", [nginx, "-p", str(home), "-c", str(home / "nginx.conf"), "-e",
                                str(home / "error.log"), "-g", "daemon off; user root;"])
        started.append("router")
        _wait(engine, "router", f"https://{HOSTNAME}:{ROUTER_PORT}/v2/", ca)
        _docker_trust(engine, ev, root, key)
        yield Upstreams(ev, digests)
    finally:
        for name in reversed(started):
            engine.end(name)
        for host in (f"{HOSTNAME}:{ROUTER_PORT}", f"{HOSTNAME}:{GHCR_PORT}", f"{HOSTNAME}:{PRIVATE_PORT}"):
            shutil.rmtree(engine.certs_d / host, ignore_errors=True)


def _docker_trust(engine: Engine, ev: Evaluation, root: Path, key: Path) -> None:
    """`mirrorctl client-config docker` as an operator runs it; its certs.d (the one URL's
    host:port and the ghcr.io mirror's own) goes where this engine's dockerd reads
    /etc/docker/certs.d."""
    outputs = root / "outputs.json"
    outputs.write_text(json.dumps(ev.outputs))
    written = root / "client-root"
    subprocess.run([sys.executable, "-m", "mirrorctl", "--outputs", str(outputs), "client-config", "docker",
                    "--root", str(written), "--client-key", str(key)],
                   check=True, capture_output=True, text=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[2])
    for host in (f"{HOSTNAME}:{ROUTER_PORT}", f"{HOSTNAME}:{GHCR_PORT}"):
        source = written / "etc/docker/certs.d" / host
        assert sorted(p.name for p in source.iterdir()) == ["ca.crt", "client.cert", "client.key"]
        shutil.copytree(source, engine.certs_d / host, dirs_exist_ok=True)


def _login(engine: Engine, host: str) -> None:
    result = engine.docker("login", host, "-u", USER, "--password-stdin", input=PASSWORD, check=False)
    assert result.returncode == 0, result.stderr


def test_docker_pulls_docker_hub_through_the_one_url_and_ghcr_by_its_own_port(
        engine: Engine, upstreams: Upstreams) -> None:
    for port in (ROUTER_PORT, GHCR_PORT):
        _login(engine, f"{HOSTNAME}:{port}")
    hub = pulled_digest(engine, f"{HOSTNAME}:{ROUTER_PORT}/shared/app:1")
    ghcr = pulled_digest(engine, f"{HOSTNAME}:{GHCR_PORT}/shared/app:1")
    assert (hub, ghcr) == (upstreams.digests["docker.io"], upstreams.digests["ghcr.io"])


def test_docker_without_the_client_certificate_is_refused_by_the_router(engine: Engine, upstreams: Upstreams,
                                                                        tmp_path: Path) -> None:
    directory = engine.certs_d / f"{HOSTNAME}:{ROUTER_PORT}"
    saved = tmp_path / "saved"
    shutil.copytree(directory, saved)
    try:
        (directory / "client.cert").unlink()
        (directory / "client.key").unlink()
        result = engine.docker("pull", f"{HOSTNAME}:{ROUTER_PORT}/shared/app:1", check=False, timeout=120)
        assert result.returncode != 0
        # nginx's own answer: the request never reached a mirror
        assert "No required SSL certificate was sent" in result.stderr, result.stderr
    finally:
        shutil.rmtree(directory)
        shutil.copytree(saved, directory)


def test_after_the_trust_step_docker_pushes_and_pulls_by_every_port_the_stack_publishes(
        engine: Engine, upstreams: Upstreams, tmp_path: Path) -> None:
    """Finding 4 of issue 20: the program's own trust step (the recorded `create` with its
    `stdin`, as `pulumi up` runs it) trusts every TLS port: the one URL, the ghcr.io mirror's
    own port and the private registry's. Control: before it, the push is refused."""
    hosts = [f"{HOSTNAME}:{port}" for port in (ROUTER_PORT, GHCR_PORT, PRIVATE_PORT)]
    saved = tmp_path / "saved"
    saved.mkdir()
    for host in hosts:  # what mirrorctl client-config wrote for the other tests
        if (engine.certs_d / host).exists():
            shutil.move(engine.certs_d / host, saved / host)
    ev = upstreams.evaluation
    [command] = ev.of_type("command:local:Command")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "TMPDIR": str(tmp_path)}
    pushed = f"{HOSTNAME}:{PRIVATE_PORT}/team/app:1"
    try:
        refused = engine.docker("pull", f"{HOSTNAME}:{PRIVATE_PORT}/team/app:1", check=False, timeout=60)
        assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr

        installed = engine.run([*command.inputs["interpreter"], command.inputs["create"]],
                               input=command.inputs["stdin"], env=env, timeout=60, check=False)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        for host in hosts:
            assert sorted(p.name for p in (engine.certs_d / host).glob("*")) == [
                ".registry-mirror-dev.installed", "ca.crt", "client.cert", "client.key"], host
        for host in hosts:
            _login(engine, host)

        source = f"{HOSTNAME}:{GHCR_PORT}/shared/app:1"
        assert pulled_digest(engine, source, keep=True) == upstreams.digests["ghcr.io"]
        engine.docker("tag", source, pushed)
        result = engine.docker("push", pushed, check=False, timeout=120)
        assert result.returncode == 0, result.stderr + result.stdout
        # Docker pushes its own manifest for the image: the digest it reports comes back
        [digest] = re.findall(r"digest: (sha256:[0-9a-f]{64})", result.stdout)
        engine.docker("image", "rm", source, pushed, check=False)
        assert pulled_digest(engine, pushed) == digest
        assert pulled_digest(engine, f"{HOSTNAME}:{ROUTER_PORT}/shared/app:1") == upstreams.digests["docker.io"]

        removed = engine.run([*command.inputs["interpreter"], command.inputs["delete"]], env=env, timeout=60,
                             check=False)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert not any((engine.certs_d / host).exists() for host in hosts)
    finally:
        engine.docker("image", "rm", pushed, check=False)
        for host in hosts:
            shutil.rmtree(engine.certs_d / host, ignore_errors=True)
            if (saved / host).exists():
                shutil.move(saved / host, engine.certs_d / host)
