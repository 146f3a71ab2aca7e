"""Rehearsal of the blob-collapsing front (bench/collapse.py) with Debian's nginx.

1. The program's mirror (registry 3.1.1, the program's own files and PKI) with
   `proxy.remoteurl` pointing at the front, the front pointing through the benchmark's
   throttle (rehearsal/throttle.py) at a local docker-registry upstream: 8 concurrent cold pulls
   of one image reach the upstream as ONE fetch of its layer, every pull gets the image
   byte for byte, and with the upstream stopped the cached image still pulls through the
   front (the registry's own behaviour stays).
2. Against small Python stubs (the local docker-registry neither redirects nor has token
   auth, Docker Hub does both): the front follows a blob GET's 307 itself, without the
   Authorization header, and collapses concurrent redirected GETs into one CDN fetch; it
   rewrites the bearer realm to itself and forwards token requests with their query; HEAD
   requests go upstream as HEAD and never end up in the cache as a GET's answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.collapse import TOKEN_PATH
from bench.front import Front, collapse_front
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.http_stub import serve_http
from rehearsal.mirror import program_mirror
from rehearsal.oci import ImageInfo, blob_path, make_oci_image
from rehearsal.registry_proc import (
    SkopeoError,
    mirror_binary,
    pull_through,
    push,
    start_upstream,
    stop_process,
    write_ca_dir,
)
from rehearsal.throttle import ThrottleProxy
from tests.conftest import require_tool

REPO = "library/collapse"
TAG = "1.0"
PULLS = 8
DIGEST = "sha256:" + "ab" * 32
BLOB = random.Random(5).randbytes(1_000_000)


@pytest.fixture(scope="module")
def nginx() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate({"hostname": "mirror.test"}, stack="dev")


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def layer_gets(log: str, digest: str) -> int:
    """GETs of a blob that the upstream docker-registry answered 200 (its access log)."""
    return sum(1 for line in log.splitlines() if '"GET ' in line and f"/blobs/{digest} " in line and '" 200 ' in line)


def assert_pulled(dest: Path, info: ImageInfo) -> None:
    for digest in info.blob_digests:
        assert f"sha256:{hashlib.sha256(blob_path(dest, digest).read_bytes()).hexdigest()}" == digest


# ---------------------------------------------------------------------------- real mirror


def test_concurrent_cold_pulls_through_the_program_mirror_fetch_the_layer_once(
    tmp_path: Path, nginx: str, evaluation: Evaluation
):
    binary = mirror_binary()
    require_tool("skopeo")
    image_dir = tmp_path / "image"
    info = make_oci_image(image_dir, [3_000_000], seed=21, tag=TAG)
    other_dir = tmp_path / "other"
    make_oci_image(other_dir, [20_000], seed=22, tag="never")
    ca_dir = write_ca_dir(tmp_path / "trust", evaluation.outputs["caCertPem"])
    (layer,) = info.layer_digests

    with start_upstream(tmp_path) as upstream:
        push(image_dir, f"{upstream.host_port}/{REPO}:{TAG}", tag=TAG)
        push(other_dir, f"{upstream.host_port}/library/other:never", tag="never")
        upstream_port = int(upstream.host_port.rsplit(":", 1)[1])
        # 3 MB at 24 Mbit/s: about a second in flight, so the 8 pulls overlap
        with ThrottleProxy(("127.0.0.1", upstream_port), rate_mbit=24, rtt_ms=10) as throttle, \
                collapse_front(tmp_path / "front", f"http://{throttle.address}", nginx=nginx) as front, \
                program_mirror(evaluation, tmp_path / "mirror", front.url, ca_dir / "ca.crt",
                               binary=binary) as mirror:  # fmt: skip
            before = layer_gets(upstream.log_path.read_text(), layer)
            errors: list[BaseException] = []

            def pull(i: int) -> None:
                try:
                    pull_through(mirror.host_port, f"{REPO}:{TAG}", ca_dir, tmp_path / f"pull-{i}")
                except BaseException as error:  # noqa: BLE001 - reported below
                    errors.append(error)

            threads = [threading.Thread(target=pull, args=(i,)) for i in range(PULLS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not errors, errors
            for i in range(PULLS):
                assert_pulled(tmp_path / f"pull-{i}", info)
            throttle.wait_quiet(quiet_for=0.3, timeout=30)

            upstream_fetches = layer_gets(upstream.log_path.read_text(), layer) - before
            front_gets = [e for e in front.entries() if e.method == "GET" and e.uri.endswith(layer)]
            assert upstream_fetches == 1
            # the mirror did ask the front more than once (3.1.1 fetches once per pull in
            # flight): the front answered the rest from its cache
            assert len(front_gets) >= 3, front_gets
            assert sum(1 for e in front_gets if e.cache == "MISS") == 1, front_gets
            assert all(e.status == 200 and e.body_bytes == info.layer_sizes[0] for e in front_gets)

            # the registry's behaviour stays: cached content pulls with the upstream gone ...
            deadline = time.monotonic() + 10
            while not mirror.has_blobs(info.blob_digests) and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_process(upstream.registry.process)
            cached = pull_through(mirror.host_port, f"{REPO}:{TAG}", ca_dir, tmp_path / "cached")
            assert_pulled(cached, info)
            # ... and what was never pulled does not
            with pytest.raises(SkopeoError):
                pull_through(mirror.host_port, "library/other:never", ca_dir, tmp_path / "never")


# ---------------------------------------------------------------------------- stubs


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Stub:
    port: int
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Answer = tuple[int, dict[str, str], bytes, float]  # status, headers, body, seconds to spread it over


@contextlib.contextmanager
def stub_server(answer: Callable[[str, str], Answer]) -> Iterator[Stub]:
    """A loopback HTTP server answering with `answer(method, path)`, recording each request."""
    stub = Stub(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            stub.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, headers, body, spread = answer(self.command, self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            parts = 10 if spread > 0 else 1
            step = -(-len(body) // parts) if body else 0
            for i in range(parts):
                self.wfile.write(body[i * step : (i + 1) * step])
                if spread > 0:
                    time.sleep(spread / parts)

        do_GET = _serve  # noqa: N815 (http.server's method names)
        do_HEAD = _serve  # noqa: N815

    with serve_http(Handler) as port:
        stub.port = port
        yield stub


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with opener().open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@contextlib.contextmanager
def hub_like(tmp_path: Path, nginx: str) -> Iterator[tuple[Stub, Stub, Front]]:
    """A registry stub that redirects blob GETs to a CDN stub and asks for bearer tokens."""
    with stub_server(lambda method, path: (200, {}, BLOB, 0.5)) as cdn:

        def registry(method: str, path: str) -> Answer:
            if path == "/v2/":
                challenge = f'Bearer realm="{registry_stub.url}/token",service="stub.test"'
                return 401, {"WWW-Authenticate": challenge}, b"{}", 0
            if path.startswith("/token"):
                return 200, {"Content-Type": "application/json"}, b'{"token": "t"}', 0
            if path.endswith(f"/blobs/{DIGEST}"):
                if method == "HEAD":
                    return 200, {"Docker-Content-Digest": DIGEST}, BLOB, 0
                return 307, {"Location": f"{cdn.url}/cdn/blob?sig=1"}, b"", 0
            return 404, {}, b"", 0

        with stub_server(registry) as registry_stub:
            with collapse_front(tmp_path / "front", registry_stub.url, nginx=nginx,
                                auth_realm=f"{registry_stub.url}/token") as front:  # fmt: skip
                yield registry_stub, cdn, front


def test_front_follows_blob_redirects_itself_and_collapses_them_into_one_cdn_fetch(tmp_path: Path, nginx: str):
    with hub_like(tmp_path, nginx) as (registry, cdn, front):
        url = f"{front.url}/v2/library/x/blobs/{DIGEST}"
        results: list[tuple[int, dict[str, str], bytes]] = []
        threads = [threading.Thread(target=lambda: results.append(get(url, headers={"Authorization": "Bearer t"})))
                   for _ in range(6)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert [status for status, _, _ in results] == [200] * 6
    assert all(body == BLOB for _, _, body in results)  # the client never sees the 307
    cdn_gets = [s for s in cdn.seen if s.method == "GET"]
    assert len(cdn_gets) == 1, cdn_gets
    assert cdn_gets[0].path == "/cdn/blob?sig=1"
    assert "authorization" not in cdn_gets[0].headers  # the registry's token stays with it
    assert any(s.headers.get("authorization") == "Bearer t" for s in registry.seen)


def test_front_rewrites_the_bearer_realm_to_itself_and_forwards_token_requests(tmp_path: Path, nginx: str):
    with hub_like(tmp_path, nginx) as (registry, _, front):
        status, headers, _ = get(f"{front.url}/v2/")
        token_status, _, token = get(f"{front.url}{TOKEN_PATH}?scope=repository:library/x:pull&service=stub.test")
    assert status == 401
    assert headers["WWW-Authenticate"] == f'Bearer realm="{front.url}{TOKEN_PATH}",service="stub.test"'
    assert token_status == 200 and token == b'{"token": "t"}'
    forwarded = [s for s in registry.seen if s.path.startswith("/token")]
    assert [s.path for s in forwarded] == ["/token?scope=repository:library/x:pull&service=stub.test"]


def test_blob_head_goes_upstream_as_head_and_never_answers_a_later_get(tmp_path: Path, nginx: str):
    with hub_like(tmp_path, nginx) as (registry, cdn, front):
        url = f"{front.url}/v2/library/x/blobs/{DIGEST}"
        head_status, head_headers, head_body = get(url, method="HEAD")
        second_head, _, _ = get(url, method="HEAD")
        get_status, _, body = get(url)
    assert (head_status, second_head, head_body) == (200, 200, b"")
    assert head_headers["Content-Length"] == str(len(BLOB))
    assert [s.method for s in registry.seen if s.path.endswith(DIGEST)] == ["HEAD", "HEAD", "GET"]
    assert get_status == 200 and body == BLOB  # not the empty answer of a HEAD
    assert [s.method for s in cdn.seen] == ["GET"]
