"""The Prometheus rehearsal maps only the scrape targets it knows by their documented names.

test_prometheus_rehearsal.py writes the service aliases and ports out itself (registry debug
5001, blackbox 9115, the upstream front's probe 8080, jaeger 8888, loki 3100, alloy 12345,
grafana 3000, prometheus 9090) instead of taking them from the code under test; these tests prove that a rendered target
which differs from that map stops the rehearsal instead of being mapped to loopback anyway.
"""

from __future__ import annotations

import pytest

from tests.rehearsal.test_prometheus_rehearsal import (
    ABSENT_TARGETS,
    PROMETHEUS_TARGET,
    REGISTRY_METRICS_TARGET,
    REGISTRY_PROBE_URL,
    UPSTREAM_PROBE_TARGET,
    loopback_config,
    render_prometheus_config,
)

LOOPBACK = {
    target: f"127.0.0.1:{port}"
    for port, target in enumerate(
        (REGISTRY_METRICS_TARGET, REGISTRY_PROBE_URL, PROMETHEUS_TARGET, UPSTREAM_PROBE_TARGET, *ABSENT_TARGETS),
        start=20001,
    )
}


def test_the_map_knows_every_target_the_program_renders_with_all_services_on() -> None:
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
