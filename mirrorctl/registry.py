"""The registry's HTTP API v2 (distribution): catalog, tags, manifests.

Reference: the OCI distribution spec (opencontainers/distribution-spec spec.md) and
distribution's docs/content/spec/api.md: `GET /v2/_catalog?n=`, `GET /v2/<name>/tags/list?n=`
(both paginated by a `Link: <...>; rel="next"` header) and `GET /v2/<name>/manifests/<ref>`
with content negotiation by `Accept`. Errors carry `{"errors": [{"code", "message"}]}`.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from mirrorctl.errors import MirrorctlError
from mirrorctl.transport import get

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# Indexes first: a multi-arch tag answers with its index, as `docker manifest inspect` does.
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# distribution/reference regexp.go: path components joined by "/", tags, digests
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
PAGE_SIZE = 1000
MAX_PAGES = 1000


def normalize_repository(name: str) -> str:
    """Docker Hub's rule: a one-component name is an official image, `library/<name>`."""
    name = name.strip()
    if not REPOSITORY_RE.match(name) or len(name) > 255:
        raise MirrorctlError(
            f"invalid repository name {name!r} (lowercase path components such as library/alpine)"
        )
    return name if "/" in name else f"library/{name}"


def check_reference(reference: str) -> str:
    reference = reference.strip()
    if TAG_RE.match(reference) or DIGEST_RE.match(reference):
        return reference
    raise MirrorctlError(
        f"invalid reference {reference!r}: a tag (e.g. latest) or a digest (sha256:...)"
    )


@dataclass(frozen=True)
class Manifest:
    repository: str
    reference: str
    media_type: str  # the Content-Type the registry answered with
    digest: str  # Docker-Content-Digest, or the computed one when the header is absent
    computed_digest: str  # sha256 of the bytes received
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body)

    def document(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError as error:
            raise MirrorctlError(
                f"the manifest of {self.repository}:{self.reference} is not JSON"
            ) from error
        if not isinstance(value, dict):
            raise MirrorctlError(
                f"the manifest of {self.repository}:{self.reference} is not a JSON object"
            )
        return value


class RegistryClient:
    def __init__(self, base_url: str, client: httpx.Client, ca_source: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.ca_source = ca_source

    def _get(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        return get(self.client, url, headers=headers, params=params, ca_source=self.ca_source)

    def ping(self) -> httpx.Response:
        """`GET /v2/`: 200 when the registry serves the v2 API."""
        return self._get("/v2/")

    def _paginated(
        self, path: str, key: str, what: str, repository: str | None = None
    ) -> list[str]:
        items: list[str] = []
        next_url: str | None = path
        params: dict[str, str] | None = {"n": str(PAGE_SIZE)}
        for _ in range(MAX_PAGES):
            if next_url is None:
                return items
            response = self._get(next_url, params=params)
            raise_for_registry(response, what, repository=repository)
            document = _json(response, what)
            page = document.get(key) or []
            if not isinstance(page, list) or not all(isinstance(item, str) for item in page):
                raise MirrorctlError(f"{what}: the answer has no list of names {key!r}")
            items += page
            link = response.links.get("next", {}).get("url")
            next_url = self._next_page(link, what) if link else None
            params = None  # the Link URL carries n and last
        raise MirrorctlError(f"{what}: more than {MAX_PAGES} pages")

    def _next_page(self, link: str, what: str) -> str:
        """The URL of a `Link: <...>; rel="next"`, on the registry's own server only.

        The next page is asked with the same client, and with the credentials of the URL
        the operator gave: never of another server. Only the link's path and query are
        kept, so an absolute link without those credentials still carries them.
        """
        base = urllib.parse.urlsplit(self.base_url)
        try:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(f"{self.base_url}/", link))
            same = _origin(target) == _origin(base)
        except ValueError:  # e.g. an unclosed "[" or a bad port in the Link header
            raise MirrorctlError(f"{what}: the Link header is not a URL: {link!r}") from None
        if not same:
            raise MirrorctlError(f"{what}: the next page is on another server: {link}")
        query = f"?{target.query}" if target.query else ""
        return f"{base.scheme}://{base.netloc}{target.path}{query}"

    def catalog(self) -> list[str]:
        """Every repository in the registry's storage: for a mirror, what it has cached."""
        return self._paginated("/v2/_catalog", "repositories", "catalog")

    def tags(self, repository: str) -> list[str]:
        repository = normalize_repository(repository)
        return self._paginated(
            f"/v2/{repository}/tags/list", "tags", f"tags of {repository}", repository
        )

    def manifest(self, repository: str, reference: str) -> Manifest:
        repository = normalize_repository(repository)
        reference = check_reference(reference)
        response = self._get(
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
        )
        raise_for_registry(
            response,
            f"manifest {repository}:{reference}",
            repository=repository,
            reference=reference,
        )
        body = response.content
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        header = response.headers.get("Docker-Content-Digest", "")
        if header.startswith("sha256:") and header != computed:
            raise MirrorctlError(
                f"manifest {repository}:{reference}: Docker-Content-Digest {header} does not match "
                f"the bytes received ({computed})"
            )
        if reference.startswith("sha256:") and reference != computed:
            raise MirrorctlError(
                f"manifest {repository}@{reference}: the bytes received hash to {computed}"
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(repository, reference, media_type, header or computed, computed, body)


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str | None, int | None]:
    """Scheme, host, port (defaulted): raises ValueError on a port that is not one."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.hostname, url.port or default


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError as error:
        raise MirrorctlError(f"{what}: the registry answered with no JSON") from error
    if not isinstance(document, dict):
        raise MirrorctlError(f"{what}: the registry answered with no JSON object")
    return document


def registry_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(code, message) of a registry error body; [] when there is none."""
    try:
        document = response.json()
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    return [
        (str(e.get("code", "")), str(e.get("message", ""))) for e in errors if isinstance(e, dict)
    ]


def raise_for_registry(
    response: httpx.Response,
    what: str,
    *,
    repository: str | None = None,
    reference: str | None = None,
) -> None:
    if response.status_code == 200:
        return
    errors = registry_errors(response)
    codes = {code for code, _ in errors}
    if "NAME_UNKNOWN" in codes and repository:
        raise MirrorctlError(
            f"unknown repository {repository!r}: neither cached by the mirror nor known upstream "
            "(NAME_UNKNOWN)"
        )
    if "MANIFEST_UNKNOWN" in codes and repository and reference:
        raise MirrorctlError(f"no manifest {reference!r} in {repository!r} (MANIFEST_UNKNOWN)")
    if response.status_code == 401:
        raise MirrorctlError(f"{what}: the registry asks for authentication (401)")
    if response.status_code == 404 and not errors and repository:
        raise MirrorctlError(f"{what}: not found (404)")
    detail = "; ".join(f"{code}: {message}" if message else code for code, message in errors)
    if not detail:
        detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else "no body"
    raise MirrorctlError(f"{what}: HTTP {response.status_code} ({detail})")
