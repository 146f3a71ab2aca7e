"""Loki 3.x configuration: single binary, filesystem storage on a volume, TSDB v13, retention.

Pure renderer: plain values in, YAML text out (sorted keys). Retention needs the compactor, a
24h index period and ``delete_request_store``. The healthcheck depends on the image's version
(wget up to 3.5, none for distroless 3.6, ``loki -health`` from 3.7). No Loki binary ran here.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import yaml

from configs.spec import Deployment, MonitoringInputs, Port, ServiceSpec, Upload
from contract import Loki

if TYPE_CHECKING:
    from settings import MonitoringSettings

LOKI_HTTP_PORT = Loki.PORT
DEFAULT_PATH_PREFIX = Loki.DATA_PATH
SCRAPE_JOB: tuple[str, str] | None = (Loki.ALIAS, f"{Loki.ALIAS}:{LOKI_HTTP_PORT}")
# Ingestion limits of the seed. They equal Loki's own defaults (configuration reference:
# ingestion_rate_mb default 4, ingestion_burst_size_mb default 6); written out so a change of
# default upstream does not silently change this stack.
INGESTION_RATE_MB = 4
INGESTION_BURST_SIZE_MB = 6
# First day of the v13 schema period; the upstream example files use 2020-10-24.
DEFAULT_SCHEMA_FROM = "2020-10-24"
# Loki's documented minimum retention period.
MIN_RETENTION_HOURS = 24
# Loki release that added the `-health` flag.
LOKI_HEALTH_FLAG_SINCE = (3, 7)
# Loki release whose image became distroless (no shell, no HTTP client).
LOKI_DISTROLESS_SINCE = (3, 6)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TAG_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")


def _positive_number(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def render_loki_config(
    retention_hours: int,
    *,
    path_prefix: str = DEFAULT_PATH_PREFIX,
    http_port: int = LOKI_HTTP_PORT,
    ingestion_rate_mb: float = INGESTION_RATE_MB,
    ingestion_burst_size_mb: float = INGESTION_BURST_SIZE_MB,
    schema_from: str = DEFAULT_SCHEMA_FROM,
) -> str:
    """Render Loki's YAML config (``-config.file``) for a single binary on a volume.

    ``retention_hours`` becomes ``limits_config.retention_period``; the compactor deletes older
    chunks (retention needs ``delete_request_store`` and a 24h index period, both set here).
    """
    if isinstance(retention_hours, bool) or not isinstance(retention_hours, int):
        raise ValueError(f"retention_hours must be an integer, got {retention_hours!r}")
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(
            f"retention_hours must be at least {MIN_RETENTION_HOURS} (Loki's minimum retention "
            f"period), got {retention_hours}"
        )
    if not path_prefix.startswith("/") or path_prefix != path_prefix.rstrip("/"):
        raise ValueError(f"path_prefix must be absolute without a trailing slash: {path_prefix!r}")
    if isinstance(http_port, bool) or not 0 < http_port < 65536:
        raise ValueError(f"http_port out of range: {http_port!r}")
    _positive_number("ingestion_rate_mb", ingestion_rate_mb)
    _positive_number("ingestion_burst_size_mb", ingestion_burst_size_mb)
    if not _DATE_RE.match(schema_from):
        raise ValueError(f"schema_from must be YYYY-MM-DD, got {schema_from!r}")

    config = {
        "auth_enabled": False,
        "server": {"http_listen_port": http_port},
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": path_prefix,
            "storage": {
                "filesystem": {
                    "chunks_directory": f"{path_prefix}/chunks",
                    "rules_directory": f"{path_prefix}/rules",
                }
            },
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
        },
        "schema_config": {
            "configs": [
                {
                    "from": schema_from,
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "compactor": {
            "working_directory": f"{path_prefix}/compactor",
            "compaction_interval": "10m",
            "retention_enabled": True,
            "retention_delete_delay": "2h",
            "retention_delete_worker_count": 150,
            "delete_request_store": "filesystem",
        },
        "limits_config": {
            "retention_period": f"{retention_hours}h",
            "ingestion_rate_mb": ingestion_rate_mb,
            "ingestion_burst_size_mb": ingestion_burst_size_mb,
            # Alloy sends the registry's request id as structured metadata (configs/alloy.py).
            "allow_structured_metadata": True,
        },
        # The stack runs offline; do not phone stats.grafana.org.
        "analytics": {"reporting_enabled": False},
    }
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def _image_version(image: str) -> tuple[int, int] | None:
    """(major, minor) of an image reference's tag, or None if the tag is not a version."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _TAG_VERSION_RE.match(last.rsplit(":", 1)[1])
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def loki_healthcheck(image: str, *, http_port: int = LOKI_HTTP_PORT) -> list[str] | None:
    """Docker healthcheck ``test`` (``["CMD", ...]``) usable with this Loki image, or None.

    - tag >= 3.7: ``/usr/bin/loki -health -health.url=http://127.0.0.1:<port>/ready``
      (no shell needed; the flag is parsed before the config, cmd/loki/health.go);
    - tag 3.6.x: None — distroless, no shell and no HTTP client inside;
    - tag < 3.6: busybox ``wget`` against ``/ready``;
    - tag not a version (``latest``, digest only): None, because which case applies is unknown.
    """
    version = _image_version(image)
    if version is None:
        return None
    url = f"http://127.0.0.1:{http_port}{Loki.READY_PATH}"
    if version >= LOKI_HEALTH_FLAG_SINCE:
        return ["CMD", "/usr/bin/loki", "-health", f"-health.url={url}"]
    if version >= LOKI_DISTROLESS_SINCE:
        return None
    return ["CMD", "wget", "-q", "-O", "/dev/null", url]


def enabled(settings: MonitoringSettings) -> bool:
    return settings.logging


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    return Deployment("Loki", ServiceSpec(
        service=Loki.ALIAS,
        image=settings.loki_image,
        memory_mb=512,
        uploads=[Upload(Loki.CONFIG_PATH, render_loki_config(settings.loki_retention_hours))],
        command=[f"-config.file={Loki.CONFIG_PATH}"],
        ports=[Port(LOKI_HTTP_PORT, settings.loki_port, settings.ui_bind_address)],
        healthcheck=loki_healthcheck(settings.loki_image),
    ), volumes=[("data", Loki.DATA_PATH)], published_port=settings.loki_port)
