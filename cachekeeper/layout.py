"""The registry's filesystem storage layout, as distribution 3.1.1 writes it.

Under `<rootdirectory>/docker/registry/v2` (registry/storage/paths.go):

    repositories/<name>/_manifests/revisions/sha256/<hex>/link      a manifest stored in <name>
    repositories/<name>/_manifests/tags/<tag>/current/link          the digest <tag> points at
    repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link  every digest it pointed at
    repositories/<name>/_layers/sha256/<hex>/link                   a blob linked into <name>
    blobs/sha256/<2 hex>/<hex>/data                                 the content, once per digest

A link file holds the digest as text. Every manifest is also a blob (its bytes in `blobs/`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

V2 = ("docker", "registry", "v2")
_HEX = re.compile(r"[a-f0-9]{64}")
# manifest media types whose references are an index's children
INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
MANIFEST_TYPES = INDEX_TYPES | {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
}


def is_digest(text: str) -> bool:
    return text.startswith("sha256:") and bool(_HEX.fullmatch(text[7:]))


@dataclass(frozen=True)
class Child:
    digest: str
    os: str = ""
    architecture: str = ""
    variant: str = ""


@dataclass(frozen=True)
class References:
    """What one manifest points at: blobs (config, layers) and, for an index, child manifests."""

    blobs: tuple[str, ...] = ()
    children: tuple[Child, ...] = ()

    @property
    def is_index(self) -> bool:
        return bool(self.children)


def parse_manifest(data: bytes) -> References:
    """The references of a manifest (OCI/Docker image manifest, index or list, schema 1)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return References()
    if not isinstance(document, dict):
        return References()
    blobs: list[str] = []
    children: list[Child] = []
    for entry in document.get("manifests") or []:
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str) and is_digest(entry["digest"]):
            platform: dict[str, object] = entry["platform"] if isinstance(entry.get("platform"), dict) else {}
            children.append(Child(entry["digest"], str(platform.get("os", "")),
                                  str(platform.get("architecture", "")), str(platform.get("variant", ""))))
    config = document.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str) and is_digest(config["digest"]):
        blobs.append(config["digest"])
    for key in ("layers", "blobs"):
        for entry in document.get(key) or []:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str) and is_digest(entry["digest"]):
                blobs.append(entry["digest"])
    for entry in document.get("fsLayers") or []:  # schema 1
        if isinstance(entry, dict) and isinstance(entry.get("blobSum"), str) and is_digest(entry["blobSum"]):
            blobs.append(entry["blobSum"])
    subject = document.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str) and is_digest(subject["digest"]):
        blobs.append(subject["digest"])
    return References(tuple(dict.fromkeys(blobs)), tuple(children))


@dataclass(frozen=True)
class Link:
    digest: str
    mtime: float
    path: Path


class Layout:
    """One registry storage root (`storage.filesystem.rootdirectory`)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.v2 = self.root.joinpath(*V2)
        self.repositories_dir = self.v2 / "repositories"
        self.blobs_dir = self.v2 / "blobs" / "sha256"

    # --- reading -------------------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Every repository name (nested: `library/alpine`), sorted."""
        found: list[str] = []
        if not self.repositories_dir.is_dir():
            return found
        for dirpath, dirnames, _ in os.walk(self.repositories_dir):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(Path(dirpath).relative_to(self.repositories_dir).as_posix())
            # a repository's own folders hold no further repository
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        return sorted(found)

    def repo_dir(self, repository: str) -> Path:
        if ".." in repository.split("/") or repository.startswith("/"):
            raise ValueError(f"not a repository name: {repository!r}")
        return self.repositories_dir / repository

    def revisions(self, repository: str) -> list[Link]:
        return self._links(self.repo_dir(repository) / "_manifests" / "revisions" / "sha256")

    def layer_links(self, repository: str) -> list[Link]:
        return self._links(self.repo_dir(repository) / "_layers" / "sha256")

    def tags(self, repository: str) -> dict[str, Link]:
        """tag -> the digest its `current/link` names (and when it was last written)."""
        tags_dir = self.repo_dir(repository) / "_manifests" / "tags"
        found: dict[str, Link] = {}
        try:
            entries = sorted(os.scandir(tags_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return found
        for entry in entries:
            link = self._read_link(Path(entry.path) / "current" / "link")
            if link is not None:
                found[entry.name] = link
        return found

    def has_revision(self, repository: str, digest: str) -> bool:
        return (self.repo_dir(repository) / "_manifests" / "revisions" / "sha256" / digest[7:] / "link").is_file()

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest[7:]
        return self.blobs_dir / hexdigest[:2] / hexdigest / "data"

    def blob_size(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read_blob(self, digest: str) -> bytes | None:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def blobs(self) -> Iterator[tuple[str, int, float]]:
        """(digest, size, mtime) of every stored blob."""
        try:
            prefixes = list(os.scandir(self.blobs_dir))
        except FileNotFoundError:
            return
        for prefix in prefixes:
            try:
                entries = list(os.scandir(prefix.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not _HEX.fullmatch(entry.name):
                    continue
                try:
                    st = os.stat(os.path.join(entry.path, "data"))
                except FileNotFoundError:
                    continue
                yield f"sha256:{entry.name}", st.st_size, st.st_mtime

    def usage(self) -> int:
        """Bytes of every file under the storage root (`du --apparent-size -s --block-size=1`,
        minus the folders themselves)."""
        total = 0
        stack = [str(self.root)]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
        return total

    # --- writing: only what removes an image -------------------------------------------------

    def remove_tag(self, repository: str, tag: str, digest: str) -> bool:
        """Remove `tag` if it still points at `digest` (the registry may have moved it)."""
        tag_dir = self.repo_dir(repository) / "_manifests" / "tags" / tag
        link = self._read_link(tag_dir / "current" / "link")
        if link is None or link.digest != digest:
            return False
        shutil.rmtree(tag_dir, ignore_errors=True)
        return True

    def remove_tag_history(self, repository: str, digest: str) -> None:
        """Drop `digest` from every tag's index (the digests a tag pointed at before)."""
        tags_dir = self.repo_dir(repository) / "_manifests" / "tags"
        try:
            tags = list(os.scandir(tags_dir))
        except FileNotFoundError:
            return
        for tag in tags:
            shutil.rmtree(Path(tag.path) / "index" / "sha256" / digest[7:], ignore_errors=True)

    def remove_revision(self, repository: str, digest: str) -> None:
        shutil.rmtree(self.repo_dir(repository) / "_manifests" / "revisions" / "sha256" / digest[7:],
                      ignore_errors=True)

    def remove_layer_link(self, repository: str, digest: str) -> None:
        shutil.rmtree(self.repo_dir(repository) / "_layers" / "sha256" / digest[7:], ignore_errors=True)

    def remove_blob(self, digest: str) -> None:
        shutil.rmtree(self.blob_path(digest).parent, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------

    def _links(self, directory: Path) -> list[Link]:
        found: list[Link] = []
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return found
        for entry in entries:
            if _HEX.fullmatch(entry.name):
                link = self._read_link(Path(entry.path) / "link")
                if link is not None:
                    found.append(link)
        return found

    @staticmethod
    def _read_link(path: Path) -> Link | None:
        try:
            mtime = path.stat().st_mtime
            text = path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        return Link(text, mtime, path) if is_digest(text) else None
