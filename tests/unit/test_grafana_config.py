"""Grafana provisioning, environment and entrypoint renderers, checked against upstream Grafana.

No Grafana binary runs here. Provisioning keys are compared with the upstream docs named below;
the entrypoint script is executed for real with /bin/sh (and bash) against stand-ins for the
image's ``grafana`` binary and ``/run.sh``; the healthcheck command runs for real with curl
against a local HTTP server.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.grafana import (
    grafana_env,
    grafana_healthcheck,
    render_dashboard_provider,
    render_datasources,
    render_grafana_entrypoint,
)
from tests.conftest import require_tool
from tests.unit.conftest import StatusHandler

# Upstream sources, named in assertion messages; repository, path and commit of each:
# docs/upstream-references.md ("Source names used by the unit tests").
PROVISIONING_DOC = "PROVISIONING_DOC (docs/upstream-references.md)"
JAEGER_DS_DOC = "JAEGER_DS_DOC (docs/upstream-references.md)"
LOKI_DS_DOC = "LOKI_DS_DOC (docs/upstream-references.md)"
DEFAULTS_INI = "DEFAULTS_INI (docs/upstream-references.md)"
CONFIGURE_DOC = "CONFIGURE_DOC (docs/upstream-references.md)"
DOCKERFILE = "DOCKERFILE (docs/upstream-references.md)"
RUN_SH = "RUN_SH (docs/upstream-references.md)"
CLI_COMMANDS = "CLI_COMMANDS (docs/upstream-references.md)"
CLI_FLAGS = "CLI_FLAGS (docs/upstream-references.md)"
RESET_PASSWORD = "RESET_PASSWORD (docs/upstream-references.md)"
HEALTH_API = "HEALTH_API (docs/upstream-references.md)"

# Data source fields of PROVISIONING_DOC's example file ("<string, required>" name/type/access,
# orgId, uid, url, isDefault, jsonData, editable, ...).
DATASOURCE_FIELDS = {
    "name",
    "type",
    "access",
    "orgId",
    "uid",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
    "secureJsonData",
    "version",
    "editable",
}
TOP_LEVEL_FIELDS = {"apiVersion", "deleteDatasources", "prune", "datasources"}  # PROVISIONING_DOC
PROVIDER_FIELDS = {
    "name",
    "orgId",
    "folder",
    "folderUid",
    "type",
    "disableDeletion",
    "updateIntervalSeconds",
    "allowUiUpdates",
    "options",
}  # PROVISIONING_DOC, dashboards
PROVIDER_OPTIONS = {"path", "foldersFromFilesStructure"}  # PROVISIONING_DOC
TRACES_TO_LOGS_V2_FIELDS = {
    "datasourceUid",
    "spanStartTimeShift",
    "spanEndTimeShift",
    "tags",
    "filterByTraceID",
    "filterBySpanID",
    "customQuery",
    "query",
}  # JAEGER_DS_DOC provisioning example
# [section] -> keys, as in DEFAULTS_INI (only the settings this stack overrides).
DEFAULTS_INI_KEYS = {
    "security": {"admin_user", "admin_password", "disable_gravatar", "disable_initial_admin_creation"},
    "users": {"allow_sign_up", "allow_org_create"},
    "auth.anonymous": {"enabled", "org_name", "org_role", "hide_version"},
    "analytics": {"reporting_enabled", "check_for_updates", "check_for_plugin_updates"},
}


def env_name(section: str, key: str) -> str:
    """CONFIGURE_DOC: GF_<SectionName>_<KeyName>, uppercase, '.' and '-' replaced by '_'."""
    return ("GF_" + section + "_" + key).upper().replace(".", "_").replace("-", "_")


def grafana_expand(value: str, env: dict[str, str]) -> str:
    """PROVISIONING_DOC: "any value after an `$` a variable", and `$$` becomes a single `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, value)


def _datasources(**kwargs: Any) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(
        render_datasources("http://prometheus:9090", "http://loki:3100", "http://jaeger:16686", **kwargs)
    )
    return {ds["uid"]: ds for ds in doc["datasources"]}


# --- data sources ---------------------------------------------------------------------------


def test_datasource_file_uses_documented_fields_only() -> None:
    doc = yaml.safe_load(render_datasources("http://prometheus:9090", "http://loki:3100", "http://jaeger:16686"))
    assert doc["apiVersion"] == 1, PROVISIONING_DOC
    assert set(doc) <= TOP_LEVEL_FIELDS
    assert doc["prune"] is True
    for ds in doc["datasources"]:
        assert set(ds) <= DATASOURCE_FIELDS, ds["uid"]
        assert ds["access"] == "proxy"
        assert ds["orgId"] == 1
        assert ds["editable"] is False


def test_fixed_uids_types_and_urls() -> None:
    sources = _datasources()
    assert {uid: (ds["type"], ds["url"]) for uid, ds in sources.items()} == {
        "prometheus": ("prometheus", "http://prometheus:9090"),
        "loki": ("loki", "http://loki:3100"),
        "jaeger": ("jaeger", "http://jaeger:16686"),
    }


def test_prometheus_is_the_only_default_and_queries_by_post() -> None:
    sources = _datasources()
    # PROVISIONING_DOC: "You can set only one default data source per organization."
    assert [uid for uid, ds in sources.items() if ds["isDefault"]] == ["prometheus"]
    assert sources["prometheus"]["jsonData"] == {"httpMethod": "POST"}  # PROVISIONING_DOC jsonData table


def test_loki_has_no_derived_fields_because_log_lines_carry_no_trace_id() -> None:
    # LOKI_DS_DOC: derived fields turn a value found in a line (e.g. a trace id) into a link.
    # The registry's lines carry http.request.id only (configs/grafana.py docstring).
    assert "derivedFields" not in sources_json(_datasources()["loki"])


def sources_json(ds: dict[str, Any]) -> dict[str, Any]:
    value = ds.get("jsonData", {})
    assert isinstance(value, dict)
    return value


def test_traces_link_to_registry_logs_by_time_window_and_service() -> None:
    link = _datasources()["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert set(link) <= TRACES_TO_LOGS_V2_FIELDS, JAEGER_DS_DOC
    assert link["datasourceUid"] == "loki"
    assert link["filterByTraceID"] is False and link["filterBySpanID"] is False  # no trace id in lines
    assert link["customQuery"] is True
    assert link["query"] == '{service="registry"}'
    assert (link["spanStartTimeShift"], link["spanEndTimeShift"]) == ("-5s", "5s")


def test_span_shifts_and_service_are_parameters() -> None:
    link = _datasources(registry_service="reg", span_start_time_shift="-1m", span_end_time_shift="30s")["jaeger"]
    assert link["jsonData"]["tracesToLogsV2"]["query"] == '{service="reg"}'
    assert link["jsonData"]["tracesToLogsV2"]["spanStartTimeShift"] == "-1m"
    assert link["jsonData"]["tracesToLogsV2"]["spanEndTimeShift"] == "30s"
    with pytest.raises(ValueError):
        _datasources(span_start_time_shift="five seconds")
    with pytest.raises(ValueError):
        _datasources(registry_service='x"} or {a="b')


def test_node_graph_is_enabled() -> None:
    assert _datasources()["jaeger"]["jsonData"]["nodeGraph"] == {"enabled": True}, JAEGER_DS_DOC


def test_dollar_signs_survive_grafana_env_expansion() -> None:
    query = '{service="registry"} | method="${__span.tags.method}"'
    rendered = _datasources(logs_query=query)["jaeger"]["jsonData"]["tracesToLogsV2"]["query"]
    assert rendered == '{service="registry"} | method="$${__span.tags.method}"'  # as in JAEGER_DS_DOC example
    assert grafana_expand(rendered, env={}) == query
    # Without the escape, Grafana's expansion would eat the span variable:
    assert grafana_expand(query, env={}) != query


def test_datasources_reject_non_http_urls() -> None:
    with pytest.raises(ValueError):
        render_datasources("prometheus:9090", "http://loki:3100", "http://jaeger:16686")


def test_datasources_rendering_is_deterministic() -> None:
    args = ("http://p:9090", "http://l:3100", "http://j:16686")
    assert render_datasources(*args) == render_datasources(*args)
    assert render_datasources(*args) != render_datasources("http://p:9091", *args[1:])


# --- dashboards provider --------------------------------------------------------------------


def test_dashboard_provider_reads_files_from_the_given_path() -> None:
    doc = yaml.safe_load(render_dashboard_provider())
    assert doc["apiVersion"] == 1, PROVISIONING_DOC
    (provider,) = doc["providers"]
    assert set(provider) <= PROVIDER_FIELDS
    assert set(provider["options"]) <= PROVIDER_OPTIONS
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    # PROVISIONING_DOC: "To use foldersFromFilesStructure, you must unset the folder and
    # folderUid options" — so with a folder set it stays off.
    assert provider["folder"] and provider["options"]["foldersFromFilesStructure"] is False
    assert provider["allowUiUpdates"] is False
    other = yaml.safe_load(render_dashboard_provider("/srv/dash"))
    assert other["providers"][0]["options"]["path"] == "/srv/dash"
    with pytest.raises(ValueError):
        render_dashboard_provider("dashboards")


# --- environment ----------------------------------------------------------------------------


def _env(admin_user: str = "admin", anonymous: bool = True) -> dict[str, str]:
    pairs = grafana_env(admin_user, anonymous)
    assert pairs == sorted(pairs)
    return dict(pair.split("=", 1) for pair in pairs)


def test_every_variable_is_a_documented_setting() -> None:
    documented = {env_name(section, key) for section, keys in DEFAULTS_INI_KEYS.items() for key in keys}
    for anonymous in (True, False):
        assert set(_env(anonymous=anonymous)) <= documented, (DEFAULTS_INI, CONFIGURE_DOC)


def test_anonymous_viewers_only_when_asked() -> None:
    on, off = _env(anonymous=True), _env(anonymous=False)
    assert on["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert on["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert off["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in off


def test_no_sign_up_no_org_creation_no_phoning_home() -> None:
    env = _env()
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_USERS_ALLOW_ORG_CREATE"] == "false"
    assert env["GF_ANALYTICS_REPORTING_ENABLED"] == "false"  # DEFAULTS_INI default: true
    assert env["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"
    assert env["GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES"] == "false"


def test_admin_user_is_set_and_the_password_never_is() -> None:
    env = _env(admin_user="owner")
    assert env["GF_SECURITY_ADMIN_USER"] == "owner"
    assert not [name for name in env if "PASSWORD" in name]
    with pytest.raises(ValueError):
        grafana_env("", True)
    with pytest.raises(ValueError):
        grafana_env("a\nGF_X=1", True)


# --- entrypoint: run for real with /bin/sh and bash against stand-ins -------------------------


def _write_exe(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_image(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins: <home>/bin/grafana records argv and stdin; run.sh records argv."""
    home = tmp_path / "usr-share-grafana"
    (home / "bin").mkdir(parents=True)
    log = tmp_path / "log"
    log.mkdir()
    _write_exe(
        home / "bin" / "grafana",
        f'printf "%s\\n" "$@" > {log}/grafana.argv\ncat > {log}/grafana.stdin\nexit "${{FAKE_CLI_EXIT:-0}}"\n',
    )
    _write_exe(tmp_path / "run.sh", f'printf "%s\\n" "$@" > {log}/run.argv\necho "pid $$" > {log}/run.pid\n')
    return {"home": home, "db": tmp_path / "grafana.db", "run_sh": tmp_path / "run.sh", "log": log}


def _run_entrypoint(
    shell: str, fake: dict[str, Path], env: dict[str, str], args: list[str]
) -> subprocess.CompletedProcess[str]:
    entrypoint = render_grafana_entrypoint(
        home=str(fake["home"]),
        config="/etc/grafana/grafana.ini",
        db_path=str(fake["db"]),
        run_sh=str(fake["run_sh"]),
        shell=shell,
    )
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [*entrypoint, *args], env={**base_env, **env}, capture_output=True, text=True, timeout=20, check=False
    )


@pytest.mark.parametrize("shell_name", ["sh", "bash"])
def test_existing_database_gets_the_password_from_the_env_on_stdin(
    fake_image: dict[str, Path], shell_name: str
) -> None:
    shell = require_tool(shell_name)
    fake_image["db"].write_text("")
    password = "s3cr et'\"$HOME`x`"
    result = _run_entrypoint(
        shell, fake_image, {"GF_SECURITY_ADMIN_PASSWORD": password}, ["cfg:default.log.mode=console"]
    )
    assert result.returncode == 0, result.stderr
    log = fake_image["log"]
    # CLI_COMMANDS/CLI_FLAGS: `grafana cli --homepath H --config C admin reset-admin-password
    # --password-from-stdin`; RESET_PASSWORD reads one line from stdin.
    assert (log / "grafana.argv").read_text().splitlines() == [
        "cli",
        "--homepath",
        str(fake_image["home"]),
        "--config",
        "/etc/grafana/grafana.ini",
        "admin",
        "reset-admin-password",
        "--password-from-stdin",
    ]
    assert (log / "grafana.stdin").read_text() == password + "\n"
    # Then the image's own entrypoint runs with the container command (RUN_SH passes "$@").
    assert (log / "run.argv").read_text().splitlines() == ["cfg:default.log.mode=console"]
    assert "admin password set" in result.stderr


def test_password_is_not_in_the_entrypoint_text() -> None:
    entrypoint = render_grafana_entrypoint()
    assert entrypoint[:2] == ["/bin/sh", "-c"], DOCKERFILE  # Alpine image: /bin/sh exists
    assert entrypoint[-1] == "grafana-entrypoint"  # $0; the container command follows as "$@"
    script = entrypoint[2]
    assert '"$GF_SECURITY_ADMIN_PASSWORD"' in script  # read at run time
    assert "--password-from-stdin" in script
    assert 'exec /run.sh "$@"' in script, RUN_SH


def test_fresh_database_is_left_to_grafana_first_start(fake_image: dict[str, Path]) -> None:
    sh = require_tool("sh")
    result = _run_entrypoint(sh, fake_image, {"GF_SECURITY_ADMIN_PASSWORD": "pw12345"}, [])
    assert result.returncode == 0, result.stderr
    assert not (fake_image["log"] / "grafana.argv").exists()  # DEFAULTS_INI: created on first start
    assert (fake_image["log"] / "run.argv").exists()


def test_no_password_variable_means_no_reset(fake_image: dict[str, Path]) -> None:
    sh = require_tool("sh")
    fake_image["db"].write_text("")
    result = _run_entrypoint(sh, fake_image, {}, [])
    assert result.returncode == 0, result.stderr
    assert not (fake_image["log"] / "grafana.argv").exists()
    assert (fake_image["log"] / "run.argv").exists()


def test_failed_reset_warns_and_still_starts_grafana(fake_image: dict[str, Path]) -> None:
    sh = require_tool("sh")
    fake_image["db"].write_text("")
    result = _run_entrypoint(sh, fake_image, {"GF_SECURITY_ADMIN_PASSWORD": "x", "FAKE_CLI_EXIT": "1"}, [])
    assert result.returncode == 0
    assert "WARNING: admin password reset failed" in result.stderr
    assert (fake_image["log"] / "run.argv").exists()


def test_run_sh_replaces_the_shell_process(fake_image: dict[str, Path]) -> None:
    sh = require_tool("sh")
    entrypoint = render_grafana_entrypoint(
        home=str(fake_image["home"]), db_path=str(fake_image["db"]), run_sh=str(fake_image["run_sh"]), shell=sh
    )
    proc = subprocess.Popen(entrypoint, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    # `exec` keeps the pid: run.sh ran as the very process we started (Grafana stays PID 1).
    assert (fake_image["log"] / "run.pid").read_text().strip() == f"pid {proc.pid}"


def test_entrypoint_parameters_are_validated() -> None:
    with pytest.raises(ValueError):
        render_grafana_entrypoint(password_env="GF PASSWORD")
    with pytest.raises(ValueError):
        render_grafana_entrypoint(db_path="grafana.db")


# --- healthcheck ----------------------------------------------------------------------------




def test_healthcheck_curls_api_health(status_server: tuple[int, type[StatusHandler]]) -> None:
    curl = require_tool("curl")
    port, handler = status_server
    test = grafana_healthcheck(port)
    assert test[:2] == ["CMD", "curl"], DOCKERFILE  # curl is installed in the image
    command = [curl, *test[2:]]
    assert subprocess.run(command, timeout=10, check=False, capture_output=True).returncode == 0
    assert handler.paths == ["/api/health"], HEALTH_API
    handler.status = 503
    assert subprocess.run(command, timeout=10, check=False, capture_output=True).returncode != 0


def test_services_that_are_off_get_no_datasource_and_traces_link_to_logs_only_with_loki():
    only_prometheus = yaml.safe_load(render_datasources("http://prometheus:9090", None, None))
    assert [d["uid"] for d in only_prometheus["datasources"]] == ["prometheus"]
    no_logs = yaml.safe_load(render_datasources("http://prometheus:9090", None, "http://jaeger:16686"))
    jaeger_ds = next(d for d in no_logs["datasources"] if d["uid"] == "jaeger")
    assert "tracesToLogsV2" not in jaeger_ds["jsonData"]
    full = yaml.safe_load(render_datasources("http://prometheus:9090", "http://loki:3100", "http://jaeger:16686"))
    jaeger_full = next(d for d in full["datasources"] if d["uid"] == "jaeger")
    assert jaeger_full["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
