"""The rehearsal infrastructure works: OCI layouts, registry processes, config mapping.

The mirror is registry 3.1.1 (rehearsal/registry3.py), the upstream Debian's 2.8.2.

Uses a hand-made minimal mirror config (not the program's) so that a failure here points
at the infrastructure, not at the program. The PKI comes from the pulumi-tls fake:
root -> intermediate -> server, the server presenting leaf + intermediate.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import ssl
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.registry import render_registry_config
from rehearsal.fakes.tls import (
    CERT_REQUEST,
    LOCALLY_SIGNED_CERT,
    PRIVATE_KEY,
    SELF_SIGNED_CERT,
    fake_tls_resource,
)
from rehearsal.oci import ImageInfo, blob_path, make_oci_image, read_manifest
from rehearsal.registry_proc import (
    SkopeoError,
    Upstream,
    ca_context,
    catalog,
    flatten,
    free_port,
    http_get,
    inspect_raw,
    map_registry_config,
    mirror_binary,
    otlp_collector,
    pull_through,
    push,
    refuse_non_loopback_urls,
    registry_env,
    registry_process,
    start_upstream,
    write_ca_dir,
)

REPO = "library/rehearsal"
TAG = "v1"


def _key(curve: str) -> dict[str, Any]:
    return fake_tls_resource(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": curve})[1]


def _sign(ca_key: dict[str, Any], ca_cert: dict[str, Any], key: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    csr_inputs = {"privateKeyPem": key["privateKeyPem"]}
    for name in ("subject", "dnsNames", "ipAddresses"):
        if name in inputs:
            csr_inputs[name] = inputs.pop(name)
    csr = fake_tls_resource(CERT_REQUEST, csr_inputs)[1]
    return fake_tls_resource(
        LOCALLY_SIGNED_CERT,
        {
            "certRequestPem": csr["certRequestPem"],
            "caPrivateKeyPem": ca_key["privateKeyPem"],
            "caCertPem": ca_cert["certPem"],
            **inputs,
        },
    )[1]


def make_pki(name: str) -> dict[str, str]:
    root_key = _key("P384")
    root = fake_tls_resource(
        SELF_SIGNED_CERT,
        {
            "privateKeyPem": root_key["privateKeyPem"],
            "isCaCertificate": True,
            "subject": {"commonName": f"{name} Root CA"},
            "allowedUses": ["cert_signing", "crl_signing"],
            "validityPeriodHours": 24,
        },
    )[1]
    inter_key = _key("P256")
    inter = _sign(
        root_key,
        root,
        inter_key,
        subject={"commonName": f"{name} Intermediate CA"},
        isCaCertificate=True,
        allowedUses=["cert_signing", "crl_signing"],
        validityPeriodHours=24,
    )
    server_key = _key("P256")
    server = _sign(
        inter_key,
        inter,
        server_key,
        subject={"commonName": "localhost"},
        dnsNames=["localhost"],
        ipAddresses=["127.0.0.1"],
        allowedUses=["digital_signature", "key_encipherment", "server_auth"],
        validityPeriodHours=24,
    )
    return {
        "root": root["certPem"],
        "intermediate": inter["certPem"],
        "chain": server["certPem"] + inter["certPem"],
        "key": server_key["privateKeyPem"],
    }


def minimal_mirror_config(root: Path, addr: str, debug_addr: str, upstream_url: str, pki: dict[str, str]) -> Path:
    (root / "certs").mkdir(parents=True, exist_ok=True)
    (root / "certs" / "chain.crt").write_text(pki["chain"])
    (root / "certs" / "server.key").write_text(pki["key"])
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {
            "addr": addr,
            "tls": {
                "certificate": str(root / "certs" / "chain.crt"),
                "key": str(root / "certs" / "server.key"),
                "minimumtls": "tls1.2",
            },
            "debug": {"addr": debug_addr, "prometheus": {"enabled": True, "path": "/metrics"}},
        },
        "proxy": {"remoteurl": upstream_url},
    }
    path = root / "mirror.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    return make_pki("Infra")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageInfo]:
    directory = tmp_path_factory.mktemp("oci") / "image"
    info = make_oci_image(directory, [300_000, 70_000], seed=7, tag=TAG)
    return directory, info


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, image: tuple[Path, ImageInfo]) -> Iterator[Upstream]:
    with start_upstream(tmp_path_factory.mktemp("up")) as running:
        push(image[0], f"{running.host_port}/{REPO}:{TAG}", tls_verify=False, tag=TAG)
        yield running


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, pki: dict[str, str]
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("mirror")
    port, debug_port = free_port(), free_port()
    config = minimal_mirror_config(root, f"127.0.0.1:{port}", f"127.0.0.1:{debug_port}", upstream.url, pki)
    ca_dir = write_ca_dir(root / "trust", pki["root"])
    with registry_process(
        config,
        binary=mirror_binary(),
        log_path=root / "mirror.log",
        probe_url=f"https://127.0.0.1:{port}/v2/",
        ssl_context=ca_context(ca_dir / "ca.crt"),
    ) as running:
        yield {
            "host_port": f"127.0.0.1:{port}",
            "url": f"https://127.0.0.1:{port}",
            "debug_url": f"http://127.0.0.1:{debug_port}",
            "ca_dir": ca_dir,
            "root": root,
            "process": running,
        }


# ---------------------------------------------------------------------------- OCI layout


def test_oci_layout_blobs_match_their_digests(image: tuple[Path, ImageInfo]):
    directory, info = image
    assert json.loads((directory / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for digest in (info.manifest_digest, *info.blob_digests):
        data = blob_path(directory, digest).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest
    sizes = [blob_path(directory, d).stat().st_size for d in info.layer_digests]
    assert tuple(sizes) == info.layer_sizes
    # the gzip holds a tar: 512 header + payload padded to 512 + 1024 end of archive
    with gzip.open(blob_path(directory, info.layer_digests[0])) as layer:
        tar = layer.read()
    assert len(tar) == 512 + 300_032 + 1024
    assert f"sha256:{hashlib.sha256(tar).hexdigest()}" == info.diff_ids[0]
    assert 300_000 < sizes[0] < len(tar) * 1.01  # the random payload does not shrink
    config = json.loads(blob_path(directory, info.config_digest).read_bytes())
    assert config["rootfs"]["diff_ids"] == list(info.diff_ids)
    manifest = read_manifest(directory, TAG)
    assert [layer["digest"] for layer in manifest["layers"]] == list(info.layer_digests)


def test_oci_layers_are_incompressible_and_seeded(tmp_path: Path):
    import zlib

    first = make_oci_image(tmp_path / "a", [200_000], seed=1)
    again = make_oci_image(tmp_path / "b", [200_000], seed=1)
    other = make_oci_image(tmp_path / "c", [200_000], seed=2)
    assert first.layer_digests == again.layer_digests
    assert first.layer_digests != other.layer_digests
    with gzip.open(blob_path(tmp_path / "a", first.layer_digests[0])) as layer:
        data = layer.read()
    assert len(zlib.compress(data, 9)) > 0.99 * len(data)


def test_skopeo_reads_the_oci_layout(tmp_path: Path, image: tuple[Path, ImageInfo]):
    directory, info = image
    raw = inspect_raw(f"oci:{directory}:{TAG}", tmp=tmp_path, tls_verify=False)
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == info.manifest_digest


# ---------------------------------------------------------------------------- processes


def test_upstream_serves_the_pushed_image(tmp_path: Path, upstream: Upstream, image: Any):
    _, info = image
    raw = inspect_raw(f"{upstream.host_port}/{REPO}:{TAG}", tmp=tmp_path, tls_verify=False)
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == info.manifest_digest
    assert catalog(upstream.url) == [REPO]


def test_registry_process_fails_fast_with_its_log_on_a_bad_config(tmp_path: Path):
    config = tmp_path / "bad.yml"
    config.write_text("version: 0.1\nstorage: {}\nhttp: {addr: 127.0.0.1:1}\n")
    with pytest.raises(RuntimeError, match="exited with"):
        with registry_process(
            config, binary=mirror_binary(), log_path=tmp_path / "bad.log", probe_url="http://127.0.0.1:1/v2/"
        ):
            pass


def test_mirror_is_stopped_when_the_block_exits(tmp_path: Path):
    with start_upstream(tmp_path) as running:
        process = running.registry.process
        assert process.poll() is None
    assert process.poll() is not None


def test_the_mirror_is_distribution_3_1_1_and_the_upstream_debians_2_8(mirror: dict[str, Any], upstream: Upstream):
    assert "version=v3.1.1+unknown" in mirror["process"].log()  # the text formatter's field
    assert "version=2.8.2" in upstream.registry.log()


def test_a_3_1_1_mirror_does_not_start_while_its_upstream_is_down(tmp_path: Path, pki: dict[str, str]):
    """Why every rehearsal starts the upstream first (registry/handlers/app.go panics)."""
    port, debug_port, closed = free_port(), free_port(), free_port()
    config = minimal_mirror_config(
        tmp_path, f"127.0.0.1:{port}", f"127.0.0.1:{debug_port}", f"http://127.0.0.1:{closed}", pki
    )
    with pytest.raises(RuntimeError, match="exited with"):
        with registry_process(
            config, binary=mirror_binary(), log_path=tmp_path / "m.log", probe_url=f"https://127.0.0.1:{port}/v2/"
        ):
            pass
    assert f"127.0.0.1:{closed}" in (tmp_path / "m.log").read_text()


# ---------------------------------------------------------------------------- TLS mirror


def test_pull_through_tls_mirror_with_only_the_root_ca(
    tmp_path: Path, mirror: dict[str, Any], image: tuple[Path, ImageInfo]
):
    _, info = image
    pulled = pull_through(mirror["host_port"], f"{REPO}:{TAG}", mirror["ca_dir"], tmp_path / "p")
    manifest = read_manifest(pulled, TAG)
    assert [layer["digest"] for layer in manifest["layers"]] == list(info.layer_digests)
    for digest in info.blob_digests:
        data = blob_path(pulled, digest).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest
    raw = inspect_raw(f"{mirror['host_port']}/{REPO}:{TAG}", ca_dir=mirror["ca_dir"], tmp=tmp_path / "i")
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == info.manifest_digest
    assert REPO in catalog(mirror["url"], context=ca_context(mirror["ca_dir"] / "ca.crt"))


def test_pull_through_refuses_a_mirror_signed_by_another_root(tmp_path: Path, mirror: dict[str, Any]):
    """Negative control: the same pull with an unrelated root CA fails verification."""
    stranger = write_ca_dir(tmp_path / "stranger", make_pki("Stranger")["root"])
    with pytest.raises(SkopeoError, match="x509|certificate"):
        pull_through(mirror["host_port"], f"{REPO}:{TAG}", stranger, tmp_path / "p")


def test_mirror_presents_leaf_and_intermediate_and_verifies_against_root(mirror: dict[str, Any], pki: dict[str, str]):
    context = ca_context(mirror["ca_dir"] / "ca.crt")
    status, _, _ = http_get(f"{mirror['url']}/v2/", context=context)
    assert status == 200
    # the intermediate alone is no trust anchor (no partial chains): the root is needed
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(cadata=pki["intermediate"])
    bare.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN
    with pytest.raises(urllib.error.URLError) as refused:
        http_get(f"{mirror['url']}/v2/", context=bare)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_mirror_debug_server_serves_metrics_on_plain_http(mirror: dict[str, Any]):
    http_get(f"{mirror['url']}/v2/", context=ca_context(mirror["ca_dir"] / "ca.crt"))
    status, _, body = http_get(f"{mirror['debug_url']}/metrics")
    assert status == 200
    assert b'registry_http_requests_total{code="200",handler="base",method="get"}' in body


# ---------------------------------------------------------------------------- mapping


HAND_CONFIG = """
version: 0.1
log: {level: debug, formatter: json, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: /var/lib/registry}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
  tag: {concurrencylimit: 5}
http:
  addr: :5000
  headers: {X-Content-Type-Options: [nosniff]}
  tls:
    certificate: /etc/distribution/certs/registry.crt
    key: /etc/distribution/certs/registry.key
    clientcas: [/etc/distribution/certs/client-ca.crt]
    minimumtls: tls1.2
  debug: {addr: ':5001', prometheus: {enabled: true, path: /metrics}}
auth:
  htpasswd: {realm: basic-realm, path: /etc/distribution/htpasswd}
notifications:
  endpoints:
    - {name: hook, url: 'http://hook:8080/', certificate: /etc/distribution/hook.pem}
proxy: {remoteurl: 'https://registry-1.docker.io', ttl: 168h}
health: {storagedriver: {enabled: true, interval: 10s, threshold: 3}}
"""
HAND_UPLOADS = {
    "/etc/distribution/config.yml": HAND_CONFIG,
    "/etc/distribution/certs/registry.crt": "CHAIN",
    "/etc/distribution/certs/registry.key": "KEY",
    "/etc/distribution/certs/client-ca.crt": "CLIENT CA",
    "/etc/distribution/htpasswd": "user:hash",
    "/etc/distribution/hook.pem": "HOOK CA",
}
REWRITTEN = {
    ("storage", "filesystem", "rootdirectory"),
    ("http", "tls", "certificate"),
    ("http", "tls", "key"),
    ("http", "tls", "clientcas"),
    ("http", "addr"),
    ("http", "debug", "addr"),
    ("auth", "htpasswd", "path"),
    ("notifications", "endpoints"),  # holds the uploaded hook.pem path
    ("proxy", "remoteurl"),
}


def test_map_registry_config_rewrites_only_paths_addresses_and_upstream(tmp_path: Path):
    path = map_registry_config(HAND_CONFIG, HAND_UPLOADS, tmp_path, "127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3",
                               notification_url="http://127.0.0.1:4/")
    before = flatten(yaml.safe_load(HAND_CONFIG))
    after = flatten(yaml.safe_load(path.read_text()))
    for key, value in before.items():
        if key in REWRITTEN:
            continue
        assert after[key] == value, key
    assert {k for k in after if k not in before} == set()
    assert after[("storage", "tag", "concurrencylimit")] == 5  # registry:3's key stays
    mapped = yaml.safe_load(path.read_text())
    assert mapped["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "var/lib/registry")
    assert mapped["http"]["tls"]["certificate"] == str(tmp_path / "etc/distribution/certs/registry.crt")
    assert mapped["http"]["tls"]["clientcas"] == [str(tmp_path / "etc/distribution/certs/client-ca.crt")]
    assert mapped["auth"]["htpasswd"]["path"] == str(tmp_path / "etc/distribution/htpasswd")
    assert mapped["notifications"]["endpoints"][0] == {
        "name": "hook",
        "url": "http://127.0.0.1:4/",
        "certificate": str(tmp_path / "etc/distribution/hook.pem"),
    }
    assert mapped["http"]["addr"] == "127.0.0.1:1"
    assert mapped["http"]["debug"] == {
        "addr": "127.0.0.1:2",
        "prometheus": {"enabled": True, "path": "/metrics"},
    }
    assert mapped["proxy"] == {"remoteurl": "http://127.0.0.1:3", "ttl": "168h"}
    for container_path, content in HAND_UPLOADS.items():
        assert (tmp_path / container_path.lstrip("/")).read_text() == content
    assert (tmp_path / "var/lib/registry").is_dir()


def test_map_registry_config_keeps_the_programs_rendered_keys(tmp_path: Path):
    text = render_registry_config(proxy_ttl="168h", tag_concurrency_limit=5)
    path = map_registry_config(text, {}, tmp_path, "127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3")
    before, after = flatten(yaml.safe_load(text)), flatten(yaml.safe_load(path.read_text()))
    kept = {k for k in before if k not in REWRITTEN}
    assert kept, "the renderer produced nothing to compare"
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert set(after) <= set(before)


def test_map_registry_config_refuses_paths_escaping_the_root(tmp_path: Path):
    with pytest.raises(ValueError):
        map_registry_config(HAND_CONFIG, {"/etc/../../x": "no"}, tmp_path, "a:1", "a:2", "u")
    with pytest.raises(ValueError):
        map_registry_config(HAND_CONFIG, {"relative/x": "no"}, tmp_path, "a:1", "a:2", "u")


def test_registry_env_refuses_overrides_of_rewritten_keys():
    assert registry_env(["REGISTRY_HTTP_SECRET=s3=cr=t", "OTEL_SERVICE_NAME=registry"]) == {
        "REGISTRY_HTTP_SECRET": "s3=cr=t",
        "OTEL_SERVICE_NAME": "registry",
    }
    with pytest.raises(ValueError, match="REGISTRY_HTTP_ADDR"):
        registry_env(["REGISTRY_HTTP_ADDR=:5000"])


def test_registry_env_points_tracing_at_a_loopback_stand_in_or_turns_it_off():
    envs = ["OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318", "OTEL_SERVICE_NAME=r"]
    assert registry_env(envs, otlp_endpoint="http://127.0.0.1:9") == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_SERVICE_NAME": "r",
    }
    assert registry_env(envs) == {"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "r"}


def test_a_url_to_anything_but_loopback_stops_a_rehearsal_registry_before_it_starts(tmp_path: Path):
    program = render_registry_config(proxy_ttl="168h", tag_concurrency_limit=5)
    assert "https://registry-1.docker.io" in program
    config = map_registry_config(program, {}, tmp_path, "127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3")
    refuse_non_loopback_urls({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, config)
    with pytest.raises(ValueError, match=r"\['jaeger'\]"):
        refuse_non_loopback_urls({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, config)
    # a notification endpoint needs a loopback stand-in: none given, the mapping refuses;
    # a stack name given as the stand-in, the guard refuses it
    with pytest.raises(ValueError, match="notifies an endpoint"):
        map_registry_config(HAND_CONFIG, {}, tmp_path / "h", "a:1", "a:2", "http://[::1]:3")
    hooked = map_registry_config(HAND_CONFIG, {}, tmp_path / "h2", "a:1", "a:2", "http://[::1]:3",
                                 notification_url="http://hook:8080/")
    with pytest.raises(ValueError, match=r"\['hook'\]"):
        refuse_non_loopback_urls({}, hooked)
    # all of 127.0.0.0/8 is loopback; a name is accepted only when the caller resolves it itself
    refuse_non_loopback_urls({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.4:9"}, config)
    named = map_registry_config(program, {}, tmp_path / "n", "127.0.0.1:1", "127.0.0.1:2", "http://registry.hub.localhost:3")
    with pytest.raises(ValueError, match=r"\['registry.hub.localhost'\]"):
        refuse_non_loopback_urls({}, named)
    refuse_non_loopback_urls({}, named, loopback_names=["registry.hub.localhost"])


def test_otlp_stand_in_records_what_is_posted_to_it():
    import urllib.request

    with otlp_collector() as collector:
        request = urllib.request.Request(f"{collector.url}/v1/traces", data=b"abc", method="POST")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as answer:
            assert answer.status == 200
    assert collector.posts == [("/v1/traces", b"abc")]


def test_a_3_1_1_proxy_neither_needs_nor_asks_for_an_http_secret(mirror: dict[str, Any]):
    """2.8.2 warned "No HTTP secret provided" here; 3.1.1 skips the secret for a proxy, whose
    only use is signing upload state (registry/handlers/app.go `if !app.isCache`)."""
    log = mirror["process"].log()
    assert "Registry configured as a proxy cache to" in log  # the log is the mirror's
    assert "No HTTP secret provided" not in log
