"""The GitHub Actions workflows (.github/workflows/preview.yml and e2e.yml).

Neither workflow can run here (no GitHub runner, no Pulumi CLI, no Docker engine). What is
proven instead:
- both files pass GitHub's workflow schema (check-jsonschema's offline vendor schema), with a
  negative control that a broken copy is rejected;
- every `with:` key of a `pulumi/actions` step is an input the action declares;
- the preview targets the shared `ci` stack (never a file:// backend) and the e2e stack is
  throwaway, always destroyed, and checked for leftovers; both stack configurations parse
  with `settings.parse`;
- every `run:` block is shellcheck-clean, and the blocks that decide pass/fail (the backend
  check, the monitoring health checks, the leftover check) are run for real by bash against
  fake `pulumi`/`docker` binaries and a fake HTTP server on 127.0.0.1, passing and failing.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import settings
from rehearsal.http_stub import serve_http
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PREVIEW = WORKFLOWS / "preview.yml"
E2E = WORKFLOWS / "e2e.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

# The inputs of pulumi/actions, copied from its action.yml (the newest version of that file in
# our source index; it runs on node20, i.e. the v5/v6 line). v7.0.0 is the Node 24 release,
# and its inputs were reported compatible with v6.6.1's (sources: docs/upstream-references.md).
# v7's own action.yml was not readable here: an input new in v7 would be reported as unknown
# by this test (the safe direction), never the other way round.
PULUMI_ACTION_INPUTS = frozenset({
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir",
    "comment-on-pr", "comment-on-pr-number", "comment-on-summary", "github-token",
    "cloud-url", "secrets-provider", "parallel", "message", "config-map",
    "expect-no-changes", "diff", "replace", "target", "target-dependents", "policyPacks",
    "policyPackConfigs", "refresh", "upsert", "remove", "edit-pr-comment", "color",
    "exclude-protected", "plan", "suppress-outputs", "suppress-progress",
    "always-include-summary",
})
PULUMI_ACTION = "pulumi/actions@v7"

# GitHub's `shell: bash` runs `bash --noprofile --norc -eo pipefail {0}`.
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]


# --- reading the workflows ---------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as the boolean true
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [doc["jobs"][job]] if job else list(doc["jobs"].values())
    return [step for j in jobs for step in j["steps"]]


def pulumi_steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(doc) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def step_named(doc: dict[str, Any], job: str, prefix: str) -> dict[str, Any]:
    found = [s for s in steps(doc, job) if str(s.get("name", "")).startswith(prefix)]
    assert len(found) == 1, f"expected one step named {prefix!r} in job {job}"
    return found[0]


def undocumented_inputs(step: dict[str, Any]) -> set[str]:
    """The `with:` keys of a pulumi/actions step that the action does not declare."""
    return set(step.get("with") or {}) - PULUMI_ACTION_INPUTS


def pinned(requirement: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{requirement}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{requirement} is not pinned in requirements.txt")


def run_block(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a workflow's `run:` block the way GitHub's `shell: bash` does."""
    path = tmp_path / "step.sh"
    path.write_text(script)
    return subprocess.run([*BASH, str(path)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def fake_bin(tmp_path: Path, name: str, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return bin_dir


# --- schema -----------------------------------------------------------------------------


def check_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert CHECK_JSONSCHEMA.exists(), f"{CHECK_JSONSCHEMA} missing (requirements-dev.txt)"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("workflow", [PREVIEW, E2E], ids=lambda p: p.name)
def test_workflow_passes_the_github_workflow_schema(workflow: Path) -> None:
    result = check_schema(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_job_without_runs_on(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = E2E.read_text()
    assert "runs-on:" in text
    broken.write_text(text.replace("runs-on:", "runs-onn:"))
    result = check_schema(broken)
    assert result.returncode == 1
    assert "'runs-on' is a required property" in result.stdout


# --- pulumi/actions inputs ----------------------------------------------------------------


@pytest.mark.parametrize("workflow", [PREVIEW, E2E], ids=lambda p: p.name)
def test_every_pulumi_actions_input_is_declared_by_the_action(workflow: Path) -> None:
    found = pulumi_steps(load(workflow))
    assert found, f"{workflow.name} has no pulumi/actions step"
    for step in found:
        assert step["uses"] == PULUMI_ACTION
        assert undocumented_inputs(step) == set(), step.get("name")


def test_input_check_reports_an_input_the_action_does_not_declare() -> None:
    step = {"uses": PULUMI_ACTION, "with": {"command": "preview", "stack": "ci", "backend": "s3://b"}}
    assert undocumented_inputs(step) == {"stack", "backend"}


@pytest.mark.parametrize("workflow", [PREVIEW, E2E], ids=lambda p: p.name)
def test_the_cli_the_action_installs_is_the_version_of_the_pinned_sdk(workflow: Path) -> None:
    for step in pulumi_steps(load(workflow)):
        assert str(step["with"]["pulumi-version"]) == pinned("pulumi")


# --- preview.yml --------------------------------------------------------------------------


def test_preview_runs_on_pull_requests_with_minimal_permissions() -> None:
    doc = load(PREVIEW)
    assert "pull_request" in doc["on"]
    assert doc["permissions"] == {"contents": "read"}
    assert doc["jobs"]["preview"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "permissions" not in doc["jobs"]["test"]  # the workflow's read-only default


def test_preview_runs_the_tests_before_the_preview() -> None:
    doc = load(PREVIEW)
    test_job, preview_job = doc["jobs"]["test"], doc["jobs"]["preview"]
    assert preview_job["needs"] == "test"
    assert test_job["container"]["image"] == "debian:bookworm"  # tests/debian-packages.txt
    # tests/engine starts its own dockerd in namespaces: the job container must allow it
    assert test_job["container"]["options"] == "--privileged"
    runs = [s.get("run", "") for s in test_job["steps"]]
    assert "bash .ci/run" in runs
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert any("sys.version_info[:2] == (3, 11)" in r for r in runs)


def test_preview_builds_the_venv_that_pulumi_yaml_names_before_previewing() -> None:
    venv = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"]
    job_steps = steps(load(PREVIEW), "preview")
    python = next(i for i, s in enumerate(job_steps)
                  if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert job_steps[python]["with"]["python-version"] == "3.11"
    make_venv = next(i for i, s in enumerate(job_steps) if f"-m venv {venv}\n" in s.get("run", ""))
    assert f"{venv}/bin/pip install --quiet -r requirements.txt" in job_steps[make_venv]["run"]
    preview = next(i for i, s in enumerate(job_steps) if s.get("uses") == PULUMI_ACTION)
    assert python < make_venv < preview


def test_preview_targets_the_shared_ci_stack_and_never_a_file_backend() -> None:
    doc = load(PREVIEW)
    (step,) = pulumi_steps(doc)
    given = step["with"]
    assert given["command"] == "preview"
    assert given["stack-name"] == "ci"
    assert given["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert given["comment-on-pr"] is True
    assert given["github-token"] == "${{ secrets.GITHUB_TOKEN }}"
    # a refresh against the runner's empty Docker daemon would turn every container into a create
    assert given.get("refresh", False) is False
    assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    for s in steps(doc):
        assert "pulumi login" not in s.get("run", ""), "the action logs in to cloud-url itself"


def test_preview_takes_the_passphrase_salt_from_the_backend_state() -> None:
    # Pulumi.ci.yaml has no `encryptionsalt`; without this variable the CLI would make a new
    # passphrase secrets manager with a new salt instead of the one the stack's state holds
    # (pulumi/pulumi SecretsManagerLoader.GetSecretsManager; see docs/upstream-references.md).
    (step,) = pulumi_steps(load(PREVIEW))
    assert step["env"]["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"


def test_preview_skips_pull_requests_from_forks_which_get_no_secrets() -> None:
    condition = load(PREVIEW)["jobs"]["preview"]["if"]
    assert condition == "github.event.pull_request.head.repo.full_name == github.repository"


@pytest.mark.parametrize(
    ("backend_url", "passphrase", "passes", "message"),
    [
        ("s3://registry-mirror-state/pulumi?region=eu-west-1", "x", True, ""),
        ("azblob://pulumi-state", "x", True, ""),
        ("", "x", False, "PULUMI_BACKEND_URL is not set"),
        ("file:///home/runner/state", "x", False, "every resource would show as a create"),
        ("s3://registry-mirror-state/pulumi", "", False, "PULUMI_CONFIG_PASSPHRASE is not set"),
    ],
)
def test_backend_check_step_refuses_a_missing_or_throwaway_backend(
    tmp_path: Path, backend_url: str, passphrase: str, passes: bool, message: str
) -> None:
    step = step_named(load(PREVIEW), "preview", "Check the backend secrets")
    assert step["env"] == {"BACKEND_URL": "${{ secrets.PULUMI_BACKEND_URL }}",
                           "PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}
    env = {"PATH": os.environ["PATH"], "BACKEND_URL": backend_url, "PASSPHRASE": passphrase}
    result = run_block(step["run"], env, tmp_path)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert message in result.stdout


# --- Pulumi.ci.yaml -----------------------------------------------------------------------


def stack_values(doc: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for full, value in doc["config"].items():
        project, key = full.split(":", 1)
        assert project == settings.PROJECT
        assert not isinstance(value, dict), f"{key} is a secure value"
        values[key] = json.dumps(value) if isinstance(value, list) else str(value)
    return values


def test_ci_stack_file_holds_no_secret_or_salt_and_changes_nothing_on_a_runner() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.ci.yaml").read_text())
    assert set(doc) == {"config"}  # no encryptionsalt, secretsprovider or encryptedkey
    parsed = settings.parse(stack_values(doc), stack="ci")
    assert parsed.trust.install_trust is False
    assert parsed.monitoring.ui_bind_address == "127.0.0.1"
    assert parsed.registry.bind_address == "127.0.0.1"


# --- e2e.yml -------------------------------------------------------------------------------


def e2e_job() -> dict[str, Any]:
    doc = load(E2E)
    assert list(doc["jobs"]) == ["e2e"]
    job: dict[str, Any] = doc["jobs"]["e2e"]
    return job


def expand(text: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"${name} is not in the job's env"
        return env[name]

    return re.sub(r"\$(\w+)", value, text.strip('"'))


def e2e_config() -> dict[str, str]:
    job = e2e_job()
    script = step_named(load(E2E), "e2e", "Throwaway state backend")["run"]
    found = re.findall(r'^pulumi config set --stack "\$STACK" (\S+) (\S+)$', script, re.MULTILINE)
    assert len(found) == script.count("pulumi config set"), "every config set names the stack"
    return {key: expand(value, job["env"]) for key, value in found}


def test_e2e_runs_on_manual_dispatch_and_pushes_to_main_on_a_docker_runner() -> None:
    doc = load(E2E)
    assert "workflow_dispatch" in doc["on"]
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}
    assert e2e_job()["runs-on"] == "ubuntu-latest"


def test_e2e_stack_is_throwaway_and_its_config_parses() -> None:
    job = e2e_job()
    script = step_named(load(E2E), "e2e", "Throwaway state backend")["run"]
    assert 'pulumi login "file://$state_dir"' in script
    assert 'pulumi stack init "$STACK" --secrets-provider passphrase' in script
    assert "secrets.token_urlsafe" in script and "::add-mask::" in script
    values = e2e_config()
    assert values["keepDataOnDestroy"] == "false"
    assert values["installTrust"] == "true"
    assert values["dockerCertsDir"] == "/etc/docker/certs.d"
    parsed = settings.parse(values, stack=job["env"]["STACK"])
    assert parsed.registry.keep_data_on_destroy is False
    assert parsed.trust.install_trust is True
    # the hostname is not loopback, so Docker verifies the mirror's certificate
    assert parsed.registry.hostname == job["env"]["MIRROR_HOSTNAME"] != "localhost"


def test_e2e_leftover_label_is_the_label_the_program_puts_on_its_docker_objects() -> None:
    env = e2e_job()["env"]
    labels = settings.Naming(settings.PROJECT, env["STACK"]).labels("registry")
    key, value = env["LABEL"].split("=", 1)
    assert labels[key] == value


def test_e2e_always_destroys_after_up_and_then_checks_for_leftovers() -> None:
    job_steps = e2e_job()["steps"]
    runs = [s.get("run", "") for s in job_steps]
    up = runs.index('pulumi up --yes --stack "$STACK"')
    destroy = next(i for i, r in enumerate(runs) if 'pulumi destroy --yes --stack "$STACK"' in r)
    leftovers = next(i for i, s in enumerate(job_steps)
                     if s.get("name") == "Nothing of the stack is left")
    assert up < destroy < leftovers
    assert job_steps[destroy]["if"] == "always()"
    assert job_steps[leftovers]["if"] == "always()"
    assert all("if" not in s for s in job_steps[: up + 1])


# --- the shell of the e2e checks, run for real --------------------------------------------


class FakeServices(http.server.BaseHTTPRequestHandler):
    """Answers like Prometheus's query API, Grafana's /api/health and Loki's /ready."""

    registry_up = "1"
    loki_status = 200
    queries: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/v1/query":
            query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
            FakeServices.queries.append(query)
            # only the exact expression matches the one series, as in Prometheus
            result = [{"metric": {"__name__": "up", "job": "registry"},
                       "value": [1700000000.0, FakeServices.registry_up]}
                      ] if query == 'up{job="registry"}' else []
            self.reply(200, json.dumps({"status": "success",
                                        "data": {"resultType": "vector", "result": result}}))
        elif self.path == "/api/health":
            self.reply(200, json.dumps({"database": "ok", "version": "12.2.1"}))
        elif self.path == "/ready":
            status = FakeServices.loki_status
            self.reply(status, "ready\n" if status == 200 else "Ingester not ready\n")
        else:
            self.reply(404, "not found\n")

    def reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def services() -> Iterator[str]:
    FakeServices.registry_up, FakeServices.loki_status, FakeServices.queries = "1", 200, []
    with serve_http(FakeServices) as port:
        yield f"http://127.0.0.1:{port}"


FAKE_PULUMI = """\
case "$*" in
  "stack output urls --json --stack e2e") printf '%s\\n' "$FAKE_URLS" ;;
  *) echo "unexpected: pulumi $*" >&2; exit 2 ;;
esac
"""


def run_health_checks(tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    require_tool("curl")
    urls = {"registry": "https://mirror.e2e.test:6000", "prometheus": base_url,
            "grafana": base_url, "loki": base_url}
    bin_dir = fake_bin(tmp_path, "pulumi", FAKE_PULUMI)
    env = {**e2e_job()["env"], "CHECK_ATTEMPTS": "2", "CHECK_INTERVAL": "0",
           "FAKE_URLS": json.dumps(urls), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = step_named(load(E2E), "e2e", "Monitoring is healthy")["run"]
    return run_block(script, env, tmp_path)


def test_health_checks_pass_when_prometheus_sees_the_registry_up(
    tmp_path: Path, services: str
) -> None:
    result = run_health_checks(tmp_path, services)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'ok: Prometheus: up{job="registry"} == 1' in result.stdout
    assert "ok: Grafana /api/health" in result.stdout and "ok: Loki /ready" in result.stdout
    assert FakeServices.queries == ['up{job="registry"}']


def test_health_checks_fail_when_the_registry_target_is_down(tmp_path: Path, services: str) -> None:
    FakeServices.registry_up = "0"
    result = run_health_checks(tmp_path, services)
    assert result.returncode == 1
    assert 'Prometheus: up{job="registry"} == 1: not healthy after 2 attempts' in result.stdout
    assert len(FakeServices.queries) == 2  # bounded by CHECK_ATTEMPTS


def test_health_checks_fail_while_loki_is_not_ready(tmp_path: Path, services: str) -> None:
    FakeServices.loki_status = 503
    result = run_health_checks(tmp_path, services)
    assert result.returncode == 1
    assert "Loki /ready: not healthy after 2 attempts" in result.stdout


FAKE_DOCKER = """\
case "$1 $2" in
  "ps -aq") kind=container ;;
  "volume ls") kind=volume ;;
  "network ls") kind=network ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
case "$*" in *"--filter label=$LABEL"*) ;; *) echo "no label filter: docker $*" >&2; exit 2 ;; esac
[ "$kind" = "$FAKE_LEFT" ] && echo "0123456789ab"
exit 0
"""


@pytest.mark.parametrize(
    ("left", "trust_dir_left", "message"),
    [
        ("", False, ""),
        ("container", False,
         "containers left behind with label registry-mirror.stack=e2e: 0123456789ab"),
        ("volume", False, "volumes left behind"),
        ("network", False, "networks left behind"),
        ("", True, "the trust directory"),
    ],
)
def test_leftover_check_passes_only_when_nothing_of_the_stack_remains(
    tmp_path: Path, left: str, trust_dir_left: bool, message: str
) -> None:
    job_env = e2e_job()["env"]
    certs = tmp_path / "certs.d"
    (certs / "other-registry:5000").mkdir(parents=True)  # another registry's trust stays
    if trust_dir_left:
        (certs / f"{job_env['MIRROR_HOSTNAME']}:{job_env['REGISTRY_PORT']}").mkdir()
    bin_dir = fake_bin(tmp_path, "docker", FAKE_DOCKER)
    env = {**job_env, "DOCKER_CERTS_DIR": str(certs), "FAKE_LEFT": left,
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = step_named(load(E2E), "e2e", "Nothing of the stack is left")["run"]
    result = run_block(script, env, tmp_path)
    assert result.returncode == (1 if message else 0), result.stdout + result.stderr
    assert message in result.stdout


# --- every run block ------------------------------------------------------------------------


def run_blocks() -> list[tuple[str, str, str]]:
    blocks = []
    for workflow in (PREVIEW, E2E):
        for step in steps(load(workflow)):
            if "run" in step:
                blocks.append((workflow.name, str(step.get("name", step["run"][:40])), step["run"]))
    return blocks


def test_run_blocks_take_no_expressions_so_nothing_is_spliced_into_shell() -> None:
    for workflow, name, script in run_blocks():
        assert "${{" not in script, f"{workflow}: {name}: pass values through env instead"


def test_every_run_block_is_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    blocks = run_blocks()
    assert len(blocks) >= 10
    for i, (workflow, name, script) in enumerate(blocks):
        path = tmp_path / f"block{i}.sh"
        path.write_text(script)
        result = subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{workflow}: {name}\n{result.stdout}"
