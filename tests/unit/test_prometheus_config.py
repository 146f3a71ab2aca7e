"""Unit tests of the Prometheus config, alert rules, blackbox module and Grafana dashboard.

Pure parsing of the rendered text: every scrape job, relabel step, rule and module key the
stack depends on is checked here; the real binaries check the same files in tests/rehearsal.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest
import yaml

from configs.blackbox import CA_PATH, MODULE, render_blackbox_config
from configs.grafana import DASHBOARD_FILE as DASHBOARD_PATH
from configs.prometheus import CONFIG_PATH, RULES_PATH, render_alert_rules, render_prometheus_config
from rehearsal.fakes.program import evaluate

DATASOURCE_UIDS = {"prometheus": "prometheus", "loki": "loki"}  # type -> fixed uid


@functools.cache
def _program_config(tracing: bool, logging: bool) -> str:
    """prometheus.yml as the whole program renders and uploads it for these switches."""
    ev = evaluate({"installTrust": "false", "tracing": str(tracing).lower(),
                   "logging": str(logging).lower()}, stack="promcfg")
    return ev.uploads("prometheus")[CONFIG_PATH]


def _config(tracing: bool = True, logging: bool = True) -> dict[str, Any]:
    loaded = yaml.safe_load(_program_config(tracing, logging))
    assert isinstance(loaded, dict)
    return loaded


def _render(**kwargs: Any) -> dict[str, Any]:
    loaded = yaml.safe_load(render_prometheus_config([("registry", "registry:5001")],
                                                     ["https://registry:5000/v2/"], **kwargs))
    assert isinstance(loaded, dict)
    return loaded


def _jobs(tracing: bool = True, logging: bool = True) -> dict[str, dict[str, Any]]:
    jobs = _config(tracing, logging)["scrape_configs"]
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names)), f"duplicate job names: {names}"
    return {job["job_name"]: job for job in jobs}


def _targets(job: dict[str, Any]) -> list[str]:
    return [target for group in job["static_configs"] for target in group["targets"]]


def _rules(**kwargs: Any) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(render_alert_rules(**kwargs))
    [group] = document["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def _dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


# ---------------------------------------------------------------------------------------
# prometheus.yml


@pytest.mark.parametrize(
    ("job", "target"),
    [
        ("registry", "registry:5001"),
        ("jaeger", "jaeger:8888"),
        ("loki", "loki:3100"),
        ("alloy", "alloy:12345"),
        ("grafana", "grafana:3000"),
        ("prometheus", "localhost:9090"),
    ],
)
def test_each_service_is_scraped_at_its_alias_and_internal_port(job: str, target: str) -> None:
    scraped = _jobs()[job]
    assert _targets(scraped) == [target]
    assert scraped["metrics_path"] == "/metrics"
    assert scraped["scheme"] == "http"


def test_registry_is_scraped_over_plain_http_without_tls_settings() -> None:
    registry = _jobs()["registry"]
    assert registry["scheme"] == "http"
    assert "tls_config" not in registry
    assert "authorization" not in registry and "basic_auth" not in registry


def test_config_comment_says_why_the_registry_scrape_is_not_mutual_tls() -> None:
    text = _program_config(True, True)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("cannot serve TLS" in line for line in header)
    assert any("mutual TLS" in line for line in header)
    # the comment survives YAML parsing as a comment only
    assert "cannot serve TLS" not in json.dumps(yaml.safe_load(text))


def test_blackbox_job_probes_the_registry_tls_endpoint_through_the_exporter() -> None:
    blackbox = _jobs()["blackbox"]
    assert blackbox["metrics_path"] == "/probe"
    assert blackbox["params"] == {"module": [MODULE]}
    assert _targets(blackbox) == ["https://registry:5000/v2/"]
    assert blackbox["relabel_configs"] == [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": "blackbox:9115"},
    ]


def test_blackbox_job_asks_for_the_module_the_blackbox_config_defines() -> None:
    module = _jobs()["blackbox"]["params"]["module"][0]
    assert module in yaml.safe_load(render_blackbox_config())["modules"]


@pytest.mark.parametrize(
    ("tracing", "logging", "expected"),
    [
        # `upstream`: the blackbox probe of the upstream through the front (on by default)
        (True, True, {"registry", "jaeger", "loki", "alloy", "grafana", "prometheus", "blackbox", "upstream"}),
        (False, True, {"registry", "loki", "alloy", "grafana", "prometheus", "blackbox", "upstream"}),
        (True, False, {"registry", "jaeger", "grafana", "prometheus", "blackbox", "upstream"}),
        (False, False, {"registry", "grafana", "prometheus", "blackbox", "upstream"}),
    ],
)
def test_jobs_of_services_turned_off_are_omitted(tracing: bool, logging: bool, expected: set[str]) -> None:
    assert set(_jobs(tracing=tracing, logging=logging)) == expected


def test_rule_files_points_at_the_rules_path() -> None:
    assert _config()["rule_files"] == [RULES_PATH]
    assert RULES_PATH == "/etc/prometheus/rules/registry-mirror.rules.yml"
    assert _render(rules_path="/x/r.yml")["rule_files"] == ["/x/r.yml"]


def test_global_intervals_are_set_and_nothing_v3_only_is_rendered() -> None:
    config = _render(scrape_interval="30s", evaluation_interval="20s")
    assert config["global"] == {"scrape_interval": "30s", "evaluation_interval": "20s"}
    assert set(config) == {"global", "rule_files", "scrape_configs"}
    # every target serves a Content-Type through promhttp: no fallback protocol needed
    assert "fallback_scrape_protocol" not in _program_config(True, True)


def test_prometheus_config_is_deterministic() -> None:
    assert _program_config(True, False) == _program_config.__wrapped__(True, False)
    assert render_alert_rules() == render_alert_rules()
    assert render_blackbox_config() == render_blackbox_config()


# ---------------------------------------------------------------------------------------
# alert rules


def test_every_alert_has_severity_summary_description_and_a_for_duration() -> None:
    rules = _rules()
    assert set(rules) == {
        "RegistryDown",
        "RegistryHigh5xxRatio",
        "RegistryCertificateExpiresSoon",
        "TargetDown",
        "BlackboxProbeFailing",
        "MirrorUpstreamUnreachable",
        "FrontRedirectRefused",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert all(text.strip() for text in rule["annotations"].values()), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_registry_down_alert_watches_every_mirror_by_its_upstream_label_for_minutes() -> None:
    rule = _rules()["RegistryDown"]
    assert rule["expr"] == 'up{job=~"registry|registry-.+"} == 0'
    assert "{{ $labels.upstream }}" in rule["annotations"]["summary"]
    assert rule["for"].endswith("m")
    assert rule["labels"]["severity"] == "critical"


def test_5xx_ratio_alert_divides_5xx_requests_by_all_requests_per_upstream() -> None:
    expr = _rules()["RegistryHigh5xxRatio"]["expr"]
    numerator, denominator = expr.split(" / ")
    assert numerator.startswith("sum by (upstream) (")
    assert 'registry_http_requests_total{code=~"5.."}' in numerator
    assert denominator.startswith("sum by (upstream) (rate(registry_http_requests_total[5m]))")
    assert denominator.endswith("> 0.05")


def test_certificate_alert_fires_within_the_configured_number_of_days() -> None:
    assert _rules()["RegistryCertificateExpiresSoon"]["expr"] == (
        'probe_ssl_earliest_cert_expiry{job="blackbox"} - time() < 14 * 86400'
    )
    rule = _rules(cert_expiry_days=30)["RegistryCertificateExpiresSoon"]
    assert rule["expr"].endswith("< 30 * 86400")
    assert "30 days" in rule["annotations"]["summary"]


def test_certificate_alert_refuses_a_non_positive_number_of_days() -> None:
    with pytest.raises(ValueError, match="cert_expiry_days"):
        render_alert_rules(cert_expiry_days=0)


def test_any_target_down_and_probe_failure_alerts() -> None:
    rules = _rules()
    assert rules["TargetDown"]["expr"] == "up == 0"
    assert rules["BlackboxProbeFailing"]["expr"] == 'probe_success{job="blackbox"} == 0'


# ---------------------------------------------------------------------------------------
# blackbox module


def test_blackbox_module_probes_https_v2_and_trusts_only_the_root_ca() -> None:
    module = yaml.safe_load(render_blackbox_config())["modules"][MODULE]
    assert MODULE == "registry_tls"
    assert module["prober"] == "http"
    http = module["http"]
    assert http["valid_status_codes"] == [200]
    assert http["method"] == "GET"
    assert http["fail_if_not_ssl"] is True
    assert http["preferred_ip_protocol"] == "ip4"
    assert http["tls_config"] == {"ca_file": CA_PATH, "insecure_skip_verify": False}
    assert CA_PATH == "/etc/blackbox/ca.crt"


def test_blackbox_ca_file_is_a_parameter() -> None:
    module = yaml.safe_load(render_blackbox_config(ca_file="/x/root.pem"))["modules"][MODULE]
    assert module["http"]["tls_config"]["ca_file"] == "/x/root.pem"


# ---------------------------------------------------------------------------------------
# Grafana dashboard


def test_dashboard_has_the_fixed_uid_and_title() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "registry-mirror"
    assert dashboard["title"] == "Docker Registry Mirror"
    assert dashboard["id"] is None  # provisioning assigns the id


def test_every_panel_and_query_uses_a_fixed_datasource_uid() -> None:
    dashboard = _dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":  # a row groups the panels below it and queries nothing
            assert "targets" not in panel, panel["title"]
            continue
        source = panel["datasource"]
        assert DATASOURCE_UIDS.get(source["type"]) == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert DATASOURCE_UIDS.get(variable["datasource"]["type"]) == variable["datasource"]["uid"]


def test_dashboard_panels_do_not_overlap_on_the_grid() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine


def _panel(title_part: str) -> dict[str, Any]:
    [panel] = [p for p in _dashboard()["panels"] if title_part in p["title"]]
    assert isinstance(panel, dict)
    return panel


def test_request_rate_panel_groups_by_handler_and_status() -> None:
    [target] = _panel("Request rate")["targets"]
    assert target["expr"].startswith(
        'sum by (handler, code) (rate(registry_http_requests_total{upstream=~"$upstream"}[')


def test_latency_panel_shows_p50_p90_p99_from_the_duration_histogram() -> None:
    exprs = [t["expr"] for t in _panel("latency percentiles")["targets"]]
    quantiles = [re.match(r"histogram_quantile\(([0-9.]+),", e) for e in exprs]
    assert [m.group(1) for m in quantiles if m] == ["0.5", "0.9", "0.99"]
    assert all("registry_http_request_duration_seconds_bucket" in e for e in exprs)


def test_cache_panels_use_descriptor_cache_and_proxy_counters() -> None:
    ratio = " ".join(t["expr"] for t in _panel("Cache hit ratio")["targets"])
    assert "registry_storage_cache_hits_total" in ratio
    assert "registry_storage_cache_requests_total" in ratio
    hits_misses = " ".join(t["expr"] for t in _panel("hits and misses")["targets"])
    assert "registry_proxy_hits_total" in hits_misses
    assert "registry_proxy_misses_total" in hits_misses


def test_bandwidth_panels_compare_pulled_and_served_bytes() -> None:
    for title in ("Bytes fetched upstream", "Bandwidth saved"):
        joined = " ".join(t["expr"] for t in _panel(title)["targets"])
        assert "registry_proxy_pulled_bytes_total" in joined, title
        assert "registry_proxy_pushed_bytes_total" in joined, title


def test_storage_certificate_and_targets_panels() -> None:
    assert "registry_storage_action_seconds_bucket" in _panel("Storage latency")["targets"][0]["expr"]
    [expiry] = _panel("certificate expires")["targets"]
    assert "probe_ssl_earliest_cert_expiry" in expiry["expr"]
    assert "/ 86400" in expiry["expr"]
    assert "up" in [t["expr"] for t in _panel("Targets up")["targets"]]


def test_error_log_panel_queries_loki_for_registry_errors_of_the_selected_stack() -> None:
    panel = _panel("error logs")
    assert panel["type"] == "logs"
    assert panel["datasource"] == {"type": "loki", "uid": "loki"}
    [target] = panel["targets"]
    assert target["expr"].startswith('{service="registry", stack="$stack"} | level=~"error')
    variable, upstream = _dashboard()["templating"]["list"]
    assert variable["name"] == "stack"
    assert variable["datasource"]["uid"] == "loki"
    assert variable["query"] == 'label_values({service="registry"}, stack)'
    assert upstream["name"] == "upstream"


def test_the_upstream_selector_comes_from_prometheus_and_filters_every_registry_and_probe_query() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    upstream = variables["upstream"]
    assert upstream["datasource"]["type"] == "prometheus"
    assert upstream["query"]["query"] == "label_values(registry_http_requests_total, upstream)"
    assert upstream["includeAll"] and upstream["allValue"] == ".*"
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])
             if t.get("datasource", {}).get("type") == "prometheus"]
    selectors = [m for e in exprs for m in re.finditer(r"\b(?:registry|probe)_[a-z_]+(\{[^}]*\})?", e)]
    assert selectors
    assert all(m.group(1) and 'upstream=~"$upstream"' in m.group(1) for m in selectors), exprs


