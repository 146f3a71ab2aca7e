"""Jaeger v2 (``jaegertracing/jaeger:2.x``) configuration and the registry's OTel environment.

Pure renderers (no I/O, deterministic). No Jaeger binary runs here; keys are checked against
upstream files (docs/upstream-references.md).

Decision: render a config instead of relying on the built-in all-in-one one. The built-in
``cmd/jaeger/internal/all-in-one.yaml`` (jaegertracing/jaeger @
a46bf373cc047bb66503a9f0e82627f0c12fbc0c) binds every endpoint to
``${env:JAEGER_LISTEN_HOST:-localhost}`` — OTLP 4317/4318, health 13133 and the own metrics on
8888 — so it only serves the private network if the image happens to set
``JAEGER_LISTEN_HOST=0.0.0.0`` (the ``cmd/jaeger/Dockerfile`` read @
e8bf982bbf5f4e2ee4e8682e03a71d0b9bd69dd5 does not; third parties report that later images do).
It also fixes the in-memory store at 100000 traces and, at that commit, still used
``service.telemetry.metrics.address``, which the OpenTelemetry Collector ignores since v0.123
and rejects since v0.128 ("'' has invalid keys: address"; open-telemetry/opentelemetry-collector
PR #11205 deprecating it). The rendered file states the binds, the store size and the metrics
reader explicitly:

- components and their keys (``jaeger_storage.backends.<name>.memory.max_traces``,
  ``jaeger_query.storage.traces``, ``healthcheckv2`` with ``use_v2`` and ``http.endpoint``,
  ``otlp`` receiver ``protocols.grpc/http.endpoint``, ``batch`` processor,
  ``jaeger_storage_exporter.trace_storage``, ``service.extensions``/``pipelines.traces``,
  ``service.telemetry.resource``/``logs.level``/``metrics.level``): the all-in-one.yaml above;
- the metrics reader ``readers: [{pull: {exporter: {prometheus: {host, port}}}}]``:
  open-telemetry/opentelemetry.io content/en/docs/collector/internal-telemetry.md @
  999914e3aa06e3732f750df71b0734e41bcbfea9;
- health ``/status`` path of healthcheckv2: open-telemetry/opentelemetry-collector-contrib
  extension/healthcheckv2extension/README.md @ f6e8c13a484667076976cdc5140fc6cc2abd61dd;
- the UI/query port is left at the extension default ``ports.PortToHostPort(ports.QueryHTTP)``
  = ``:16686``, all interfaces (cmd/jaeger/internal/extension/jaegerquery/factory.go @
  d031261c6727be271a6fbd29064f6a206fb6c62f).

Image: ``FROM $base_image`` (cmd/jaeger/Dockerfile) built from scripts/build/docker/base/
Dockerfile @ 348903a6f77c2d57e6682eb5d0b25bd76590018d = ``alpine:3.23.3``: ``/bin/sh`` and
busybox ``wget`` exist; ``ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]``; ``USER 10001``.

Registry tracing env: distribution/distribution tracing/tracing.go @
1ba51c3572999ef52331f5c0ea790474348d44f5 builds its exporter with
``autoexport.NewSpanExporter`` (open-telemetry/opentelemetry-go-contrib
exporters/autoexport/spans.go @ a23e5a9b6a3a44d9eea501276ca6e1ef2e63f259:
``OTEL_TRACES_EXPORTER`` = ``otlp`` (default) | ``none`` | ``console``;
``OTEL_EXPORTER_OTLP_PROTOCOL`` = ``http/protobuf`` (default) | ``grpc``); the OTLP/HTTP exporter
reads ``OTEL_EXPORTER_OTLP_ENDPOINT`` as a base URL and appends ``/v1/traces``; an ``http``
scheme means no TLS (open-telemetry/opentelemetry-go exporters/otlp/otlptrace/otlptracehttp/
internal/otlpconfig/envconfig.go @ c1776ad39089a39bd61fe6d2d29620d670f18c3e).
``OTEL_SERVICE_NAME`` is honoured from registry 3.1.0 only: 3.0.x hard-codes ``service.name``
``distribution`` (tracing.go above; sdktrace ``WithResource`` merges the environment *under*
it), fixed by distribution PR #4771 "prefer otel variables over hard coded service name",
listed in releases/v3.1.0.toml @ 26d7168370f338fa15720b9df6e8a02b86645127.
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
    """Jaeger v2 config (``--config``): OTLP in, in-memory store, UI, health, own metrics."""
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
    ``/v1/traces``).
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
