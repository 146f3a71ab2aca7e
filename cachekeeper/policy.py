"""Images in the cache, their last use, and which to evict (pure: the scan reads, never writes).

An **image** is what one pull asks for: a root manifest of one repository (a manifest that no
other manifest stored in that repository lists) with the child manifests an index lists, the
tags that point at it, and every blob those manifests reference. Its **last use** is the latest
of: the pull notifications the registry sent for any of its manifests, the time the registry
last wrote one of its tags (it re-writes the tag on every pull by tag while the upstream
answers), and when it was cached (the root's revision link: images cached before the keeper
ran get that first-seen time).

The plan evicts images, least recently used first, skipping pinned ones and those used within
the minimum age, until the bytes that would be freed bring the cache to the low watermark. A
blob counts as freed only when no kept image references it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cachekeeper.layout import Child, Layout, References, parse_manifest


@dataclass(frozen=True)
class Pin:
    """A pinned image reference: a repository with a tag or a digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    @classmethod
    def parse(cls, text: str) -> Pin:
        """`repo:tag`, `repo@sha256:<hex>` or `repo:tag@sha256:<hex>` (the digest wins)."""
        name, _, digest = text.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        tag = None
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:]
        if digest:
            return cls(name, None, digest)
        return cls(name, tag or "latest", None)


@dataclass
class Image:
    repository: str
    digest: str  # the root manifest
    members: tuple[str, ...]  # the root and the child manifests stored in the repository
    tags: tuple[str, ...]
    blobs: frozenset[str]  # every blob digest (manifests' own bytes included)
    cached_at: float  # the root's revision link mtime (first seen)
    tag_written_at: float = 0.0  # the latest write of one of its tags
    pulled_at: float = 0.0  # the latest pull notification for one of its manifests
    pinned: bool = False

    @property
    def key(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def last_used(self) -> float:
        return max(self.cached_at, self.tag_written_at, self.pulled_at)


@dataclass
class Scan:
    images: list[Image]
    sizes: dict[str, int]  # blob digest -> bytes, for every stored blob
    mtimes: dict[str, float]  # blob digest -> mtime
    usage: int  # bytes under the storage root
    references: dict[tuple[str, str], References] = field(default_factory=dict)

    def referenced(self) -> set[str]:
        return set().union(*(image.blobs for image in self.images)) if self.images else set()


def scan(layout: Layout, pulled: Mapping[str, float], pins: Iterable[Pin] = ()) -> Scan:
    """Every image in the cache with its blobs and last use; `pulled` maps `repo@digest` to
    the time of its latest pull notification."""
    pins = list(pins)
    sizes: dict[str, int] = {}
    mtimes: dict[str, float] = {}
    for digest, size, mtime in layout.blobs():
        sizes[digest] = size
        mtimes[digest] = mtime
    images: list[Image] = []
    refs: dict[tuple[str, str], References] = {}
    for repository in layout.repositories():
        revisions = {link.digest: link for link in layout.revisions(repository)}
        for digest in revisions:
            data = layout.read_blob(digest)
            refs[(repository, digest)] = parse_manifest(data) if data is not None else References()
        children = {c.digest for d in revisions for c in refs[(repository, d)].children if c.digest in revisions}
        tags = layout.tags(repository)
        pinned_digests = {p.digest for p in pins if p.repository == repository and p.digest}
        pinned_digests |= {tags[p.tag].digest for p in pins
                           if p.repository == repository and p.tag and p.tag in tags}
        for root in sorted(set(revisions) - children):
            members = _members(root, refs, repository, set(revisions))
            blobs: set[str] = set(members)
            for member in members:
                blobs.update(refs[(repository, member)].blobs)
            image_tags = tuple(sorted(t for t, link in tags.items() if link.digest == root))
            images.append(Image(
                repository=repository,
                digest=root,
                members=members,
                tags=image_tags,
                blobs=frozenset(blobs),
                cached_at=revisions[root].mtime,
                tag_written_at=max((tags[t].mtime for t in image_tags), default=0.0),
                pulled_at=max((pulled.get(f"{repository}@{m}", 0.0) for m in members), default=0.0),
                pinned=root in pinned_digests,
            ))
    return Scan(images, sizes, mtimes, layout.usage(), refs)


def _members(root: str, refs: Mapping[tuple[str, str], References], repository: str,
             stored: set[str]) -> tuple[str, ...]:
    seen = [root]
    queue = [root]
    while queue:
        for child in refs[(repository, queue.pop())].children:
            if child.digest in stored and child.digest not in seen:
                seen.append(child.digest)
                queue.append(child.digest)
    return tuple(seen)


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    high_watermark: int  # percent of max_bytes where eviction starts
    low_watermark: int  # percent of max_bytes it evicts down to
    min_age_seconds: float  # an image used more recently is never evicted

    @property
    def high_bytes(self) -> int:
        return self.max_bytes * self.high_watermark // 100

    @property
    def low_bytes(self) -> int:
        return self.max_bytes * self.low_watermark // 100


@dataclass
class Plan:
    evict: list[Image]
    freed_estimate: int  # bytes of blobs that no kept image references (orphans included)
    orphan_bytes: int  # blobs referenced by no image at all (a previous eviction's leftovers)
    needed: int  # bytes to free to reach the low watermark
    skipped_pinned: int = 0
    skipped_recent: int = 0

    @property
    def short(self) -> int:
        """Bytes the plan could not find: pinned or recent images hold them."""
        return max(self.needed - self.freed_estimate, 0)


def plan(found: Scan, limits: Limits, now: float, fence: float | None = None) -> Plan:
    """Which images to evict: none below the high watermark; above it, least recently used
    first until the projected usage is at most the low watermark. `fence`: blobs written at
    or after it are never counted as freed (the sweep keeps them)."""
    fence = now if fence is None else fence
    if found.usage <= limits.high_bytes:
        return Plan([], 0, 0, 0)
    needed = found.usage - limits.low_bytes
    counts: Counter[str] = Counter()
    for image in found.images:
        counts.update(image.blobs)
    orphans = sum(size for digest, size in found.sizes.items()
                  if counts[digest] == 0 and found.mtimes.get(digest, now) < fence)
    freed = orphans
    chosen: list[Image] = []
    skipped_pinned = skipped_recent = 0
    for image in sorted(found.images, key=lambda i: (i.last_used, i.repository, i.digest)):
        if freed >= needed:
            break
        if image.pinned:
            skipped_pinned += 1
            continue
        if now - image.last_used < limits.min_age_seconds:
            skipped_recent += 1
            continue
        chosen.append(image)
        for blob in image.blobs:
            counts[blob] -= 1
            if counts[blob] == 0 and found.mtimes.get(blob, now) < fence:
                freed += found.sizes.get(blob, 0)
    return Plan(chosen, freed, orphans, needed, skipped_pinned, skipped_recent)


# --- pinned images: resolved and complete in the cache -------------------------------------


def platform_children(children: Iterable[Child], os_name: str, architecture: str) -> list[Child]:
    """An index's children for one platform; all of them when none names a platform we know."""
    children = list(children)
    matching = [c for c in children if c.os == os_name and c.architecture == architecture]
    if matching:
        return matching
    named = [c for c in children if c.os and c.os != "unknown"]
    return [] if named else children


def pin_digest(layout: Layout, pin: Pin) -> str | None:
    """The digest a pin stands for in the cache (its tag as stored), or None."""
    if pin.digest:
        return pin.digest
    link = layout.tags(pin.repository).get(pin.tag or "latest") if layout.repo_dir(pin.repository).is_dir() else None
    return link.digest if link is not None else None


def pin_cached(layout: Layout, pin: Pin, os_name: str, architecture: str) -> bool:
    """True when the pin's manifest, and for an index its children for this platform, are
    stored with every blob they reference: the image pulls with the upstream down."""
    digest = pin_digest(layout, pin)
    if digest is None:
        return False
    return _complete(layout, pin.repository, digest, os_name, architecture, depth=0)


def _complete(layout: Layout, repository: str, digest: str, os_name: str, architecture: str, depth: int) -> bool:
    if depth > 2 or not layout.has_revision(repository, digest):
        return False
    data = layout.read_blob(digest)
    if data is None:
        return False
    refs = parse_manifest(data)
    if refs.is_index:
        wanted = platform_children(refs.children, os_name, architecture)
        return bool(wanted) and all(
            _complete(layout, repository, c.digest, os_name, architecture, depth + 1) for c in wanted)
    return all(layout.blob_size(b) is not None for b in refs.blobs)
