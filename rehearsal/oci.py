"""Build an OCI image layout on disk from Python, with random (incompressible) layers.

The layout follows the OCI image-layout spec (`oci-layout`, `index.json`, `blobs/sha256/`)
so that `skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG` pushes it to a registry. Each layer
is a gzip-compressed tar (`application/vnd.oci.image.layer.v1.tar+gzip`, like Docker Hub's)
holding one file of random bytes from `random.Random(seed)`: the same seed gives the same
digests, different seeds give different blobs, and no compression can shrink them
(benchmarks measure real bytes). Layers are gzip because skopeo compresses uncompressed
layers when it copies to a registry or an OCI layout, which would change every digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What a pull of this image must reproduce."""

    tag: str
    manifest_digest: str  # "sha256:<hex>" of the manifest bytes
    manifest_size: int
    config_digest: str
    layer_digests: tuple[str, ...]
    layer_sizes: tuple[int, ...]  # blob (compressed) sizes in bytes
    diff_ids: tuple[str, ...]  # digests of the uncompressed tars
    total_bytes: int  # manifest + config + layers: everything a cold pull transfers

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config_digest, *self.layer_digests)


def make_oci_image(directory: Path, layer_sizes: list[int], seed: int, tag: str = "latest",
                   layer_seeds: list[int] | None = None) -> ImageInfo:
    """Write (or add a tag to) an OCI layout at `directory`; each layer holds `size` random bytes.

    With `layer_seeds` each layer comes from its own seed instead: two images given the same
    (size, layer seed) share that layer, byte for byte and by digest (a common base layer).

    `layer_sizes` are the payload sizes of the random file in each layer; the tar adds a
    512-byte header, padding to 512 and the 1024-byte end-of-archive marker, and gzip
    (level 1, no name, mtime 0) adds a few bytes more, as random data does not compress.
    """
    if not layer_sizes:
        raise ValueError("an image needs at least one layer")
    if any(size < 0 for size in layer_sizes):
        raise ValueError("layer sizes must be >= 0")
    directory = Path(directory)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    rng = random.Random(seed)
    layers: list[tuple[str, int]] = []
    diff_ids: list[str] = []
    if layer_seeds is not None and len(layer_seeds) != len(layer_sizes):
        raise ValueError("one layer seed per layer size")
    for index, size in enumerate(layer_sizes):
        if layer_seeds is not None:
            name, layer_rng = f"layer-s{layer_seeds[index]}.bin", random.Random(layer_seeds[index])
        else:
            name, layer_rng = f"layer-{seed}-{index}.bin", rng
        digest, blob_size, diff_id = _write_layer(blobs, name, size, layer_rng)
        layers.append((digest, blob_size))
        diff_ids.append(diff_id)

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"rehearsal.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"rehearsal.oci layer {i}"} for i in range(len(layers))],
    }
    config_digest, config_size = _write_blob(blobs, _canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size} for digest, size in layers],
    }
    manifest_bytes = _canonical(manifest)
    manifest_digest, manifest_size = _write_blob(blobs, manifest_bytes)
    _add_to_index(directory, tag, manifest_digest, manifest_size)
    return ImageInfo(
        tag=tag,
        manifest_digest=manifest_digest,
        manifest_size=manifest_size,
        config_digest=config_digest,
        layer_digests=tuple(digest for digest, _ in layers),
        layer_sizes=tuple(size for _, size in layers),
        diff_ids=tuple(diff_ids),
        total_bytes=manifest_size + config_size + sum(size for _, size in layers),
    )


def read_manifest(directory: Path, tag: str) -> dict[str, Any]:
    """The manifest stored under `tag` in an OCI layout (e.g. one skopeo pulled)."""
    index = json.loads((Path(directory) / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            digest = entry["digest"]
            manifest: dict[str, Any] = json.loads(blob_path(directory, digest).read_bytes())
            return manifest
    raise KeyError(f"tag {tag!r} not in {directory}/index.json")


def blob_path(directory: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return Path(directory) / "blobs" / algorithm / hexdigest


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return f"sha256:{hexdigest}", len(data)


class _HashingWriter:
    """A binary sink that writes to a file and hashes and counts what passes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _write_layer(blobs: Path, name: str, size: int, rng: random.Random) -> tuple[str, int, str]:
    """Stream a gzip'd tar with one random file; return (digest, blob size, diff id)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = "root"
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    padding = (512 - size % 512) % 512
    diff = hashlib.sha256()
    temporary = blobs / f".partial-{os.getpid()}-{name}"
    with temporary.open("wb") as out:
        sink = _HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=sink, mtime=0) as gz:

            def emit(data: bytes) -> None:
                gz.write(data)
                diff.update(data)

            emit(header)
            remaining = size
            while remaining:
                chunk = min(remaining, _CHUNK)
                emit(rng.randbytes(chunk))
                remaining -= chunk
            emit(b"\0" * (padding + 1024))
    temporary.replace(blobs / sink.sha.hexdigest())
    return f"sha256:{sink.sha.hexdigest()}", sink.size, f"sha256:{diff.hexdigest()}"


def _add_to_index(directory: Path, tag: str, digest: str, size: int) -> None:
    path = directory / "index.json"
    if path.exists():
        index = json.loads(path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    manifests = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    manifests.append(
        {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest,
            "size": size,
            "annotations": {REF_NAME: tag},
        }
    )
    index["manifests"] = manifests
    path.write_text(json.dumps(index, sort_keys=True, indent=2))


@dataclass
class Images:
    """OCI layouts made for a rehearsal: one folder per repository under `root`, and what
    each repository's tag must pull as."""

    root: Path
    info: dict[str, ImageInfo] = field(default_factory=dict)

    def path(self, repo: str) -> Path:
        return self.root / repo.replace("/", "_")
