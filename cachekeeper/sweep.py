"""Removing images and reclaiming their space while the registry keeps serving.

**Removing an image** deletes what makes the registry find it: its tags (only while they
still point at it), its digests in the tags' history, then the revision links of its
manifests that no kept image of the repository lists. This is what `registry
garbage-collect --delete-untagged` does through its vacuum (registry/storage/vacuum.go
`RemoveManifest`); the manifest DELETE API is refused in proxy mode. A pull of a removed
image then misses locally and goes to the upstream again (registry/proxy/
proxymanifeststore.go `Get`), which stores it anew.

**The sweep** is a mark and sweep like `registry garbage-collect`'s (registry/storage/
garbagecollect.go `MarkAndSweep`: mark every blob a stored manifest references, delete the
rest, and the repositories' unmarked layer links), with one difference that lets it run
while the registry serves and caches: a **time fence**. Nothing written at or after the
fence (a minute before the sweep starts) is deleted, and the manifests stored after the first
mark are marked again just before the deletion. `garbage-collect` has no such fence, and the
registry's read-only mode does not stop the proxy from writing (read-only only removes the
PUT/PATCH/POST/DELETE routes: registry/handlers/app.go, blob.go, blobupload.go,
manifests.go), so a `garbage-collect` beside a serving mirror could delete a blob that a cold
pull had just stored. Deleting blobs under a running registry is safe only without a
blob-descriptor cache (`storage.cache`): a cached descriptor makes the registry serve a
removed blob as present and fail (registry/storage/cache/cachedblobdescriptorstore.go
`Stat`, registry/proxy/proxyblobstore.go `serveLocal`); the stack renders no `storage.cache`
for a mirror whose cache is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachekeeper.layout import Layout, parse_manifest
from cachekeeper.policy import Image

FENCE_SECONDS = 60.0


@dataclass
class SweepResult:
    blobs_removed: int = 0
    bytes_removed: int = 0
    layer_links_removed: int = 0
    blobs_fenced: int = 0  # unreferenced, but written after the fence: kept for the next sweep


def remove_image(layout: Layout, image: Image, kept_members: set[str]) -> list[str]:
    """Remove `image`'s tags and revision links (not those of `kept_members`, manifests a
    kept image of the same repository also lists). Returns the tags removed."""
    removed = [tag for tag in image.tags if layout.remove_tag(image.repository, tag, image.digest)]
    for member in image.members:
        if member in kept_members:
            continue
        layout.remove_tag_history(image.repository, member)
        layout.remove_revision(image.repository, member)
    return removed


def mark(layout: Layout, since: float | None = None) -> set[str]:
    """Every blob a stored manifest references, and the manifests themselves. With `since`,
    only the manifests whose revision link was written at or after it."""
    marked: set[str] = set()
    for repository in layout.repositories():
        for link in layout.revisions(repository):
            if since is not None and link.mtime < since:
                continue
            marked.add(link.digest)
            data = layout.read_blob(link.digest)
            if data is not None:
                refs = parse_manifest(data)
                marked.update(refs.blobs)
                marked.update(c.digest for c in refs.children)
    return marked


def sweep(layout: Layout, *, now: float | None = None, fence_seconds: float = FENCE_SECONDS,
          log: Callable[..., None] | None = None) -> SweepResult:
    """Delete the blobs (and layer links) no stored manifest references, except what was
    written after the fence."""
    started = time.time() if now is None else now
    fence = started - fence_seconds
    result = SweepResult()
    marked = mark(layout)
    candidates = {}
    for digest, size, mtime in layout.blobs():
        if digest in marked:
            continue
        if mtime >= fence:
            result.blobs_fenced += 1
            continue
        candidates[digest] = size
    # a layer link written after the fence: the registry is linking that blob right now
    fresh_links: set[str] = set()
    stale_links: list[tuple[str, str]] = []
    for repository in layout.repositories():
        for link in layout.layer_links(repository):
            if link.mtime >= fence:
                fresh_links.add(link.digest)
            elif link.digest not in marked:
                stale_links.append((repository, link.digest))
    # manifests stored while this sweep ran (their revision links are newer than the fence)
    marked |= mark(layout, since=fence)
    for digest, size in sorted(candidates.items()):
        if digest in marked or digest in fresh_links:
            result.blobs_fenced += 1
            continue
        layout.remove_blob(digest)
        result.blobs_removed += 1
        result.bytes_removed += size
        if log is not None:
            log("blob removed", digest=digest, bytes=size)
    for repository, digest in stale_links:
        if digest in marked:
            continue
        layout.remove_layer_link(repository, digest)
        result.layer_links_removed += 1
    return result
