"""Rehearsal of the bounded cache with the real binaries, every file the program's own:

skopeo --TLS--> registry 3.1.1 (the program's config.yml for cacheMaxSize 8MB: ttl 0, no
        |        blob-descriptor cache, notifications to the keeper)
        |  --proxy.remoteurl--> Debian's nginx running the front's nginx.conf --> rehearsal/hub.py
        |  --POST /events--> the cache keeper (the container's uploaded cachekeeper/ files and
        |                    config.json, run by this interpreter) on the same storage folder

The keeper's timing is shortened (a check every 0.3 s, a 1 s sweep fence, cacheMinAge 0) so
that a fill takes seconds; sizes, watermarks and pins are the program's rendering of the
stack config below. The upstream goes down by the stand-in answering 503 to everything
(`hub.mode = "unavailable"`), at once, with no resolver cache in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cachekeeper.layout import Layout
from cachekeeper.policy import Pin, pin_cached
from cachekeeper.seed import RegistryClient, host_platform
from cachekeeper.sweep import remove_image, sweep
from configs.grafana import CACHE_METRIC_PREFIX
from configs.registry import CONFIG_PATH
from rehearsal.cache_keeper import RunningKeeper, UsageSampler, cache_keeper
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.hub import AUTH_HOST, CDN_HOST, REGISTRY_HOST, DockerHub, docker_hub, load_repo
from rehearsal.mirror import ProgramMirror, program_mirror
from rehearsal.netsim import dns_server
from rehearsal.oci import Images, blob_path, make_oci_image
from rehearsal.registry_layout import random_bytes, store_image
from rehearsal.registry_proc import SkopeoError, free_port, mirror_binary, pull_through, write_ca_dir
from rehearsal.upstream_front import upstream_front
from tests.conftest import require_tool
from tests.rehearsal.test_dashboard_queries import alert_promql, dashboard_promql, promql_metric_names

MB = 1_000_000
LIMIT = 8 * MB
STACK = {"hostname": "mirror.test", "cacheMaxSize": "8MB", "cacheHighWatermark": "75", "cacheLowWatermark": "60",
         "cacheMinAge": "0", "cachePin": json.dumps(["pinned:1.0"])}
TIMING = {"check_interval_seconds": 0.3, "fence_seconds": 1.0, "pin_retry_seconds": 1.0}
ONLINE = {REGISTRY_HOST: "127.0.0.1", AUTH_HOST: "127.0.0.1", CDN_HOST: "127.0.0.1"}
BASE_SEED = 1000
# six images on one shared 500 kB base, six on their own, and the pinned one: 10.9 MB for 8
BASES = [f"library/base-{i}" for i in range(6)]
SOLOS = [f"library/solo-{i}" for i in range(6)]
PINNED = "library/pinned"
# the order of the fill: base-0 is pulled again after four others, before the first eviction
# (it becomes recent again and outlives them)
FILL = [BASES[0], SOLOS[0], BASES[1], SOLOS[1], BASES[2], BASES[0], SOLOS[2],
        BASES[3], SOLOS[3], BASES[4], SOLOS[4], BASES[5], SOLOS[5]]


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate(STACK, stack="dev")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    images = Images(tmp_path_factory.mktemp("cache-images"))
    for i, repo in enumerate(BASES):
        images.info[repo] = make_oci_image(images.path(repo), [500_000, 700_000], seed=100 + i, tag="1.0",
                                           layer_seeds=[BASE_SEED, 2000 + i])
    for i, repo in enumerate(SOLOS):
        images.info[repo] = make_oci_image(images.path(repo), [900_000], seed=200 + i, tag="1.0")
    images.info[PINNED] = make_oci_image(images.path(PINNED), [800_000], seed=300, tag="1.0")
    return images


@dataclass
class Rig:
    tmp: Path
    hub: DockerHub
    mirror: ProgramMirror
    keeper: RunningKeeper
    images: Images
    pulled: dict[str, float] = field(default_factory=dict)  # repo -> when the test last pulled it
    history: list[tuple[float, str]] = field(default_factory=list)  # (when, repo) of every pull

    @property
    def layout(self) -> Layout:
        return Layout(self.mirror.storage)

    def pull(self, repo: str) -> None:
        """repo:1.0 through the mirror, every blob checked byte for byte."""
        info = self.images.info[repo]
        dest = self.tmp / "pulls" / f"{repo.replace('/', '_')}-{time.monotonic_ns()}"
        pull_through(self.mirror.host_port, f"{repo}:1.0", self.tmp / "trust", dest)
        index = json.loads((dest / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [info.manifest_digest], repo
        for digest in info.blob_digests:
            assert f"sha256:{hashlib.sha256(blob_path(dest, digest).read_bytes()).hexdigest()}" == digest
        self.pulled[repo] = time.time()
        self.history.append((self.pulled[repo], repo))

    def last_pull_before(self, repo: str, moment: float) -> float:
        return max(t for t, r in self.history if r == repo and t <= moment)

    def cached(self) -> set[str]:
        return set(self.layout.repositories()) & {r for r in self.images.info
                                                  if self.layout.has_revision(r, self.images.info[r].manifest_digest)}

    def evicted(self) -> list[str]:
        return [repo for _, repo in self.evictions()]

    def evictions(self) -> list[tuple[float, str]]:
        return self.keeper.evictions()


@contextlib.contextmanager
def mirror_behind_front(tmp: Path, evaluation: Evaluation, images: Images,
                        keeper_port: int) -> Iterator[tuple[DockerHub, ProgramMirror]]:
    """The Docker Hub stand-in holding `images`, the front, and the program's mirror behind
    it notifying 127.0.0.1:`keeper_port`, until the block exits."""
    write_ca_dir(tmp / "trust", evaluation.outputs["caCertPem"])
    with (
        docker_hub({repo: images.path(repo) for repo in images.info}) as hub,
        dns_server(dict(ONLINE)) as dns,
        upstream_front(tmp / "front", nginx=require_tool("nginx"), upstream_url=hub.registry_url,
                       upstream_realm=hub.realm, resolver=dns.address, ca_bundle=hub.ca_file) as front,
        program_mirror(evaluation, tmp / "mirror", front.url, tmp / "trust" / "ca.crt", binary=mirror_binary(),
                       notification_url=f"http://127.0.0.1:{keeper_port}/events") as mirror,
    ):
        yield hub, mirror


@contextlib.contextmanager
def rig(tmp: Path, evaluation: Evaluation, images: Images, **timing: float) -> Iterator[Rig]:
    keeper_port = free_port()
    with (
        mirror_behind_front(tmp, evaluation, images, keeper_port) as (hub, mirror),
        cache_keeper(evaluation, tmp / "keeper", port=keeper_port, storage=mirror.storage,
                     registry_url=f"https://{mirror.host_port}", ca_file=tmp / "trust" / "ca.crt",
                     timing=TIMING | {"min_age_seconds": 0} | timing) as keeper,
    ):
        yield Rig(tmp, hub, mirror, keeper, images)


def wait_pinned(r: Rig) -> None:
    r.keeper.wait_for(lambda: pin_cached(r.layout, Pin.parse(f"{PINNED}:1.0"), *host_platform()),
                      "the pinned image was not seeded")


def fill(r: Rig) -> UsageSampler:
    """The pinned image seeded, then FILL pulled one after the other, the keeper checking
    between two pulls (the premise of the limit: at most one image arrives between checks)."""
    wait_pinned(r)
    with UsageSampler(r.layout) as sampler:
        for repo in FILL:
            r.pull(repo)
            r.keeper.wait_check(after=time.time())
        # the registry commits a blob after the client has it: one more check sees the last one
        time.sleep(0.5)
        r.keeper.wait_check(after=time.time())
    return sampler


def test_a_filled_mirror_stays_under_its_limit_and_evicts_the_least_recently_pulled_never_the_pinned(
    tmp_path: Path, evaluation: Evaluation, images: Images
):
    with rig(tmp_path, evaluation, images) as r:
        sampler = fill(r)
        metrics = r.keeper.metrics()
        evictions, cached = r.evictions(), r.cached()
        evicted = [repo for _, repo in evictions]
        # each eviction's image, by the time the test last pulled it before that eviction
        order = [r.last_pull_before(repo, moment) for moment, repo in evictions]
        pinned_ok = pin_cached(r.layout, Pin.parse(f"{PINNED}:1.0"), *host_platform())
        usage = r.layout.usage()
    total = sum(images.info[repo].total_bytes for repo in {*FILL, PINNED})
    assert total > LIMIT * 1.3, "the fill must not fit"
    assert sampler.samples > 100
    assert sampler.peak <= LIMIT, f"usage peaked at {sampler.peak} bytes, above the {LIMIT} limit"
    assert usage <= LIMIT * 75 // 100
    assert len(evicted) >= 5 and metrics["registry_cache_evicted_images_total"] == len(evicted)
    assert metrics["registry_cache_evicted_bytes_total"] > 3 * MB
    # least recently pulled first: the evictions follow the last pulls, oldest first, and no
    # image still cached was pulled before one that went
    assert order == sorted(order), evicted
    kept = cached - {PINNED}
    assert min(r.pulled[repo] for repo in kept) > max(order), (sorted(kept), evicted)
    # base-0, pulled again mid-fill, outlived the four images pulled between its two pulls
    assert evicted.index(BASES[0]) > max(evicted.index(repo) for repo in FILL[1:5]), evicted
    # the most recent pulls and the pinned image stay; the pinned one whole
    assert {FILL[-1], FILL[-2], PINNED} <= cached
    assert PINNED not in evicted and pinned_ok
    assert metrics["registry_cache_pinned_images_missing"] == 0
    # the registry notified the keeper of every manifest pull (3.1.1 sends them in proxy mode)
    assert metrics["registry_cache_pull_events_total"] >= len(FILL)


def test_an_image_sharing_a_layer_with_an_evicted_one_pulls_offline_and_the_evicted_one_returns_identical(
    tmp_path: Path, evaluation: Evaluation, images: Images
):
    with rig(tmp_path, evaluation, images) as r:
        fill(r)
        evicted = r.evicted()
        cached = r.cached()
        gone = next(repo for repo in evicted if repo.startswith("library/base-"))
        sharing = next(repo for repo in sorted(cached) if repo.startswith("library/base-"))
        base_layer = images.info[gone].layer_digests[0]
        assert base_layer == images.info[sharing].layer_digests[0]
        assert r.layout.blob_size(base_layer) is not None, "the shared base layer stays"
        assert r.layout.blob_size(images.info[gone].layer_digests[1]) is None, "the evicted image's own layer went"

        r.hub.mode = "unavailable"
        r.pull(sharing)  # kept: served from the cache alone, the shared layer included
        r.pull(PINNED)
        with pytest.raises(SkopeoError):
            r.pull(gone)  # evicted, and the upstream answers nothing: proof that it is down
        r.hub.mode = "ok"
        r.pull(gone)  # manifest digest and every blob checked byte for byte
        # the registry stored it again (it commits after the client has the bytes)
        r.keeper.wait_for(lambda: r.layout.blob_size(images.info[gone].layer_digests[1]) is not None,
                          "the re-pulled image was not cached again", timeout=10, interval=0.05)
        back = r.layout.has_revision(gone, images.info[gone].manifest_digest)
    assert back


@pytest.mark.parametrize("upstream", ["up", "down"])
def test_no_pull_fails_while_evictions_and_sweeps_run(tmp_path: Path, evaluation: Evaluation, images: Images,
                                                      upstream: str):
    # a minimum age of 4 s: the images pulled over and over stay, those left idle go
    with rig(tmp_path, evaluation, images, min_age_seconds=4) as r:
        wait_pinned(r)
        kept = [PINNED, BASES[0], SOLOS[0]]
        for repo in kept[1:]:
            r.pull(repo)
        evicted_later = [BASES[1], SOLOS[1]]  # cached now, old filler pushes them out; re-pulled while up
        for repo in evicted_later:
            r.pull(repo)
        if upstream == "down":
            r.hub.mode = "unavailable"
        failures: list[str] = []
        pulls = [0]
        stop = threading.Event()

        def puller(repos: list[str], pause: float = 0.0) -> None:
            while not stop.is_set():
                stop.wait(pause)
                for repo in repos:
                    try:
                        r.pull(repo)
                        pulls[0] += 1
                    except (SkopeoError, AssertionError) as error:
                        failures.append(f"{repo}: {error}"[:2000])

        # with the upstream up, base-1 and solo-1 are pulled again after idling past the minimum
        # age: evicted meanwhile, they come back from the upstream while sweeps run
        targets = [([PINNED], 0.0), ([BASES[0]], 0.0), ([SOLOS[0]], 0.0)] + (
            [(evicted_later, 5.0)] if upstream == "up" else [])
        threads = [threading.Thread(target=puller, args=t, daemon=True) for t in targets]
        before = r.keeper.metrics()["registry_cache_evictions_total"]
        for thread in threads:
            thread.start()
        # images written into the storage as the registry lays them out: each pushes the cache
        # past the high watermark, and the keeper evicts (idle images and fillers past the
        # minimum age, least recently used first) and sweeps
        deadline = time.monotonic() + 14
        seed = 0
        while time.monotonic() < deadline:
            seed += 1
            store_image(r.mirror.storage, f"library/filler-{seed}", "1", [random_bytes(2 * MB, 5000 + seed)])
            r.keeper.wait_check(after=time.time())
            time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        evictions = r.keeper.metrics()["registry_cache_evictions_total"] - before
        evicted = set(r.evicted())
    assert failures == [], "\n".join(failures[:3])
    assert pulls[0] >= 10, pulls
    assert evictions >= 5, "the pulls ran while the keeper evicted and swept"
    assert not {PINNED, BASES[0], SOLOS[0]} & evicted
    if upstream == "up":
        # idle for the minimum age between two of their pulls, they went and came back
        assert set(evicted_later) & evicted, evicted


def test_a_pin_is_fetched_once_the_upstream_answers_and_fetched_again_when_its_tag_moves(
    tmp_path: Path, evaluation: Evaluation, images: Images
):
    """Seeding with the keeper's own schedule shortened (a failed pass retried after 0.5 s,
    a good one refreshed after 2 s): down at the start, the pin is missing and retried; the
    upstream back, it is cached without a pull by anyone; its tag moved upstream, the next
    refresh caches the new image."""
    moved_dir = tmp_path / "moved-pin"
    moved = make_oci_image(moved_dir, [600_000], seed=301, tag="1.0")
    pin = Pin.parse(f"{PINNED}:1.0")
    keeper_port = free_port()
    with mirror_behind_front(tmp_path, evaluation, images, keeper_port) as (hub, mirror):
        hub.mode = "unavailable"
        with cache_keeper(evaluation, tmp_path / "keeper", port=keeper_port, storage=mirror.storage,
                          registry_url=f"https://{mirror.host_port}", ca_file=tmp_path / "trust" / "ca.crt",
                          timing=TIMING | {"min_age_seconds": 0, "pin_retry_seconds": 0.5,
                                           "pin_refresh_seconds": 2.0}) as keeper:
            layout = Layout(mirror.storage)

            wait = keeper.wait_for
            wait(lambda: keeper.metrics()["registry_cache_seed_failures_total"] >= 3, "no retries while down")
            assert keeper.metrics()["registry_cache_pinned_images_missing"] == 1
            assert not layout.has_revision(PINNED, images.info[PINNED].manifest_digest)

            hub.mode = "ok"
            wait(lambda: pin_cached(layout, pin, *host_platform()), "not seeded once the upstream answered")
            wait(lambda: keeper.metrics()["registry_cache_pinned_images_missing"] == 0, "still counted missing")
            assert layout.has_revision(PINNED, images.info[PINNED].manifest_digest)
            failures = keeper.metrics()["registry_cache_seed_failures_total"]

            hub.repos[PINNED] = load_repo(moved_dir)
            wait(lambda: layout.has_revision(PINNED, moved.manifest_digest), "the moved tag was not fetched")
            wait(lambda: pin_cached(layout, pin, *host_platform()), "the moved pin is not whole in the cache")
            for digest in moved.blob_digests:
                assert layout.blob_size(digest) is not None, digest
            fetched = [d for d in keeper.decisions() if d.get("msg") == "pinned image fetched"]
            assert keeper.metrics()["registry_cache_seed_failures_total"] == failures
    assert [d["digest"] for d in fetched][:1] == [images.info[PINNED].manifest_digest]
    assert moved.manifest_digest in [d["digest"] for d in fetched]


def test_a_blob_descriptor_cache_serves_a_swept_blob_as_present_so_the_bounded_mirror_runs_without_one(
    tmp_path: Path, images: Images
):
    """Why the bounded mirror's config drops `storage.cache`: the default one (inmemory) fails
    the pull of an image whose blobs were swept under it, even with the upstream up."""
    outcomes = {}
    for name, stack in (("default", {"hostname": "mirror.test"}), ("bounded", STACK)):
        ev = evaluate(stack, stack="dev")
        tmp = tmp_path / name
        has_cache = "cache" in yaml.safe_load(ev.uploads("registry")[CONFIG_PATH])["storage"]
        with mirror_behind_front(tmp, ev, images, free_port()) as (hub, mirror):
            r = Rig(tmp, hub, mirror, None, images)  # type: ignore[arg-type]
            r.pull(SOLOS[0])
            # what the keeper does to an evicted image: its links, then the sweep
            from cachekeeper.policy import scan

            [image] = [i for i in scan(r.layout, {}).images if i.repository == SOLOS[0]]
            remove_image(r.layout, image, set())
            sweep(r.layout, now=time.time() + 3600)
            try:
                r.pull(SOLOS[0])
                outcomes[name] = (has_cache, "pulled")
            except SkopeoError as error:
                outcomes[name] = (has_cache, "failed: " + error.stderr.strip().splitlines()[-1][-200:])
    assert outcomes["default"][0] and outcomes["default"][1].startswith("failed"), outcomes
    assert outcomes["bounded"] == (False, "pulled"), outcomes


def test_every_cache_series_of_the_dashboard_and_alerts_is_in_the_keepers_scrape_and_a_written_tree_serves(
    tmp_path: Path, evaluation: Evaluation, images: Images
):
    with rig(tmp_path, evaluation, images) as r:
        wait_pinned(r)
        names = r.keeper.metric_names()
        # a tree written by rehearsal/registry_layout.py (the benchmark's cache) is served by
        # registry 3.1.1 with the upstream down, byte for byte
        stored = store_image(r.mirror.storage, "library/written", "1", [random_bytes(300_000, 77)])
        r.hub.mode = "unavailable"
        client = RegistryClient(f"https://{r.mirror.host_port}", ca_file=str(tmp_path / "trust" / "ca.crt"))
        digest, _ = client.manifest("library/written", "1")
        sizes = [client.blob("library/written", blob) for blob in stored.blobs]
    used = set().union(*(promql_metric_names(e) for e in (*dashboard_promql().values(), *alert_promql().values())))
    cache_names = {n for n in used if n.startswith(CACHE_METRIC_PREFIX)}
    assert len(cache_names) >= 8
    assert cache_names - names == set()
    assert digest == stored.digest and sizes[-1] == 300_000
