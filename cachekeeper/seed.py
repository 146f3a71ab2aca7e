"""Fetch pinned images into the cache by pulling them through the registry's own API.

A pull through the mirror is what stores an image (the proxy writes the manifest and every
blob it serves), so seeding is a client's pull: the manifest by tag or digest, for an index
the children of this host's platform, then every blob read to the end and checked against
its digest. It talks to the registry as any client does: TLS trusting the stack's root CA
only, with the stack's client certificate when the registry requires one, and with the
keeper's own user when the registry asks for one.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cachekeeper.layout import MANIFEST_TYPES, parse_manifest
from cachekeeper.policy import Pin, platform_children

ACCEPT = ", ".join(sorted(MANIFEST_TYPES))
_CHUNK = 1 << 20
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) as image indexes name them, for the host this runs on."""
    machine = platform.machine().lower()
    return "linux", _ARCH.get(machine, machine)


class SeedError(RuntimeError):
    pass


@dataclass
class SeedResult:
    digest: str
    manifests: int
    blobs: int
    bytes: int


class RegistryClient:
    def __init__(self, base_url: str, *, ca_file: str | None = None, client_cert: str | None = None,
                 client_key: str | None = None, username: str | None = None, password: str | None = None,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        context = None
        if base_url.startswith("https://"):
            context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            if client_cert and client_key:
                context.load_cert_chain(client_cert, client_key)
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        self.auth = None
        if username is not None and password is not None:
            self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def _open(self, path: str, accept: str | None = None) -> Any:
        request = urllib.request.Request(self.base_url + path)
        if accept:
            request.add_header("Accept", accept)
        if self.auth:
            request.add_header("Authorization", self.auth)
        try:
            return self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            body = error.read(500).decode(errors="replace")
            raise SeedError(f"GET {path}: {error.code} {body.strip()}") from error
        except OSError as error:
            raise SeedError(f"GET {path}: {error}") from error

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes]:
        with self._open(f"/v2/{repository}/manifests/{reference}", ACCEPT) as response:
            data: bytes = response.read()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise SeedError(f"{repository}@{reference}: the registry sent a manifest of digest {digest}")
        return digest, data

    def blob(self, repository: str, digest: str) -> int:
        """Read the blob to the end (so the proxy stores it whole); returns its size."""
        sha = hashlib.sha256()
        size = 0
        with self._open(f"/v2/{repository}/blobs/{digest}") as response:
            while chunk := response.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
        if "sha256:" + sha.hexdigest() != digest:
            raise SeedError(f"{repository}: blob {digest} arrived with another digest")
        return size

    def pull(self, pin: Pin, os_name: str, architecture: str) -> SeedResult:
        digest, data = self.manifest(pin.repository, pin.digest or pin.tag or "latest")
        refs = parse_manifest(data)
        manifests, blobs, total = 1, 0, 0
        pending = [refs]
        if refs.is_index:
            pending = []
            for child in platform_children(refs.children, os_name, architecture):
                _, child_data = self.manifest(pin.repository, child.digest)
                manifests += 1
                pending.append(parse_manifest(child_data))
            if not pending:
                raise SeedError(f"{pin}: the index lists no image for {os_name}/{architecture}")
        for each in pending:
            for blob in each.blobs:
                total += self.blob(pin.repository, blob)
                blobs += 1
        return SeedResult(digest, manifests, blobs, total)
