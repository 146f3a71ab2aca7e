"""The cache keeper (cachekeeper/) on a storage tree laid out as registry 3.1.1 writes it
(rehearsal/registry_layout.py): what an image is, its last use, the eviction plan, the removal
and the fenced sweep. The real registry runs against it in tests/rehearsal/test_cache_rehearsal.py."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from cachekeeper.layout import Layout
from cachekeeper.policy import Limits, Pin, pin_cached, plan, scan
from cachekeeper.service import Config, Keeper
from cachekeeper.sweep import mark, sweep
from rehearsal.registry_layout import (
    index_manifest,
    link_blob,
    random_bytes,
    store_image,
    store_manifest,
    write_blob,
)

MB = 1_000_000
NOW = time.time()
HOUR = 3600.0


def old(hours: float) -> float:
    return NOW - hours * HOUR


def keeper(root: Path, tmp: Path, **overrides: object) -> Keeper:
    values = {"storage_root": str(root), "state_dir": str(tmp / "state"), "max_bytes": 10 * MB,
              "high_watermark": 90, "low_watermark": 80, "min_age_seconds": 600.0, **overrides}
    return Keeper(Config(**values))  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def fill(root: Path) -> dict[str, object]:
    """Five 2 MB images, cached an hour apart (a oldest); b and c share a 1 MB base layer."""
    base = random_bytes(MB, 1)
    images = {
        "a": store_image(root, "library/a", "1", [random_bytes(2 * MB, 10)], mtime=old(5)),
        "b": store_image(root, "library/b", "1", [base, random_bytes(MB, 11)], mtime=old(4)),
        "c": store_image(root, "library/c", "1", [base, random_bytes(MB, 12)], mtime=old(3)),
        "d": store_image(root, "library/d", "1", [random_bytes(2 * MB, 13)], mtime=old(2)),
        "e": store_image(root, "library/e", "1", [random_bytes(2 * MB, 14)], mtime=old(1)),
    }
    return images


def test_an_image_is_a_root_manifest_with_its_tags_blobs_and_first_seen_time(root: Path) -> None:
    images = fill(root)
    found = scan(Layout(root), {})
    by_repo = {i.repository: i for i in found.images}
    assert sorted(by_repo) == [f"library/{n}" for n in "abcde"]
    b = by_repo["library/b"]
    assert b.digest == images["b"].digest and b.tags == ("1",)
    assert b.blobs == {images["b"].digest, *images["b"].blobs}
    # cached five hours ago and never pulled since: the revision link's time is its last use
    assert abs(by_repo["library/a"].last_used - old(5)) < 1
    assert 9 * MB < found.usage < 9 * MB + 10_000  # the shared base is stored once


def test_last_use_is_the_latest_pull_notification_or_tag_write(root: Path) -> None:
    images = fill(root)
    pulled = {f"library/a@{images['a'].digest}": old(0.5)}
    by_repo = {i.repository: i for i in scan(Layout(root), pulled).images}
    assert abs(by_repo["library/a"].last_used - old(0.5)) < 1
    # the registry rewrites a tag's current link on each pull by tag while the upstream answers
    link = root / "docker/registry/v2/repositories/library/b/_manifests/tags/1/current/link"
    link.write_text(images["b"].digest)
    by_repo = {i.repository: i for i in scan(Layout(root), pulled).images}
    assert by_repo["library/b"].last_used > NOW - 5


def test_below_the_high_watermark_nothing_is_evicted(root: Path) -> None:
    fill(root)
    found = scan(Layout(root), {})
    assert plan(found, Limits(found.usage * 100 // 89, 90, 80, 0), NOW).evict == []


def test_above_the_high_watermark_the_least_recently_used_go_first_until_the_low_watermark(root: Path) -> None:
    fill(root)
    found = scan(Layout(root), {})
    # usage just above 9 MB, limit 10 MB (high 9 MB, low 8 MB): about 1 MB must go
    the_plan = plan(found, Limits(10 * MB, 90, 80, 0), NOW)
    assert [i.repository for i in the_plan.evict] == ["library/a"]
    assert found.usage - the_plan.freed_estimate <= 8 * MB


def test_a_layer_a_kept_image_shares_is_not_counted_as_freed(root: Path) -> None:
    images = fill(root)
    layout = Layout(root)
    found = scan(layout, {})
    # a is pulled recently: b is the oldest; it shares its 1 MB base with c, so b frees only 1 MB
    found = scan(layout, {f"library/a@{images['a'].digest}": NOW})
    the_plan = plan(found, Limits(10 * MB, 90, 80, 0), NOW)
    assert [i.repository for i in the_plan.evict][:2] == ["library/b", "library/c"]
    assert the_plan.freed_estimate >= 2 * MB


def test_pinned_and_recently_used_images_are_never_planned(root: Path) -> None:
    images = fill(root)
    layout = Layout(root)
    found = scan(layout, {f"library/b@{images['b'].digest}": NOW - 60}, pins=[Pin.parse("library/a:1")])
    the_plan = plan(found, Limits(4 * MB, 90, 10, 600), NOW)
    evicted = {i.repository for i in the_plan.evict}
    assert "library/a" not in evicted and "library/b" not in evicted
    assert evicted == {"library/c", "library/d", "library/e"}
    assert the_plan.skipped_pinned == 1 and the_plan.skipped_recent == 1
    assert the_plan.short > 0  # the two kept images hold more than the low watermark allows


def test_check_evicts_whole_images_and_the_sweep_keeps_every_blob_of_kept_images(root: Path, tmp_path: Path) -> None:
    images = fill(root)
    k = keeper(root, tmp_path, max_bytes=8 * MB, pins=("library/a:1",), min_age_seconds=600.0)
    k.record_events({"events": [{"action": "pull", "target": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "library/e",
        "digest": images["e"].digest, "tag": "1"}}]}, now=NOW - 30)
    report = k.check(now=NOW)
    layout = Layout(root)
    assert report["usage"] <= 8 * MB * 80 // 100
    # a pinned (oldest), e pulled 30 s ago (within the minimum age): both stay
    kept = {i.repository for i in scan(layout, {}).images}
    assert {"library/a", "library/e"} <= kept
    assert "library/b" not in kept  # the least recently used unpinned image went first
    for name in kept:
        image = images[name[-1]]
        assert all(layout.blob_size(b) is not None for b in image.blobs), name
    # an evicted image: tag and revision gone, its own blobs gone
    repo = root / "docker/registry/v2/repositories/library/b/_manifests"
    assert not (repo / "tags" / "1").exists()
    assert not (repo / "revisions" / "sha256" / images["b"].digest[7:]).exists()
    assert layout.blob_size(images["b"].blobs[-1]) is None
    assert k.metrics.evicted_images == len(report["evicted"]) >= 1
    assert k.metrics.evicted_bytes > 0
    assert "registry_cache_bytes_limit 8000000" in k.render_metrics()


def test_the_base_layer_stays_while_an_image_that_shares_it_is_kept(root: Path, tmp_path: Path) -> None:
    images = fill(root)
    k = keeper(root, tmp_path, max_bytes=10 * MB, high_watermark=90, low_watermark=85, min_age_seconds=0.0)
    # a pulled just now: b is the least recently used, and half a megabyte must go
    k.record_events({"events": [{"action": "pull", "target": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "library/a",
        "digest": images["a"].digest}}]}, now=NOW)
    k.check(now=NOW)
    layout = Layout(root)
    kept = {i.repository for i in scan(layout, {}).images}
    assert "library/b" not in kept and "library/c" in kept
    base = images["b"].blobs[1]
    assert base == images["c"].blobs[1]
    assert layout.blob_size(base) == MB


def test_the_sweep_keeps_unreferenced_blobs_written_after_its_fence(root: Path) -> None:
    fresh = write_blob(root, random_bytes(1000, 5))  # mtime: now (a cold pull writing it)
    stale = write_blob(root, random_bytes(1000, 6), mtime=old(1))
    result = sweep(Layout(root), now=NOW)
    layout = Layout(root)
    assert layout.blob_size(fresh) == 1000
    assert layout.blob_size(stale) is None
    assert (result.blobs_removed, result.blobs_fenced) == (1, 1)


def test_a_manifest_stored_during_the_sweep_protects_its_old_blobs(root: Path) -> None:
    layer = write_blob(root, random_bytes(1000, 7), mtime=old(1))
    layout = Layout(root)
    assert layer not in mark(layout)
    # the registry caches an image whose layer was an orphan: its revision link is new
    store_image(root, "library/new", "1", [random_bytes(1000, 7)])
    sweep(layout, now=NOW)
    assert layout.blob_size(layer) == 1000


def test_a_layer_link_written_after_the_fence_protects_its_blob(root: Path) -> None:
    layer = write_blob(root, random_bytes(1000, 8), mtime=old(1))
    link_blob(root, "library/linking", layer)  # the registry linking it right now
    sweep(Layout(root), now=NOW)
    assert Layout(root).blob_size(layer) == 1000


def test_only_manifest_pull_notifications_count(root: Path, tmp_path: Path) -> None:
    k = keeper(root, tmp_path)
    digest = "sha256:" + "a" * 64
    envelope = {"events": [
        {"action": "pull", "target": {"mediaType": "application/vnd.oci.image.index.v1+json",
                                      "repository": "library/x", "digest": digest}},
        {"action": "pull", "target": {"mediaType": "application/octet-stream", "repository": "library/x",
                                      "digest": "sha256:" + "b" * 64}},
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "repository": "library/y", "digest": digest}},
        {"action": "pull", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "repository": "library/z", "digest": "sha256:short"}},
    ]}
    assert k.record_events(envelope, now=100.0) == 1
    assert k.pulled == {f"library/x@{digest}": 100.0}
    k.save_state()
    assert json.loads((tmp_path / "state" / "state.json").read_text())["pulled"] == k.pulled
    assert keeper(root, tmp_path).pulled == k.pulled  # a restart keeps the last-pull times


def test_an_index_is_one_image_with_its_children_and_a_pin_keeps_them_whole(root: Path, tmp_path: Path) -> None:
    amd = store_image(root, "library/multi", "amd64-only", [random_bytes(MB, 20)], mtime=old(5))
    arm = store_image(root, "library/multi", "arm64-only", [random_bytes(MB, 21)], mtime=old(5))
    index = index_manifest([(amd.digest, 100, "linux", "amd64"), (arm.digest, 100, "linux", "arm64")])
    for tag in ("amd64-only", "arm64-only"):  # children pulled by digest carry no tag
        tag_dir = root / "docker/registry/v2/repositories/library/multi/_manifests/tags" / tag
        shutil.rmtree(tag_dir)
    store_manifest(root, "library/multi", index, tag="1", mtime=old(5))
    layout = Layout(root)
    [image] = scan(layout, {}).images
    assert image.tags == ("1",) and set(image.members[1:]) == {amd.digest, arm.digest}
    assert pin_cached(layout, Pin.parse("library/multi:1"), "linux", "amd64")
    filler = store_image(root, "library/filler", "1", [random_bytes(3 * MB, 22)], mtime=old(4))
    k = keeper(root, tmp_path, max_bytes=4 * MB, pins=("library/multi:1",), min_age_seconds=0.0)
    k.check(now=NOW)
    assert {i.repository for i in scan(layout, {}).images} == {"library/multi"}
    assert pin_cached(layout, Pin.parse("library/multi:1"), "linux", "amd64")
    assert layout.blob_size(filler.blobs[-1]) is None
    # unpinned, the whole index goes: every child's revision with it
    k = keeper(root, tmp_path, max_bytes=MB, min_age_seconds=0.0)
    k.check(now=NOW)
    assert scan(layout, {}).images == []
    assert not layout.revisions("library/multi")
    assert "registry_cache_pinned_images_missing 0" in k.render_metrics()


def test_a_pinned_image_not_in_the_cache_counts_as_missing(root: Path, tmp_path: Path) -> None:
    fill(root)
    k = keeper(root, tmp_path, pins=("library/a:1", "library/absent:latest"))
    k.check(now=NOW)
    assert "registry_cache_pinned_images_missing 1" in k.render_metrics()
    # a pinned image with a blob missing would not pull offline: missing too
    Layout(root).remove_blob(scan(Layout(root), {}).images[0].digest)
    k.check(now=NOW)
    assert "registry_cache_pinned_images_missing 2" in k.render_metrics()


def test_a_tag_the_registry_moved_meanwhile_is_not_removed(root: Path) -> None:
    one = store_image(root, "library/t", "1", [random_bytes(100, 30)])
    two = store_image(root, "library/t", "2", [random_bytes(100, 31)])
    layout = Layout(root)
    link = root / "docker/registry/v2/repositories/library/t/_manifests/tags/1/current/link"
    link.write_text(two.digest)
    assert not layout.remove_tag("library/t", "1", one.digest)
    assert layout.tags("library/t")["1"].digest == two.digest


@pytest.mark.parametrize("text, pin", [
    ("library/alpine:3.20", Pin("library/alpine", "3.20")),
    ("library/alpine", Pin("library/alpine", "latest")),
    ("org/app@sha256:" + "c" * 64, Pin("org/app", None, "sha256:" + "c" * 64)),
    ("org/app:1@sha256:" + "c" * 64, Pin("org/app", None, "sha256:" + "c" * 64)),
])
def test_pin_references_parse(text: str, pin: Pin) -> None:
    assert Pin.parse(text) == pin
