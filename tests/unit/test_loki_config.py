"""Loki config renderer: every key checked against upstream Loki files (no Loki binary here).

Each expected value below is copied from the upstream file named next to it (paths and
commits: docs/upstream-references.md), not from the renderer's output.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from configs.loki import loki_healthcheck, render_loki_config

DOCKER_CONFIG = "DOCKER_CONFIG (docs/upstream-references.md)"
LOCAL_CONFIG = "LOCAL_CONFIG (docs/upstream-references.md)"
RETENTION_DOC = "RETENTION_DOC (docs/upstream-references.md)"
CONFIG_REFERENCE = "CONFIG_REFERENCE (docs/upstream-references.md)"
HEALTH_GO = "HEALTH_GO (docs/upstream-references.md)"

# key path -> (expected value, source that shows the key and this value or its meaning)
EXPECTED: dict[tuple[str, ...], tuple[Any, str]] = {
    ("auth_enabled",): (False, DOCKER_CONFIG),
    ("server", "http_listen_port"): (3100, DOCKER_CONFIG),
    ("common", "instance_addr"): ("127.0.0.1", LOCAL_CONFIG),
    ("common", "path_prefix"): ("/loki", DOCKER_CONFIG),
    ("common", "storage", "filesystem", "chunks_directory"): ("/loki/chunks", DOCKER_CONFIG),
    ("common", "storage", "filesystem", "rules_directory"): ("/loki/rules", DOCKER_CONFIG),
    ("common", "replication_factor"): (1, DOCKER_CONFIG),
    ("common", "ring", "kvstore", "store"): ("inmemory", DOCKER_CONFIG),
    # schema_config.configs[0] is checked field by field in its own test (LOCAL_CONFIG)
    ("compactor", "working_directory"): ("/loki/compactor", CONFIG_REFERENCE),
    ("compactor", "compaction_interval"): ("10m", RETENTION_DOC),
    ("compactor", "retention_enabled"): (True, RETENTION_DOC),
    ("compactor", "retention_delete_delay"): ("2h", RETENTION_DOC),
    ("compactor", "retention_delete_worker_count"): (150, RETENTION_DOC),
    ("compactor", "delete_request_store"): ("filesystem", RETENTION_DOC),
    ("limits_config", "retention_period"): ("168h", RETENTION_DOC),
    ("limits_config", "ingestion_rate_mb"): (4, CONFIG_REFERENCE),
    ("limits_config", "ingestion_burst_size_mb"): (6, CONFIG_REFERENCE),
    ("limits_config", "allow_structured_metadata"): (True, CONFIG_REFERENCE),
    ("analytics", "reporting_enabled"): (False, CONFIG_REFERENCE),
}
# schema_config.configs[0], as in LOCAL_CONFIG (tsdb, v13) with the 24h period that retention
# requires (RETENTION_DOC: "Retention is only available if the index period is 24h").
EXPECTED_SCHEMA = {
    "from": "2020-10-24",
    "store": "tsdb",
    "object_store": "filesystem",
    "schema": "v13",
    "index": {"prefix": "index_", "period": "24h"},
}


def _leaves(node: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(node, dict):
        out: dict[tuple[str, ...], Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, (*prefix, key)))
        return out
    return {prefix: node}


def _get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = node[key]
    return node


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    parsed = yaml.safe_load(render_loki_config(168))
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: ".".join(p))
def test_key_has_upstream_value(config: dict[str, Any], path: tuple[str, ...]) -> None:
    expected, source = EXPECTED[path]
    assert _get(config, path) == expected, f"{'.'.join(path)} (source: {source})"


def test_schema_is_tsdb_v13_with_24h_index_period(config: dict[str, Any]) -> None:
    assert config["schema_config"] == {"configs": [EXPECTED_SCHEMA]}, LOCAL_CONFIG


def test_every_rendered_key_is_one_of_the_cited_keys(config: dict[str, Any]) -> None:
    rendered = set(_leaves({k: v for k, v in config.items() if k != "schema_config"}))
    assert rendered == set(EXPECTED)


def test_retention_is_enforced_by_the_compactor_with_a_delete_request_store(config: dict[str, Any]) -> None:
    # RETENTION_DOC: "`delete_request_store` should be set ... This is required when retention
    # is enabled."; without retention_enabled the compactor "will only compact tables".
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["schema_config"]["configs"][0]["index"]["period"] == "24h"


def test_retention_parameter_sets_the_retention_period_only() -> None:
    default = yaml.safe_load(render_loki_config(168))
    two_weeks = yaml.safe_load(render_loki_config(retention_hours=336))
    assert two_weeks["limits_config"]["retention_period"] == "336h"
    two_weeks["limits_config"]["retention_period"] = default["limits_config"]["retention_period"]
    assert two_weeks == default


@pytest.mark.parametrize("hours", [0, 23, -168])
def test_retention_below_the_24h_minimum_is_refused(hours: int) -> None:
    # RETENTION_DOC: "The minimum retention period is 24h."
    with pytest.raises(ValueError, match="at least 24"):
        render_loki_config(retention_hours=hours)


def test_retention_must_be_an_integer_number_of_hours() -> None:
    with pytest.raises(ValueError):
        render_loki_config(retention_hours=True)
    with pytest.raises(ValueError):
        render_loki_config(retention_hours="168h")  # type: ignore[arg-type]


def test_path_prefix_moves_every_directory_under_it() -> None:
    config = yaml.safe_load(render_loki_config(168, path_prefix="/data/loki"))
    assert config["common"]["path_prefix"] == "/data/loki"
    assert config["common"]["storage"]["filesystem"] == {
        "chunks_directory": "/data/loki/chunks",
        "rules_directory": "/data/loki/rules",
    }
    assert config["compactor"]["working_directory"] == "/data/loki/compactor"
    with pytest.raises(ValueError):
        render_loki_config(168, path_prefix="loki/")


def test_ingestion_limits_and_port_are_parameters() -> None:
    config = yaml.safe_load(render_loki_config(168, ingestion_rate_mb=8, ingestion_burst_size_mb=12, http_port=3200))
    assert config["limits_config"]["ingestion_rate_mb"] == 8
    assert config["limits_config"]["ingestion_burst_size_mb"] == 12
    assert config["server"]["http_listen_port"] == 3200


def test_schema_start_date_stays_a_string_date() -> None:
    text = render_loki_config(168)
    # Quoted, so YAML loaders keep it a string; Loki parses it as a day (LOCAL_CONFIG's value).
    assert "from: '2020-10-24'" in text
    with pytest.raises(ValueError):
        render_loki_config(168, schema_from="24/10/2020")


def test_rendering_is_deterministic() -> None:
    assert render_loki_config(240) == render_loki_config(240)
    assert render_loki_config(240) != render_loki_config(168)


# --- healthcheck per image tag ---------------------------------------------------------------


def _health_go_parse(args: list[str]) -> tuple[bool, str]:
    """What cmd/loki/health.go does with argv: (-health present?, URL it will GET)."""
    health = any(re.match(r"^-+health$", a) for a in args)
    url = "http://localhost:3100/ready"  # defaultHealthURL in HEALTH_GO
    for i, a in enumerate(args):
        match = re.match(r"^-+health\.url[=:]?(.*)$", a)
        if match:
            if match.group(1):
                url = match.group(1)
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                url = args[i + 1]
            break
    return health, url


@pytest.mark.parametrize(
    "image",
    ["grafana/loki:3.7.0", "grafana/loki:3.7.2", "docker.io/grafana/loki:3.8.1@sha256:" + "a" * 64],
)
def test_loki_37_and_later_use_the_builtin_health_flag(image: str) -> None:
    test = loki_healthcheck(image)
    assert test is not None and test[0] == "CMD"
    assert test[1] == "/usr/bin/loki"
    assert _health_go_parse(test[2:]) == (True, "http://127.0.0.1:3100/ready"), HEALTH_GO


def test_health_url_follows_the_port() -> None:
    test = loki_healthcheck("grafana/loki:3.7.1", http_port=3200)
    assert test is not None
    assert _health_go_parse(test[2:]) == (True, "http://127.0.0.1:3200/ready")


@pytest.mark.parametrize("image", ["grafana/loki:3.6.0", "grafana/loki:3.6.10"])
def test_distroless_36_has_no_possible_healthcheck(image: str) -> None:
    # 3.6.0 removed busybox from the image: no shell, no HTTP client inside.
    assert loki_healthcheck(image) is None


@pytest.mark.parametrize("image", ["grafana/loki:3.5.5", "grafana/loki:3.0.0", "grafana/loki:2.9.8"])
def test_alpine_based_images_use_busybox_wget(image: str) -> None:
    assert loki_healthcheck(image) == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3100/ready"]


@pytest.mark.parametrize("image", ["grafana/loki:latest", "grafana/loki", "grafana/loki@sha256:" + "b" * 64])
def test_unknown_version_gets_no_healthcheck(image: str) -> None:
    assert loki_healthcheck(image) is None


def test_registry_port_in_the_image_name_is_not_taken_for_a_tag() -> None:
    assert loki_healthcheck("localhost:5000/grafana/loki") is None
    assert loki_healthcheck("localhost:5000/grafana/loki:3.7.0") is not None
