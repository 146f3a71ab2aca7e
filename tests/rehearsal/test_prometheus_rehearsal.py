"""Rehearsal: the rendered Prometheus, rules and blackbox files in Debian's real binaries.

- `promtool check config` / `check rules` accept what configs/prometheus.py renders.
- Debian's `prometheus` (2.42) runs the rendered prometheus.yml with only the target
  addresses and the rule path rewritten to loopback, scrapes a running registry 3.1.1 (the
  pinned image's binary, rehearsal/registry3.py) debug server and a running blackbox
  exporter: `up{job="registry"} == 1` via the HTTP API.
- Debian's `prometheus-blackbox-exporter` runs the rendered module against the registry's TLS
  port, trusting only the rehearsal root CA: `probe_success 1`, and
  `probe_ssl_earliest_cert_expiry` is the earliest NotAfter of the chain the PKI made.
- Every metric name the dashboard and the alert rules use was seen in those real scrapes
  (Prometheus's own `__name__` index), after an image was pulled through the mirror twice
  (the proxy and cache counters appear only with traffic).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from configs.blackbox import MODULE, render_blackbox_config
from configs.grafana import CACHE_METRIC_PREFIX
from configs.prometheus import CONFIG_PATH, REDIRECTS_REFUSED, RULES_PATH, render_alert_rules
from configs.registry import CERT_PATH, KEY_PATH, render_registry_config
from rehearsal.fakes.program import evaluate
from rehearsal.fakes.tls import (
    CERT_REQUEST,
    LOCALLY_SIGNED_CERT,
    PRIVATE_KEY,
    SELF_SIGNED_CERT,
    fake_tls_resource,
)
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import (
    START_TIMEOUT,
    ca_context,
    free_port,
    http_get,
    map_registry_config,
    mirror_binary,
    pull_through,
    push,
    registry_process,
    start_upstream,
    stop_process,
    write_ca_dir,
)
from tests.conftest import require_tool
from tests.rehearsal.test_dashboard_queries import (
    alert_promql,
    dashboard_promql,
    promql_metric_names,
)

PROMTOOL_TIMEOUT = 30

# The scrape targets and probe URL as the services' images and docs name them (alias:port on
# the stack's network), written out here and not taken from the code under test.
REGISTRY_METRICS_TARGET = "registry:5001"
REGISTRY_PROBE_URL = "https://registry:5000/v2/"
PROMETHEUS_TARGET = "localhost:9090"
JAEGER_METRICS_TARGET = "jaeger:8888"
LOKI_TARGET = "loki:3100"
ALLOY_TARGET = "alloy:12345"
GRAFANA_TARGET = "grafana:3000"
BLACKBOX_ADDRESS = "blackbox:9115"
# the upstream front's probe target; no front runs in this stack (its probe is rehearsed in
# test_upstream_monitoring.py), so it points at a closed port: the upstream reads as down
UPSTREAM_PROBE_TARGET = "http://registry-front:8080/_front/upstream"


@functools.cache
def render_prometheus_config(tracing: bool = True, logging: bool = True) -> str:
    """prometheus.yml as the whole program (under mocks) uploads it for these switches."""
    ev = evaluate({"installTrust": "false", "tracing": str(tracing).lower(),
                   "logging": str(logging).lower()}, stack="promrehearsal")
    return ev.uploads("prometheus")[CONFIG_PATH]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, check=False, cwd=cwd)


# ---------------------------------------------------------------------------------------
# promtool


@pytest.mark.parametrize(("tracing", "logging"), [(True, True), (False, False)])
def test_promtool_accepts_the_rendered_config_syntax(tmp_path: Path, tracing: bool, logging: bool) -> None:
    promtool = require_tool("promtool")
    path = tmp_path / "prometheus.yml"
    path.write_text(render_prometheus_config(tracing=tracing, logging=logging))
    result = _run([promtool, "check", "config", "--syntax-only", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid prometheus config file syntax" in result.stdout


def test_promtool_checks_the_config_with_its_rules_file_laid_next_to_it(tmp_path: Path) -> None:
    """Full check (not --syntax-only): promtool opens the rule file and parses every rule."""
    promtool = require_tool("promtool")
    rules_name = Path(RULES_PATH).name
    (tmp_path / rules_name).write_text(render_alert_rules())
    config = yaml.safe_load(render_prometheus_config())
    assert config["rule_files"] == [RULES_PATH]
    config["rule_files"] = [rules_name]  # only the rule path is rewritten
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    assert "SUCCESS: 7 rules found" in output


def test_promtool_full_config_check_fails_when_the_rules_file_is_missing(tmp_path: Path) -> None:
    """The check above can fail: the same config without its rules file is refused."""
    promtool = require_tool("promtool")
    config = yaml.safe_load(render_prometheus_config())
    config["rule_files"] = [Path(RULES_PATH).name]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path)
    assert result.returncode != 0


@pytest.mark.parametrize("days", [14, 30])
def test_promtool_accepts_the_alert_rules(tmp_path: Path, days: int) -> None:
    promtool = require_tool("promtool")
    path = tmp_path / "rules.yml"
    path.write_text(render_alert_rules(cert_expiry_days=days))
    result = _run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


# ---------------------------------------------------------------------------------------
# the rehearsal registry: configs/registry.py's config in registry 3.1.1, as a TLS
# pull-through mirror of a local upstream, with the PKI shape of components/pki.py


@dataclass(frozen=True)
class Pki:
    """Root CA -> intermediate CA -> server certificate, made by the pulumi-tls fake."""

    root_pem: str
    chain_pem: str  # leaf + intermediate, as http.tls.certificate wants it
    key_pem: str
    leaf_not_after: int  # unix seconds
    intermediate_not_after: int


def _not_after(pem: str) -> int:
    return int(x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc.timestamp())


def make_pki(leaf_hours: int, intermediate_hours: int) -> Pki:
    """The chain components/pki.py asks pulumi-tls for (ECDSA P256, its uses and SANs)."""

    def key() -> str:
        _, state = fake_tls_resource(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
        return str(state["privateKeyPem"])

    def csr(key_pem: str, common_name: str, dns: list[str], ips: list[str]) -> str:
        inputs = {
            "privateKeyPem": key_pem,
            "subject": {"commonName": common_name},
            "dnsNames": dns,
            "ipAddresses": ips,
        }
        return str(fake_tls_resource(CERT_REQUEST, inputs)[1]["certRequestPem"])

    ca_uses = ["cert_signing", "crl_signing", "digital_signature"]
    root_key, inter_key, leaf_key = key(), key(), key()
    _, root = fake_tls_resource(
        SELF_SIGNED_CERT,
        {
            "privateKeyPem": root_key,
            "subject": {"commonName": "Rehearsal Root CA"},
            "isCaCertificate": True,
            "maxPathLength": 1,
            "setSubjectKeyId": True,
            "allowedUses": ca_uses,
            "validityPeriodHours": 87600,
        },
    )
    _, inter = fake_tls_resource(
        LOCALLY_SIGNED_CERT,
        {
            "certRequestPem": csr(inter_key, "Rehearsal Intermediate CA", [], []),
            "caPrivateKeyPem": root_key,
            "caCertPem": root["certPem"],
            "isCaCertificate": True,
            "maxPathLength": 0,
            "setSubjectKeyId": True,
            "allowedUses": ca_uses,
            "validityPeriodHours": intermediate_hours,
        },
    )
    # settings.py gives the server certificate these SANs (plus the configured hostname)
    leaf_csr = csr(leaf_key, "mirror.test", ["mirror.test", "localhost", "registry"], ["127.0.0.1"])
    _, leaf = fake_tls_resource(
        LOCALLY_SIGNED_CERT,
        {
            "certRequestPem": leaf_csr,
            "caPrivateKeyPem": inter_key,
            "caCertPem": inter["certPem"],
            "allowedUses": ["digital_signature", "key_encipherment", "server_auth"],
            "validityPeriodHours": leaf_hours,
        },
    )
    return Pki(
        root_pem=str(root["certPem"]),
        chain_pem=str(leaf["certPem"]) + str(inter["certPem"]),
        key_pem=leaf_key,
        leaf_not_after=_not_after(str(leaf["certPem"])),
        intermediate_not_after=_not_after(str(inter["certPem"])),
    )


@dataclass(frozen=True)
class Mirror:
    api: str  # 127.0.0.1:PORT, TLS
    debug: str  # 127.0.0.1:PORT, plain HTTP metrics
    ca_file: Path
    upstream: str  # 127.0.0.1:PORT of the plain-HTTP upstream

    @property
    def probe_url(self) -> str:
        """`https://registry:5000/v2/` with only the address made loopback (SAN localhost)."""
        return f"https://localhost:{self.api.rsplit(':', 1)[1]}/v2/"


@contextlib.contextmanager
def tls_mirror(tmp: Path, pki: Pki) -> Iterator[Mirror]:
    binary = mirror_binary()
    tmp.mkdir(parents=True, exist_ok=True)
    ca_file = tmp / "ca.crt"
    ca_file.write_text(pki.root_pem)
    with start_upstream(tmp) as upstream:
        api, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        config = map_registry_config(
            render_registry_config(proxy_ttl="168h", tag_concurrency_limit=5),
            {CERT_PATH: pki.chain_pem, KEY_PATH: pki.key_pem},
            tmp / "mirror",
            addr=api,
            debug_addr=debug,
            upstream_url=upstream.url,
        )
        with registry_process(
            config,
            binary=binary,
            log_path=tmp / "mirror" / "registry.log",
            probe_url=f"https://{api}/v2/",
            ssl_context=ca_context(ca_file),
        ):
            yield Mirror(api=api, debug=debug, ca_file=ca_file, upstream=upstream.host_port)


def _registry_traffic(mirror: Mirror, tmp: Path) -> None:
    """Traffic that makes every registry series the dashboard and rules use exist: a cold
    pull (proxy misses, pulled and pushed bytes), a warm pull (proxy hits, blob-descriptor
    cache hits), and 404s."""
    context = ca_context(mirror.ca_file)
    http_get(f"https://{mirror.api}/v2/", context=context)
    for path in ("library/absent/manifests/latest", f"library/absent/blobs/sha256:{'0' * 64}"):
        with pytest.raises(urllib.error.HTTPError) as answer:
            http_get(f"https://{mirror.api}/v2/{path}", context=context)
        assert answer.value.code == 404
    make_oci_image(tmp / "image", [200_000, 30_000], seed=41, tag="1.0")
    push(tmp / "image", f"{mirror.upstream}/library/traffic:1.0", tag="1.0")
    ca_dir = write_ca_dir(tmp / "trust", mirror.ca_file.read_text())
    pull_through(mirror.api, "library/traffic:1.0", ca_dir, tmp / "cold")
    time.sleep(0.5)  # the cache write may trail the client's last byte
    pull_through(mirror.api, "library/traffic:1.0", ca_dir, tmp / "warm")


# ---------------------------------------------------------------------------------------
# blackbox exporter and prometheus processes


@contextlib.contextmanager
def _process(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run a binary until the block exits; ready when `ready_url` answers 200."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{args[0]} exited early:\n{log.read_text()}")
            try:
                http_get(ready_url, timeout=1.0)
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{ready_url}: {error!r}\n{log.read_text()}") from error
                time.sleep(0.1)
        yield process
    finally:
        stop_process(process)


@contextlib.contextmanager
def blackbox_exporter(directory: Path, ca_file: Path) -> Iterator[str]:
    """Debian's blackbox exporter with the rendered module; yields its base URL."""
    binary = require_tool("prometheus-blackbox-exporter")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text(render_blackbox_config(ca_file=str(ca_file)))
    address = f"127.0.0.1:{free_port()}"
    args = [binary, f"--config.file={config}", f"--web.listen-address={address}"]
    with _process(args, directory / "blackbox.log", f"http://{address}/-/healthy"):
        yield f"http://{address}"


def probe(blackbox: str, target: str) -> dict[str, float]:
    """One /probe of the rendered module: the unlabelled samples, by metric name."""
    query = urllib.parse.urlencode({"module": MODULE, "target": target})
    _, _, body = http_get(f"{blackbox}/probe?{query}", timeout=10.0)
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            samples[name] = float(value)
    return samples


def loopback_config(rendered: str, targets: dict[str, str], blackbox_address: str, rules_path: str) -> str:
    """The rendered prometheus.yml with only target addresses and the rule path rewritten."""
    config = yaml.safe_load(rendered)
    original = copy.deepcopy(config)
    config["rule_files"] = [rules_path]
    rendered_targets = {t for job in config["scrape_configs"] for g in job["static_configs"] for t in g["targets"]}
    assert rendered_targets <= set(targets), f"targets the rehearsal does not know: {rendered_targets - set(targets)}"
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [targets[target] for target in group["targets"]]
        for step in job.get("relabel_configs", []):
            if step.get("target_label") == "__address__":
                assert step["replacement"] == BLACKBOX_ADDRESS
                step["replacement"] = blackbox_address
    # nothing else changed: undo the rewrites and compare with the rendered file
    undone = copy.deepcopy(config)
    undone["rule_files"] = original["rule_files"]
    for job, rendered_job in zip(undone["scrape_configs"], original["scrape_configs"], strict=True):
        job["static_configs"] = rendered_job["static_configs"]
        if "relabel_configs" in job:
            job["relabel_configs"] = rendered_job["relabel_configs"]
    assert undone == original
    return yaml.safe_dump(config, sort_keys=True)


def prom_query(base: str, query: str) -> list[dict[str, Any]]:
    _, _, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    document = json.loads(body)
    assert document["status"] == "success", document
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


def wait_query(base: str, query: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll an instant query until it returns a non-empty vector."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = prom_query(base, query)
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"no result for {query!r} after {timeout}s (last: {last})")


@dataclass(frozen=True)
class Stack:
    pki: Pki
    mirror: Mirror
    blackbox: str  # base URL
    prometheus: str  # base URL
    absent_jobs: frozenset[str]  # jobs whose service has no binary here: nothing listens


# Jobs of services that cannot run here; their targets point at closed loopback ports.
ABSENT_JOBS = frozenset({"jaeger", "loki", "alloy", "grafana"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    require_tool("prometheus-blackbox-exporter")
    require_tool("skopeo")
    tmp = tmp_path_factory.mktemp("prometheus-stack")
    # the leaf expires in 10 days: inside the 14-day alert window, before the intermediate
    pki = make_pki(leaf_hours=240, intermediate_hours=720)
    with contextlib.ExitStack() as running:
        mirror = running.enter_context(tls_mirror(tmp / "registry", pki))
        _registry_traffic(mirror, tmp / "traffic")
        blackbox = running.enter_context(blackbox_exporter(tmp / "blackbox", mirror.ca_file))

        directory = tmp / "prometheus"
        directory.mkdir()
        rules = directory / "registry-mirror.rules.yml"
        rules.write_text(render_alert_rules())
        address = f"127.0.0.1:{free_port()}"
        targets = {
            REGISTRY_METRICS_TARGET: mirror.debug,
            REGISTRY_PROBE_URL: mirror.probe_url,
            PROMETHEUS_TARGET: address,
            **{target: f"127.0.0.1:{free_port()}" for target in ABSENT_TARGETS},
            UPSTREAM_PROBE_TARGET: f"http://127.0.0.1:{free_port()}/_front/upstream",
        }
        faster = yaml.safe_load(render_prometheus_config())
        faster["global"]["scrape_interval"] = faster["global"]["evaluation_interval"] = "1s"
        rendered = yaml.safe_dump(faster)
        config = directory / "prometheus.yml"
        config.write_text(loopback_config(rendered, targets, blackbox.removeprefix("http://"), str(rules)))
        args = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={address}",
        ]
        running.enter_context(_process(args, directory / "prometheus.log", f"http://{address}/-/ready"))
        yield Stack(pki, mirror, blackbox, f"http://{address}", ABSENT_JOBS)


ABSENT_TARGETS = (JAEGER_METRICS_TARGET, LOKI_TARGET, ALLOY_TARGET, GRAFANA_TARGET)


# ---------------------------------------------------------------------------------------
# the running rehearsal


def test_every_scraped_target_declares_a_content_type_prometheus_v3_parses(stack: Stack) -> None:
    """Why no `fallback_scrape_protocol` is rendered.

    Prometheus v3 uses it only "if a scrape returns blank, unparsable, or otherwise invalid
    Content-Type" (Prometheus's configuration docs, `<scrape_config>`; source in
    docs/upstream-references.md). The registry's debug server, the blackbox exporter and
    Prometheus all answer through promhttp with the text format's own type, which v3 parses
    as PrometheusText0.0.4.
    """
    for url in (
        f"http://{stack.mirror.debug}/metrics",
        f"{stack.blackbox}/probe?module={MODULE}&target={stack.mirror.probe_url}",
        f"{stack.prometheus}/metrics",
    ):
        _, headers, _ = http_get(url)
        content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
        assert content_type.startswith("text/plain; version=0.0.4"), (url, content_type)


def test_prometheus_scrapes_the_running_registry_up_is_1(stack: Stack) -> None:
    [sample] = wait_query(stack.prometheus, 'up{job="registry"} == 1')
    assert sample["metric"]["instance"] == stack.mirror.debug
    assert sample["value"][1] == "1"


def test_prometheus_scrapes_itself(stack: Stack) -> None:
    wait_query(stack.prometheus, 'up{job="prometheus"} == 1')


def test_blackbox_job_relabels_the_probe_url_into_target_and_instance(stack: Stack) -> None:
    [sample] = wait_query(stack.prometheus, 'probe_success{job="blackbox"} == 1')
    assert sample["metric"]["instance"] == stack.mirror.probe_url
    _, _, body = http_get(f"{stack.prometheus}/api/v1/targets?state=active")
    [target] = [t for t in json.loads(body)["data"]["activeTargets"] if t["labels"]["job"] == "blackbox"]
    scrape = urllib.parse.urlsplit(target["scrapeUrl"])
    assert f"http://{scrape.netloc}" == stack.blackbox
    assert scrape.path == "/probe"
    assert urllib.parse.parse_qs(scrape.query) == {
        "module": [MODULE],
        "target": [stack.mirror.probe_url],
    }
    assert target["health"] == "up"


def test_prometheus_sees_the_chain_expiry_the_pki_made(stack: Stack) -> None:
    [sample] = wait_query(stack.prometheus, 'probe_ssl_earliest_cert_expiry{job="blackbox"}')
    assert float(sample["value"][1]) == stack.pki.leaf_not_after


def test_services_without_a_process_read_as_down_and_trip_target_down(stack: Stack) -> None:
    def down_jobs() -> set[str]:
        return {s["metric"]["job"] for s in prom_query(stack.prometheus, "up == 0")}

    deadline = time.monotonic() + 30
    while down_jobs() != set(stack.absent_jobs) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert down_jobs() == set(stack.absent_jobs)
    pending = wait_query(stack.prometheus, 'ALERTS{alertname="TargetDown"}')
    assert {s["metric"]["job"] for s in pending} <= set(stack.absent_jobs)
    assert {s["metric"]["alertstate"] for s in pending} == {"pending"}  # for: 5m
    assert not prom_query(stack.prometheus, 'ALERTS{alertname=~"RegistryDown|BlackboxProbeFailing"}')


def test_certificate_alert_is_pending_for_a_chain_expiring_within_14_days(stack: Stack) -> None:
    [alert] = wait_query(stack.prometheus, 'ALERTS{alertname="RegistryCertificateExpiresSoon"}')
    assert alert["metric"]["alertstate"] == "pending"
    assert alert["metric"]["severity"] == "warning"
    assert alert["metric"]["instance"] == stack.mirror.probe_url


def test_blackbox_probe_succeeds_and_reports_the_chain_earliest_expiry(stack: Stack) -> None:
    samples = probe(stack.blackbox, stack.mirror.probe_url)
    assert samples["probe_success"] == 1
    assert samples["probe_http_status_code"] == 200
    assert samples["probe_http_ssl"] == 1
    assert stack.pki.leaf_not_after < stack.pki.intermediate_not_after
    assert samples["probe_ssl_earliest_cert_expiry"] == stack.pki.leaf_not_after


def test_blackbox_probe_fails_when_only_another_root_ca_is_trusted(stack: Stack, tmp_path: Path) -> None:
    other_root = tmp_path / "other-ca.crt"
    other_root.write_text(make_pki(leaf_hours=24, intermediate_hours=48).root_pem)
    with blackbox_exporter(tmp_path / "blackbox", other_root) as blackbox:
        samples = probe(blackbox, stack.mirror.probe_url)
    assert samples["probe_success"] == 0


def test_blackbox_probe_fails_over_plain_http(stack: Stack) -> None:
    """`fail_if_not_ssl`: a 200 over plain HTTP (the debug server's /metrics) fails the probe."""
    samples = probe(stack.blackbox, f"http://{stack.mirror.debug}/metrics")
    assert samples["probe_success"] == 0
    assert samples["probe_http_status_code"] == 200  # the answer was fine, only not TLS


def test_blackbox_reports_the_intermediate_when_it_expires_first(tmp_path: Path) -> None:
    pki = make_pki(leaf_hours=240, intermediate_hours=120)
    with tls_mirror(tmp_path / "registry", pki) as mirror:
        with blackbox_exporter(tmp_path / "blackbox", mirror.ca_file) as blackbox:
            samples = probe(blackbox, mirror.probe_url)
    assert samples["probe_success"] == 1
    assert pki.intermediate_not_after < pki.leaf_not_after
    assert samples["probe_ssl_earliest_cert_expiry"] == pki.intermediate_not_after


def test_every_metric_name_of_the_dashboard_and_alert_rules_is_in_a_real_3_1_1_scrape(stack: Stack) -> None:
    used = set().union(*(promql_metric_names(e) for e in (*dashboard_promql().values(), *alert_promql().values())))
    assert {"registry_proxy_hits_total", "registry_storage_cache_hits_total"} <= used  # the lexer found them
    # the bounded cache's series come from its keeper, not from this stack (no cacheMaxSize):
    # tests/rehearsal/test_cache_rehearsal.py finds each of them in a real keeper's scrape
    used = {name for name in used if not name.startswith(CACHE_METRIC_PREFIX)}
    # every target scraped at least once (the registry after the traffic of the fixture)
    targets = sum(
        len(group["targets"])
        for job in yaml.safe_load(render_prometheus_config())["scrape_configs"]
        for group in job["static_configs"]
    )
    wait_query(stack.prometheus, f"count(up) == {targets}")
    wait_query(stack.prometheus, 'registry_proxy_hits_total{job="registry",type="blob"} > 0')
    _, _, body = http_get(f"{stack.prometheus}/api/v1/label/__name__/values")
    names = set(json.loads(body)["data"])
    # Alloy's counter of the fronts' refused redirects: no Alloy binary runs here; its stage is
    # checked against Alloy's documentation (tests/unit/test_alloy_config.py) and the log lines
    # it counts against real nginx (tests/rehearsal/test_front_redirects.py)
    from_alloy = {REDIRECTS_REFUSED}
    assert from_alloy <= used
    assert used - names == from_alloy
    # the index is a 3.1.1 scrape's: 2.8.2's cache counter is not in it, 3.1.1's split ones are
    assert "registry_storage_cache_total" not in names
    assert "registry_storage_cache_errors_total" in names


def scrape(debug: str) -> dict[str, float]:
    """One scrape of a debug server: `name{labels}` -> value."""
    _, _, body = http_get(f"http://{debug}/metrics")
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line and not line.startswith("#")
    }


def test_a_cold_then_warm_pull_moves_every_proxy_and_cache_counter_the_dashboard_reads(tmp_path: Path) -> None:
    """3.1.1 exports its proxy and cache counters at 0 from the start: a name in the scrape
    proves little on its own, so the traffic of the scrape test must move each of them."""
    with tls_mirror(tmp_path / "registry", make_pki(leaf_hours=24, intermediate_hours=48)) as mirror:
        before = scrape(mirror.debug)
        _registry_traffic(mirror, tmp_path / "traffic")
        after = scrape(mirror.debug)
    counters = [
        f'registry_proxy_{name}_total{{type="{kind}"}}'
        for name in ("requests", "hits", "misses", "pulled_bytes", "pushed_bytes")
        for kind in ("blob", "manifest")
    ] + ["registry_storage_cache_requests_total", "registry_storage_cache_hits_total"]
    assert {c: before[c] for c in counters} == dict.fromkeys(counters, 0.0)
    assert [c for c in counters if not after[c] > 0] == []
    # one cold fetch per blob: what came from upstream is what one pull of the image needs
    assert after['registry_proxy_pushed_bytes_total{type="blob"}'] == 2 * after[
        'registry_proxy_pulled_bytes_total{type="blob"}'
    ]
