"""A stand-in for Docker Hub on loopback: three hosts, token auth, CDN redirects, rate limits.

    with docker_hub(images={"library/app:1.0": oci_dir, ...}, private={"acme/secret"},
                    users={"alice": "s3cret"}) as hub:
        hub.registry_url   # http://registry.hub.localhost:PORT (answers /v2/ with a challenge)
        hub.realm          # http://auth.hub.localhost:PORT/token
        hub.cdn_url        # https://cdn.hub.test:PORT (TLS, certificate from hub.ca)
        hub.mode = "ratelimited"   # or "ok", "unavailable"
        hub.redirect = Redirect(host="cdn01.quay.io", status=302, head=True)  # another pattern

`tls=(certificate chain file, key file)` serves the three hosts over HTTPS with that
certificate (the URLs become https://); `service` is what the challenge names and the realm
requires (Docker Hub's `registry.docker.io` by default).

What it does as Docker Hub does (docs/upstream-references.md, "Docker Hub stand-in"):

- `GET /v2/` on the registry host: 401 with `WWW-Authenticate: Bearer realm="<auth host>/token",
  service="registry.docker.io"` on another host of the same registrable domain.
- The auth host refuses a token request whose `service` is not its own (400): a token names
  the service it is for (its audience), which the registry checks (distribution's token spec).
- The auth host issues a bearer token for `scope=repository:<name>:pull`: anonymous
  callers get pull on public repositories only; Basic credentials are checked (wrong ones:
  401 and `{"details":"incorrect username or password"}`); a private repository needs the
  right ones.
- Manifests (GET/HEAD by tag or digest) need a token with pull on the repository; a missing
  or insufficient token gets 401 with a challenge naming the scope. Answers carry
  `Docker-Content-Digest` and the media type.
- Blob HEAD: 200 with the size and `Docker-Content-Digest`. Blob GET: 307 to the CDN host
  with a URL signed for that method; the CDN host serves the bytes over TLS (a certificate
  from `hub.ca`, a throwaway CA the front is told to trust), needs no credentials, and
  answers 403 to a URL signed for another method, as S3 and GCS do with presigned URLs.
- `hub.redirect` changes the pattern: the CDN host named in the Location (any name the
  certificate covers: `CDN_NAMES`, resolved by the caller's DNS stand-in), the status, and
  `head=True` for a registry whose storage redirects blob HEADs too (distribution's
  `redirect` storage option redirects every blob request its driver signs, and the S3 and
  GCS drivers sign HEAD as well as GET: docs/upstream-references.md). `location`
  replaces the CDN URL altogether (a hostile upstream: `{digest}` and `{method}` are filled in).
- `mode = "ratelimited"`: manifest GETs answer 429 with Docker Hub's body
  (`TOOMANYREQUESTS`) and headers (`ratelimit-limit`, `ratelimit-remaining`,
  `docker-ratelimit-source`); HEADs still answer, as on Docker Hub (they do not count).
- `mode = "unavailable"`: every request on the registry and auth hosts answers 503.

Every request is recorded per host (method, path, headers) and the CDN counts the blob bytes
it sent, so a test can count upstream fetches and check where credentials went.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from rehearsal.oci import REF_NAME, blob_path
from rehearsal.tls_ca import TestCa

SERVICE = "registry.docker.io"
DOMAIN = "hub.localhost"
REGISTRY_HOST = f"registry.{DOMAIN}"
AUTH_HOST = f"auth.{DOMAIN}"
# a public-looking name: the front never follows a redirect to *.localhost (contract.Redirects);
# `test` is reserved for testing and not special to applications (docs/upstream-references.md)
CDN_HOST = "cdn.hub.test"
# the CDN hosts of the presets (docs/security.md, "Redirects"): the stand-in's certificate
# covers them, so a rehearsal can play each preset's redirect pattern on loopback
PRESET_CDN_HOSTS = {
    "docker.io": "production.cloudflare.docker.com",
    "ghcr.io": "pkg-containers.githubusercontent.com",
    "quay.io": "cdn01.quay.io",
    "gcr.io": "storage.googleapis.com",
}
CDN_NAMES = (CDN_HOST, *PRESET_CDN_HOSTS.values())
RATE_LIMIT_BODY = {
    "errors": [{
        "code": "TOOMANYREQUESTS",
        "message": "You have reached your unauthenticated pull rate limit. "
                   "https://www.docker.com/increase-rate-limit",
    }]
}  # fmt: skip
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Seen:
    host: str  # "registry", "auth" or "cdn"
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass
class Repo:
    manifests: dict[str, tuple[str, bytes, str]]  # tag or digest -> (digest, bytes, media type)
    blobs: dict[str, Path]  # digest -> file


@dataclass(frozen=True)
class Redirect:
    """How the registry host redirects a blob: to `host` (on the CDN's port) with `status`;
    `head`: blob HEADs are redirected too (else answered 200 with the size, as Docker Hub
    does); `location`: a fixed Location instead (`{digest}` and `{method}` filled in)."""

    host: str = CDN_HOST
    status: int = 307
    head: bool = False
    location: str | None = None
    manifests: bool = False  # with `location`: manifest requests are redirected there too


@dataclass
class DockerHub:
    repos: dict[str, Repo]
    private: frozenset[str]
    users: Mapping[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    mode: str = "ok"
    seen: list[Seen] = field(default_factory=list)
    cdn_bytes: int = 0
    tokens: dict[str, frozenset[str]] = field(default_factory=dict)  # token -> repos it may pull
    blob_delay: float = 0.0  # seconds the CDN spreads each blob over (overlapping pulls)
    redirect: Redirect = field(default_factory=Redirect)
    ca: TestCa | None = None
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    lock: threading.Lock = field(default_factory=threading.Lock)
    service: str = SERVICE
    scheme: str = "http"

    @property
    def registry_url(self) -> str:
        return f"{self.scheme}://{REGISTRY_HOST}:{self.ports['registry']}"

    @property
    def realm(self) -> str:
        return f"{self.scheme}://{AUTH_HOST}:{self.ports['auth']}/token"

    @property
    def cdn_url(self) -> str:
        return f"https://{self.redirect.host}:{self.ports['cdn']}"

    @property
    def ca_file(self) -> Path:
        """The CA the CDN's certificate chains to: what the front must trust."""
        assert self.ca is not None
        return self.ca.cert_file

    def requests(self, host: str, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.host == host and (method is None or s.method == method)]

    def blob_fetches(self, digest: str) -> int:
        """Blob bodies the CDN sent for `digest` (each one is an upstream download)."""
        return sum(1 for s in self.requests("cdn", "GET") if s.path.startswith(f"/blobs/{digest}"))

    def signature(self, method: str, digest: str) -> str:
        """A presigned URL's signature: valid for one method and one blob, as S3's and GCS's are."""
        return hmac.new(self.signing_key, f"{method} {digest}".encode(), hashlib.sha256).hexdigest()[:32]

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)


def load_repo(oci_dir: Path) -> Repo:
    """Every tag of an OCI layout, its manifests by tag and digest, and its blob files."""
    index = json.loads((Path(oci_dir) / "index.json").read_text())
    manifests: dict[str, tuple[str, bytes, str]] = {}
    blobs: dict[str, Path] = {}
    for entry in index["manifests"]:
        digest = entry["digest"]
        body = blob_path(oci_dir, digest).read_bytes()
        media_type = entry["mediaType"]
        manifests[digest] = (digest, body, media_type)
        tag = entry.get("annotations", {}).get(REF_NAME)
        if tag:
            manifests[tag] = (digest, body, media_type)
        document = json.loads(body)
        for descriptor in [document["config"], *document["layers"]]:
            blobs[descriptor["digest"]] = blob_path(oci_dir, descriptor["digest"])
    return Repo(manifests, blobs)


def _challenge(hub: DockerHub, scope: str | None = None, error: str | None = None) -> str:
    value = f'Bearer realm="{hub.realm}",service="{hub.service}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: DockerHub
    role: str

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.hub.record(Seen(self.role, self.command, self.path, headers))
        if self.role != "cdn" and self.hub.mode == "unavailable":
            self._send(503, b"<html><body>503 Service Unavailable</body></html>", {"Content-Type": "text/html"})
            return
        getattr(self, f"_{self.role}")(urlsplit(self.path), headers)

    do_GET = _serve  # noqa: N815 (http.server's method names)
    do_HEAD = _serve  # noqa: N815

    # ------------------------------------------------------------------ auth host

    def _auth(self, url: object, headers: Mapping[str, str]) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/token":
            self._send(404)
            return
        query = parse_qs(parts.query)
        if query.get("service") != [self.hub.service]:
            self._send(400, json.dumps({"details": "invalid service"}).encode())
            return
        user = None
        authorization = headers.get("authorization", "")
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.hub.users.get(name) != password:
                self._send(401, json.dumps({"details": "incorrect username or password"}).encode(),
                           {"Content-Type": "application/json"})  # fmt: skip
                return
            user = name
        granted = set()
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(",") and name in self.hub.repos:
                if name not in self.hub.private or user is not None:
                    granted.add(name)
        token = secrets.token_urlsafe(24)
        with self.hub.lock:
            self.hub.tokens[token] = frozenset(granted)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
        self._send(200, body.encode(), {"Content-Type": "application/json"})

    # ------------------------------------------------------------------ registry host

    def _registry(self, url: object, headers: Mapping[str, str]) -> None:
        path = urlsplit(self.path).path
        base = {"Docker-Distribution-Api-Version": "registry/2.0"}
        if path == "/v2/":
            challenge = {**base, "Content-Type": "application/json", "WWW-Authenticate": _challenge(self.hub)}
            self._send(401, _errors("UNAUTHORIZED", "authentication required"), challenge)
            return
        name, kind, reference = _split(path)
        if name is None or name not in self.hub.repos:
            scope = f"repository:{name}:pull" if name else None
            self._send(401, _errors("UNAUTHORIZED", "authentication required"),
                       {**base, "WWW-Authenticate": _challenge(self.hub, scope, "insufficient_scope")})  # fmt: skip
            return
        scope = f"repository:{name}:pull"
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self.hub.lock:
            allowed = self.hub.tokens.get(token, frozenset())
        if name not in allowed:
            self._send(401, _errors("UNAUTHORIZED", "authentication required"),
                       {**base, "Content-Type": "application/json",
                        "WWW-Authenticate": _challenge(self.hub, scope, "insufficient_scope")})  # fmt: skip
            return
        repo = self.hub.repos[name]
        redirect = self.hub.redirect
        if kind == "manifests" and redirect.manifests and redirect.location is not None:
            location = redirect.location.format(digest=reference, method=self.command)
            self._send(redirect.status, b"", {**base, "Location": location})
            return
        if kind == "manifests":
            if self.hub.mode == "ratelimited" and self.command == "GET":
                self._send(429, json.dumps(RATE_LIMIT_BODY).encode(), {
                    **base, "Content-Type": "application/json",
                    "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600",
                    "docker-ratelimit-source": "127.0.0.1",
                })  # fmt: skip
                return
            found = repo.manifests.get(reference)
            if found is None:
                self._send(
                    404, _errors("MANIFEST_UNKNOWN", "manifest unknown"), {**base, "Content-Type": "application/json"}
                )
                return
            digest, body, media_type = found
            self._send(200, body, {**base, "Content-Type": media_type, "Docker-Content-Digest": digest,
                                   "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "99;w=21600",
                                   "docker-ratelimit-source": "127.0.0.1"})  # fmt: skip
            return
        blob = repo.blobs.get(reference)
        if blob is None:
            self._send(
                404, _errors("BLOB_UNKNOWN", "blob unknown to registry"), {**base, "Content-Type": "application/json"}
            )
            return
        if self.command == "HEAD" and not redirect.head and redirect.location is None:
            self.send_response(200)
            for key, value in {
                **base,
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": reference,
                "Content-Length": str(blob.stat().st_size),
            }.items():
                self.send_header(key, value)
            self.end_headers()
            return
        if redirect.location is not None:
            location = redirect.location.format(digest=reference, method=self.command)
        else:
            signature = self.hub.signature(self.command, reference)
            location = f"{self.hub.cdn_url}/blobs/{reference}?expires=3600&method={self.command}&sig={signature}"
        self._send(redirect.status, b"", {**base, "Location": location})

    # ------------------------------------------------------------------ CDN host

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in the request's thread, not in the accept loop

    def _cdn(self, url: object, headers: Mapping[str, str]) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        digest = path.removeprefix("/blobs/")
        blob = next((r.blobs[digest] for r in self.hub.repos.values() if digest in r.blobs), None)
        if blob is None or not path.startswith("/blobs/"):
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
            return
        if parse_qs(parts.query).get("sig") != [self.hub.signature(self.command, digest)]:
            self._send(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", {"Content-Type": "application/xml"})
            return
        size = blob.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        # the delay is spread before each chunk, so the last byte leaves when the count is done
        with blob.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                if self.hub.blob_delay:
                    time.sleep(self.hub.blob_delay * len(chunk) / size)
                with self.hub.lock:
                    self.hub.cdn_bytes += len(chunk)
                self.wfile.write(chunk)


def _split(path: str) -> tuple[str | None, str, str]:
    """`/v2/<name>/(manifests|blobs)/<reference>` -> (name, kind, reference)."""
    if not path.startswith("/v2/"):
        return None, "", ""
    for kind in ("manifests", "blobs"):
        marker = f"/{kind}/"
        if marker in path:
            name, _, reference = path[4:].rpartition(marker)
            return (name or None), kind, reference
    return None, "", ""


@contextlib.contextmanager
def docker_hub(
    images: Mapping[str, Path],
    *,
    private: frozenset[str] | set[str] = frozenset(),
    users: Mapping[str, str] | None = None,
    bind: str = "127.0.0.1",
    ca: TestCa | None = None,
    service: str = SERVICE,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[DockerHub]:
    """Serve the stand-in's three hosts on `bind` (free ports) until the block exits.

    `images`: repository name -> OCI layout directory (every tag in it is served). The CDN
    speaks TLS with a certificate for `CDN_NAMES` and `bind` from `ca` (a fresh CA in a
    temporary directory when not given; `hub.ca_file` is its certificate).
    `tls`: (certificate chain, key) files: then all three hosts speak HTTPS with that
    certificate, the CDN included.
    """
    hub = DockerHub({name: load_repo(path) for name, path in images.items()}, frozenset(private), dict(users or {}),
                    service=service, scheme="https" if tls else "http")
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []
    scratch = None
    if ca is None:
        scratch = tempfile.TemporaryDirectory(prefix="hub-ca-")
        ca = TestCa.create(Path(scratch.name))
    hub.ca = ca
    try:
        for role in ("registry", "auth", "cdn"):
            handler = type(f"{role.title()}Handler", (_Handler,), {"hub": hub, "role": role})
            server = http.server.ThreadingHTTPServer((bind, 0), handler)
            if context is not None:
                # the handshake runs in accept(): a client refusing the certificate is an
                # OSError there, which the server drops before any request is recorded
                server.socket = context.wrap_socket(server.socket, server_side=True)
            elif role == "cdn":
                cdn_context = ca.server_context([*CDN_NAMES, bind])
                server.socket = cdn_context.wrap_socket(server.socket, server_side=True,
                                                        do_handshake_on_connect=False)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            servers.append((server, thread))
            hub.ports[role] = server.server_address[1]
        yield hub
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        if scratch is not None:
            scratch.cleanup()
