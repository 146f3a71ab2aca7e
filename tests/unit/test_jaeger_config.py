"""Jaeger v2 config, command, healthcheck and the registry's OTel environment.

No Jaeger binary runs here: keys and component names are compared with upstream Jaeger and
OpenTelemetry files named below. The healthcheck command runs for real with wget against a local
HTTP server.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from configs.jaeger import jaeger_command, jaeger_healthcheck, registry_otel_env, render_jaeger_config
from tests.conftest import require_tool
from tests.unit.conftest import StatusHandler

# Upstream sources, named in assertion messages; repository, path and commit of each:
# docs/upstream-references.md ("Source names used by the unit tests").
ALL_IN_ONE = "ALL_IN_ONE (docs/upstream-references.md)"
JAEGER_DOCKERFILE = "JAEGER_DOCKERFILE (docs/upstream-references.md)"
JAEGER_BASE_IMAGE = "JAEGER_BASE_IMAGE (docs/upstream-references.md)"
INTERNAL_TELEMETRY = "INTERNAL_TELEMETRY (docs/upstream-references.md)"
HEALTHCHECKV2 = "HEALTHCHECKV2 (docs/upstream-references.md)"
DISTRIBUTION_TRACING = "DISTRIBUTION_TRACING (docs/upstream-references.md)"
AUTOEXPORT = "AUTOEXPORT (docs/upstream-references.md)"
OTLP_HTTP_ENV = "OTLP_HTTP_ENV (docs/upstream-references.md)"
DISTRIBUTION_310 = "DISTRIBUTION_310 (docs/upstream-references.md)"

# Component names of the built-in all-in-one config (ALL_IN_ONE).
UPSTREAM_EXTENSIONS = {"jaeger_storage", "jaeger_query", "remote_sampling", "healthcheckv2", "expvar"}
UPSTREAM_RECEIVERS = {"otlp", "jaeger", "zipkin"}
UPSTREAM_PROCESSORS = {"batch"}
UPSTREAM_EXPORTERS = {"jaeger_storage_exporter"}
# Ports of the stack, which are the all-in-one's (ALL_IN_ONE, Dockerfile EXPOSE).
PORTS = {"otlp_grpc": 4317, "otlp_http": 4318, "health": 13133, "metrics": 8888}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    parsed = yaml.safe_load(render_jaeger_config())
    assert isinstance(parsed, dict)
    return parsed


# --- config ---------------------------------------------------------------------------------


def test_top_level_sections_are_collector_sections(config: dict[str, Any]) -> None:
    assert set(config) == {"service", "extensions", "receivers", "processors", "exporters"}, ALL_IN_ONE


def test_components_are_upstream_all_in_one_components(config: dict[str, Any]) -> None:
    assert set(config["extensions"]) <= UPSTREAM_EXTENSIONS
    assert set(config["receivers"]) <= UPSTREAM_RECEIVERS
    assert set(config["processors"]) <= UPSTREAM_PROCESSORS
    assert set(config["exporters"]) <= UPSTREAM_EXPORTERS


def test_service_uses_exactly_the_defined_components(config: dict[str, Any]) -> None:
    service = config["service"]
    assert sorted(service["extensions"]) == sorted(config["extensions"])
    assert set(service["pipelines"]) == {"traces"}
    traces = service["pipelines"]["traces"]
    assert traces == {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
    for section in ("receivers", "processors", "exporters"):
        assert set(traces[section]) == set(config[section])


def test_one_memory_store_is_written_and_queried(config: dict[str, Any]) -> None:
    backends = config["extensions"]["jaeger_storage"]["backends"]
    assert len(backends) == 1
    ((name, backend),) = backends.items()
    assert backend == {"memory": {"max_traces": 100000}}, ALL_IN_ONE
    assert config["extensions"]["jaeger_query"] == {"storage": {"traces": name}}
    assert config["exporters"]["jaeger_storage_exporter"] == {"trace_storage": name}


def test_otlp_receivers_listen_on_all_interfaces(config: dict[str, Any]) -> None:
    # ALL_IN_ONE binds ${env:JAEGER_LISTEN_HOST:-localhost}; other containers need 0.0.0.0.
    assert config["receivers"]["otlp"] == {
        "protocols": {
            "grpc": {"endpoint": f"0.0.0.0:{PORTS['otlp_grpc']}"},
            "http": {"endpoint": f"0.0.0.0:{PORTS['otlp_http']}"},
        }
    }


def test_health_v2_serves_on_13133(config: dict[str, Any]) -> None:
    assert config["extensions"]["healthcheckv2"] == {
        "use_v2": True,  # HEALTHCHECKV2: "the use_v2: true setting is necessary"
        "http": {"endpoint": f"0.0.0.0:{PORTS['health']}"},
    }


def test_own_metrics_use_a_prometheus_pull_reader_on_8888(config: dict[str, Any]) -> None:
    metrics = config["service"]["telemetry"]["metrics"]
    assert metrics["readers"] == [{"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": PORTS["metrics"]}}}}]
    assert metrics["level"] == "detailed", ALL_IN_ONE
    # `address` was deprecated by the collector, ignored since v0.123 and an invalid key
    # since v0.128: Jaeger 2.x on a current collector refuses to start with it.
    assert "address" not in metrics, INTERNAL_TELEMETRY


def test_telemetry_resource_and_logs_follow_all_in_one(config: dict[str, Any]) -> None:
    telemetry = config["service"]["telemetry"]
    assert telemetry["resource"] == {"service.name": "jaeger"}, ALL_IN_ONE
    assert telemetry["logs"] == {"level": "info"}


def test_parameters_change_what_they_name() -> None:
    config = yaml.safe_load(render_jaeger_config(max_traces=5000, listen_host="10.0.0.2", metrics_port=9999))
    ((backend,),) = [list(config["extensions"]["jaeger_storage"]["backends"].values())]
    assert backend == {"memory": {"max_traces": 5000}}
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "10.0.0.2:4318"
    assert config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"] == {
        "host": "10.0.0.2",
        "port": 9999,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_traces": 0},
        {"max_traces": True},
        {"health_port": 70000},
        {"listen_host": "0.0.0.0:1"},
        {"storage_name": "a b"},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        render_jaeger_config(**kwargs)


def test_rendering_is_deterministic() -> None:
    assert render_jaeger_config() == render_jaeger_config()
    assert render_jaeger_config(max_traces=1) != render_jaeger_config(max_traces=2)


def test_command_points_the_binary_at_the_file() -> None:
    # JAEGER_DOCKERFILE: ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]; the config is its flag.
    assert jaeger_command() == ["--config=/etc/jaeger/config.yaml"]
    assert jaeger_command("/cfg/j.yaml") == ["--config=/cfg/j.yaml"]
    with pytest.raises(ValueError):
        jaeger_command("config.yaml")


# --- healthcheck ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "jaegertracing/jaeger:2.21.0",
        "jaegertracing/jaeger:2.5.0",
        "docker.io/jaegertracing/jaeger:2.15.1@sha256:" + "c" * 64,
    ],
)
def test_v2_images_get_a_wget_check_of_health_status(image: str) -> None:
    # JAEGER_BASE_IMAGE: FROM alpine (busybox wget); HEALTHCHECKV2: status at /status.
    assert jaeger_healthcheck(image) == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:13133/status"]


@pytest.mark.parametrize(
    "image",
    [
        "jaegertracing/all-in-one:1.62.0",
        "jaegertracing/jaeger:latest",
        "jaegertracing/jaeger",
        "jaegertracing/jaeger:1.9",
    ],
)
def test_other_images_get_no_healthcheck(image: str) -> None:
    assert jaeger_healthcheck(image) is None




def test_healthcheck_command_follows_the_health_status(status_server: tuple[int, type[StatusHandler]]) -> None:
    wget = require_tool("wget")
    port, handler = status_server
    test = jaeger_healthcheck("jaegertracing/jaeger:2.21.0", health_port=port)
    assert test is not None
    command = [wget, *test[2:]]
    assert subprocess.run(command, timeout=10, check=False).returncode == 0
    assert handler.paths == ["/status"]
    handler.status = 503  # HEALTHCHECKV2: Starting / Stopping map to 503
    assert subprocess.run(command, timeout=10, check=False).returncode != 0


# --- registry OTel environment --------------------------------------------------------------


def _env(*args: Any, **kwargs: Any) -> dict[str, str]:
    pairs = registry_otel_env(*args, **kwargs)
    assert pairs == sorted(pairs)
    return dict(pair.split("=", 1) for pair in pairs)


def test_tracing_on_exports_otlp_http_to_jaeger() -> None:
    # DISTRIBUTION_TRACING uses autoexport.NewSpanExporter (AUTOEXPORT): OTEL_TRACES_EXPORTER
    # picks the exporter, OTEL_EXPORTER_OTLP_PROTOCOL the transport; OTLP_HTTP_ENV reads the
    # base endpoint (an http scheme = no TLS). OTEL_SERVICE_NAME is honoured from 3.1.0
    # (DISTRIBUTION_310).
    assert _env(True) == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "registry-mirror",
    }


def test_tracing_off_disables_the_exporter_only() -> None:
    assert _env(False) == {"OTEL_TRACES_EXPORTER": "none"}, AUTOEXPORT


def test_endpoint_and_service_name_are_parameters() -> None:
    env = _env(True, endpoint="https://collector.internal:4318/", service_name="mirror-b")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://collector.internal:4318"
    assert env["OTEL_SERVICE_NAME"] == "mirror-b"


@pytest.mark.parametrize("endpoint", ["jaeger:4318", "http://jaeger:4318/v1/traces", "grpc://jaeger:4317", "http://"])
def test_endpoint_must_be_a_base_http_url(endpoint: str) -> None:
    # OTLP_HTTP_ENV appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT's path.
    with pytest.raises(ValueError):
        registry_otel_env(True, endpoint=endpoint)
