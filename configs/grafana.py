"""Grafana 12.x provisioning files, environment and entrypoint (pure renderers).

Traces link to logs by time and service, not by id: the registry's lines carry no trace id.
The entrypoint resets the admin password before every start, because Grafana applies
``GF_SECURITY_ADMIN_PASSWORD`` only to a fresh database. No Grafana binary ran here.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from configs.spec import Deployment, MonitoringInputs, Port, ServiceSpec, Upload
from contract import Grafana, Jaeger, Loki, Prometheus, Registry, http_url

if TYPE_CHECKING:
    from settings import MonitoringSettings

GRAFANA_HTTP_PORT = Grafana.PORT
# Data source uids: the dashboard's panels name them.
PROMETHEUS_UID = "prometheus"
LOKI_UID = "loki"
JAEGER_UID = "jaeger"
# The secret environment variable that carries the admin password (never rendered here).
ADMIN_PASSWORD_ENV = "GF_SECURITY_ADMIN_PASSWORD"
DEFAULT_DASHBOARDS_PATH = Grafana.DASHBOARDS_PATH
DEFAULT_HOME = "/usr/share/grafana"
DEFAULT_CONFIG = "/etc/grafana/grafana.ini"
DEFAULT_DB_PATH = f"{Grafana.DATA_PATH}/grafana.db"
DEFAULT_RUN_SH = "/run.sh"
DASHBOARD_FILE = Path(__file__).with_name("grafana-dashboard.json")
DASHBOARD_NAME = "registry-mirror.json"
SCRAPE_JOB: tuple[str, str] | None = (Grafana.ALIAS, f"{Grafana.ALIAS}:{GRAFANA_HTTP_PORT}")
PROVISIONING = "/etc/grafana/provisioning"
# Span window widening for trace -> logs. The registry logs "response completed" at the end of
# a request, and Docker stamps the line when it reads it: a few seconds either way cover both.
DEFAULT_SPAN_START_SHIFT = "-5s"
DEFAULT_SPAN_END_SHIFT = "5s"
REGISTRY_SERVICE = Registry.ALIAS

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHIFT_RE = re.compile(r"^-?\d+(ms|s|m|h)$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def escape_dollars(value: Any) -> Any:
    """Double every ``$`` in the strings of ``value`` so Grafana's expansion yields them as-is."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: escape_dollars(item) for key, item in value.items()}
    if isinstance(value, list):
        return [escape_dollars(item) for item in value]
    return value


def _check_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s) URL, got {url!r}")


def render_datasources(
    prometheus_url: str,
    loki_url: str | None,
    jaeger_url: str | None,
    *,
    registry_service: str = REGISTRY_SERVICE,
    span_start_time_shift: str = DEFAULT_SPAN_START_SHIFT,
    span_end_time_shift: str = DEFAULT_SPAN_END_SHIFT,
    logs_query: str | None = None,
) -> str:
    """Data source provisioning YAML: Prometheus (default), Loki, Jaeger -> Loki links.

    ``logs_query`` is the LogQL the trace view opens in Loki (default: the registry's stream,
    ``{service="registry"}``); it is written verbatim after ``$`` escaping. A service that is
    turned off (``None``) gets no data source, and traces link to logs only when Loki runs.
    The link opens the registry's stream for the span's time window (widened by the shifts);
    Loki gets no ``derivedFields``, as no line holds a trace id to turn into a link.
    """
    _check_url("prometheus_url", prometheus_url)
    for name, url in (("loki_url", loki_url), ("jaeger_url", jaeger_url)):
        if url is not None:
            _check_url(name, url)
    if not _SERVICE_RE.match(registry_service):
        raise ValueError(f"registry_service must be a plain name, got {registry_service!r}")
    for name, shift in (
        ("span_start_time_shift", span_start_time_shift),
        ("span_end_time_shift", span_end_time_shift),
    ):
        if not _SHIFT_RE.match(shift):
            raise ValueError(f"{name} must be a duration like -5s or 1m, got {shift!r}")
    query = logs_query if logs_query is not None else '{service="' + registry_service + '"}'

    datasources: list[dict[str, Any]] = [
        {
            "name": "Prometheus",
            "type": "prometheus",
            "uid": PROMETHEUS_UID,
            "access": "proxy",
            "orgId": 1,
            "url": prometheus_url,
            "isDefault": True,
            "editable": False,
            "jsonData": {"httpMethod": "POST"},
        }
    ]
    if loki_url is not None:
        datasources.append(
            {
                "name": "Loki",
                "type": "loki",
                "uid": LOKI_UID,
                "access": "proxy",
                "orgId": 1,
                "url": loki_url,
                "isDefault": False,
                "editable": False,
            }
        )
    if jaeger_url is not None:
        json_data: dict[str, Any] = {"nodeGraph": {"enabled": True}}
        if loki_url is not None:
            json_data["tracesToLogsV2"] = {
                "datasourceUid": LOKI_UID,
                "spanStartTimeShift": span_start_time_shift,
                "spanEndTimeShift": span_end_time_shift,
                "filterByTraceID": False,
                "filterBySpanID": False,
                "customQuery": True,
                "query": query,
            }
        datasources.append(
            {
                "name": "Jaeger",
                "type": "jaeger",
                "uid": JAEGER_UID,
                "access": "proxy",
                "orgId": 1,
                "url": jaeger_url,
                "isDefault": False,
                "editable": False,
                "jsonData": json_data,
            }
        )
    document = {"apiVersion": 1, "prune": True, "datasources": datasources}
    return yaml.safe_dump(escape_dollars(document), sort_keys=True, default_flow_style=False)


def render_dashboard_provider(path: str = DEFAULT_DASHBOARDS_PATH, *, folder: str = "registry-mirror") -> str:
    """Dashboard provisioning YAML: one file provider reading JSON dashboards from ``path``."""
    if not path.startswith("/"):
        raise ValueError(f"path must be absolute, got {path!r}")
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "registry-mirror",
                "orgId": 1,
                "folder": folder,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
    return yaml.safe_dump(escape_dollars(document), sort_keys=True, default_flow_style=False)


def grafana_env(admin_user: str, anonymous: bool) -> list[str]:
    """``GF_*`` settings as ``NAME=value`` (sorted). Never the admin password (a secret env).

    Sign-up and org creation are off; anonymous visitors get the Viewer role when ``anonymous``;
    usage reporting and update checks are off (the stack runs offline).
    """
    if not admin_user or any(ch in admin_user for ch in "\n\r\0"):
        raise ValueError(f"admin_user must be a non-empty single line, got {admin_user!r}")
    settings = {
        "GF_SECURITY_ADMIN_USER": admin_user,
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_USERS_ALLOW_ORG_CREATE": "false",
        "GF_AUTH_ANONYMOUS_ENABLED": "true" if anonymous else "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
    }
    if anonymous:
        settings["GF_AUTH_ANONYMOUS_ORG_ROLE"] = "Viewer"
    return [f"{name}={value}" for name, value in sorted(settings.items())]


def render_grafana_entrypoint(
    *,
    password_env: str = ADMIN_PASSWORD_ENV,
    home: str = DEFAULT_HOME,
    config: str = DEFAULT_CONFIG,
    db_path: str = DEFAULT_DB_PATH,
    run_sh: str = DEFAULT_RUN_SH,
    shell: str = "/bin/sh",
) -> list[str]:
    """Container entrypoint that makes the admin password equal ``$<password_env>`` on every start.

    On an existing database (``db_path`` present) it resets user 1's password from the variable
    (read on stdin), logs a warning if that fails, and then execs ``run_sh`` with the
    container command as arguments. On a fresh database Grafana itself creates the admin from
    the same variable. The returned list is ``[shell, "-c", script, "grafana-entrypoint"]``:
    Docker appends the container command, which the script passes on as ``"$@"``.

    The password goes to ``grafana cli`` on stdin, so it never appears in the command text or
    in any process's arguments (``printf`` is a shell builtin); a newline would cut it (one
    line is read). The CLI finds the database through the image's ``GF_PATHS_DATA``, and the
    final ``exec`` keeps Grafana the container's main process.
    """
    if not _ENV_NAME_RE.match(password_env):
        raise ValueError(f"password_env must be an environment variable name: {password_env!r}")
    for name, value in (("home", home), ("config", config), ("db_path", db_path), ("run_sh", run_sh), ("shell", shell)):
        if not value.startswith("/"):
            raise ValueError(f"{name} must be an absolute path, got {value!r}")
    grafana_bin = shlex.quote(f"{home}/bin/grafana")
    script = "\n".join(
        [
            f'if [ -n "${{{password_env}:-}}" ] && [ -f {shlex.quote(db_path)} ]; then',
            f"  if printf '%s\\n' \"${password_env}\" | {grafana_bin} cli"
            f" --homepath {shlex.quote(home)} --config {shlex.quote(config)}"
            " admin reset-admin-password --password-from-stdin >/dev/null; then",
            f"    echo 'grafana-entrypoint: admin password set from {password_env}' >&2",
            "  else",
            "    echo 'grafana-entrypoint: WARNING: admin password reset failed; the stored password is unchanged' >&2",
            "  fi",
            "fi",
            f'exec {shlex.quote(run_sh)} "$@"',
        ]
    )
    return [shell, "-c", script, "grafana-entrypoint"]


def grafana_healthcheck(port: int = GRAFANA_HTTP_PORT) -> list[str]:
    """Docker healthcheck ``test``: ``curl`` (in the image) against ``GET /api/health``.

    ``/api/health`` is Grafana's documented health endpoint.
    """
    if isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port out of range: {port!r}")
    return ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{Grafana.READY_PATH}"]


def _uses_loki(item: dict[str, Any]) -> bool:
    sources = [item.get("datasource")] + [t.get("datasource") for t in item.get("targets", [])]
    return any(isinstance(s, dict) and s.get("uid") == LOKI_UID for s in sources)


CACHE_ROW_TITLE = "Bounded cache"
CACHE_METRIC_PREFIX = "registry_cache_"


def _uses_cache(item: dict[str, Any]) -> bool:
    if item.get("type") == "row" and item.get("title") == CACHE_ROW_TITLE:
        return True
    return any(CACHE_METRIC_PREFIX in str(t.get("expr", "")) for t in item.get("targets", []))


def render_dashboard(dashboard: dict[str, Any], *, logging: bool, cache: bool = False) -> str:
    """The registry dashboard as Grafana reads it. Without Loki its logs panel and the
    variables that query Loki are left out: Grafana would show them bound to a missing
    data source. Without a cache keeper (no mirror with cacheMaxSize or cachePin) its row is
    left out."""
    if not cache:
        dashboard = dict(dashboard)
        dashboard["panels"] = [p for p in dashboard["panels"] if not _uses_cache(p)]
    if not logging:
        dashboard = dict(dashboard)
        dashboard["panels"] = [p for p in dashboard["panels"] if not _uses_loki(p)]
        templating = dict(dashboard.get("templating", {}))
        templating["list"] = [v for v in templating.get("list", []) if not _uses_loki(v)]
        dashboard["templating"] = templating
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def enabled(settings: MonitoringSettings) -> bool:
    return True


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    datasources = render_datasources(
        http_url(Prometheus.ALIAS, Prometheus.PORT),
        http_url(Loki.ALIAS, Loki.PORT) if settings.logging else None,
        http_url(Jaeger.ALIAS, Jaeger.UI_PORT) if settings.tracing else None,
    )
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return Deployment("Grafana", ServiceSpec(
        service=Grafana.ALIAS,
        image=settings.grafana_image,
        memory_mb=512,
        uploads=[
            Upload(f"{PROVISIONING}/datasources/registry-mirror.yaml", datasources),
            Upload(f"{PROVISIONING}/dashboards/registry-mirror.yaml", render_dashboard_provider()),
            Upload(f"{DEFAULT_DASHBOARDS_PATH}/{DASHBOARD_NAME}",
                   render_dashboard(dashboard, logging=settings.logging, cache=inputs.cache)),
        ],
        envs=[
            *grafana_env(settings.grafana_admin_user, settings.grafana_anonymous),
            inputs.grafana_password_env,
        ],
        entrypoint=render_grafana_entrypoint(),
        ports=[Port(GRAFANA_HTTP_PORT, settings.grafana_port, settings.ui_bind_address)],
        healthcheck=grafana_healthcheck(),
    ), volumes=[("data", Grafana.DATA_PATH)], published_port=settings.grafana_port)
