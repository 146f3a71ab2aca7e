"""The monitoring stack under mocks: every container's wiring, and the switches."""

from __future__ import annotations

import json

import pytest
import yaml

from configs import alloy, blackbox, grafana, jaeger, loki, prometheus
from rehearsal.fakes.program import evaluate

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
BASE = {"installTrust": "false", "hostname": "mirror.test"}
SERVICES = {"prometheus", "blackbox", "jaeger", "loki", "alloy", "grafana"}


@pytest.fixture(scope="module")
def ev():
    return evaluate(BASE)


def names(ev, typ=CONTAINER):
    return {r.name for r in ev.of_type(typ)}


def test_every_service_is_its_own_component_under_monitoring(ev):
    kinds = {r.name: r.typ for r in ev.resources if r.typ.startswith("registry-mirror:monitoring:")}
    assert kinds == {
        "monitoring": "registry-mirror:monitoring:Monitoring",
        "prometheus": "registry-mirror:monitoring:Prometheus",
        "blackbox": "registry-mirror:monitoring:Blackbox",
        "jaeger": "registry-mirror:monitoring:Jaeger",
        "loki": "registry-mirror:monitoring:Loki",
        "alloy": "registry-mirror:monitoring:Alloy",
        "grafana": "registry-mirror:monitoring:Grafana",
    }
    for service in SERVICES:
        assert ev.container(service).parent_type == kinds[service]


def test_every_container_joins_the_private_network_under_its_alias_with_labels(ev):
    for service in SERVICES:
        c = ev.container(service).inputs
        assert c["name"] == f"registry-mirror-dev-{service}"
        assert c["networksAdvanced"] == [{"name": "registry-mirror-dev-net", "aliases": [service]}]
        labels = {lab["label"]: lab["value"] for lab in c["labels"]}
        assert labels["registry-mirror.service"] == service
        assert labels["registry-mirror.stack"] == "dev"
        assert c["restart"] == "unless-stopped"
        assert c["logOpts"] == {"max-size": "10m", "max-file": "3"}


def test_ui_ports_are_published_on_loopback_by_default(ev):
    published = {s: ev.container(s).inputs.get("ports", []) for s in SERVICES}
    assert published == {
        "prometheus": [{"internal": 9090, "external": 9090, "ip": "127.0.0.1"}],
        "blackbox": [],
        "jaeger": [{"internal": 16686, "external": 16686, "ip": "127.0.0.1"}],
        "loki": [{"internal": 3100, "external": 3100, "ip": "127.0.0.1"}],
        "alloy": [{"internal": 12345, "external": 12345, "ip": "127.0.0.1"}],
        "grafana": [{"internal": 3000, "external": 3000, "ip": "127.0.0.1"}],
    }


def test_port_offset_and_bind_address_move_every_ui_port():
    ev = evaluate(BASE | {"portOffset": "1000", "uiBindAddress": "0.0.0.0", "exposeUis": "true"})
    assert ev.container("grafana").inputs["ports"] == [{"internal": 3000, "external": 4000, "ip": "0.0.0.0"}]
    assert ev.container("registry").inputs["ports"][0]["external"] == 7000
    assert ev.outputs["urls"]["grafana"] == "http://localhost:4000"


def test_memory_limits_fit_a_4gb_host(ev):
    total = sum(c.inputs["memory"] for c in ev.of_type(CONTAINER))
    assert total <= 3 * 1024, total
    assert all(c.inputs["memory"] > 0 for c in ev.of_type(CONTAINER))


def test_data_volumes_follow_keep_data_on_destroy():
    kept = evaluate(BASE)
    assert {v.name for v in kept.of_type(VOLUME)} == {
        "registry-data", "prometheus-data", "loki-data", "alloy-data", "grafana-data"}
    assert all(v.options["retainOnDelete"] for v in kept.of_type(VOLUME))
    dropped = evaluate(BASE | {"keepDataOnDestroy": "false"})
    assert not any(v.options["retainOnDelete"] for v in dropped.of_type(VOLUME))


def test_prometheus_gets_its_rendered_config_rules_and_retention(ev):
    c = ev.container("prometheus").inputs
    up = ev.uploads("prometheus")
    assert yaml.safe_load(up[prometheus.CONFIG_PATH])["rule_files"] == [prometheus.RULES_PATH]
    assert up[prometheus.RULES_PATH] == prometheus.render_alert_rules()
    assert "--storage.tsdb.retention.time=15d" in c["command"]
    assert f"--config.file={prometheus.CONFIG_PATH}" in c["command"]
    assert {"containerPath": "/prometheus", "volumeName": "registry-mirror-dev-prometheus-data",
            "readOnly": False} in c["volumes"]
    assert c["healthcheck"]["tests"][-1] == "http://127.0.0.1:9090/-/ready"


def test_blackbox_trusts_the_stack_root_ca(ev):
    up = ev.uploads("blackbox")
    assert up[blackbox.CA_PATH] == ev.outputs["caCertPem"]
    assert yaml.safe_load(up[blackbox.CONFIG_PATH])["modules"][blackbox.MODULE]["http"]["tls_config"][
        "ca_file"] == blackbox.CA_PATH


def test_registry_exports_traces_to_jaeger_when_tracing_is_on(ev):
    env = ev.envs("registry")
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    c = ev.container("jaeger").inputs
    assert ev.uploads("jaeger")[jaeger.DEFAULT_CONFIG_PATH] == jaeger.render_jaeger_config()
    assert c["command"] == jaeger.jaeger_command()


def test_tracing_off_drops_jaeger_and_turns_the_registry_exporter_off():
    ev = evaluate(BASE | {"tracing": "false"})
    assert "jaeger" not in names(ev)
    assert ev.envs("registry")["OTEL_TRACES_EXPORTER"] == "none"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in ev.envs("registry")
    jobs = {j["job_name"] for j in yaml.safe_load(ev.uploads("prometheus")[prometheus.CONFIG_PATH])["scrape_configs"]}
    assert "jaeger" not in jobs and "registry" in jobs
    assert "jaeger" not in ev.outputs["urls"]
    ds = yaml.safe_load(ev.uploads("grafana")["/etc/grafana/provisioning/datasources/registry-mirror.yaml"])
    assert {d["uid"] for d in ds["datasources"]} == {"prometheus", "loki"}


def test_logging_off_drops_loki_and_alloy():
    ev = evaluate(BASE | {"logging": "false"})
    assert not {"loki", "alloy"} & names(ev)
    jobs = {j["job_name"] for j in yaml.safe_load(ev.uploads("prometheus")[prometheus.CONFIG_PATH])["scrape_configs"]}
    assert not {"loki", "alloy"} & jobs


def test_monitoring_off_leaves_the_registry_alone():
    ev = evaluate(BASE | {"monitoring": "false"})
    assert names(ev) == {"registry", "registry-front"}
    assert ev.envs("registry")["OTEL_TRACES_EXPORTER"] == "none"
    assert set(ev.outputs["urls"]) == {"registry"}
    assert "grafanaAdminPassword" not in ev.outputs


def test_loki_gets_retention_and_its_volume(ev):
    c = ev.container("loki").inputs
    assert ev.uploads("loki")["/etc/loki/config.yaml"] == loki.render_loki_config(168)
    assert c["command"] == ["-config.file=/etc/loki/config.yaml"]
    assert {"containerPath": "/loki", "volumeName": "registry-mirror-dev-loki-data",
            "readOnly": False} in c["volumes"]
    other = evaluate(BASE | {"lokiRetention": "72h"})
    assert other.uploads("loki")["/etc/loki/config.yaml"] == loki.render_loki_config(72)


def test_alloy_reads_the_docker_socket_read_only_and_ships_this_stack_only(ev):
    c = ev.container("alloy").inputs
    assert {"containerPath": "/var/run/docker.sock", "hostPath": "/var/run/docker.sock",
            "readOnly": True} in c["volumes"]
    assert ev.uploads("alloy")[alloy.DEFAULT_CONFIG_PATH] == alloy.render_alloy_config("registry-mirror", "dev")
    assert c["command"] == alloy.alloy_command()
    # Alloy's container waits for Loki's (a component's depends_on expands to its children)
    assert ev.container("loki").urn in ev.container("alloy").dependencies


def test_grafana_is_provisioned_with_datasources_and_the_dashboard(ev):
    up = ev.uploads("grafana")
    ds = yaml.safe_load(up["/etc/grafana/provisioning/datasources/registry-mirror.yaml"])
    assert {d["uid"] for d in ds["datasources"]} == {"prometheus", "loki", "jaeger"}
    dashboard = json.loads(up["/etc/grafana/dashboards/registry-mirror.json"])
    assert dashboard["uid"] == "registry-mirror"
    provider = yaml.safe_load(up["/etc/grafana/provisioning/dashboards/registry-mirror.yaml"])
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    c = ev.container("grafana").inputs
    assert c["entrypoints"] == grafana.render_grafana_entrypoint()
    assert c["healthcheck"]["tests"] == grafana.grafana_healthcheck()


def test_grafana_password_is_generated_secret_and_exported_secret(ev):
    c = ev.container("grafana")
    envs = c.inputs["envs"]
    i = next(i for i, e in enumerate(envs) if e.startswith("GF_SECURITY_ADMIN_PASSWORD="))
    assert f"envs[{i}]" in c.secret_paths()
    generated = ev.find("random:index/randomPassword:RandomPassword", "grafana-admin-password")
    assert ev.envs("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == generated.state["result"]
    assert ev.outputs["grafanaAdminPassword"] == generated.state["result"]
    assert "grafanaAdminPassword" in ev.secret_outputs
    assert generated.state["result"] not in json.dumps(c.inputs["entrypoints"])
    assert "GF_AUTH_ANONYMOUS_ENABLED=true" in envs


def test_a_configured_grafana_password_is_used_and_nothing_is_generated():
    ev = evaluate(BASE, secrets={"grafanaAdminPassword": "correct-horse-battery"})
    assert ev.envs("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == "correct-horse-battery"
    assert ev.outputs["grafanaAdminPassword"] == "correct-horse-battery"
    assert not [r for r in ev.of_type("random:index/randomPassword:RandomPassword")
                if r.name == "grafana-admin-password"]


def test_every_service_has_a_healthcheck_where_its_image_has_the_means(ev):
    for service in SERVICES | {"registry"}:
        c = ev.container(service).inputs
        assert c["healthcheck"]["tests"][0] == "CMD", service
        assert c["wait"] is True, service


def test_a_setting_for_a_service_that_is_off_fails_at_preview():
    from settings import SettingsError
    with pytest.raises(SettingsError, match="jaegerPort = '17000' .*needs tracing: true"):
        evaluate(BASE | {"tracing": "false", "jaegerPort": "17000"})
    with pytest.raises(SettingsError, match="grafanaPort = '3001' .*needs monitoring: true"):
        evaluate(BASE | {"monitoring": "false", "grafanaPort": "3001"})


def _loki_refs(node) -> list[str]:
    """Every place in a dashboard JSON tree that names the Loki data source."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("uid") == "loki" or node.get("type") == "loki":
            found.append(json.dumps(node)[:60])
        for value in node.values():
            found += _loki_refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _loki_refs(value)
    return found


def test_with_logging_off_the_dashboard_names_no_loki_datasource_and_keeps_the_metric_panels(ev):
    with_logs = json.loads(ev.uploads("grafana")["/etc/grafana/dashboards/registry-mirror.json"])
    off = evaluate(BASE | {"logging": "false"})
    without = json.loads(off.uploads("grafana")["/etc/grafana/dashboards/registry-mirror.json"])
    datasources = yaml.safe_load(
        off.uploads("grafana")["/etc/grafana/provisioning/datasources/registry-mirror.yaml"])
    assert "loki" not in {d["uid"] for d in datasources["datasources"]}
    assert _loki_refs(with_logs), "the full dashboard does use Loki (control)"
    assert _loki_refs(without) == []
    assert "$stack" not in json.dumps(without)  # the variable was queried from Loki
    kept = [p["title"] for p in with_logs["panels"] if p["type"] != "logs"]
    assert [p["title"] for p in without["panels"]] == kept and len(kept) >= 9
