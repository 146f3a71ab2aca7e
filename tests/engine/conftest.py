"""The program's containers on a real Docker engine, in namespaces of their own.

One engine and one stack for the whole session (bringing the stack to healthy takes about
20 s, Docker's first health check coming one interval after the start):

* `engine`: rehearsal.engine's dockerd + containerd; `/etc/docker` there is a private
  temp dir, `mirror.test` resolves to 192.0.2.10 and nothing else resolves.
* `program`: the program evaluated under mocks for hostname `mirror.test` with tracing,
  logging and the upstream front off (so the monitoring stack is Prometheus, blackbox and
  Grafana; Grafana has no stand-in image and is not run), host trust on (its rendered scripts are what a user's
  `pulumi up` runs), `configureDockerMirror` false; `program_with_docker_mirror` the same
  with `configureDockerMirror` true.
* `upstream`: Debian's docker-registry 2.8 on 192.0.2.10:5500 in the namespace, holding a
  small image as `library/busybox:latest`: the stand-in for Docker Hub.
* `stack`: the network, volumes and the registry, Prometheus and blackbox containers made
  from the recorded inputs by rehearsal.provider (the provider's create path), every one
  healthy by its own health check before the first test.
* `users_stack` and `client_cert_stack`: the same program evaluated for stacks `users`
  (`registryUsers` given as a secret) and `mtls` (`requireClientCert: true`), each with a
  `portOffset` of its own (registry ports 6100 and 6200, other names, network and volumes):
  their registry containers made from the recorded inputs the same way, both brought up
  together (`access_stacks`).

Under CI=true an engine that cannot start FAILS the tests; elsewhere they skip with why.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.registry import CONFIG_PATH as REGISTRY_CONFIG_PATH
from rehearsal import images, registry3
from rehearsal.engine import ADDRESS, Engine, EngineUnavailable, push_inside, start_engine, why_unavailable
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import ImageInfo, make_oci_image
from rehearsal.provider import Created, create_container, create_network, create_volume, wait_healthy
from rehearsal.tools import require_tool, unavailable

HOSTNAME = "mirror.test"
UPSTREAM_PORT = 5500
UPSTREAM_URL = f"http://{ADDRESS}:{UPSTREAM_PORT}"
IMAGE_REPO = "library/busybox"
IMAGE_TAG = "latest"
SERVICES = ("registry", "prometheus", "blackbox")
CONTAINER = "docker:index/container:Container"
HEALTHY_TIMEOUT = 120.0  # the provider's wait_timeout for these containers

USERS = {"alice": "correct-horse-battery", "bob": "staple-horse-battery-9"}
USERS_PORT_OFFSET = 100
CLIENT_CERT_PORT_OFFSET = 200

CONFIG = {
    "hostname": HOSTNAME,
    "installTrust": "true",
    "configureDockerMirror": "false",
    "tracing": "false",
    "logging": "false",
    # the default upstream front stays on: it has no stand-in image here, so the registry's
    # proxy.remoteurl (the front) is what `with_upstream` points at the local upstream
}


def engine_or_skip() -> None:
    """Skip (locally) or fail (CI=true) when no engine can run here."""
    reason = why_unavailable()
    if reason is not None:
        unavailable(f"no real engine: {reason}")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine_or_skip()
    root = tmp_path_factory.mktemp("engine")
    try:
        running = start_engine(root, hosts={HOSTNAME: ADDRESS})
    except EngineUnavailable as error:
        unavailable(f"the engine did not start: {error}")
    problems: list[str] = []
    try:
        yield running
    finally:
        problems = running.stop()
    # everything stopped on TERM and nothing was left running in the namespace
    assert not problems, problems


@pytest.fixture(scope="session")
def program() -> Evaluation:
    return evaluate(CONFIG)


@pytest.fixture(scope="session")
def program_with_docker_mirror() -> Evaluation:
    return evaluate(CONFIG | {"configureDockerMirror": "true"})


@pytest.fixture(scope="session")
def program_with_users() -> Evaluation:
    """Stack `users`: `registryUsers` set with --secret, as `pulumi config set --path --secret` does."""
    return evaluate(CONFIG | {"portOffset": str(USERS_PORT_OFFSET)}, stack="users",
                    secrets={"registryUsers": json.dumps(USERS)})


@pytest.fixture(scope="session")
def program_with_client_cert() -> Evaluation:
    """Stack `mtls`: `requireClientCert: true`."""
    return evaluate(CONFIG | {"portOffset": str(CLIENT_CERT_PORT_OFFSET), "requireClientCert": "true"},
                    stack="mtls")


def pinned_images(evaluation: Evaluation) -> dict[str, str]:
    """Recorded image id -> the pinned reference of the RemoteImage that produced it."""
    return {r.state["imageId"]: r.inputs["name"] for r in evaluation.of_type("docker:index/remoteImage:RemoteImage")}


def with_upstream(inputs: dict[str, Any], remote_url: str) -> dict[str, Any]:
    """The registry's inputs with ONLY `proxy.remoteurl` of its uploaded config changed:
    Docker Hub cannot be reached from here, the upstream stand-in can."""
    changed = copy.deepcopy(inputs)
    for upload in changed["uploads"]:
        if upload["file"] == REGISTRY_CONFIG_PATH:
            text: str = upload["content"]
            recorded = yaml.safe_load(text)
            # a text edit of that one value, so every other byte stays as rendered
            current = recorded["proxy"]["remoteurl"]
            if text.count(current) != 1:
                raise ValueError(f"{current!r} is not written exactly once in the config")
            upload["content"] = text.replace(current, remote_url)
            expected = copy.deepcopy(recorded)
            expected["proxy"]["remoteurl"] = remote_url
            if yaml.safe_load(upload["content"]) != expected:
                raise ValueError("rewriting proxy.remoteurl changed something else")
            return changed
    raise LookupError(f"the registry uploads no {REGISTRY_CONFIG_PATH}")


@dataclass
class Upstream:
    engine: Engine
    root: Path
    image: ImageInfo
    binary: str

    @property
    def reference(self) -> str:
        return f"{ADDRESS}:{UPSTREAM_PORT}/{IMAGE_REPO}:{IMAGE_TAG}"

    def start(self) -> None:
        self.engine.spawn("upstream", [self.binary, "serve", str(self.root / "config.yml")])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = self.engine.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "2",
                                     f"{UPSTREAM_URL}/v2/"], check=False, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"upstream not ready:\n{self.engine.log('upstream')[-3000:]}")

    def stop(self) -> None:
        self.engine.end("upstream")

    def push(self, layout: Path, tag: str, repository: str) -> None:
        """skopeo copies the OCI layout's `tag` to `repository`:`tag`, digests kept."""
        push_inside(self.engine, require_tool("skopeo"), layout, tag, f"{ADDRESS}:{UPSTREAM_PORT}/{repository}:{tag}",
                    self.root / "skopeo")


@pytest.fixture(scope="session")
def upstream(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    registry = require_tool("docker-registry")
    require_tool("skopeo")
    require_tool("curl")
    root = tmp_path_factory.mktemp("upstream")
    (root / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"{ADDRESS}:{UPSTREAM_PORT}"},
    }))
    layout = root / "oci"
    info = make_oci_image(layout, [300_000, 120_000], seed=9, tag=IMAGE_TAG)
    up = Upstream(engine, root, info, registry)
    up.start()
    try:
        up.push(layout, IMAGE_TAG, IMAGE_REPO)
        yield up
    finally:
        up.stop()


@dataclass
class Stack:
    engine: Engine
    program: Evaluation
    upstream: Upstream
    images: dict[str, str]  # recorded image id -> pinned reference
    containers: dict[str, Created] = field(default_factory=dict)
    time_to_healthy: dict[str, float] = field(default_factory=dict)

    def inputs(self, service: str) -> dict[str, Any]:
        recorded = self.program.find(CONTAINER, service).inputs
        if service == "registry":
            return with_upstream(recorded, UPSTREAM_URL)
        return dict(recorded)

    def create(self, service: str) -> Created:
        inputs = self.inputs(service)
        created = create_container(self.engine, inputs, self.images[inputs["image"]])
        self.containers[service] = created
        return created

    def bring_up(self, services: tuple[str, ...]) -> None:
        """The stack's network and volumes, then `services`' containers, as `pulumi up` orders them."""
        create_network(self.engine, self.program.find("docker:index/network:Network", "network").inputs)
        for volume in self.program.of_type("docker:index/volume:Volume"):
            create_volume(self.engine, volume.inputs)
        for service in services:
            self.create(service)

    def wait_all_healthy(self) -> None:
        """Wait for every container; note each one's seconds from start to healthy."""
        for service, created in self.containers.items():
            wait_healthy(self.engine, created.id, HEALTHY_TIMEOUT)
            self.time_to_healthy.setdefault(service, time.monotonic() - created.started_at)

    @property
    def registry_port(self) -> int:
        return int(self.program.find(CONTAINER, "registry").inputs["ports"][0]["external"])

    @property
    def prometheus_port(self) -> int:
        return int(self.program.find(CONTAINER, "prometheus").inputs["ports"][0]["external"])

    @property
    def mirror_host(self) -> str:
        return f"{HOSTNAME}:{self.registry_port}"


@pytest.fixture(scope="session")
def stand_ins(engine: Engine, tmp_path_factory: pytest.TempPathFactory, program: Evaluation) -> dict[str, str]:
    """Build the three stand-ins under the program's pins; service -> reference."""
    pins = {r.name.removesuffix("-image"): r.inputs["name"]
            for r in program.of_type("docker:index/remoteImage:RemoteImage")}
    work = tmp_path_factory.mktemp("images")
    require_tool("busybox")
    builders = {
        "registry": lambda: images.registry_stand_in(registry3.require_registry3(), pins["registry"]),
        "prometheus": lambda: images.prometheus_stand_in(
            pins["prometheus"], Path(require_tool("prometheus")), Path(require_tool("promtool"))),
        "blackbox": lambda: images.blackbox_stand_in(
            pins["blackbox"], Path(require_tool("prometheus-blackbox-exporter"))),
    }
    for service in SERVICES:
        images.build(engine, builders[service](), work)
    return {service: pins[service] for service in SERVICES}


@pytest.fixture(scope="session")
def stack(engine: Engine, program: Evaluation, upstream: Upstream, stand_ins: dict[str, str]) -> Stack:
    built = Stack(engine, program, upstream, pinned_images(program))
    built.bring_up(SERVICES)
    built.wait_all_healthy()
    return built


@pytest.fixture(scope="session")
def access_stacks(engine: Engine, upstream: Upstream, stand_ins: dict[str, str], program_with_users: Evaluation,
                  program_with_client_cert: Evaluation) -> dict[str, Stack]:
    """The `users` and `mtls` stacks' registries, created like `stack`'s and waited for
    together (Docker's first health check comes 15 s after each start)."""
    stacks = {name: Stack(engine, evaluation, upstream, pinned_images(evaluation))
              for name, evaluation in (("users", program_with_users), ("mtls", program_with_client_cert))}
    for built in stacks.values():
        built.bring_up(("registry",))
    for built in stacks.values():
        built.wait_all_healthy()
    return stacks


@pytest.fixture(scope="session")
def users_stack(access_stacks: dict[str, Stack]) -> Stack:
    return access_stacks["users"]


@pytest.fixture(scope="session")
def client_cert_stack(access_stacks: dict[str, Stack]) -> Stack:
    return access_stacks["mtls"]
