"""Issue 21 with the real Docker client and the stack's own containers: a bounded mirror filled
by `docker pull` past its limit, on the session engine (tests/engine/conftest.py).

Stack `cache` (`cacheMaxSize: 8MB`, watermarks 75/60, `cacheMinAge: 0`, `cachePin:
[pinned:1.0]`, `portOffset: 300`) is evaluated under mocks; its network, volumes, registry and
cache keeper containers are made from the recorded inputs by rehearsal.provider, on the
registry 3.1.1 stand-in and the Python stand-in (Debian's python3.11, tagged
`python:3.11.2-slim`, which `cacheImage` names: the default pin has no stand-in here). Two
edits, each checked to change nothing else: the registry's `proxy.remoteurl` points at the
upstream stand-in (Debian's docker-registry, holding every image below), and the keeper's
timing keys are shortened so that a fill takes seconds (a check every 0.3 s instead of 15 s,
the sweep's fence 1 s instead of its default, a failed pin retried after 1 s; the concurrency
test's keeper also gets a 6 s minimum age instead of the stack's 0).
Everything else runs as rendered: the registry notifies `registry-cache` by its network
alias, the keeper seeds the pinned image through `https://registry:5000` with the stack's CA,
removes from the shared volume and sweeps while the registry serves.

The upstream goes down by its process stopping (connection refused).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cachekeeper.layout import Layout
from cachekeeper.policy import Pin, pin_cached
from cachekeeper.seed import host_platform
from contract import Cache, Registry
from rehearsal import images
from rehearsal.cache_keeper import KeeperReadings, UsageSampler, retimed_inputs
from rehearsal.engine import Engine, pulled_digest
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import ImageInfo, make_oci_image
from rehearsal.provider import Created, create_container, wait_healthy
from rehearsal.registry_layout import random_bytes, store_image
from rehearsal.tools import unavailable
from tests.engine.conftest import CONFIG, CONTAINER, HEALTHY_TIMEOUT, Stack, Upstream, pinned_images

MB = 1_000_000
LIMIT = 8 * MB
STAND_IN_PYTHON = "python:3.11.2-slim"
STACK = CONFIG | {"portOffset": "300", "cacheMaxSize": "8MB", "cacheHighWatermark": "75",
                  "cacheLowWatermark": "60", "cacheMinAge": "0", "cachePin": json.dumps(["pinned:1.0"]),
                  "cacheImage": STAND_IN_PYTHON}
TIMING = {"check_interval_seconds": 0.3, "fence_seconds": 1.0, "pin_retry_seconds": 1.0}
MIN_AGE = 6.0  # the concurrency test's minimum age: many pull cycles of a kept image fit in it
KEEPER = "registry-cache"
BASE_SEED = 4000
# five images on one shared 500 kB base, five on their own, and the pinned one: 9.3 MB for 8
BASES = [f"cache/base-{i}" for i in range(5)]
SOLOS = [f"cache/solo-{i}" for i in range(5)]
PINNED = "library/pinned"
# pulled by digest only, first in the last test: stored in this order
BY_DIGEST = ["cache/by-digest-a", "cache/by-digest-b"]
# base-0 is pulled again after three others, before the first eviction: it outlives them
FILL = [BASES[0], SOLOS[0], BASES[1], SOLOS[1], BASES[0], BASES[2], SOLOS[2], BASES[3], SOLOS[3],
        BASES[4], SOLOS[4]]


@dataclass
class KeeperContainer(KeeperReadings):
    """The keeper container: its scrape by its address on the stack's network, its log by
    `docker logs`."""

    engine: Engine
    created: Created
    address: str

    def metrics_text(self) -> str:
        return self.engine.run(["curl", "-sS", "--fail", "--max-time", "5",
                                f"http://{self.address}:{Cache.PORT}{Cache.METRICS_PATH}"], timeout=15).stdout

    def log_text(self) -> str:
        logs = self.engine.docker("logs", self.created.id, check=False)
        return logs.stdout + logs.stderr


@dataclass
class Bounded:
    stack: Stack
    upstream: Upstream
    images: dict[str, ImageInfo]
    storage: Path  # the registry volume's folder on this host
    state: Path  # the keeper's state volume's folder on this host
    keeper: KeeperContainer
    history: list[tuple[float, str]] = field(default_factory=list)  # (when, repository) of every pull

    @property
    def layout(self) -> Layout:
        return Layout(self.storage)

    def reference(self, repository: str, *, by_digest: bool = False) -> str:
        if by_digest:
            return f"{self.stack.mirror_host}/{repository}@{self.images[repository].manifest_digest}"
        return f"{self.stack.mirror_host}/{repository}:1.0"

    def pull(self, repository: str, *, by_digest: bool = False) -> None:
        """`docker pull` through the mirror: the manifest digest is the upstream's (Docker
        checks every layer against its digest)."""
        reference = self.reference(repository, by_digest=by_digest)
        assert pulled_digest(self.stack.engine, reference) == self.images[repository].manifest_digest
        self.history.append((time.time(), repository))

    def last_pull_before(self, repository: str, moment: float) -> float:
        return max(t for t, r in self.history if r == repository and t <= moment)

    def cached(self) -> set[str]:
        return {r for r, info in self.images.items() if self.layout.has_revision(r, info.manifest_digest)}

    def pinned_cached(self) -> bool:
        return pin_cached(self.layout, Pin.parse(f"{PINNED}:1.0"), *host_platform())

    def restart_keeper(self, **timing: float) -> None:
        """The keeper container stopped, removed and made again from the recorded inputs, as a
        replacement does, with other timing (its state volume stays)."""
        self.stack.engine.docker("stop", "--time", "10", self.keeper.created.id)
        self.stack.engine.docker("rm", self.keeper.created.id)
        self.keeper = start_keeper(self.stack, TIMING | timing)


def start_keeper(stack: Stack, timing: dict[str, float]) -> KeeperContainer:
    inputs = retimed_inputs(stack.program.find(CONTAINER, KEEPER).inputs, timing)
    created = create_container(stack.engine, inputs, stack.images[inputs["image"]])
    stack.containers[KEEPER] = created
    details = stack.engine.api("GET", f"/containers/{created.id}/json")
    [network] = details["NetworkSettings"]["Networks"].values()
    keeper = KeeperContainer(stack.engine, created, network["IPAddress"])

    def answers() -> bool:
        with contextlib.suppress(Exception):
            keeper.metrics()
            return True
        return False

    keeper.wait_for(answers, "the keeper's container does not answer", timeout=30, interval=0.2)
    return keeper


@pytest.fixture(scope="module")
def cache_program() -> Evaluation:
    return evaluate(STACK, stack="cache")


@pytest.fixture(scope="module")
def bounded(engine: Engine, upstream: Upstream, stand_ins: dict[str, str], cache_program: Evaluation,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bounded]:
    work = tmp_path_factory.mktemp("bounded")
    if not images.PYTHON.is_file():
        unavailable(f"{images.PYTHON} is missing (apt-get install -y python3.11)")
    images.build(engine, images.python_stand_in(STAND_IN_PYTHON), work / "image")
    infos: dict[str, ImageInfo] = {}
    for i, repository in enumerate(BASES):
        infos[repository] = make_oci_image(work / repository, [500_000, 700_000], seed=400 + i, tag="1.0",
                                           layer_seeds=[BASE_SEED, 4100 + i])
    for i, repository in enumerate(SOLOS):
        infos[repository] = make_oci_image(work / repository, [900_000], seed=500 + i, tag="1.0")
    infos[PINNED] = make_oci_image(work / PINNED, [800_000], seed=600, tag="1.0")
    for i, repository in enumerate(BY_DIGEST):
        infos[repository] = make_oci_image(work / repository, [900_000], seed=700 + i, tag="1.0")
    for repository in infos:
        upstream.push(work / repository, "1.0", repository)

    stack = Stack(engine, cache_program, upstream, pinned_images(cache_program))
    certs = engine.certs_d / stack.mirror_host
    try:
        stack.bring_up(("registry",))
        keeper = start_keeper(stack, TIMING)
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "ca.crt").write_text(cache_program.outputs["caCertPem"])
        # both containers healthy by their own health checks: the keeper's is `python -c`
        stack.wait_all_healthy()
        volumes = {v["containerPath"]: v["volumeName"] for v in stack.program.find(CONTAINER, KEEPER).inputs["volumes"]}
        storage, state = (Path(engine.api("GET", f"/volumes/{volumes[path]}")["Mountpoint"])
                          for path in (Registry.STORAGE_ROOT, Cache.STATE_PATH))
        yield Bounded(stack, upstream, infos, storage, state, keeper)
    finally:
        for created in stack.containers.values():
            engine.docker("rm", "-f", created.id, check=False)
        for volume in cache_program.of_type("docker:index/volume:Volume"):
            engine.docker("volume", "rm", volume.inputs["name"], check=False)
        engine.docker("network", "rm", cache_program.find("docker:index/network:Network", "network").inputs["name"],
                      check=False)
        shutil.rmtree(certs, ignore_errors=True)
        engine.docker("image", "rm", STAND_IN_PYTHON, check=False)


def wait_pinned(b: Bounded) -> None:
    b.keeper.wait_for(b.pinned_cached, "the pinned image was not seeded", timeout=60)


@dataclass
class Fill:
    peak: int
    samples: int
    usage: int
    evictions: list[tuple[float, str]]
    cached: set[str]
    pinned: bool
    metrics: dict[str, float]
    pulled: dict[str, float]  # repository -> when the test last pulled it


@pytest.fixture(scope="module")
def filled(bounded: Bounded) -> Fill:
    """The pinned image seeded by the keeper, then FILL pulled by Docker one after the other,
    the keeper checking between two pulls."""
    wait_pinned(bounded)
    with UsageSampler(bounded.layout) as sampler:
        for repository in FILL:
            bounded.pull(repository)
            bounded.keeper.wait_check(after=time.time())
        time.sleep(0.5)  # the registry commits a blob after the client has it
        bounded.keeper.wait_check(after=time.time())
    return Fill(sampler.peak, sampler.samples, bounded.layout.usage(), bounded.keeper.evictions(), bounded.cached(),
                bounded.pinned_cached(), bounded.keeper.metrics(), {r: t for t, r in bounded.history})


def test_docker_fills_a_bounded_mirror_past_its_limit_and_the_least_recently_pulled_go_never_the_pinned(
        bounded: Bounded, filled: Fill) -> None:
    blobs = {d: s for r in {*FILL, PINNED} for d, s in zip(bounded.images[r].layer_digests,
                                                           bounded.images[r].layer_sizes, strict=True)}
    assert sum(blobs.values()) > LIMIT, "the fill must not fit"
    assert filled.samples > 50
    assert filled.peak <= LIMIT, f"usage peaked at {filled.peak} bytes, above the {LIMIT} limit"
    assert filled.usage <= LIMIT * 75 // 100
    evicted = [r for _, r in filled.evictions]
    assert len(evicted) >= 4 and filled.metrics["registry_cache_evicted_images_total"] == len(evicted)
    # least recently pulled first: each eviction's image by its last pull before that eviction
    order = [bounded.last_pull_before(r, moment) for moment, r in filled.evictions]
    assert order == sorted(order), evicted
    kept = filled.cached - {PINNED}
    assert min(filled.pulled[r] for r in kept) > max(order), (sorted(kept), evicted)
    assert evicted.index(BASES[0]) > max(evicted.index(r) for r in FILL[1:4]), evicted
    assert {FILL[-1], FILL[-2], PINNED} <= filled.cached
    assert PINNED not in evicted and filled.pinned
    assert filled.metrics["registry_cache_pinned_images_missing"] == 0
    # the registry container notified the keeper container of every manifest pull
    assert filled.metrics["registry_cache_pull_events_total"] >= len(FILL)


def test_docker_pulls_an_image_sharing_a_layer_with_an_evicted_one_offline_and_the_evicted_one_back_identical(
        bounded: Bounded, filled: Fill) -> None:
    cached = bounded.cached()
    gone = next(r for r in BASES if r not in cached)
    sharing = next(r for r in BASES if r in cached)
    base_layer = bounded.images[gone].layer_digests[0]
    assert base_layer == bounded.images[sharing].layer_digests[0]
    assert bounded.layout.blob_size(base_layer) is not None, "the shared base layer stays"
    assert bounded.layout.blob_size(bounded.images[gone].layer_digests[1]) is None, "the evicted one's own layer went"
    bounded.upstream.stop()
    try:
        bounded.pull(sharing)
        bounded.pull(PINNED)
        with pytest.raises(AssertionError, match="docker pull"):
            bounded.pull(gone)  # evicted, and nothing answers upstream: proof that it is down
    finally:
        bounded.upstream.start()
    bounded.pull(gone)  # the upstream's manifest digest, every layer checked by Docker
    bounded.keeper.wait_for(lambda: bounded.layout.has_revision(gone, bounded.images[gone].manifest_digest),
                            "the re-pulled image was not cached again", timeout=10, interval=0.05)


@pytest.mark.parametrize("upstream_state", ["down", "up"])
def test_no_docker_pull_fails_while_the_keeper_container_evicts_and_sweeps(
        bounded: Bounded, filled: Fill, upstream_state: str) -> None:
    # a minimum age of MIN_AGE s: the images pulled over and over stay, those left idle go
    bounded.restart_keeper(min_age_seconds=MIN_AGE)
    kept = [PINNED, BASES[0], SOLOS[0]]
    # cached now and then left idle: pushed out by the fillers (base-1 shares its base layer with
    # base-0, pulled all along); with the upstream up they are pulled again, cold, meanwhile
    idle = [BASES[1], SOLOS[1]]
    for repository in kept[1:] + idle:
        bounded.pull(repository)
    failures: list[str] = []
    stop = threading.Event()

    def puller(repositories: list[str], pause: float) -> None:
        while not stop.is_set():
            stop.wait(pause)
            for repository in repositories:
                try:
                    bounded.pull(repository)
                except Exception as error:  # noqa: BLE001  # every failure counts, whatever raised it
                    failures.append(f"{repository}: {type(error).__name__}: {error}"[:2000])

    targets = [([r], 0.0) for r in kept] + ([(idle, MIN_AGE + 1.5)] if upstream_state == "up" else [])
    threads = [threading.Thread(target=puller, args=t, daemon=True) for t in targets]
    before = bounded.keeper.metrics()
    started = time.time()
    if upstream_state == "down":
        bounded.upstream.stop()
    try:
        for thread in threads:
            thread.start()
        # images written into the volume as the registry lays them out: each pushes the cache
        # past the high watermark, and the keeper evicts and sweeps
        deadline = time.monotonic() + 3 * MIN_AGE
        seed = 0
        while time.monotonic() < deadline:
            seed += 1
            store_image(bounded.storage, f"cache/filler-{upstream_state}-{seed}", "1",
                        [random_bytes(2 * MB, 7000 + seed)])
            bounded.keeper.wait_check(after=time.time())
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        stuck = [thread for thread in threads if thread.is_alive()]
        # the upstream comes back only once no pull is in flight
        if upstream_state == "down" and not stuck:
            bounded.upstream.start()
    ended = time.time()
    assert not stuck, "a docker pull did not end"
    after = bounded.keeper.metrics()
    evictions = bounded.keeper.evictions()
    during = [(moment, r) for moment, r in evictions if started < moment < ended]
    concurrent = [(t, r) for t, r in bounded.history if started < t < ended]
    gaps = {r: max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
            for r in kept for times in [[t for t, x in concurrent if x == r]]}
    assert failures == [], "\n".join(failures[:3]) + f"\nlongest gap between two pulls of a kept image: {gaps}"
    assert all(sum(1 for _, r in concurrent if r == repository) >= 3 for repository in kept), concurrent
    # images and bytes went while the pulls ran, and the sweeps removed their blobs
    assert after["registry_cache_evicted_images_total"] - before["registry_cache_evicted_images_total"] >= 5
    assert after["registry_cache_evicted_bytes_total"] - before["registry_cache_evicted_bytes_total"] > 5 * MB
    assert len(during) >= 5 and during[0][0] < concurrent[-1][0], (during, concurrent[-1])
    evicted = {r for _, r in during}
    assert not set(kept) & evicted
    assert set(idle) <= evicted, evicted
    if upstream_state == "up":
        # evicted while idle, then pulled again from the upstream while the sweeps ran
        assert any(r in idle and t > min(m for m, x in during if x == r) for t, r in concurrent), concurrent


def test_the_keeper_container_runs_healthy_unpublished_without_net_raw_with_its_state_on_a_volume(
        bounded: Bounded, filled: Fill) -> None:
    wait_healthy(bounded.stack.engine, bounded.keeper.created.id, HEALTHY_TIMEOUT)  # after a restart too
    details: dict[str, Any] = bounded.stack.engine.api("GET", f"/containers/{bounded.keeper.created.id}/json")
    host_config = details["HostConfig"]
    assert "NET_RAW" in (host_config.get("CapDrop") or [])
    assert "no-new-privileges:true" in (host_config.get("SecurityOpt") or [])
    assert not host_config.get("PortBindings"), "the keeper is never published"
    assert details["State"]["Health"]["Status"] == "healthy"
    state = [m for m in details["Mounts"] if m["Destination"] == Cache.STATE_PATH]
    assert state and state[0]["Type"] == "volume"


def test_the_keepers_last_pull_times_outlive_its_container_so_pulls_by_digest_still_count(
        bounded: Bounded, filled: Fill) -> None:
    """A pull by digest rewrites nothing in the registry's storage: only the notification says
    it happened. A pulled by digest, then B, then A again; the keeper container replaced; a
    filler that makes it evict everything it may. B goes before A: A's last pull came from
    the state volume, not from when A was first stored (without it A goes first: seen with
    state.json removed before the new container started)."""
    bounded.restart_keeper()
    a, b = BY_DIGEST
    assert not {a, b} & bounded.cached()
    for repository in (a, b, a):
        bounded.pull(repository, by_digest=True)
        bounded.keeper.wait_check(after=time.time())
    keys = {f"{r}@{bounded.images[r].manifest_digest}" for r in (a, b)}
    bounded.keeper.wait_for(lambda: keys <= set(json.loads((bounded.state / "state.json").read_text())["pulled"]),
                            "the keeper did not save the pulls to its volume", timeout=10)
    bounded.restart_keeper()
    assert bounded.keeper.evictions() == []
    store_image(bounded.storage, "cache/filler-big", "1", [random_bytes(7 * MB, 9999)])
    bounded.keeper.wait_check(after=time.time())
    evicted = [r for _, r in bounded.keeper.evictions()]
    assert b in evicted, evicted
    assert a not in evicted or evicted.index(b) < evicted.index(a), evicted
