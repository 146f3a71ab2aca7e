"""Where the upstream front follows an upstream's blob redirect (configs/front.py, contract.Redirects).

Debian's nginx runs the front's rendered nginx.conf; registry 3.1.1 runs the program's config
behind it; skopeo pulls through the registry; rehearsal/hub.py plays the upstream and its CDN
(TLS, a certificate from a throwaway CA the front trusts, as it trusts the public bundle in the
stack); rehearsal/netsim.py's DNS answers the front's resolver. Everything listens on loopback
and every name resolves to loopback.

- A redirect into the private network (an IP literal, a single-label name such as a stack
  alias, a plain-http URL) is answered 502, logged with its host and reason, never fetched,
  and nothing is cached: the next pull, once the upstream behaves, gets the real blob.
- Each preset's redirect pattern (its CDN host, GET and HEAD redirected) still pulls.
- A registry whose storage redirects HEADs too (distribution's `redirect` option) pulls with
  the right sizes, the HEAD followed as a HEAD (the storage URL is signed for HEAD).
- A custom upstream follows only its own hosts and `redirectHosts`.
- The policy itself, request by request against the real nginx: which Location is refused,
  and why, matches `contract.redirect_refusal`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from configs.alloy import FRONT_REFUSAL_REGEX
from contract import Redirects, redirect_refusal
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.http_stub import serve_http
from rehearsal.hub import (
    AUTH_HOST,
    CDN_HOST,
    CDN_NAMES,
    PRESET_CDN_HOSTS,
    REGISTRY_HOST,
    DockerHub,
    Redirect,
    docker_hub,
)
from rehearsal.mirror import ProgramMirror, program_mirror
from rehearsal.netsim import DnsServer, dns_server
from rehearsal.oci import ImageInfo, Images, blob_path, make_oci_image
from rehearsal.registry_proc import SkopeoError, mirror_binary, pull_through, write_ca_dir
from rehearsal.tls_ca import TestCa
from rehearsal.upstream_front import RunningFront, upstream_front
from tests.conftest import require_tool

STACK_CONFIG = {"hostname": "mirror.test", "registryBindAddress": "127.0.0.1"}
# a service on the private network, as a hostile upstream would name it
INTERNAL_ALIAS = "prometheus"  # a stack alias: a single label, as Docker's DNS serves them
INTERNAL_PUBLIC_NAME = "internal.hub.test"  # a public-looking name, reached by plain http
ONLINE = {REGISTRY_HOST: "127.0.0.1", AUTH_HOST: "127.0.0.1", **dict.fromkeys(CDN_NAMES, "127.0.0.1"),
          INTERNAL_ALIAS: "127.0.0.1", INTERNAL_PUBLIC_NAME: "127.0.0.1"}  # fmt: skip
INTERNAL_BODY = b"internal service: credentials, metadata, anything but a blob\n" * 64
HOSTILE = ("ip-literal", "single-label", "plain-http", "manifest-to-metadata")
CUSTOM_HOSTS = (CDN_HOST,)  # a custom upstream's redirectHosts in these rehearsals


@pytest.fixture(scope="module")
def nginx() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate(STACK_CONFIG, stack="dev")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    images = Images(tmp_path_factory.mktemp("redirect-images"))
    repos = [*(f"library/hostile-{k}" for k in HOSTILE), *(f"library/preset-{p}" for p in PRESET_CDN_HOSTS),
             "library/head-redirects", "library/custom-listed", "library/custom-unlisted"]  # fmt: skip
    for seed, repo in enumerate(repos, start=70):
        images.info[repo] = make_oci_image(images.path(repo), [60_000, 20_000], seed=seed, tag="1.0")
    return images


@dataclass
class Internal:
    """A service on the private network: what a hostile redirect wants the front to fetch."""

    https_port: int
    http_port: int
    hits: list[tuple[str, str]]  # (method, path)


@contextlib.contextmanager
def internal_service(ca: TestCa) -> Iterator[Internal]:
    hits: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's method names)
            hits.append((self.command, self.path))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(INTERNAL_BODY)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(INTERNAL_BODY)

        do_HEAD = do_GET  # noqa: N815

    # its certificate is as good as the front could ask for: only the policy stops the fetch
    tls = ca.server_context([INTERNAL_ALIAS, INTERNAL_PUBLIC_NAME, "127.0.0.1"])
    with serve_http(Handler, tls=tls) as https_port, serve_http(Handler) as http_port:
        yield Internal(https_port, http_port, hits)


@contextlib.contextmanager
def upstream(images: Images) -> Iterator[tuple[DockerHub, DnsServer]]:
    with docker_hub({repo: images.path(repo) for repo in images.info}) as hub, dns_server(dict(ONLINE)) as dns:
        yield hub, dns


@contextlib.contextmanager
def front_and_mirror(
    tmp: Path, name: str, hub: DockerHub, dns: DnsServer, nginx: str, evaluation: Evaluation,
    redirect_hosts: tuple[str, ...] | None = None,
) -> Iterator[tuple[RunningFront, ProgramMirror]]:
    """The front as the stack renders it (`redirect_hosts` None: a preset) and the program's registry."""
    trust = tmp / "trust"
    if not (trust / "ca.crt").exists():
        write_ca_dir(trust, evaluation.outputs["caCertPem"])
    with upstream_front(tmp / f"front-{name}", nginx=nginx, upstream_url=hub.registry_url, upstream_realm=hub.realm,
                        resolver=dns.address, ca_bundle=hub.ca_file, redirect_hosts=redirect_hosts) as front, \
            program_mirror(evaluation, tmp / f"mirror-{name}", front.url, trust / "ca.crt",
                           binary=mirror_binary()) as mirror:  # fmt: skip
        yield front, mirror


def pull(mirror: ProgramMirror, tmp: Path, repo: str, info: ImageInfo) -> None:
    """Pull repo:1.0 through the mirror and check every blob byte for byte."""
    dest = tmp / "pulls" / f"{repo.replace('/', '_')}-{time.monotonic_ns()}"
    pull_through(mirror.host_port, f"{repo}:1.0", tmp / "trust", dest)
    for digest in info.blob_digests:
        assert f"sha256:{hashlib.sha256(blob_path(dest, digest).read_bytes()).hexdigest()}" == digest


def blob_entries(front: RunningFront, info: ImageInfo) -> list[dict[str, Any]]:
    return [e for e in front.entries() if e["uri"].rsplit("/", 1)[-1] in info.blob_digests]


# ---------------------------------------------------------------------------- hostile upstream


def hostile_location(kind: str, internal: Internal) -> str:
    return {
        "ip-literal": f"https://127.0.0.1:{internal.https_port}/latest/meta-data/{{digest}}",
        "single-label": f"https://{INTERNAL_ALIAS}:{internal.https_port}/api/v1/status/config?{{digest}}",
        "plain-http": f"http://{INTERNAL_PUBLIC_NAME}:{internal.http_port}/secrets/{{digest}}",
        # a manifest's redirect is the registry's to follow (the front hands it on once checked),
        # here to a metadata service by address, over http as such services answer
        "manifest-to-metadata": f"http://127.0.0.1:{internal.http_port}/latest/meta-data/{{digest}}",
    }[kind]


REFUSAL = {"ip-literal": (Redirects.IP_LITERAL, "127.0.0.1"), "single-label": (Redirects.SINGLE_LABEL, INTERNAL_ALIAS),
           "plain-http": (Redirects.SCHEME_REFUSED, INTERNAL_PUBLIC_NAME),
           "manifest-to-metadata": (Redirects.SCHEME_REFUSED, "127.0.0.1")}  # fmt: skip


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_redirect_into_the_private_network_is_refused_logged_counted_and_never_cached(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images, kind: str
):
    repo = f"library/hostile-{kind}"
    info = images.info[repo]
    with upstream(images) as (hub, dns), internal_service(hub.ca) as internal, \
            front_and_mirror(tmp_path, "h", hub, dns, nginx, evaluation) as (front, mirror):  # fmt: skip
        hub.redirect = Redirect(location=hostile_location(kind, internal), head=True,
                                manifests=kind.startswith("manifest"))
        with pytest.raises(SkopeoError):
            pull(mirror, tmp_path, repo, info)
        # the upstream behaves again: a blob the front had cached would still be the internal answer
        hub.redirect = Redirect()
        pull(mirror, tmp_path, repo, info)

    assert internal.hits == [], "the front fetched from the private network"
    reason, host = REFUSAL[kind]
    refused = [e for e in front.entries() if e["redirect_refused"]]
    assert refused, front.entries()
    for entry in refused:
        assert (entry["status"], entry["redirect_refused"]) == (502, reason), entry
        assert entry["redirect"].split(":")[0] == host, entry  # the host, for the operator
        assert entry["cache"] == "", entry
    # what Alloy counts (configs/alloy.py): one match per refused request, with its reason,
    # and none on any other line of the same log
    lines = front.access_log.read_text().splitlines()
    counted = [m.group("redirect_refused") for line in lines if (m := re.search(FRONT_REFUSAL_REGEX, line))]
    assert counted == [reason] * len(refused), counted
    # every blob of the second pull came from the CDN; nothing the front served came from its cache
    assert {e["cache"] for e in blob_entries(front, info) if e["method"] == "GET"} <= {"MISS", ""}
    assert all(hub.blob_fetches(d) == 1 for d in info.blob_digests)


# ---------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", list(PRESET_CDN_HOSTS))
def test_every_presets_cdn_redirect_pulls_through_the_front_for_get_and_head(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images, preset: str
):
    """The front of a preset follows redirects to any public name (redirect_hosts None, as the
    stack renders it); here the preset's CDN host, GETs and HEADs both redirected."""
    repo = f"library/preset-{preset}"
    info = images.info[repo]
    with upstream(images) as (hub, dns), \
            front_and_mirror(tmp_path, preset, hub, dns, nginx, evaluation) as (front, mirror):  # fmt: skip
        hub.redirect = Redirect(host=PRESET_CDN_HOSTS[preset], status=302 if preset in ("quay.io", "gcr.io") else 307,
                                head=True)  # fmt: skip
        pull(mirror, tmp_path, repo, info)
    followed = [e for e in blob_entries(front, info) if e["redirect"]]
    assert followed and {e["redirect"].split(":")[0] for e in followed} == {PRESET_CDN_HOSTS[preset]}
    assert {e["method"] for e in followed} == {"GET", "HEAD"}
    assert not [e for e in front.entries() if e["redirect_refused"]]


# ---------------------------------------------------------------------------- HEAD redirects


def test_a_registry_whose_storage_redirects_heads_pulls_with_the_right_sizes_and_no_blob_fetched_for_a_head(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    repo = "library/head-redirects"
    info = images.info[repo]
    with upstream(images) as (hub, dns), \
            front_and_mirror(tmp_path, "c", hub, dns, nginx, evaluation,
                             redirect_hosts=CUSTOM_HOSTS) as (front, mirror):  # fmt: skip
        hub.redirect = Redirect(head=True)
        pull(mirror, tmp_path, repo, info)
        sizes = {d: (mirror.storage / "docker/registry/v2/blobs/sha256" / d[7:9] / d[7:] / "data").stat().st_size
                 for d in info.blob_digests}  # fmt: skip
    expected = {d: blob_path(images.path(repo), d).stat().st_size for d in info.blob_digests}
    assert sizes == expected
    heads = [e for e in blob_entries(front, info) if e["method"] == "HEAD"]
    # the registry's blob stat went to the CDN as a HEAD (its URL is signed for HEAD: a GET of it
    # would have been refused 403) and came back 200 with the blob's size
    assert heads and all((e["status"], e["upstream_status"]) == (200, "307 : 200") for e in heads), heads
    cdn_heads = hub.requests("cdn", "HEAD")
    assert {r.path.split("?")[0].removeprefix("/blobs/") for r in cdn_heads} == set(info.blob_digests)
    assert all("method=HEAD" in r.path for r in cdn_heads)
    # one body per blob, for the registry's GET; none for a HEAD
    assert [hub.blob_fetches(d) for d in info.blob_digests] == [1] * len(info.blob_digests)
    assert not [r for r in hub.requests("cdn", "GET") if "method=HEAD" in r.path]


# ---------------------------------------------------------------------------- custom upstream


def test_a_custom_upstream_is_followed_only_to_its_own_hosts(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    listed, unlisted = images.info["library/custom-listed"], images.info["library/custom-unlisted"]
    with upstream(images) as (hub, dns), \
            front_and_mirror(tmp_path, "c", hub, dns, nginx, evaluation,
                             redirect_hosts=CUSTOM_HOSTS) as (front, mirror):  # fmt: skip
        pull(mirror, tmp_path, "library/custom-listed", listed)
        # a public CDN, and one a preset's front would follow, but not one this upstream lists
        hub.redirect = Redirect(host=PRESET_CDN_HOSTS["docker.io"])
        with pytest.raises(SkopeoError):
            pull(mirror, tmp_path, "library/custom-unlisted", unlisted)
    refused = [e for e in blob_entries(front, unlisted) if e["redirect_refused"]]
    assert refused and {(e["status"], e["redirect_refused"]) for e in refused} == {(502, Redirects.NOT_ALLOWED)}
    assert {e["redirect"].split(":")[0] for e in refused} == {PRESET_CDN_HOSTS["docker.io"]}
    assert not [r for r in hub.requests("cdn") if any(d[7:] in r.path for d in unlisted.blob_digests)]


# ---------------------------------------------------------------------------- the policy, request by request


PRESET_CASES = [
    ("https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/ab/x/data?verify=1", ""),
    ("https://cdn01.quay.io:443/sha256/ab/x?X-Amz-Signature=1", ""),
    ("HTTPS://Pkg-Containers.GitHubUserContent.com/ghcr1/blobs/sha256:x", ""),
    ("https://storage.googleapis.com./artifacts.p.appspot.com/x", ""),
    ("https://docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com/x", ""),
    ("https://xn--bcher-kva.example/x", ""),
    ("https://cdn.example.com", ""),
    ("http://production.cloudflare.docker.com/x", Redirects.SCHEME_REFUSED),
    ("/v2/library/x/blobs/elsewhere", Redirects.SCHEME_REFUSED),
    ("ftp://cdn.example.com/x", Redirects.SCHEME_REFUSED),
    ("https://127.0.0.1:8443/x", Redirects.IP_LITERAL),
    ("https://169.254.169.254/latest/meta-data/", Redirects.IP_LITERAL),
    ("https://[::1]:8443/x", Redirects.IP_LITERAL),
    ("https://[fd00::1]/x", Redirects.IP_LITERAL),
    ("https://2130706433/x", Redirects.IP_LITERAL),
    ("https://0x7f.0.0.1/x", Redirects.IP_LITERAL),
    ("https://10.1/x", Redirects.IP_LITERAL),
    ("https://prometheus:9090/api/v1/status/config", Redirects.SINGLE_LABEL),
    ("https://registry-front/x", Redirects.SINGLE_LABEL),
    ("https://localhost./x", Redirects.SINGLE_LABEL),
    ("https://metadata.google.internal/computeMetadata/v1/", Redirects.RESERVED_NAME),
    ("https://grafana.localhost/x", Redirects.RESERVED_NAME),
    ("https://nas.local/x", Redirects.RESERVED_NAME),
    ("https://router.home.arpa/x", Redirects.RESERVED_NAME),
    ("https://minio.lan:9000/x", Redirects.RESERVED_NAME),
    ("https://build.corp/x", Redirects.RESERVED_NAME),
    ("https://registry.registry-mirror-dev:5000/x", Redirects.NOT_PUBLIC),
    ("https://a..example.com/x", Redirects.NOT_PUBLIC),
    ("https://user:pw@cdn.example.com/x", Redirects.MALFORMED),
    ("https://cdn.example.com@127.0.0.1/x", Redirects.MALFORMED),
    ("https://cdn_example.com/x", Redirects.MALFORMED),
    ("https://cdn.example.com%2f@10.0.0.1/x", Redirects.MALFORMED),
]
CUSTOM_ALLOWED = ("s3.example.com", "registry.example.net")
CUSTOM_CASES = [
    ("https://s3.example.com/bucket/x?X-Amz-Signature=1", ""),
    ("https://S3.Example.com.:9000/x", ""),
    ("https://registry.example.net/x", ""),
    ("https://s3.example.com.evil.io/x", Redirects.NOT_ALLOWED),
    ("https://evils3.example.com/x", Redirects.NOT_ALLOWED),
    ("https://s3.example.comx/x", Redirects.NOT_ALLOWED),
    ("https://production.cloudflare.docker.com/x", Redirects.NOT_ALLOWED),
    ("http://s3.example.com/x", Redirects.SCHEME_REFUSED),
    ("https://127.0.0.1/x", Redirects.IP_LITERAL),
    ("https://s3/x", Redirects.SINGLE_LABEL),
]


def answers(front: RunningFront, upstream_locations: dict[str, str], cases: list[tuple[str, str]]) -> dict[str, Any]:
    """What the front logged as refused for each case's Location (GET and HEAD)."""
    got: dict[str, Any] = {}
    for index, (location, _) in enumerate(cases):
        digest = f"sha256:{index:064x}"
        upstream_locations[f"/v2/library/x/blobs/{digest}"] = location
        for method in ("GET", "HEAD"):
            request = urllib.request.Request(f"{front.url}/v2/library/x/blobs/{digest}", method=method)
            status, body = 0, b""
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as r:
                    status, body = r.status, r.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            got[f"{method} {location}"] = (logged(front, digest, method)["redirect_refused"], status, body)
    return got


def logged(front: RunningFront, digest: str, method: str) -> dict[str, Any]:
    """The access-log entry of the last `method` of `digest` (nginx writes it as the answer ends)."""
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in front.entries() if e["uri"].endswith(digest) and e["method"] == method]
        if found or time.monotonic() > deadline:
            assert found, (digest, method)
            return found[-1]
        time.sleep(0.02)


@pytest.mark.parametrize(("redirect_hosts", "cases"), [(None, PRESET_CASES), (CUSTOM_ALLOWED, CUSTOM_CASES)],
                         ids=["preset", "custom"])  # fmt: skip
def test_the_fronts_nginx_refuses_each_location_for_the_reason_the_policy_gives(
    tmp_path: Path, nginx: str, redirect_hosts: tuple[str, ...] | None, cases: list[tuple[str, str]]
):
    locations: dict[str, str] = {}

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", locations[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

    ca = TestCa.create(tmp_path / "ca")
    # no name resolves: an allowed redirect ends in a 502 of its own, no byte leaves loopback
    with serve_http(Upstream) as port, dns_server({}) as dns, \
            upstream_front(tmp_path / "front", nginx=nginx, upstream_url=f"http://127.0.0.1:{port}",
                           upstream_realm=None, resolver=dns.address, ca_bundle=ca.cert_file,
                           redirect_hosts=redirect_hosts) as front:  # fmt: skip
        got = answers(front, locations, cases)
    wrong = {}
    for location, reason in cases:
        for method in ("GET", "HEAD"):
            refused, status, body = got[f"{method} {location}"]
            if refused != reason or (reason and (status != 502 or (method == "GET" and reason.encode() not in body))):
                wrong[f"{method} {location}"] = (refused, status, body[:80])
    assert not wrong, wrong
    # settings refuse a redirectHosts entry by the same rule (contract.redirect_refusal)
    for location, reason in cases:
        match = re.fullmatch(r"https://([a-z0-9.-]+|\[[^\]]*\])(:[0-9]+)?(/.*)?", location, re.IGNORECASE)
        if match and reason not in (Redirects.NOT_ALLOWED, ""):
            assert redirect_refusal(match.group(1)) == reason, location
        elif match:
            assert redirect_refusal(match.group(1)) is None, location


def test_a_redirect_of_a_manifest_a_token_or_the_probe_is_checked_then_handed_on(tmp_path: Path, nginx: str):
    """The registry (or the blackbox probe) follows these itself, as without the front: the
    front hands on an allowed one as a 307 and answers a refused one 502."""
    metadata = "https://169.254.169.254/latest/meta-data/"
    allowed = "https://registry.example.com/v2/library/x/manifests/1.0"
    locations = {"/v2/": metadata, "/token?scope=x": "http://auth.example.com/token",
                 "/v2/library/x/manifests/1.0": allowed,
                 "/v2/library/y/manifests/1.0": "https://registry/v2/"}  # fmt: skip

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", locations[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

    class NoFollow(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    ca = TestCa.create(tmp_path / "ca")
    got = {}
    with serve_http(Upstream) as port, dns_server({}) as dns, \
            upstream_front(tmp_path / "front", nginx=nginx, upstream_url=f"http://127.0.0.1:{port}",
                           upstream_realm=f"http://127.0.0.1:{port}/token", resolver=dns.address,
                           ca_bundle=ca.cert_file) as front:  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoFollow)
        for path in ("/_front/upstream", "/token?scope=x", *(p for p in locations if "manifests" in p)):
            try:
                with opener.open(f"{front.url}{path}", timeout=30) as response:
                    got[path] = (response.status, response.headers.get("Location"))
            except urllib.error.HTTPError as error:
                got[path] = (error.code, error.headers.get("Location"))
    assert got == {
        "/_front/upstream": (502, None),
        "/token?scope=x": (502, None),
        "/v2/library/x/manifests/1.0": (307, allowed),
        "/v2/library/y/manifests/1.0": (502, None),
    }
    reasons = {e["uri"]: (e["redirect"], e["redirect_refused"]) for e in front.entries()}
    assert reasons == {
        "/_front/upstream": ("169.254.169.254", Redirects.IP_LITERAL),
        "/token": ("auth.example.com", Redirects.SCHEME_REFUSED),
        "/v2/library/x/manifests/1.0": ("registry.example.com", ""),
        "/v2/library/y/manifests/1.0": ("registry", Redirects.SINGLE_LABEL),
    }
