"""Rehearsal of the program's registry container with real binaries.

The program runs under Pulumi's mocks (`evaluate`), its pulumi-tls resources made for real
by the TLS fake. The registry container's `uploads` (config.yml, chain, key) and `envs` are
taken exactly as the program registers them and run by distribution 3.1.1 (the `registry`
of the pinned `registry:3.1.1` image, built by rehearsal/registry3.py) as a TLS pull-through
cache of a local Debian `docker-registry` 2.8.2 standing in for Docker Hub; `skopeo` pulls
through it trusting only the stack output `caCertPem`; `openssl` checks the chain and the
TLS versions.

Differences from production, all made by `map_registry_config` and `registry_env`:
container paths live under a temp root, the API and debug servers listen on loopback
ports, the upstream is local plain HTTP instead of Docker Hub, and the tracing endpoint
(`http://jaeger:4318`) is a loopback OTLP stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import ssl
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configs.registry import CERT_PATH, CONFIG_PATH, KEY_PATH
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import ImageInfo, blob_path, make_oci_image, read_manifest
from rehearsal.registry_proc import (
    RehearsalMirror,
    SkopeoError,
    Upstream,
    catalog,
    free_port,
    http_get,
    pull_through,
    push,
    stop_process,
)
from tests.conftest import require_tool

HOSTNAME = "mirror.test"
REPO = "library/rehearsal"
TAG = "1.0"
OPENSSL_TIMEOUT = 20


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate({"hostname": HOSTNAME}, stack="dev")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageInfo]:
    directory = tmp_path_factory.mktemp("oci") / "image"
    return directory, make_oci_image(directory, [400_000, 150_000, 20_000], seed=11, tag=TAG)


@pytest.fixture(scope="module")
def rehearsal(
    evaluation: Evaluation,
    image: tuple[Path, ImageInfo],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RehearsalMirror]:
    """A running rehearsal mirror, shared by the tests of this module (upstream kept up)."""
    with RehearsalMirror.start(
        evaluation, tmp_path_factory.mktemp("rehearsal"), images=[(image[0], f"{REPO}:{TAG}")]
    ) as mirror:
        yield mirror


def split_pem(bundle: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", bundle, flags=re.S)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, **kwargs)


def assert_image(pulled: Path, info: ImageInfo) -> None:
    manifest = read_manifest(pulled, info.tag)
    assert [layer["digest"] for layer in manifest["layers"]] == list(info.layer_digests)
    for digest in info.blob_digests:
        data = blob_path(pulled, digest).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest


# ---------------------------------------------------------------------------- PKI


def test_uploaded_chain_verifies_against_the_exported_root_with_openssl(tmp_path: Path, evaluation: Evaluation):
    openssl = require_tool("openssl")
    uploads = evaluation.uploads("registry")
    chain = split_pem(uploads[CERT_PATH])
    assert len(chain) == 2, "the registry must present leaf + intermediate"
    leaf, intermediate = chain
    assert intermediate == evaluation.outputs["intermediateCaPem"]
    (tmp_path / "root.pem").write_text(evaluation.outputs["caCertPem"])
    (tmp_path / "intermediate.pem").write_text(intermediate)
    (tmp_path / "leaf.pem").write_text(leaf)
    base = [openssl, "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
            str(tmp_path / "intermediate.pem"), "-purpose", "sslserver"]  # fmt: skip
    for check in (["-verify_hostname", HOSTNAME], ["-verify_hostname", "localhost"],
                  ["-verify_ip", "127.0.0.1"]):  # fmt: skip
        result = run([*base, *check, str(tmp_path / "leaf.pem")])
        assert result.returncode == 0, (check, result.stdout, result.stderr)
    # control: a name the certificate does not carry is refused by the same command
    wrong = run([*base, "-verify_hostname", "other.test", str(tmp_path / "leaf.pem")])
    assert wrong.returncode != 0


def test_uploaded_key_belongs_to_the_uploaded_leaf(tmp_path: Path, evaluation: Evaluation):
    openssl = require_tool("openssl")
    uploads = evaluation.uploads("registry")
    (tmp_path / "leaf.pem").write_text(split_pem(uploads[CERT_PATH])[0])
    (tmp_path / "key.pem").write_text(uploads[KEY_PATH])
    from_cert = run([openssl, "x509", "-noout", "-pubkey", "-in", str(tmp_path / "leaf.pem")])
    from_key = run([openssl, "pkey", "-pubout", "-in", str(tmp_path / "key.pem")])
    assert from_cert.returncode == 0 and from_key.returncode == 0
    assert from_cert.stdout == from_key.stdout


# ---------------------------------------------------------------------------- pull-through


def test_pulls_an_image_through_the_tls_mirror_with_only_the_exported_root(
    tmp_path: Path, rehearsal: RehearsalMirror, image: tuple[Path, ImageInfo]
):
    _, info = image
    assert sorted(p.name for p in rehearsal.ca_dir.iterdir()) == ["ca.crt"]
    pulled = pull_through(rehearsal.host_port, f"{REPO}:{TAG}", rehearsal.ca_dir, tmp_path / "p")
    assert_image(pulled, info)
    # the cache is the mapped storage.filesystem.rootdirectory of the program's config
    blobs = rehearsal.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    for digest in info.layer_digests:
        hexdigest = digest.split(":")[1]
        assert (blobs / hexdigest[:2] / hexdigest / "data").stat().st_size > 0


def test_catalog_lists_the_pulled_repository(tmp_path: Path, rehearsal: RehearsalMirror, image: tuple[Path, ImageInfo]):
    pull_through(rehearsal.host_port, f"{REPO}:{TAG}", rehearsal.ca_dir, tmp_path / "p")
    assert REPO in catalog(rehearsal.url, context=rehearsal.ssl_context())


def wait_for_blobs(storage: Path, digests: tuple[str, ...], timeout: float = 30.0) -> None:
    """Until every blob has landed in the filesystem driver's layout, or fail."""
    deadline = time.monotonic() + timeout
    paths = [storage / "docker/registry/v2/blobs/sha256" / d.split(":")[1][:2] / d.split(":")[1] / "data"
             for d in digests]
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [str(p) for p in paths if not p.exists()]
            raise AssertionError(f"blobs not cached after {timeout}s: {missing}")
        time.sleep(0.05)


def test_cached_image_still_pulls_with_the_upstream_stopped(
    tmp_path: Path, evaluation: Evaluation, image: tuple[Path, ImageInfo]
):
    _, info = image
    other_dir = tmp_path / "other-image"
    make_oci_image(other_dir, [50_000], seed=99, tag="never-pulled")
    with RehearsalMirror.start(
        evaluation,
        tmp_path / "r",
        images=[(image[0], f"{REPO}:{TAG}"), (other_dir, "library/other:never-pulled")],
    ) as mirror:
        pull_through(mirror.host_port, f"{REPO}:{TAG}", mirror.ca_dir, tmp_path / "warm")
        # the cache may land on disk just after the client has its bytes: wait for it
        wait_for_blobs(mirror.storage, info.blob_digests)
        mirror.stop_upstream()
        assert mirror.upstream.registry.process.poll() is not None
        with pytest.raises(urllib.error.URLError):
            http_get(f"{mirror.upstream.url}/v2/", timeout=2)
        cached = pull_through(mirror.host_port, f"{REPO}:{TAG}", mirror.ca_dir, tmp_path / "c")
        assert_image(cached, info)
        # control: what was never pulled is not there without the upstream
        with pytest.raises(SkopeoError):
            pull_through(mirror.host_port, "library/other:never-pulled", mirror.ca_dir, tmp_path / "n")


def test_mirror_refuses_pushes(tmp_path: Path, rehearsal: RehearsalMirror):
    pushed_dir = tmp_path / "push"
    make_oci_image(pushed_dir, [10_000], seed=5, tag="pushed")
    with pytest.raises(SkopeoError):
        push(
            pushed_dir,
            f"{rehearsal.host_port}/library/pushed:pushed",
            tls_verify=True,
            tag="pushed",
            cert_dir=rehearsal.ca_dir,
        )
    assert "library/pushed" not in catalog(rehearsal.url, context=rehearsal.ssl_context())


# ---------------------------------------------------------------------------- TLS versions


def _s_client(host_port: str, version: str, env: dict[str, str]) -> tuple[bool, str]:
    """Handshake with `openssl s_client -<version> -cipher DEFAULT@SECLEVEL=0`."""
    openssl = require_tool("openssl")
    result = run(
        [openssl, "s_client", "-connect", host_port, "-servername", HOSTNAME, f"-{version}",
         "-cipher", "DEFAULT@SECLEVEL=0"],
        stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    wanted = {"tls1_1": "TLSv1.1", "tls1_2": "TLSv1.2"}[version]
    negotiated = re.search(rf"Protocol\s*:\s*{re.escape(wanted)}\b", output) is not None
    cipher_none = "Cipher is (NONE)" in output
    return result.returncode == 0 and negotiated and not cipher_none, output


@contextlib.contextmanager
def _tls11_server(cert: Path, key: Path, env: dict[str, str]) -> Iterator[str]:
    """`openssl s_server` allowing only TLS 1.1 at SECLEVEL 0 (the positive control)."""
    openssl = require_tool("openssl")
    host_port = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [openssl, "s_server", "-accept", host_port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
         "-cert", str(cert), "-key", str(key)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + OPENSSL_TIMEOUT
        seen = b""
        while b"ACCEPT" not in seen:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"s_server did not start: {seen.decode(errors='replace')}")
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                seen += process.stdout.read1(4096)  # type: ignore[attr-defined]
        yield host_port
    finally:
        stop_process(process)


@pytest.fixture()
def openssl_env(tmp_path: Path) -> dict[str, str]:
    """No system openssl.cnf (Debian's sets MinProtocol/SECLEVEL): only the flags count."""
    conf = tmp_path / "openssl.cnf"
    conf.write_text("")
    return {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": str(conf)}


def test_tls_1_1_handshake_is_refused_by_the_mirror(
    tmp_path: Path, rehearsal: RehearsalMirror, openssl_env: dict[str, str]
):
    refused, output = _s_client(rehearsal.host_port, "tls1_1", openssl_env)
    assert not refused, output
    # refused for the version (alert 70), not for a cipher mismatch (alert 40): a Go server
    # with minimumtls tls1.0 and its default (GCM-only) suites answers 40 to the same client
    assert "alert protocol version" in output, output
    # the same client reaches the mirror with TLS 1.2: the refusal is about the version
    accepted, output12 = _s_client(rehearsal.host_port, "tls1_2", openssl_env)
    assert accepted, output12


def test_tls_1_1_client_command_completes_against_a_server_that_allows_it(
    tmp_path: Path, rehearsal: RehearsalMirror, openssl_env: dict[str, str]
):
    """Positive control for the refusal test: the client command can do TLS 1.1."""
    cert = tmp_path / "leaf.pem"
    cert.write_text(split_pem(rehearsal.uploads[CERT_PATH])[0])
    key = tmp_path / "key.pem"
    key.write_text(rehearsal.uploads[KEY_PATH])
    with _tls11_server(cert, key, openssl_env) as host_port:
        completed, output = _s_client(host_port, "tls1_1", openssl_env)
    assert completed, output
    assert re.search(r"Cipher\s*(is|:)\s*ECDHE-(ECDSA|RSA)-AES(128|256)-SHA\b", output), output


# ---------------------------------------------------------------------------- debug server


def test_debug_server_answers_metrics_on_plain_http(tmp_path: Path, rehearsal: RehearsalMirror):
    pull_through(rehearsal.host_port, f"{REPO}:{TAG}", rehearsal.ca_dir, tmp_path / "p")
    status, headers, body = http_get(f"{rehearsal.debug_url}/metrics")
    assert status == 200
    text = body.decode()
    assert re.search(r'^registry_http_requests_total\{.*handler="blob".*\} \d', text, re.M), text
    assert "registry_storage_action_seconds" in text
    health_status, _, _ = http_get(f"{rehearsal.debug_url}/debug/health")
    assert health_status == 200
    # plain HTTP only: a TLS client gets no handshake there
    with pytest.raises(urllib.error.URLError) as refused:
        http_get(f"https://{rehearsal.debug_host_port}/metrics", context=rehearsal.ssl_context())
    assert isinstance(refused.value.reason, ssl.SSLError)


# ---------------------------------------------------------------------------- config & env


def test_program_config_and_env_reach_the_registry(rehearsal: RehearsalMirror):
    assert CONFIG_PATH in rehearsal.uploads
    log = rehearsal.registry.log()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = [entry.get("msg", "") for entry in entries]
    assert entries, log  # log.formatter: json
    assert any(entry.get("service") == "registry" for entry in entries)  # log.fields
    assert "restricting TLS version to tls1.2 or higher" in messages  # http.tls.minimumtls
    assert f"Registry configured as a proxy cache to {rehearsal.upstream.url}" in messages
    assert any(entry.get("version") == "v3.1.1+unknown" for entry in entries)


def test_program_tracing_env_reaches_the_registry_and_its_spans_the_collector(
    tmp_path: Path, rehearsal: RehearsalMirror
):
    """OTEL_* from the program's envs: spans named by its OTEL_SERVICE_NAME arrive over
    OTLP/HTTP at the loopback stand-in that replaced `http://jaeger:4318`."""
    assert rehearsal.env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert rehearsal.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == rehearsal.otlp.url
    pull_through(rehearsal.host_port, f"{REPO}:{TAG}", rehearsal.ca_dir, tmp_path / "p")
    # the batch span processor exports every 5 s by default (OTEL_BSP_SCHEDULE_DELAY)
    deadline = time.monotonic() + 20
    while not rehearsal.otlp.posts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rehearsal.otlp.posts, rehearsal.registry.log()[-2000:]
    assert {path for path, _ in rehearsal.otlp.posts} == {"/v1/traces"}
    service = rehearsal.env["OTEL_SERVICE_NAME"].encode()
    assert any(service in body for _, body in rehearsal.otlp.posts)


def upstream_blob_gets(upstream: Upstream, digest: str) -> int:
    """GETs of a blob the upstream answered 200 (its combined-format access log)."""
    log = upstream.log_path.read_text()
    return sum(1 for line in log.splitlines() if '"GET ' in line and f"/blobs/{digest} " in line and '" 200 ' in line)


def test_a_cold_pull_fetches_each_blob_from_the_upstream_once(
    tmp_path: Path, evaluation: Evaluation, image: tuple[Path, ImageInfo]
):
    """3.1.1 streams a cold blob to the client and into the cache from one upstream fetch
    (2.8.2 fetched each twice); a warm pull fetches none."""
    _, info = image
    with RehearsalMirror.start(evaluation, tmp_path / "r", images=[(image[0], f"{REPO}:{TAG}")]) as mirror:
        pull_through(mirror.host_port, f"{REPO}:{TAG}", mirror.ca_dir, tmp_path / "cold")
        wait_for_blobs(mirror.storage, info.blob_digests)
        assert {d: upstream_blob_gets(mirror.upstream, d) for d in info.blob_digests} == dict.fromkeys(
            info.blob_digests, 1
        )
        pull_through(mirror.host_port, f"{REPO}:{TAG}", mirror.ca_dir, tmp_path / "warm")
        assert {d: upstream_blob_gets(mirror.upstream, d) for d in info.blob_digests} == dict.fromkeys(
            info.blob_digests, 1
        )
