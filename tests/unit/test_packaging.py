"""Packaging: pyproject.toml builds a wheel whose `mirrorctl` command runs outside the checkout,
and requirements.txt (what Pulumi's pip toolchain installs) lists exactly its dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {str(Requirement(line)) for line in lines if line and not line.startswith("-r")}


def test_requirements_txt_pins_exactly_the_project_dependencies():
    declared = {str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert _pins(ROOT / "requirements.txt") == declared
    assert all("==" in r for r in declared), "every runtime dependency is pinned"


def test_the_dev_requirements_carry_the_cli_extra_so_tests_run_mirrorctl():
    cli = {str(Requirement(r)) for r in PYPROJECT["project"]["optional-dependencies"]["cli"]}
    assert cli <= _pins(ROOT / "requirements-dev.txt")


def test_the_wheel_installs_a_mirrorctl_that_runs_outside_the_checkout(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info/ beside the sources
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "node_modules", "__pycache__", ".*_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    [wheel] = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "mirrorctl = mirrorctl.cli:main" in entry_points
    assert "contract.py" in names and "mirrorctl/cli.py" in names
    assert not [n for n in names if n.startswith(("components/", "configs/", "tests/"))]

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    # the checkout is not on the path: only the installed files and the venv's libraries
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-m", "mirrorctl", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "status" in result.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import contract, mirrorctl.cli; print(contract.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip().startswith(str(target)), imported
