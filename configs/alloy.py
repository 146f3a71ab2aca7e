"""Grafana Alloy configuration: Docker logs of this stack's containers -> Loki.

Pure renderer: plain values in, Alloy-syntax text out (deterministic; every string literal is
escaped by one function, ``alloy_string``).

Pipeline (component and argument names checked against grafana/alloy docs; nothing ran here,
there is no Alloy binary — see docs/upstream-references.md):

``discovery.docker`` -> ``loki.source.docker`` (+ ``relabel_rules`` from ``discovery.relabel``)
-> ``loki.process`` -> ``loki.write``

- discovery.docker (docs/sources/reference/components/discovery/discovery.docker.md @
  d1aa3766861c3305f45abeb82a79dc52a63e0ca4): ``host`` and repeated ``filter { name, values }``
  blocks passed to the Docker Engine's container list. All values of a ``label`` filter must
  match (moby api/types/filters/parse.go ``MatchKVList`` @ 30bf2787167e475f1960f854c2857b3680f989e1:
  "returns true if all the pairs in sources exist"), so one filter with both
  ``registry-mirror.project=<p>`` and ``registry-mirror.stack=<s>`` selects exactly this stack.
  Docker labels appear as ``__meta_docker_container_label_<name>`` with the name sanitized
  (prometheus/prometheus discovery/moby/docker.go @ 5825efd03491af92a410fb049cdf712ef812c9ca,
  ``strutil.SanitizeLabelName``): ``registry-mirror.service`` ->
  ``__meta_docker_container_label_registry_mirror_service``.
- discovery.relabel with ``targets = []``, used only for its ``rules`` export, and
  ``loki.source.docker`` ``relabel_rules``: the pattern of docs/sources/monitor/
  monitor-docker-containers.md @ 4e5935c44f83d52bcd8419a8fbd63aae4df8f7a3 (regex ``/(.*)`` on
  ``__meta_docker_container_name``). Rule arguments: docs/sources/shared/reference/components/
  rule-block.md @ b68a122f4138476129af5bc2ceef222e3011165b.
- loki.source.docker (docs/sources/reference/components/loki/loki.source.docker.md @
  d1aa3766861c3305f45abeb82a79dc52a63e0ca4): ``host``, ``targets``, ``forward_to``,
  ``relabel_rules``. Logs come through the Docker API, so ``stage.docker`` (which parses
  Docker's json-file format) is not used.
- loki.process (docs/sources/reference/components/loki/loki.process.md @
  0d385e562f7d1a479ad35acf6981e670ebece3b5): ``stage.match`` (``selector`` is a LogQL stream
  selector) restricts JSON parsing to the registry's lines; ``stage.json`` ``expressions`` are
  JMESPath. The registry's keys contain dots (``http.request.method``, distribution/distribution
  internal/dcontext/http.go @ f7e5eaae702413ccaa59bb5aae09ea370fb1a894): an unquoted
  ``http.request.method`` is a JMESPath sub-expression (nested objects), so each such key is
  written as a JMESPath quoted identifier ``"http.request.method"`` (jmespath/jmespath.py
  docs/specification.rst @ 4a4f6dbd98549b2b8fc71bbc19860d317a6abfdb: "An identifier can also be
  quoted ... the same grammar rule as a JSON string"; loki.process.md shows the escaped form
  ``"\\"request_User-Agent\\""``). ``stage.labels`` promotes only ``level`` (few values);
  ``stage.structured_metadata`` keeps ``method``, ``status`` and ``request_id`` per line without
  creating streams (a request id as a label would make one stream per request).
- loki.write (docs/sources/reference/components/loki/loki.write.md @
  926837a233ddb2f3f204d2f8ae3f7f0e28ade5ed): ``endpoint { url }``.
- Strings: docs/sources/get-started/configuration-syntax/expressions/types_and_values.md @
  9aae786cf68e329ef9a502a6149b8e08b8fb5d84 (double-quoted, ``\\"``, ``\\\\``, ``\\n``, ``\\t``,
  ``\\uNNNN`` ... escapes).
- Command line: docs/sources/reference/cli/run.md @ 0a6bf2b85670c6368b704921fff4f5e7ec944f08
  (``alloy run [<FLAG> ...] <PATH_NAME>``, ``--server.http.listen-addr`` default
  ``127.0.0.1:12345``, ``--storage.path``). Image: grafana/alloy ``Dockerfile`` @
  ea30b1f7f5a1e46c647a5a62ee6a4579a8423b21 (Ubuntu base, ``ENTRYPOINT ["/bin/alloy"]``,
  ``/var/lib/alloy/data``, no curl/wget; bash is part of the Ubuntu base).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from configs.spec import Deployment, MonitoringInputs, Mount, Port, ServiceSpec, Upload
from contract import LABEL_PROJECT, LABEL_SERVICE, LABEL_STACK, Alloy, Loki, Registry, http_url

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

# Extracted name -> field of the registry's JSON log line (distribution internal/dcontext/http.go).
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
    ``method``, ``status``, ``request_id`` as structured metadata.
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
    ``/-/ready`` answers 200 once the configuration is loaded (grafana/alloy
    docs/sources/reference/cli/healthcheck.md @ d1dc5203687f7e3747bbcdea87b56a3f0dc695d5, which
    also documents an ``alloy healthcheck`` command for releases that ship it; the bash form
    works on any release — workaround from grafana/alloy issue #5001).
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
