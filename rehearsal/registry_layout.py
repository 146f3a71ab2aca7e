"""Write images straight into a registry's filesystem storage, as registry 3.1.1 lays them out
when it caches a pull (registry/storage/paths.go; cachekeeper/layout.py describes the tree).

For the keeper's unit tests and for the benchmark's cache of 1,000 images, where pulling every
image through a registry would take most of the run. `tests/rehearsal/test_cache_rehearsal.py`
checks that registry 3.1.1 serves a tree written here with its upstream down, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from cachekeeper.layout import V2
from rehearsal.oci import CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE


@dataclass(frozen=True)
class StoredImage:
    repository: str
    tag: str
    digest: str  # the manifest's
    blobs: tuple[str, ...]  # config and layers
    size: int  # manifest + config + layers


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _v2(root: Path) -> Path:
    return Path(root).joinpath(*V2)


def _write_link(path: Path, digest: str, mtime: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def write_blob(root: Path, data: bytes, mtime: float | None = None) -> str:
    digest = _digest(data)
    path = _v2(root) / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return digest


def link_blob(root: Path, repository: str, digest: str, mtime: float | None = None) -> None:
    _write_link(_v2(root) / "repositories" / repository / "_layers" / "sha256" / digest[7:] / "link", digest, mtime)


def store_manifest(root: Path, repository: str, manifest: bytes, *, tag: str | None = None,
                   mtime: float | None = None) -> str:
    """Store manifest bytes as a revision of `repository` (and point `tag` at it)."""
    digest = write_blob(root, manifest, mtime)
    repo = _v2(root) / "repositories" / repository
    _write_link(repo / "_manifests" / "revisions" / "sha256" / digest[7:] / "link", digest, mtime)
    if tag is not None:
        _write_link(repo / "_manifests" / "tags" / tag / "index" / "sha256" / digest[7:] / "link", digest, mtime)
        _write_link(repo / "_manifests" / "tags" / tag / "current" / "link", digest, mtime)
    return digest


def image_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": d, "size": s} for d, s in layers],
    }, sort_keys=True, separators=(",", ":")).encode()


def index_manifest(children: list[tuple[str, int, str, str]]) -> bytes:
    """An OCI index of (digest, size, os, architecture)."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": MANIFEST_MEDIA_TYPE, "digest": d, "size": s,
                       "platform": {"os": o, "architecture": a}} for d, s, o, a in children],
    }, sort_keys=True, separators=(",", ":")).encode()


def store_image(root: Path, repository: str, tag: str, layers: list[bytes], *, seed: int = 0,
                mtime: float | None = None) -> StoredImage:
    """One single-platform image: its config, `layers` (as given: share bytes to share a
    layer), the manifest, the revision, the tag and the layer links."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                         "rootfs": {"type": "layers", "diff_ids": []}}, sort_keys=True).encode()
    config_digest = write_blob(root, config, mtime)
    layer_refs = [(write_blob(root, layer, mtime), len(layer)) for layer in layers]
    manifest = image_manifest(config_digest, len(config), layer_refs)
    digest = store_manifest(root, repository, manifest, tag=tag, mtime=mtime)
    for blob in [config_digest, *(d for d, _ in layer_refs)]:
        link_blob(root, repository, blob, mtime)
    return StoredImage(repository, tag, digest, (config_digest, *(d for d, _ in layer_refs)),
                       len(manifest) + len(config) + sum(len(layer) for layer in layers))


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)
