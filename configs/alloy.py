"""Grafana Alloy configuration: Docker logs of this stack's containers -> Loki.

Pure renderer: plain values in, Alloy-syntax text out; every string literal goes through
``alloy_string``. One label filter selects exactly this stack's containers, and the registry's
dotted JSON keys are quoted JMESPath identifiers. No Alloy binary ran here.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from configs.spec import Deployment, MonitoringInputs, Mount, Port, ServiceSpec, Upload
from contract import LABEL_PROJECT, LABEL_SERVICE, LABEL_STACK, Alloy, Front, Loki, Registry, http_url

if TYPE_CHECKING:
    from settings import MonitoringSettings

DEFAULT_LOKI_PUSH_URL = http_url(Loki.ALIAS, Loki.PORT) + Loki.PUSH_PATH
DEFAULT_DOCKER_HOST = f"unix://{Alloy.DOCKER_SOCKET}"
DEFAULT_CONFIG_PATH = Alloy.CONFIG_PATH
DEFAULT_LISTEN_ADDR = f"0.0.0.0:{Alloy.PORT}"
DEFAULT_STORAGE_PATH = Alloy.DATA_PATH
ALLOY_HTTP_PORT = Alloy.PORT
SCRAPE_JOB: tuple[str, str] | None = (Alloy.ALIAS, f"{Alloy.ALIAS}:{ALLOY_HTTP_PORT}")

PROJECT_LABEL = LABEL_PROJECT
STACK_LABEL = LABEL_STACK
SERVICE_LABEL = LABEL_SERVICE
REGISTRY_SERVICE = Registry.ALIAS

# Extracted name -> field of the registry's JSON log line (the names its request logger writes).
REGISTRY_JSON_FIELDS: dict[str, str] = {
    "level": "level",
    "method": "http.request.method",
    "request_id": "http.request.id",
    "status": "http.response.status",
}
# Low-cardinality values promoted to Loki labels.
LABEL_FIELDS: tuple[str, ...] = ("level",)
# Per-line values kept as structured metadata (queryable, no new streams).
STRUCTURED_METADATA_FIELDS: tuple[str, ...] = ("method", "request_id", "status")

# The upstream front's refused redirects (configs/front.py): its JSON access log carries
# `"redirect_refused":"<reason>"`, empty unless the front refused to follow an upstream's
# redirect. nginx has no counters of its own; this line, matched only when the reason is
# non-empty, is what Alloy counts into FRONT_REFUSALS_METRIC (on Alloy's /metrics, which
# Prometheus scrapes). An RE2 expression (the one Python's `re` reads the same way).
FRONT_SERVICE_SELECTOR = '{service=~"' + Front.ALIAS + '.*"}'
FRONT_REFUSAL_FIELD = "redirect_refused"
FRONT_REFUSAL_REGEX = f'"{FRONT_REFUSAL_FIELD}":"(?P<{FRONT_REFUSAL_FIELD}>[a-z-]+)"'
FRONT_REFUSALS_PREFIX = "registry_mirror_"
FRONT_REFUSALS_METRIC = "front_redirects_refused_total"
FRONT_REFUSALS_IDLE = "720h"

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_SAFE_RE = re.compile(r"[^a-zA-Z0-9_]")


def alloy_string(value: str) -> str:
    """An Alloy double-quoted string literal whose value is exactly ``value``.

    JSON string syntax is a subset of Alloy's: it only emits ``\\"``, ``\\\\``, ``\\b``, ``\\f``,
    ``\\n``, ``\\r``, ``\\t`` and ``\\uNNNN`` (BMP, never a surrogate with ensure_ascii=False),
    all of which Alloy accepts with the same meaning.
    """
    return json.dumps(value, ensure_ascii=False)


def jmespath_identifier(key: str) -> str:
    """A JMESPath expression selecting the top-level key ``key`` literally.

    Plain identifiers (``[A-Za-z_][A-Za-z0-9_]*``) stay unquoted; anything else (dots, hyphens)
    becomes a quoted identifier, whose grammar is a JSON string.
    """
    if _IDENT_RE.match(key):
        return key
    return json.dumps(key, ensure_ascii=False)


def docker_label_meta(label: str) -> str:
    """Name of the discovery.docker meta label carrying the Docker label ``label``."""
    return "__meta_docker_container_label_" + _LABEL_SAFE_RE.sub("_", label)


def _attributes(entries: dict[str, str], indent: str) -> list[str]:
    width = max(len(k) for k in entries)
    return [f"{indent}{key.ljust(width)} = {alloy_string(value)}" for key, value in entries.items()]


def _object(entries: dict[str, str], indent: str) -> list[str]:
    width = max(len(k) for k in entries)
    lines = [f"{indent}{key.ljust(width)} = {alloy_string(value)}," for key, value in entries.items()]
    return lines


def render_alloy_config(
    project: str,
    stack: str,
    loki_url: str = DEFAULT_LOKI_PUSH_URL,
    *,
    docker_host: str = DEFAULT_DOCKER_HOST,
    registry_service: str = REGISTRY_SERVICE,
) -> str:
    """Render the Alloy config that ships this stack's container logs to Loki.

    Only containers labelled ``registry-mirror.project=<project>`` and
    ``registry-mirror.stack=<stack>`` are read. Every entry gets the labels ``container``,
    ``service`` and ``stack``; the registry's JSON lines also get ``level`` as a label and
    ``method``, ``status``, ``request_id`` as structured metadata. A front's line recording a
    refused redirect gets the label ``redirect_refused`` (the reason) and increments
    ``registry_mirror_front_redirects_refused_total`` on Alloy's own /metrics.
    """
    for name, value in (("project", project), ("stack", stack), ("loki_url", loki_url)):
        if not value:
            raise ValueError(f"{name} must not be empty")
    if not loki_url.startswith(("http://", "https://")):
        raise ValueError(f"loki_url must be an http(s) URL, got {loki_url!r}")
    if not re.match(r"^[A-Za-z0-9_.-]+$", registry_service):
        raise ValueError(f"registry_service must be a plain name, got {registry_service!r}")

    selector = '{service="' + registry_service + '"}'
    json_expressions = {name: jmespath_identifier(field) for name, field in sorted(REGISTRY_JSON_FIELDS.items())}
    label_values = {name: "" for name in LABEL_FIELDS}
    metadata_values = {name: "" for name in STRUCTURED_METADATA_FIELDS}

    lines = [
        "// Generated by configs/alloy.py: Docker logs of one registry-mirror stack -> Loki.",
        "",
        'discovery.docker "stack" {',
        f"  host = {alloy_string(docker_host)}",
        "",
        "  filter {",
        f"    name   = {alloy_string('label')}",
        "    values = ["
        + ", ".join(alloy_string(v) for v in (f"{PROJECT_LABEL}={project}", f"{STACK_LABEL}={stack}"))
        + "]",
        "  }",
        "}",
        "",
        'discovery.relabel "stack_logs" {',
        "  targets = []",
        "",
        "  rule {",
        f"    source_labels = [{alloy_string('__meta_docker_container_name')}]",
        f"    regex         = {alloy_string('/(.*)')}",
        f"    target_label  = {alloy_string('container')}",
        "  }",
        "",
        "  rule {",
        f"    source_labels = [{alloy_string(docker_label_meta(SERVICE_LABEL))}]",
        f"    target_label  = {alloy_string('service')}",
        "  }",
        "",
        "  rule {",
        f"    source_labels = [{alloy_string(docker_label_meta(STACK_LABEL))}]",
        f"    target_label  = {alloy_string('stack')}",
        "  }",
        "}",
        "",
        'loki.source.docker "stack" {',
        f"  host          = {alloy_string(docker_host)}",
        "  targets       = discovery.docker.stack.targets",
        "  relabel_rules = discovery.relabel.stack_logs.rules",
        "  forward_to    = [loki.process.registry_json.receiver]",
        "}",
        "",
        'loki.process "registry_json" {',
        "  forward_to = [loki.write.loki.receiver]",
        "",
        "  stage.match {",
        f"    selector = {alloy_string(selector)}",
        "",
        "    stage.json {",
        "      expressions = {",
        *_object(json_expressions, "        "),
        "      }",
        "    }",
        "",
        "    stage.labels {",
        "      values = {",
        *_object(label_values, "        "),
        "      }",
        "    }",
        "",
        "    stage.structured_metadata {",
        "      values = {",
        *_object(metadata_values, "        "),
        "      }",
        "    }",
        "  }",
        "",
        "  // the fronts' refused redirects (configs/front.py): counted, and labelled in Loki",
        "  stage.match {",
        f"    selector = {alloy_string(FRONT_SERVICE_SELECTOR)}",
        "",
        "    stage.regex {",
        f"      expression = {alloy_string(FRONT_REFUSAL_REGEX)}",
        "    }",
        "",
        "    stage.labels {",
        "      values = {",
        *_object({FRONT_REFUSAL_FIELD: ""}, "        "),
        "      }",
        "    }",
        "",
        "    stage.metrics {",
        "      metric.counter {",
        *_attributes({
            "name": FRONT_REFUSALS_METRIC,
            "prefix": FRONT_REFUSALS_PREFIX,
            "description": "Upstream redirects the front refused to follow, by front and reason",
            "source": FRONT_REFUSAL_FIELD,
            "action": "inc",
            # a refusal is rare: the series must outlive Prometheus's alert window, or each
            # one would start a new series at 1, which increase() cannot see
            "max_idle_duration": FRONT_REFUSALS_IDLE,
        }, "        "),
        "      }",
        "    }",
        "  }",
        "}",
        "",
        'loki.write "loki" {',
        "  endpoint {",
        f"    url = {alloy_string(loki_url)}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def alloy_command(
    config_path: str = DEFAULT_CONFIG_PATH,
    *,
    listen_addr: str = DEFAULT_LISTEN_ADDR,
    storage_path: str = DEFAULT_STORAGE_PATH,
) -> list[str]:
    """Container command (the image's entrypoint is ``/bin/alloy``): ``run <flags> <file>``."""
    return [
        "run",
        f"--server.http.listen-addr={listen_addr}",
        f"--storage.path={storage_path}",
        config_path,
    ]


def alloy_healthcheck(port: int = ALLOY_HTTP_PORT) -> list[str]:
    """Docker healthcheck ``test`` for the Alloy image (no curl/wget inside; bash is).

    Sends ``GET /-/ready`` over bash's ``/dev/tcp`` and succeeds on an HTTP 200 status line.
    ``/-/ready`` answers 200 once the configuration is loaded. Newer releases also ship an
    ``alloy healthcheck`` command; the bash form works on any release.
    """
    if isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port out of range: {port!r}")
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && "
        "printf 'GET /-/ready HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && "
        "head -n 1 <&3 | grep -q ' 200 '"
    )
    return ["CMD", "bash", "-c", script]


def enabled(settings: MonitoringSettings) -> bool:
    return settings.logging


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    return Deployment("Alloy", ServiceSpec(
        service=Alloy.ALIAS,
        image=settings.alloy_image,
        memory_mb=256,
        uploads=[Upload(DEFAULT_CONFIG_PATH, render_alloy_config(inputs.project, inputs.stack))],
        command=alloy_command(),
        # Read-only keeps Alloy from replacing the socket file; it does NOT limit the Docker
        # API: whoever can talk to the socket can control Docker.
        mounts=[Mount(Alloy.DOCKER_SOCKET, host_path=Alloy.DOCKER_SOCKET, read_only=True)],
        ports=[Port(ALLOY_HTTP_PORT, settings.alloy_port, settings.ui_bind_address)],
        healthcheck=alloy_healthcheck(),
    ), volumes=[("data", DEFAULT_STORAGE_PATH)], published_port=settings.alloy_port,
       after=[Loki.ALIAS])
