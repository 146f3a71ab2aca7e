"""Jaeger v2 (``jaegertracing/jaeger:2.x``) configuration and the registry's OTel environment.

A config is rendered instead of using the image's built-in one, which binds to localhost unless
the image sets ``JAEGER_LISTEN_HOST`` and uses a metrics key newer collectors reject.
``OTEL_SERVICE_NAME`` is honoured from registry 3.1.0 only. No Jaeger binary ran here.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import yaml

from configs.spec import Deployment, MonitoringInputs, Port, ServiceSpec, Upload
from contract import PROJECT, Jaeger, http_url

if TYPE_CHECKING:
    from settings import MonitoringSettings

OTLP_GRPC_PORT = Jaeger.OTLP_GRPC_PORT
OTLP_HTTP_PORT = Jaeger.OTLP_HTTP_PORT
QUERY_HTTP_PORT = Jaeger.UI_PORT
HEALTH_PORT = Jaeger.HEALTH_PORT
METRICS_PORT = Jaeger.METRICS_PORT
DEFAULT_MAX_TRACES = 100_000
DEFAULT_CONFIG_PATH = Jaeger.CONFIG_PATH
DEFAULT_STORAGE_NAME = "memstore"
REGISTRY_SERVICE_NAME = PROJECT
DEFAULT_OTLP_ENDPOINT = http_url(Jaeger.ALIAS, OTLP_HTTP_PORT)
SCRAPE_JOB: tuple[str, str] | None = (Jaeger.ALIAS, f"{Jaeger.ALIAS}:{METRICS_PORT}")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG_MAJOR_RE = re.compile(r"^v?(\d+)(?:\.\d+){0,2}(?:[-+].*)?$")


def _check_port(name: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{name} out of range: {port!r}")


def render_jaeger_config(
    *,
    max_traces: int = DEFAULT_MAX_TRACES,
    listen_host: str = "0.0.0.0",
    otlp_grpc_port: int = OTLP_GRPC_PORT,
    otlp_http_port: int = OTLP_HTTP_PORT,
    health_port: int = HEALTH_PORT,
    metrics_port: int = METRICS_PORT,
    storage_name: str = DEFAULT_STORAGE_NAME,
) -> str:
    """Jaeger v2 config (``--config``): OTLP in, in-memory store, UI, health, own metrics.

    Every endpoint binds ``listen_host`` explicitly and the store size is stated, so nothing
    depends on the image's environment; own metrics use a Prometheus pull reader, not the
    ``address`` key newer collectors reject. The UI keeps the extension default ``:16686``.
    """
    if isinstance(max_traces, bool) or not isinstance(max_traces, int) or max_traces <= 0:
        raise ValueError(f"max_traces must be a positive integer, got {max_traces!r}")
    for name, port in (
        ("otlp_grpc_port", otlp_grpc_port),
        ("otlp_http_port", otlp_http_port),
        ("health_port", health_port),
        ("metrics_port", metrics_port),
    ):
        _check_port(name, port)
    if not listen_host or any(ch in listen_host for ch in " :/"):
        raise ValueError(f"listen_host must be a host name or IPv4 address, got {listen_host!r}")
    if not _NAME_RE.match(storage_name):
        raise ValueError(f"storage_name must be an identifier, got {storage_name!r}")

    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "logs": {"level": "info"},
                "metrics": {
                    "level": "detailed",
                    "readers": [{"pull": {"exporter": {"prometheus": {"host": listen_host, "port": metrics_port}}}}],
                },
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {storage_name: {"memory": {"max_traces": max_traces}}}},
            "jaeger_query": {"storage": {"traces": storage_name}},
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"{listen_host}:{health_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{listen_host}:{otlp_grpc_port}"},
                    "http": {"endpoint": f"{listen_host}:{otlp_http_port}"},
                }
            }
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": storage_name}},
    }
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def jaeger_command(config_path: str = DEFAULT_CONFIG_PATH) -> list[str]:
    """Container command (the image's entrypoint is the jaeger binary): ``--config=<file>``."""
    if not config_path.startswith("/"):
        raise ValueError(f"config_path must be absolute, got {config_path!r}")
    return [f"--config={config_path}"]


def jaeger_healthcheck(image: str, *, health_port: int = HEALTH_PORT) -> list[str] | None:
    """Docker healthcheck ``test`` for a Jaeger v2 image, or None if the image is not known v2.

    ``jaegertracing/jaeger:2.x`` is Alpine based (busybox ``wget``), and the rendered config
    serves healthcheckv2's ``/status`` (200 when healthy, 503 while starting).
    """
    _check_port("health_port", health_port)
    ref = image.split("@", 1)[0]
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    if not repo.endswith("jaegertracing/jaeger"):
        return None
    match = _TAG_MAJOR_RE.match(tag)
    if match is None or int(match.group(1)) != 2:
        return None
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{health_port}/status"]


def registry_otel_env(
    tracing: bool,
    endpoint: str = DEFAULT_OTLP_ENDPOINT,
    service_name: str = REGISTRY_SERVICE_NAME,
) -> list[str]:
    """Environment (``NAME=value``, sorted) for the registry's OpenTelemetry trace export.

    Tracing off gives ``OTEL_TRACES_EXPORTER=none`` alone (no export attempts, no errors).
    Tracing on sends OTLP/HTTP to ``endpoint`` (a base URL without path: the exporter appends
    ``/v1/traces``). ``OTEL_SERVICE_NAME`` takes effect from registry 3.1.0; 3.0.x hard-codes
    ``distribution`` as its service name.
    """
    if not tracing:
        return ["OTEL_TRACES_EXPORTER=none"]
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint must be an http(s) base URL, got {endpoint!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint must have no path (the exporter appends /v1/traces), got {endpoint!r}")
    if not service_name or any(ch.isspace() for ch in service_name):
        raise ValueError(f"service_name must be a non-empty word, got {service_name!r}")
    settings = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint.rstrip("/"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": service_name,
    }
    return [f"{name}={value}" for name, value in sorted(settings.items())]


def enabled(settings: MonitoringSettings) -> bool:
    return settings.tracing


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    return Deployment("Jaeger", ServiceSpec(
        service=Jaeger.ALIAS,
        image=settings.jaeger_image,
        memory_mb=512,
        uploads=[Upload(DEFAULT_CONFIG_PATH, render_jaeger_config())],
        command=jaeger_command(),
        ports=[Port(QUERY_HTTP_PORT, settings.jaeger_port, settings.ui_bind_address)],
        healthcheck=jaeger_healthcheck(settings.jaeger_image),
    ), published_port=settings.jaeger_port)
