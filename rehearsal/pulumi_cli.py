"""The real Pulumi CLI and Python language host (the toolchain's), run on a copy of the program.

    with program_copy(tmp) as project:
        cli = PulumiCli(project, tmp / "home", tmp / "state")
        cli.run("stack", "init", "t")
        result = cli.run("preview", "--non-interactive", check=False)

Everything is private to `tmp`: a `file://` backend, a `PULUMI_HOME`, a passphrase; the CLI
never checks for updates nor downloads a plugin. The program is the tracked files of this
checkout copied into `tmp` (stack files land there, never in the checkout), run with this
interpreter's venv, which holds requirements.txt.

The language host is the toolchain's v3.68.0 (the newest the Go module proxy serves,
tools/go/toolchain.toml): it predates `Pulumi.yaml`'s `virtualenv` option, so the venv's
python is named by `PULUMI_PYTHON_CMD`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rehearsal import toolchain

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "registry-mirror-tests"
TIMEOUT = 300.0
# what the program needs of the checkout: Pulumi.yaml, __main__.py and the packages it imports
PROGRAM_PARTS = ("Pulumi.yaml", "__main__.py", "contract.py", "settings.py", "requirements.txt",
                 "components", "configs", "trust")


def program_copy(into: Path) -> Path:
    """The program's files of this checkout, copied to `into`/program."""
    project = into / "program"
    project.mkdir(parents=True)
    for part in PROGRAM_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / part)
    return project


@dataclass
class PulumiCli:
    project: Path
    home: Path
    state: Path
    passphrase: str = PASSPHRASE

    def __post_init__(self) -> None:
        self.binaries = {name: toolchain.ensure(name) for name in ("pulumi", "pulumi-language-python")}
        self.home.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.run("login", f"file://{self.state}")

    def env(self) -> dict[str, str]:
        folders = ":".join(str(binary.parent) for binary in self.binaries.values())
        return {
            "PATH": f"{folders}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "PULUMI_HOME": str(self.home),
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_PYTHON_CMD": sys.executable,
            "NO_COLOR": "1",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries["pulumi"]), *args], cwd=self.project, env={**self.env(), **(env or {})},
            input=stdin, capture_output=True, text=True, timeout=TIMEOUT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of the Diagnostics section a failed preview printed, stripped."""
    text = result.stdout + result.stderr
    _, _, diagnostics = text.partition("Diagnostics:")
    return [line.strip() for line in diagnostics.splitlines() if line.strip()]
