"""The Prometheus rehearsal maps only the scrape targets it knows by their documented names.

test_prometheus_rehearsal.py writes the service aliases and ports out itself (registry debug
5001, blackbox 9115, jaeger 8888, loki 3100, alloy 12345, grafana 3000, prometheus 9090)
instead of importing configs/prometheus.py's constants; these tests prove a rendered target
that differs from that map stops the rehearsal instead of being mapped to loopback anyway.
"""

from __future__ import annotations

import pytest

from configs.prometheus import render_prometheus_config
from tests.rehearsal.test_prometheus_rehearsal import (
    ABSENT_TARGETS,
    PROMETHEUS_SELF,
    REGISTRY_API_PROBE,
    REGISTRY_DEBUG,
    loopback_config,
)

LOOPBACK = {
    target: f"127.0.0.1:{port}"
    for port, target in enumerate((REGISTRY_DEBUG, REGISTRY_API_PROBE, PROMETHEUS_SELF, *ABSENT_TARGETS), start=20001)
}


def test_the_map_knows_every_target_the_code_renders_with_all_services_on() -> None:
    mapped = loopback_config(render_prometheus_config(), LOOPBACK, "127.0.0.1:29115", "rules.yml")
    assert "registry:" not in mapped and "blackbox:" not in mapped
    for address in LOOPBACK.values():
        assert address in mapped


@pytest.mark.parametrize(
    ("documented", "wrong"),
    [
        ("registry:5001", "registry:5000"),
        ("jaeger:8888", "jaeger:14269"),
        ("loki:3100", "loki:3101"),
        ("localhost:9090", "localhost:9091"),
    ],
)
def test_a_rendered_target_the_map_does_not_know_stops_the_rehearsal(documented: str, wrong: str) -> None:
    rendered = render_prometheus_config()
    assert documented in rendered
    with pytest.raises(AssertionError, match=wrong):
        loopback_config(rendered.replace(documented, wrong), LOOPBACK, "127.0.0.1:29115", "rules.yml")


def test_a_blackbox_address_other_than_the_documented_one_stops_the_rehearsal() -> None:
    rendered = render_prometheus_config()
    assert "blackbox:9115" in rendered
    with pytest.raises(AssertionError):
        loopback_config(rendered.replace("blackbox:9115", "blackbox:9116"), LOOPBACK, "127.0.0.1:29115", "rules.yml")
