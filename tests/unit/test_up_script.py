"""The README's main command, run for real against a fake `pulumi` that records its calls.

The real `pulumi up` never runs here (no Pulumi CLI, no Docker engine): these tests prove
the order of the calls and the passphrase handling of scripts/up.sh.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PULUMI = """#!/bin/sh
printf '%s|%s|%s\\n' "$*" "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" "${PULUMI_CONFIG_PASSPHRASE:-}" >> "$CALLS"
case "$1 $2" in
  "stack select") [ -f "$STACKS/$3" ] || { echo "no stack named '$3' found" >&2; exit 255; } ;;
  "stack init") touch "$STACKS/$3" ;;
esac
exit 0
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the project with a ready venv (the script's pip step is skipped)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "up.sh", repo / "scripts" / "up.sh")
    shutil.copy(ROOT / "requirements.txt", repo / "requirements.txt")
    (repo / "venv" / "bin").mkdir(parents=True)
    (repo / "venv" / "bin" / "python").symlink_to(sys.executable)
    shutil.copy(ROOT / "requirements.txt", repo / "venv" / ".requirements.txt")
    return repo


def run_up(repo: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           with_pulumi: bool = True) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "stacks").mkdir(exist_ok=True)
    if with_pulumi:
        fake = bin_dir / "pulumi"
        fake.write_text(FAKE_PULUMI)
        fake.chmod(0o755)
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    calls = tmp_path / "calls.txt"
    full_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CALLS": str(calls),
        "STACKS": str(tmp_path / "stacks"),
    } | (env or {})
    proc = subprocess.run(["bash", str(repo / "scripts" / "up.sh"), *args], env=full_env,
                          capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc, [line.split("|") for line in lines]


def test_first_run_logs_in_to_a_local_file_backend_inits_dev_then_runs_up(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path, "--yes")
    assert proc.returncode == 0, proc.stderr
    argv = [c[0] for c in calls]
    assert argv == [
        f"login file://{checkout}/.pulumi-state",
        "stack select dev",
        "stack init dev --secrets-provider passphrase",
        "up --stack dev --yes",
    ]
    assert (checkout / ".pulumi-state").is_dir()


def test_second_run_selects_the_existing_stack_without_init(checkout, tmp_path):
    run_up(checkout, tmp_path)
    proc, calls = run_up(checkout, tmp_path)
    assert proc.returncode == 0
    later = [c[0] for c in calls][4:]
    assert later == [f"login file://{checkout}/.pulumi-state", "stack select dev", "up --stack dev"]


def test_generated_passphrase_file_is_private_and_used_by_every_call(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path)
    assert proc.returncode == 0
    secret_file = checkout / ".pulumi-passphrase"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret_file.read_text().strip()) >= 32
    assert {c[1] for c in calls} == {str(secret_file)}
    again = secret_file.read_text()
    run_up(checkout, tmp_path)
    assert secret_file.read_text() == again  # generated once, never replaced


def test_passphrase_from_the_environment_wins_and_no_file_is_written(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path, env={"PULUMI_CONFIG_PASSPHRASE": "from-env"})
    assert proc.returncode == 0
    assert not (checkout / ".pulumi-passphrase").exists()
    assert {c[2] for c in calls} == {"from-env"}


def test_stack_name_can_be_chosen(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path, env={"STACK": "alice"})
    assert proc.returncode == 0
    assert [c[0] for c in calls][-1] == "up --stack alice"


def test_missing_pulumi_cli_fails_with_one_clear_line(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path, with_pulumi=False)
    assert proc.returncode != 0
    assert calls == []
    assert proc.stderr.strip().splitlines() == [
        "registry-mirror: the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/"
    ]


def test_passphrase_file_is_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".pulumi-passphrase" in ignored and ".pulumi-state/" in ignored
    assert os.access(ROOT / "scripts" / "up.sh", os.X_OK)


def test_preview_and_destroy_use_the_same_backend_and_stack(checkout, tmp_path):
    run_up(checkout, tmp_path)
    proc, calls = run_up(checkout, tmp_path, "--diff", env={"PULUMI_COMMAND": "preview"})
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls][-3:] == [f"login file://{checkout}/.pulumi-state", "stack select dev",
                                          "preview --stack dev --diff"]
    proc, calls = run_up(checkout, tmp_path, "--yes", env={"PULUMI_COMMAND": "destroy"})
    assert [c[0] for c in calls][-1] == "destroy --stack dev --yes"


def test_an_unknown_pulumi_command_is_refused_before_anything_runs(checkout, tmp_path):
    proc, calls = run_up(checkout, tmp_path, env={"PULUMI_COMMAND": "rm"})
    assert proc.returncode == 2 and calls == []
    assert "PULUMI_COMMAND must be up, preview, destroy or refresh" in proc.stderr


def test_the_projects_shell_scripts_pass_shellcheck():
    from tests.conftest import require_tool

    shellcheck = require_tool("shellcheck")
    scripts = [ROOT / "scripts" / "up.sh", ROOT / "scripts" / "test.sh", ROOT / "scripts" / "lib.sh",
                ROOT / "bench" / "run.sh", ROOT / ".ci" / "run"]
    proc = subprocess.run([shellcheck, "--shell=bash", "-x", *map(str, scripts)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout
    # the host-trust templates run as /bin/sh -c: checked as POSIX sh, file by file
    templates = sorted((ROOT / "trust").glob("*.sh"))
    assert [t.name for t in templates] == ["common.sh", "install.sh", "remove.sh"]
    proc = subprocess.run([shellcheck, "--shell=sh", "--severity=style", *map(str, templates)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout
