"""Rehearsal: Renovate itself (pinned in tools/renovate) accepts renovate.json and extracts the pins.

- `renovate-config-validator --strict` accepts renovate.json and refuses a misspelt option.
- `renovate --platform=local --dry-run=extract` on a copy of the repository's files finds,
  with its own regex engine and managers, every image pin of contract.py and every `*Image`
  default of Pulumi.yaml (same depName and tag in both), every `==` pin of the requirements
  files through the standard `pip_requirements` manager, and pyproject.toml's pins through
  `pep621` under the same package names. Extraction makes no registry lookup: the test
  checks Renovate counted zero HTTP requests.
- `renovate --platform=local --dry-run=lookup` with its docker and pypi lookups sent to
  loopback stand-ins (a docker-registry holding a newer tag of two pinned images, a PEP 503
  simple index holding a newer release of two pinned packages): each new version becomes one
  branch, holding the update of both files that pin it (contract.py and Pulumi.yaml; the
  requirements file and pyproject.toml), and nothing else. Only that redirection is added,
  as a global config: the repository's renovate.json is used as committed.
- the same kind of lookup against a loopback npm registry: the pinned Renovate itself is
  offered its next minor but not the next major (which needs a newer Node.js), and without
  the `allowedVersions` rule the major is offered too (control).

Not rehearsed: the PRs and commits themselves (the local platform only looks up).
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import IMAGES
from rehearsal.http_stub import serve_http
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import push, start_upstream
from tests.conftest import REPO_ROOT, require_npm_tool

RENOVATE_TIMEOUT = 180


def split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    return name, tag


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    validator = require_npm_tool("renovate-config-validator")
    return subprocess.run(
        [validator, "--strict", str(config)],
        capture_output=True,
        text=True,
        timeout=RENOVATE_TIMEOUT,
        cwd=config.parent,
    )


def test_renovate_config_validator_accepts_renovate_json() -> None:
    result = validate(REPO_ROOT / "renovate.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config validated successfully" in result.stdout + result.stderr


def test_renovate_config_validator_refuses_a_misspelt_option(tmp_path: Path) -> None:
    """Negative control: the validator reads the options, it does not only parse JSON."""
    config = json.loads((REPO_ROOT / "renovate.json").read_text())
    config["packageRulez"] = config.pop("packageRules")
    (tmp_path / "renovate.json").write_text(json.dumps(config))
    result = validate(tmp_path / "renovate.json")
    assert result.returncode != 0, result.stdout
    assert "packageRulez" in result.stdout + result.stderr


def repository_files() -> list[str]:
    """Tracked and new (not ignored) files: what a clone would hold, with local edits."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout.splitlines()
    return [name for name in listed if (REPO_ROOT / name).is_file()]


@pytest.fixture(scope="module")
def extraction(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Renovate's extract-only dry run on a copy of the repository; its log lines, by message."""
    renovate = require_npm_tool("renovate")
    tmp = tmp_path_factory.mktemp("renovate")
    copy = tmp / "repository"
    for name in repository_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, copy / name)
    return run_renovate(renovate, "extract", tmp, copy, {}, expect="Extracted dependencies")


def run_renovate(renovate: str, dry_run: str, tmp: Path, copy: Path, extra_env: dict[str, str],
                 *, expect: str) -> dict[str, Any]:
    """Renovate's `dry_run` on the repository `copy`; its JSON log lines, first of each message."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp),
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "RENOVATE_BASE_DIR": str(tmp / "renovate-base"),  # its caches, outside the copy
        **extra_env,
    }
    result = subprocess.run(
        [renovate, "--platform=local", f"--dry-run={dry_run}", "--onboarding=false"],
        capture_output=True,
        text=True,
        env=env,
        cwd=copy,
        timeout=RENOVATE_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    messages: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            messages.setdefault(record.get("msg", ""), record)
    assert expect in messages, result.stdout[-4000:]
    return messages


def regex_pins(extraction: dict[str, Any], package_file: str) -> list[tuple[str, str, str]]:
    files = extraction["Extracted dependencies"]["packageFiles"]["regex"]
    [found] = [f for f in files if f["packageFile"] == package_file]
    return [(dep["depName"], dep["currentValue"], dep["datasource"]) for dep in found["deps"]]


def test_renovate_extracts_every_image_pin_of_contract_py(extraction: dict[str, Any]) -> None:
    expected = [(*split_image(image), "docker") for image in IMAGES.values()]
    assert regex_pins(extraction, "contract.py") == expected


def test_renovate_extracts_every_image_default_of_pulumi_yaml(extraction: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    defaults = [spec["default"] for key, spec in config.items() if key.endswith("Image")]
    assert defaults
    assert regex_pins(extraction, "Pulumi.yaml") == [(*split_image(image), "docker") for image in defaults]
    # the same depName in both files: the packageRule's `{{depName}}` group takes both
    assert sorted(regex_pins(extraction, "Pulumi.yaml")) == sorted(regex_pins(extraction, "contract.py"))


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip()] = version.strip()
    return pins


@pytest.mark.parametrize("requirements", ["requirements.txt", "requirements-dev.txt"])
def test_renovate_extracts_every_python_pin_with_the_pip_requirements_manager(
    extraction: dict[str, Any], requirements: str
) -> None:
    files = extraction["Extracted dependencies"]["packageFiles"]["pip_requirements"]
    [found] = [f for f in files if f["packageFile"] == requirements]
    extracted = {dep["depName"]: dep["currentValue"] for dep in found["deps"] if dep["datasource"] == "pypi"}
    expected = {name: f"=={version}" for name, version in requirement_pins(REPO_ROOT / requirements).items()}
    assert expected
    assert extracted == expected


def pypi_pins(extraction: dict[str, Any], manager: str) -> set[tuple[str, str]]:
    """(packageName, currentValue) of every PyPI dependency the manager extracted, all files."""
    files = extraction["Extracted dependencies"]["packageFiles"].get(manager, [])
    return {(d["packageName"], d["currentValue"]) for f in files for d in f["deps"] if d["datasource"] == "pypi"}


def test_renovate_extracts_the_pyproject_pins_with_the_pep621_manager_as_in_the_requirements(
    extraction: dict[str, Any],
) -> None:
    """Each pyproject pin is a requirements pin too, under the same packageName: the
    `{{packageName}} (Python)` group bumps both files in one PR."""
    pyproject = {(name, value) for name, value in pypi_pins(extraction, "pep621") if value.startswith("==")}
    assert {"pulumi", "pyyaml", "httpx"} <= {name for name, _ in pyproject}
    assert pyproject <= pypi_pins(extraction, "pip_requirements")
    config = json.loads((REPO_ROOT / "renovate.json").read_text())
    [rule] = [r for r in config["packageRules"] if r.get("matchManagers") == ["pip_requirements", "pep621"]]
    assert "{{packageName}}" in rule["groupName"]


def test_renovate_extracts_the_pinned_validator_itself_with_the_npm_manager(extraction: dict[str, Any]) -> None:
    files = extraction["Extracted dependencies"]["packageFiles"]["npm"]
    [found] = [f for f in files if f["packageFile"] == "tools/renovate/package.json"]
    pinned = json.loads((REPO_ROOT / "tools/renovate/package.json").read_text())["devDependencies"]["renovate"]
    assert [(d["depName"], d["currentValue"]) for d in found["deps"]] == [("renovate", pinned)]


def test_the_extraction_made_no_http_request(extraction: dict[str, Any]) -> None:
    assert extraction["HTTP statistics"]["requests"] == 0


# ---------------------------------------------------------------------------- lookups


def newer(version: str) -> str:
    """The next minor version, keeping a `v` prefix: 3.1.1 -> 3.2.0, v3.7.3 -> v3.8.0."""
    found = re.fullmatch(r"(v?)(\d+)\.(\d+)\.(\d+)", version)
    assert found, version
    return f"{found[1]}{found[2]}.{int(found[3]) + 1}.0"


BUMPED_IMAGES = ("registry", "prometheus")  # services of contract.IMAGES
BUMPED_PACKAGES = ("pulumi", "PyYAML")  # pinned in requirements.txt and pyproject.toml


def simple_index(releases: dict[str, list[str]], asked: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A PEP 503 simple index of sdist links; 404 for any other project."""

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the HTTP method name)
            asked.append(self.path)
            project = self.path.strip("/").rsplit("/", 1)[-1]
            versions = releases.get(project)
            if versions is None:
                self.send_error(404)
                return
            body = "".join(f'<a href="/files/{project}-{v}.tar.gz">{project}-{v}.tar.gz</a><br>\n' for v in versions)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
            pass

    return Index


def run_lookup(tmp: Path, files: dict[str, str], redirect: dict[str, Any]) -> dict[str, Any]:
    """Renovate's lookup dry run on `files` (path -> text) with `redirect` as its global
    config (where the datasources look); its log lines, by message."""
    renovate = require_npm_tool("renovate")
    copy = tmp / "repository"
    for name, text in files.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text(text)
    (tmp / "global.json").write_text(json.dumps(redirect))
    return run_renovate(renovate, "lookup", tmp, copy, {"RENOVATE_CONFIG_FILE": str(tmp / "global.json")},
                        expect="packageFiles with updates")


def repository_texts(*names: str) -> dict[str, str]:
    return {name: (REPO_ROOT / name).read_text() for name in names}


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The lookup dry run of the pinned files against a loopback registry and simple index."""
    require_npm_tool("renovate")
    tmp = tmp_path_factory.mktemp("renovate-lookup")
    image = tmp / "oci"
    make_oci_image(image, [1000], seed=8, tag="any")
    python_pins = requirement_pins(REPO_ROOT / "requirements.txt")
    releases = {
        name.lower(): [python_pins[name], newer(python_pins[name])] for name in BUMPED_PACKAGES
    }  # PEP 503 normalised names
    asked: list[str] = []
    with start_upstream(tmp) as registry, serve_http(simple_index(releases, asked)) as index_port:
        for service in BUMPED_IMAGES:
            name, tag = split_image(IMAGES[service])
            for version in (tag, newer(tag)):
                push(image, f"{registry.host_port}/{name}:{version}", tag="any")
        files = repository_texts(
            "renovate.json", "contract.py", "Pulumi.yaml", "requirements.txt", "requirements-dev.txt", "pyproject.toml"
        )
        redirect = {
            "enabledManagers": ["custom.regex", "pip_requirements", "pep621"],
            "packageRules": [
                {"matchDatasources": ["docker"], "registryUrls": [f"http://{registry.host_port}"]},
                {"matchDatasources": ["pypi"], "registryUrls": [f"http://127.0.0.1:{index_port}/simple/"]},
                {"matchDatasources": ["python-version"], "enabled": False},  # requires-python
            ],
        }
        messages = run_lookup(tmp, files, redirect)
    assert asked, "Renovate never asked the simple index"
    yield messages


def branches(lookup: dict[str, Any]) -> dict[str, set[tuple[str, str, str]]]:
    """Branch name -> {(package file, depName, new value)} of every update Renovate found."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    for files in lookup["packageFiles with updates"]["config"].values():
        for package_file in files:
            for dep in package_file["deps"]:
                for update in dep.get("updates", []):
                    entry = (package_file["packageFile"], dep["depName"], update["newValue"])
                    found.setdefault(update["branchName"], set()).add(entry)
    return found


def test_each_image_bump_is_one_branch_updating_contract_py_and_pulumi_yaml(lookup: dict[str, Any]) -> None:
    found = branches(lookup)
    for service in BUMPED_IMAGES:
        name, tag = split_image(IMAGES[service])
        [branch] = [b for b, updates in found.items() if any(dep == name for _, dep, _ in updates)]
        assert found[branch] == {("contract.py", name, newer(tag)), ("Pulumi.yaml", name, newer(tag))}
        assert branch == f"renovate/image-{name.replace('/', '-')}"


def test_each_python_bump_is_one_branch_updating_requirements_and_pyproject(lookup: dict[str, Any]) -> None:
    found = branches(lookup)
    pins = requirement_pins(REPO_ROOT / "requirements.txt")
    for package in BUMPED_PACKAGES:
        [branch] = [b for b, updates in found.items() if any(dep == package for _, dep, _ in updates)]
        bumped = f"=={newer(pins[package])}"
        assert found[branch] == {("requirements.txt", package, bumped), ("pyproject.toml", package, bumped)}
        assert branch == f"renovate/python-{package.lower()}"


def test_the_lookups_found_only_the_planted_versions_and_asked_only_loopback(lookup: dict[str, Any]) -> None:
    assert len(branches(lookup)) == len(BUMPED_IMAGES) + len(BUMPED_PACKAGES)
    assert set(lookup["HTTP statistics"]["hosts"]) == {"127.0.0.1"}


# ---------------------------------------------------------------------------- the validator's pin


def npm_registry(versions: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """An npm registry that knows only the `renovate` package, in these versions."""

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the HTTP method name)
            if self.path.strip("/") != "renovate":
                self.send_error(404)
                return
            packument = {
                "name": "renovate",
                "dist-tags": {"latest": versions[-1]},
                "versions": {v: {"name": "renovate", "version": v} for v in versions},
                "time": {v: "2026-01-01T00:00:00.000Z" for v in versions},
            }
            data = json.dumps(packument).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
            pass

    return Registry


def renovate_updates(tmp: Path, renovate_json: str) -> list[str]:
    pinned = json.loads((REPO_ROOT / "tools/renovate/package.json").read_text())["devDependencies"]["renovate"]
    major = int(pinned.split(".")[0])
    versions = [pinned, newer(pinned), f"{major + 1}.0.0"]
    files = repository_texts("tools/renovate/package.json", "tools/renovate/package-lock.json")
    files["renovate.json"] = renovate_json
    with serve_http(npm_registry(versions)) as port:
        redirect = {"enabledManagers": ["npm"], "npmrc": f"registry=http://127.0.0.1:{port}/\n", "npmrcMerge": False}
        messages = run_lookup(tmp, files, redirect)
    [package_file] = messages["packageFiles with updates"]["config"]["npm"]
    [dep] = package_file["deps"]
    return sorted(update["newValue"] for update in dep.get("updates", []))


def test_the_pinned_validator_is_offered_minor_bumps_but_not_the_major_that_needs_a_newer_node(
    tmp_path: Path,
) -> None:
    pinned = json.loads((REPO_ROOT / "tools/renovate/package.json").read_text())["devDependencies"]["renovate"]
    assert renovate_updates(tmp_path / "as-committed", (REPO_ROOT / "renovate.json").read_text()) == [newer(pinned)]
    # control: the same lookup without the `allowedVersions` rule offers the next major too
    config = json.loads((REPO_ROOT / "renovate.json").read_text())
    config["packageRules"] = [r for r in config["packageRules"] if "allowedVersions" not in r]
    major = int(pinned.split(".")[0])
    assert renovate_updates(tmp_path / "without-the-cap", json.dumps(config)) == [newer(pinned), f"{major + 1}.0.0"]
