"""mirrorctl against the program's registry and Prometheus, run by Debian's real binaries.

One module-scoped rehearsal, shared by every test:

- the program evaluated under mocks (`evaluate`), its registry container (config, chain,
  key, envs) run by registry 3.1.1 (rehearsal/registry3.py) as a TLS pull-through mirror of
  a local Debian docker-registry upstream (`RehearsalMirror`); images pulled through it by
  skopeo, trusting only the stack output `caCertPem`;
- Debian's Prometheus 2.42 running the program's own prometheus.yml and rules (uploads of
  the prometheus container), with only target addresses, the rule path and the intervals
  (1s) rewritten, plus one extra job `registry-v3`: a stand-in debug server exposing the
  3.x proxy and cache series with fixed values, so the CLI's arithmetic is checked against
  known numbers (the real mirror's counters move with every test's traffic);
- a fake `pulumi` on PATH printing the program's stack outputs (secrets as `[secret]`,
  as `pulumi stack output --json` prints them) with only the URLs made loopback, so the
  commands run exactly as an operator runs them: no flags.

Every command is a real `python -m mirrorctl` process. `gc` runs registry 3.1.1's real
`registry garbage-collect` on a copy of the rehearsal storage, behind a fake
`docker` that records the calls (the collector's argv and the config it reads on stdin
are exactly what mirrorctl sends to `docker run`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

import mirrorctl.registry as registry_module
from configs.registry import CERT_PATH, CONFIG_PATH
from mirrorctl.registry import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient
from mirrorctl.transport import make_client
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.http_stub import serve_http
from rehearsal.oci import CONFIG_MEDIA_TYPE, REF_NAME, ImageInfo, make_oci_image
from rehearsal.registry_proc import (
    RehearsalMirror,
    catalog,
    clean_env,
    free_port,
    http_get,
    inspect_raw,
    map_registry_config,
    mirror_binary,
    pull_through,
    registry_process,
)
from rehearsal.tls_ca import TestCa
from tests.conftest import require_tool
from tests.rehearsal.test_prometheus_rehearsal import (
    ALLOY_TARGET,
    GRAFANA_TARGET,
    JAEGER_METRICS_TARGET,
    LOKI_TARGET,
    PROMETHEUS_TARGET,
    REGISTRY_METRICS_TARGET,
    REGISTRY_PROBE_URL,
    UPSTREAM_PROBE_TARGET,
    _process,
    loopback_config,
    wait_query,
)
from tests.unit.test_mirrorctl import (
    REGISTRY,
    FakeDocker,
    assert_one_line_error,
    install_fake_pulumi,
    pulumi_calls,
    registry_container,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = "mirror.test"
REPO = "library/rehearsal"
SECOND = "library/second"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
RULES_PATH = "/etc/prometheus/rules/registry-mirror.rules.yml"
V3_JOB = "registry-v3"
ABSENT = ("grafana", "jaeger", "loki", "alloy")  # no binary here: their URLs are closed ports

# A distribution 3.x debug server's series, by the names and labels a real 3.1.1 scrape
# shows (tests/rehearsal/test_prometheus_rehearsal.py), with fixed values.
V3_SERIES = {
    ("registry_proxy_requests_total", "blob"): 40,
    ("registry_proxy_hits_total", "blob"): 30,
    ("registry_proxy_misses_total", "blob"): 10,
    ("registry_proxy_pulled_bytes_total", "blob"): 5_242_880,
    ("registry_proxy_pushed_bytes_total", "blob"): 20_971_520,
    ("registry_proxy_requests_total", "manifest"): 10,
    ("registry_proxy_hits_total", "manifest"): 4,
    ("registry_proxy_misses_total", "manifest"): 6,
    ("registry_proxy_pulled_bytes_total", "manifest"): 9_000,
    ("registry_proxy_pushed_bytes_total", "manifest"): 15_000,
    ("registry_storage_cache_requests_total", ""): 100,
    ("registry_storage_cache_hits_total", ""): 80,
}


def v3_exposition() -> bytes:
    lines: list[str] = []
    for name in dict.fromkeys(name for name, _ in V3_SERIES):
        lines.append(f"# TYPE {name} counter")
        for (series, kind), value in V3_SERIES.items():
            if series == name:
                labels = f'{{type="{kind}"}}' if kind else ""
                lines.append(f"{name}{labels} {value}")
    return ("\n".join(lines) + "\n").encode()


@contextlib.contextmanager
def v3_debug_server() -> Iterator[str]:
    body = v3_exposition()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    with serve_http(Handler) as port:
        yield f"127.0.0.1:{port}"


# ----------------------------------------------------------------------- the rehearsal


def add_image_index(layout: Path, tag: str, image: ImageInfo) -> str:
    """An OCI image index (one linux/amd64 entry: `image`) tagged `tag` in the layout."""
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    data = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    layout_index = json.loads((layout / "index.json").read_text())
    layout_index["manifests"].append(
        {
            "mediaType": OCI_INDEX,
            "digest": f"sha256:{digest}",
            "size": len(data),
            "annotations": {REF_NAME: tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(layout_index, sort_keys=True, indent=2))
    return f"sha256:{digest}"


def push_all(layout: Path, tag: str, destination: str, tmp: Path) -> None:
    """`skopeo copy --all`: an index with its images, digests preserved (plain HTTP upstream)."""
    skopeo = require_tool("skopeo")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "auth.json").write_text('{"auths": {}}')
    env = clean_env(
        {"HOME": str(tmp), "TMPDIR": str(tmp), "REGISTRY_AUTH_FILE": str(tmp / "auth.json")}
    )
    subprocess.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            f"oci:{layout}:{tag}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )


@dataclass
class Rehearsal:
    evaluation: Evaluation
    mirror: RehearsalMirror
    prometheus: str  # http://127.0.0.1:PORT
    v3_target: str  # 127.0.0.1:PORT of the v3 stand-in
    image: ImageInfo  # library/rehearsal:1.0, pulled through the mirror
    unpulled: ImageInfo  # library/rehearsal:1.1, only upstream
    index_digest: str  # library/rehearsal:multi, an OCI index, only upstream
    outputs: dict[str, Any]  # what the fake `pulumi stack output --json` prints
    pulumi_env: dict[str, str]
    pulumi_calls: Path
    bin_dir: Path
    tmp: Path

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """mirrorctl as an operator runs it: no flags, the outputs from `pulumi`."""
        return run_cli(
            "--stack",
            "dev",
            *args,
            env={**self.pulumi_env, "COLUMNS": "200", **(env or {})},
            path=[self.bin_dir],
        )

    def flags(self, ca: Path | None = None) -> list[str]:
        return ["--url", self.mirror.url, "--ca", str(ca or self.mirror.ca_file)]


def stack_outputs(
    evaluation: Evaluation, mirror: RehearsalMirror, prometheus: str
) -> dict[str, Any]:
    """The program's outputs as the CLI prints them, with only the URLs made loopback."""
    outputs = {
        k: ("[secret]" if k in evaluation.secret_outputs else v)
        for k, v in evaluation.outputs.items()
    }
    assert set(outputs["urls"]) == {"registry", "prometheus", *ABSENT}, outputs["urls"]
    outputs["registryUrl"] = mirror.url
    outputs["registryHost"] = mirror.host_port
    outputs["urls"] = {
        "registry": mirror.url,
        "prometheus": prometheus,
        **{name: f"http://127.0.0.1:{free_port()}" for name in ABSENT},
    }
    return outputs


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    prometheus_binary = require_tool("prometheus")
    require_tool("skopeo")
    tmp = tmp_path_factory.mktemp("mirrorctl")
    evaluation = evaluate({"hostname": HOSTNAME}, stack="dev")

    layout, second = tmp / "oci", tmp / "oci-second"
    image = make_oci_image(layout, [300_000, 60_000], seed=31, tag="1.0")
    unpulled = make_oci_image(layout, [40_000], seed=32, tag="1.1")
    index_digest = add_image_index(layout, "multi", image)
    make_oci_image(second, [20_000], seed=33, tag="2.0")

    with contextlib.ExitStack() as running:
        mirror = running.enter_context(
            RehearsalMirror.start(
                evaluation,
                tmp / "rehearsal",
                images=[
                    (layout, f"{REPO}:1.0"),
                    (layout, f"{REPO}:1.1"),
                    (second, f"{SECOND}:2.0"),
                ],
            )
        )
        push_all(layout, "multi", f"{mirror.upstream.host_port}/{REPO}:multi", tmp / "skopeo-index")
        pull_through(mirror.host_port, f"{REPO}:1.0", mirror.ca_dir, tmp / "pulled-1")
        pull_through(mirror.host_port, f"{SECOND}:2.0", mirror.ca_dir, tmp / "pulled-2")

        v3_target = running.enter_context(v3_debug_server())
        directory = tmp / "prometheus"
        directory.mkdir()
        uploads = evaluation.uploads("prometheus")
        rules = directory / "rules.yml"
        rules.write_text(uploads[RULES_PATH])
        address = f"127.0.0.1:{free_port()}"
        targets = {
            REGISTRY_METRICS_TARGET: mirror.debug_host_port,
            REGISTRY_PROBE_URL: f"https://localhost:{mirror.port}/v2/",
            PROMETHEUS_TARGET: address,
            # the front's probe goes through the blackbox exporter, which does not run here
            UPSTREAM_PROBE_TARGET: f"http://127.0.0.1:{free_port()}/_front/upstream",
            **{
                t: f"127.0.0.1:{free_port()}"
                for t in (JAEGER_METRICS_TARGET, LOKI_TARGET, ALLOY_TARGET, GRAFANA_TARGET)
            },
        }
        # the blackbox exporter is not run: its job reads as down, like the absent services
        config = yaml.safe_load(
            loopback_config(
                uploads[PROMETHEUS_CONFIG], targets, f"127.0.0.1:{free_port()}", str(rules)
            )
        )
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
        config["scrape_configs"].append(
            {"job_name": V3_JOB, "static_configs": [{"targets": [v3_target]}]}
        )
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=True))
        args = [
            prometheus_binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={address}",
        ]
        running.enter_context(
            _process(args, directory / "prometheus.log", f"http://{address}/-/ready")
        )
        prometheus = f"http://{address}"

        outputs = stack_outputs(evaluation, mirror, prometheus)
        calls = tmp / "pulumi-calls.txt"
        bin_dir = tmp / "bin"
        env = install_fake_pulumi(bin_dir, outputs, calls)
        yield Rehearsal(
            evaluation,
            mirror,
            prometheus,
            v3_target,
            image,
            unpulled,
            index_digest,
            outputs,
            env,
            calls,
            bin_dir,
            tmp,
        )


def other_ca(directory: Path) -> Path:
    """A root CA that signed nothing of the stack."""
    return TestCa.create(directory / "other-ca").cert_file


def closed_url(scheme: str = "https") -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


# ------------------------------------------------------------------------------ status


def test_status_reads_the_outputs_and_reports_every_service_and_prometheus_targets(
    rehearsal: Rehearsal,
) -> None:
    wait_query(rehearsal.prometheus, 'up{job="registry"} == 1')
    wait_query(rehearsal.prometheus, f'up{{job="{V3_JOB}"}} == 1')
    # 4 absent services, blackbox and the front's upstream probe (through the absent blackbox)
    wait_query(rehearsal.prometheus, "count(up == 0) == 6")
    result = rehearsal.cli("status", "--json")
    assert_one_line_error(
        result,
        "unhealthy: grafana, jaeger, loki, alloy",
        "targets down: alloy",
        "blackbox",
        "grafana",
        "jaeger",
        "loki",
        "upstream",
    )
    document = json.loads(result.stdout)
    services = {s["service"]: s for s in document["services"]}
    assert list(services) == ["registry", "prometheus", "grafana", "jaeger", "loki", "alloy"]
    assert services["registry"]["healthy"] and services["registry"]["status"] == "200"
    assert services["registry"]["check"] == f"{rehearsal.mirror.url}/v2/"
    assert services["registry"]["detail"] == "API registry/2.0"
    assert services["prometheus"]["healthy"]
    assert services["prometheus"]["check"] == f"{rehearsal.prometheus}/-/ready"
    for name in ABSENT:
        assert not services[name]["healthy"]
        assert services[name]["detail"].startswith("cannot connect to"), services[name]
    health = {(t["job"], t["instance"]): t["health"] for t in document["targets"]}
    assert health[("registry", rehearsal.mirror.debug_host_port)] == "up"
    assert health[(V3_JOB, rehearsal.v3_target)] == "up"
    assert {job for (job, _), state in health.items() if state == "down"} == {*ABSENT, "blackbox", "upstream"}
    assert (
        pulumi_calls(rehearsal.pulumi_calls)[-1][1]
        == "stack output --json --non-interactive --stack dev"
    )


def test_status_prints_tables_for_people(rehearsal: Rehearsal) -> None:
    result = rehearsal.cli("status")
    assert result.returncode == 1
    assert "Services" in result.stdout and "Prometheus targets" in result.stdout
    row = next(line for line in result.stdout.splitlines() if rehearsal.mirror.url in line)
    assert "registry" in row and "healthy" in row and "UNHEALTHY" not in row


def test_status_exits_0_when_every_service_it_was_given_is_healthy(rehearsal: Rehearsal) -> None:
    result = run_cli(
        *rehearsal.flags(), "--prometheus", rehearsal.prometheus, "status", "--no-targets"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""


def test_status_reports_the_registry_unhealthy_when_only_another_ca_is_trusted(
    rehearsal: Rehearsal,
    tmp_path: Path,
) -> None:
    result = run_cli(*rehearsal.flags(other_ca(tmp_path)), "status", "--json")
    assert_one_line_error(result, "unhealthy: registry")
    [registry] = json.loads(result.stdout)["services"]
    assert registry["detail"].startswith(
        f"TLS verification of {rehearsal.mirror.url}/v2/ failed (trusting only --ca "
    )
    assert "unable to get local issuer certificate" in registry["detail"]


# --------------------------------------------------------------------- catalog and tags


def test_catalog_lists_what_the_mirror_cached(rehearsal: Rehearsal) -> None:
    result = rehearsal.cli("catalog", "--json")
    assert result.returncode == 0, result.stderr
    repositories = json.loads(result.stdout)["repositories"]
    assert repositories == [REPO, SECOND]
    assert repositories == catalog(rehearsal.mirror.url, context=rehearsal.mirror.ssl_context())
    people = rehearsal.cli("catalog")
    assert people.stdout.splitlines() == [REPO, SECOND]
    assert people.stderr.strip() == f"2 repositories in {rehearsal.mirror.url}"


def test_catalog_follows_the_registrys_link_header_page_by_page(
    rehearsal: Rehearsal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "PAGE_SIZE", 1)
    requested: list[str] = []
    with make_client(rehearsal.mirror.ca_file.read_text(), 10.0) as client:
        client.event_hooks["request"].append(lambda request: requested.append(str(request.url)))
        repositories = RegistryClient(rehearsal.mirror.url, client).catalog()
    assert repositories == [REPO, SECOND]
    assert requested[0] == f"{rehearsal.mirror.url}/v2/_catalog?n=1"
    assert f"{rehearsal.mirror.url}/v2/_catalog?last=library%2Frehearsal&n=1" in requested


def test_tags_asks_upstream_through_the_mirror(rehearsal: Rehearsal) -> None:
    result = rehearsal.cli("tags", "rehearsal", "--json")  # Docker Hub rule: library/rehearsal
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["repository"] == REPO
    _, _, body = http_get(f"{rehearsal.mirror.upstream.url}/v2/{REPO}/tags/list")
    assert document["tags"] == json.loads(body)["tags"]
    assert set(document["tags"]) == {"1.0", "1.1", "multi"}  # 1.1 was never pulled


def test_tags_of_an_unknown_repository_is_one_line(rehearsal: Rehearsal) -> None:
    result = rehearsal.cli("tags", "library/absent")
    assert_one_line_error(result, "unknown repository 'library/absent'", "NAME_UNKNOWN")
    assert result.stdout == ""


# ---------------------------------------------------------------------------- manifest


def test_manifest_serves_the_bytes_skopeo_reads_and_hash_to_the_pushed_digest(
    rehearsal: Rehearsal,
) -> None:
    raw = rehearsal.cli("manifest", REPO, "1.0", "--raw")
    assert raw.returncode == 0, raw.stderr
    assert (
        "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest()
        == rehearsal.image.manifest_digest
    )
    skopeo = inspect_raw(
        f"{rehearsal.mirror.host_port}/{REPO}:1.0",
        ca_dir=rehearsal.mirror.ca_dir,
        tmp=rehearsal.tmp / "skopeo-inspect",
    )
    assert raw.stdout.encode() == skopeo
    result = rehearsal.cli("manifest", REPO, "1.0", "--json")
    document = json.loads(result.stdout)
    assert document["media_type"] == OCI_MANIFEST
    assert document["digest"] == rehearsal.image.manifest_digest
    assert document["size"] == rehearsal.image.manifest_size
    assert document["manifest"]["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["digest"] for layer in document["manifest"]["layers"]] == list(
        rehearsal.image.layer_digests
    )


def test_manifest_asks_for_indexes_so_a_multi_arch_tag_answers_with_its_index(
    rehearsal: Rehearsal,
) -> None:
    result = rehearsal.cli("manifest", REPO, "multi", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["media_type"] == OCI_INDEX
    assert document["digest"] == rehearsal.index_digest
    assert [m["digest"] for m in document["manifest"]["manifests"]] == [
        rehearsal.image.manifest_digest
    ]
    # why mirrorctl asks for indexes: a registry that serves its own content refuses an
    # index to a client accepting image manifests only (the 2.8.2 upstream answers 404) ...
    accept = {"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"}
    refused = httpx.get(f"{rehearsal.mirror.upstream.url}/v2/{REPO}/manifests/multi", headers=accept, timeout=10)
    assert refused.status_code == 404, refused.text
    assert (
        refused.json()["errors"][0]["message"]
        == "OCI index found, but accept header does not support OCI indexes"
    )
    # ... while 3.1.1's proxy path hands the index over whatever the client accepts
    with make_client(rehearsal.mirror.ca_file.read_text(), 10.0) as client:
        proxied = client.get(f"{rehearsal.mirror.url}/v2/{REPO}/manifests/multi", headers=accept)
    assert proxied.status_code == 200
    assert proxied.headers["content-type"] == OCI_INDEX


def test_manifest_by_digest_and_for_people(rehearsal: Rehearsal) -> None:
    result = rehearsal.cli("manifest", "rehearsal", rehearsal.image.manifest_digest)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["layers"][0]["digest"] == rehearsal.image.layer_digests[0]
    assert f"digest      {rehearsal.image.manifest_digest}" in result.stderr
    assert f"media type  {OCI_MANIFEST}" in result.stderr


def test_manifest_of_an_unknown_tag_is_one_line(rehearsal: Rehearsal) -> None:
    assert_one_line_error(
        rehearsal.cli("manifest", REPO, "9.9"),
        "no manifest '9.9' in 'library/rehearsal' (MANIFEST_UNKNOWN)",
    )


def test_registry_down_is_one_line(rehearsal: Rehearsal) -> None:
    url = closed_url()
    result = run_cli("--url", url, "--ca", str(rehearsal.mirror.ca_file), "catalog")
    assert_one_line_error(result, f"cannot connect to {url}/v2/_catalog", "Connection refused")


def test_wrong_ca_is_one_line(rehearsal: Rehearsal, tmp_path: Path) -> None:
    result = run_cli(*rehearsal.flags(other_ca(tmp_path)), "tags", REPO)
    assert_one_line_error(
        result,
        f"TLS verification of {rehearsal.mirror.url}/v2/{REPO}/tags/list",
        "failed",
        "unable to get local issuer certificate",
    )


# ----------------------------------------------------------------------------- metrics


def debug_counters(rehearsal: Rehearsal) -> dict[str, float]:
    """The proxy and cache counters, read straight off the real mirror's debug port."""
    _, _, body = http_get(f"{rehearsal.mirror.debug_url}/metrics")
    pattern = re.compile(r'^(registry_(?:proxy|storage_cache)_\w+_total)(?:\{type="(\w+)"\})? (\S+)$')
    return {
        f"{m[1]}{{{m[2]}}}" if m[2] else m[1]: float(m[3])
        for line in body.decode().splitlines()
        if (m := pattern.match(line))
    }


def test_metrics_reads_the_real_3_1_1_proxy_and_cache_series(rehearsal: Rehearsal) -> None:
    counters = debug_counters(rehearsal)
    assert counters["registry_proxy_requests_total{blob}"] > 0  # the fixture's cold pulls
    requests = counters["registry_storage_cache_requests_total"]
    wait_query(
        rehearsal.prometheus,
        f'sum(registry_storage_cache_requests_total{{job="registry"}}) >= {requests}',
    )
    result = rehearsal.cli("metrics", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["storage_cache"]["series"] == "registry_storage_cache_{requests,hits}_total"
    assert document["storage_cache"]["requests"] >= requests
    for kind in ("blob", "manifest"):
        # the blob cold pulls were misses fetched upstream; a counter only grows
        values = document["proxy"][kind]
        assert values["misses"] >= counters[f"registry_proxy_misses_total{{{kind}}}"] > 0
        assert values["pulled_bytes"] >= counters[f"registry_proxy_pulled_bytes_total{{{kind}}}"] > 0
    people = rehearsal.cli("metrics")
    assert "Pull-through cache: no data" not in people.stdout


def test_metrics_reads_the_v3_proxy_and_cache_names(rehearsal: Rehearsal) -> None:
    wait_query(rehearsal.prometheus, f'registry_proxy_requests_total{{job="{V3_JOB}"}}')
    result = rehearsal.cli("metrics", "--job", V3_JOB, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    for kind in ("blob", "manifest"):
        values = document["proxy"][kind]
        for counter in ("requests", "hits", "misses", "pulled_bytes", "pushed_bytes"):
            assert values[counter] == V3_SERIES[(f"registry_proxy_{counter}_total", kind)], (
                kind,
                counter,
            )
        assert values["hit_ratio"] == pytest.approx(
            V3_SERIES[("registry_proxy_hits_total", kind)]
            / V3_SERIES[("registry_proxy_requests_total", kind)]
        )
    cache = document["storage_cache"]
    assert cache["series"] == "registry_storage_cache_{requests,hits}_total"
    assert (cache["requests"], cache["hits"]) == (100, 80)
    people = rehearsal.cli("metrics", "--job", V3_JOB)
    row = next(
        line for line in people.stdout.splitlines() if line.strip().lstrip("│ ").startswith("blob")
    )
    assert "75.0%" in row and "5.0 MiB" in row and "20.0 MiB" in row


def test_metrics_window_is_a_valid_increase_query(rehearsal: Rehearsal) -> None:
    wait_query(
        rehearsal.prometheus,
        f'count_over_time(registry_proxy_requests_total{{job="{V3_JOB}"}}[1m]) >= 3',
    )
    result = rehearsal.cli("metrics", "--job", V3_JOB, "--window", "1m", "--json")
    assert result.returncode == 0, result.stderr
    blob = json.loads(result.stdout)["proxy"]["blob"]
    assert blob["requests"] == 0 and blob["hit_ratio"] is None  # constant counters: no increase


def test_metrics_errors_are_one_line(rehearsal: Rehearsal) -> None:
    assert_one_line_error(
        rehearsal.cli("metrics", "--window", "yesterday"), "invalid window 'yesterday'"
    )
    url = closed_url("http")
    assert_one_line_error(
        run_cli("--prometheus", url, "metrics"), f"cannot connect to {url}/api/v1/query"
    )


# ------------------------------------------------------------------------ verify-certs


def pem_certs(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def test_verify_certs_reports_the_verified_chain_sans_and_days_left(rehearsal: Rehearsal) -> None:
    before = datetime.datetime.now(datetime.UTC)
    result = rehearsal.cli("verify-certs", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    leaf, intermediate = pem_certs(rehearsal.mirror.uploads[CERT_PATH])
    [root] = pem_certs(rehearsal.evaluation.outputs["caCertPem"])
    expected = [leaf, intermediate, root]
    chain = document["chain"]
    assert [c["subject"] for c in chain] == [c.subject.rfc4514_string() for c in expected]
    assert [c["issuer"] for c in chain] == [c.issuer.rfc4514_string() for c in expected]
    assert [c["sha256"] for c in chain] == [c.fingerprint(hashes.SHA256()).hex() for c in expected]
    assert [c["sent_by_server"] for c in chain] == [True, True, False]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert document["sans"]["dns"] == san.get_values_for_type(x509.DNSName)
    assert document["sans"]["ip"] == [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert {HOSTNAME, "localhost", "registry"} <= set(
        document["sans"]["dns"]
    ) and "127.0.0.1" in document["sans"]["ip"]
    days = (leaf.not_valid_after_utc - before).total_seconds() // 86400
    assert chain[0]["days_left"] in (days, days - 1)
    assert document["min_days_left"] == min(c["days_left"] for c in chain)
    assert document["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_verify_certs_chain_matches_what_openssl_sees(rehearsal: Rehearsal) -> None:
    openssl = require_tool("openssl")
    shown = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            rehearsal.mirror.host_port,
            "-servername",
            "127.0.0.1",
            "-CAfile",
            str(rehearsal.mirror.ca_file),
            "-verify_return_error",
            "-showcerts",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert "Verify return code: 0 (ok)" in shown.stdout, shown.stdout + shown.stderr
    sent = [
        c.subject.rfc4514_string()
        for c in x509.load_pem_x509_certificates(
            "".join(
                re.findall(
                    r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                    shown.stdout,
                    flags=re.S,
                )
            ).encode()
        )
    ]
    document = json.loads(rehearsal.cli("verify-certs", "--json").stdout)
    assert [c["subject"] for c in document["chain"] if c["sent_by_server"]] == sent


def test_verify_certs_with_another_ca_is_one_line(rehearsal: Rehearsal, tmp_path: Path) -> None:
    result = run_cli(*rehearsal.flags(other_ca(tmp_path)), "verify-certs")
    assert_one_line_error(
        result,
        f"TLS verification of {rehearsal.mirror.host_port} failed (trusting only --ca",
        "unable to get local issuer certificate",
    )


def test_verify_certs_fails_when_a_certificate_has_fewer_days_than_asked(
    rehearsal: Rehearsal,
) -> None:
    result = rehearsal.cli("verify-certs", "--min-days", "100000")
    line = assert_one_line_error(result, "(< 100000): run `make up` to renew it")
    assert "Chain (leaf first)" in result.stdout  # the report is still printed
    assert re.search(r"expires in \d+ days", line)


def test_verify_certs_of_a_closed_port_is_one_line(rehearsal: Rehearsal) -> None:
    url = closed_url()
    result = run_cli("--url", url, "--ca", str(rehearsal.mirror.ca_file), "verify-certs")
    assert_one_line_error(result, f"cannot connect to {url.removeprefix('https://')}")


# ---------------------------------------------------------------------------------- gc


def blob_digests(storage: Path) -> set[str]:
    blobs = storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {f"sha256:{p.parent.name}" for p in blobs.glob("*/*/data")}


def test_gc_runs_the_real_collector_on_the_program_config_behind_the_docker_calls(
    rehearsal: Rehearsal,
    tmp_path: Path,
) -> None:
    """dry run: nothing deleted, the orphan listed; --apply: only the orphan deleted."""
    gc_root = tmp_path / "gc"
    storage = gc_root / "var" / "lib" / "registry"  # configs/registry.py STORAGE_ROOT, mapped
    shutil.copytree(rehearsal.mirror.storage, storage)
    in_use = blob_digests(storage)
    assert (
        rehearsal.image.manifest_digest in in_use and set(rehearsal.image.layer_digests) <= in_use
    )
    orphan_data = b"a blob no manifest references\n"
    orphan = "sha256:" + hashlib.sha256(orphan_data).hexdigest()
    orphan_dir = storage / "docker/registry/v2/blobs/sha256" / orphan[7:9] / orphan[7:]
    orphan_dir.mkdir(parents=True)
    (orphan_dir / "data").write_bytes(orphan_data)

    fake = FakeDocker(tmp_path / "docker")
    fake.write(
        {
            "containers": {
                REGISTRY: registry_container(
                    files={CONFIG_PATH: rehearsal.mirror.uploads[CONFIG_PATH]}
                )
            },
            "gc": {
                "root": str(gc_root),
                "registry_bin": mirror_binary(),
                "pythonpath": str(ROOT),
            },
        }
    )

    def gc(*args: str) -> dict[str, Any]:
        result = run_cli(
            "--stack", "dev", "gc", "--json", *args, env=fake.env(), path=[fake.bin_dir]
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    dry = gc()
    assert (dry["dry_run"], dry["registry_stopped"]) == (True, False)
    assert dry["marked"] == len(in_use)
    assert (dry["eligible_blobs"], dry["eligible_manifests"], dry["eligible"]) == (1, 0, [orphan])
    assert blob_digests(storage) == in_use | {orphan}
    collector = fake.calls()[-1]
    assert (
        collector["stdin"] == rehearsal.mirror.uploads[CONFIG_PATH]
    )  # the program's config, as rendered

    applied = gc("--apply")
    assert (applied["dry_run"], applied["registry_stopped"], applied["eligible"]) == (
        False,
        True,
        [orphan],
    )
    assert blob_digests(storage) == in_use
    assert fake.commands() == ["inspect", "cp", "run", "inspect", "cp", "stop", "run", "start"]

    assert gc()["eligible"] == []


def test_read_only_mode_does_not_stop_a_pull_through_cache_from_writing(
    rehearsal: Rehearsal, tmp_path: Path
) -> None:
    """Why `gc --apply` stops the registry instead of switching it to read-only.

    With `storage.maintenance.readonly.enabled` (here by the env override distribution
    documents), client writes are refused, but a pull still makes the proxy store what it
    fetched: a collection running then could sweep blobs a manifest being cached needs.
    """
    mirror = rehearsal.mirror
    uploads = mirror.uploads
    api, debug = free_port(), free_port()
    config = map_registry_config(
        uploads[CONFIG_PATH],
        uploads,
        tmp_path / "container",
        addr=f"127.0.0.1:{api}",
        debug_addr=f"127.0.0.1:{debug}",
        upstream_url=mirror.upstream.url,
    )
    storage = Path(yaml.safe_load(config.read_text())["storage"]["filesystem"]["rootdirectory"])
    env = {**mirror.env, "REGISTRY_STORAGE_MAINTENANCE_READONLY": '{"enabled": true}'}

    def start_upload(host_port: str) -> tuple[int, str]:
        request = urllib.request.Request(
            f"https://{host_port}/v2/{REPO}/blobs/uploads/", method="POST", data=b""
        )
        try:
            with urllib.request.urlopen(
                request, context=mirror.ssl_context(), timeout=10
            ) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    with registry_process(
        config,
        binary=mirror_binary(),
        log_path=tmp_path / "registry.log",
        probe_url=f"https://127.0.0.1:{api}/v2/",
        env=env,
        ssl_context=mirror.ssl_context(),
    ):
        # read-only is on: no upload route at all (the running mirror answers UNSUPPORTED)
        assert start_upload(f"127.0.0.1:{api}") == (405, "Method not allowed\n")
        assert start_upload(mirror.host_port)[1].startswith('{"errors":[{"code":"UNSUPPORTED"')
        pull_through(f"127.0.0.1:{api}", f"{REPO}:1.0", mirror.ca_dir, tmp_path / "pulled")
        wanted = {rehearsal.image.manifest_digest, *rehearsal.image.blob_digests}
        deadline = time.monotonic() + 20
        while not wanted <= blob_digests(storage) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert wanted <= blob_digests(storage), (
        "a read-only pull-through cache still wrote what it fetched"
    )


# ---------------------------------------------------------------------------- Makefile


def test_make_catalog_runs_mirrorctl_against_the_registry(rehearsal: Rehearsal) -> None:
    make = require_tool("make")
    flags = " ".join(rehearsal.flags())
    result = subprocess.run(
        [
            make,
            "--no-print-directory",
            "-s",
            "-C",
            str(ROOT),
            "catalog",
            f"PYTHON={sys.executable}",
            f"MIRRORCTL_FLAGS={flags}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(rehearsal.tmp),
            "COLUMNS": "200",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [REPO, SECOND]
