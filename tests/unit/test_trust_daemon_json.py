"""The daemon.json merger (trust/daemon_json.py), called directly: `main(argv)` with files
under tmp_path. How the scripts use it on a host is rehearsed in
tests/rehearsal/test_trust_scripts.py."""

from __future__ import annotations

import ast
import builtins
import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trust import daemon_json

KEY = "registry-mirror:configureDockerMirror"
URL = "https://mirror.test:6000"
HINT = f"fix it, or run: pulumi config set {KEY} false"
ORIGINAL = {"log-driver": "json-file", "registry-mirrors": ["https://mirror.gcr.io"],
            "features": {"buildkit": True}}


def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "daemon.json", tmp_path / "daemon.json.x.bak"


def install(tmp_path: Path, current: str | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    """Run the install action on CURRENT (None: no daemon.json); status, stdout, daemon.json."""
    daemon, backup = paths(tmp_path)
    if current is not None:
        daemon.write_text(current, encoding="utf-8")
    status = daemon_json.main([KEY, "install", URL, str(daemon), str(backup)])
    return status, capsys.readouterr().out, daemon


def remove(tmp_path: Path, current: str, backup_text: str | bytes,
           capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    daemon, backup = paths(tmp_path)
    daemon.write_text(current, encoding="utf-8")
    backup.write_bytes(backup_text.encode() if isinstance(backup_text, str) else backup_text)
    status = daemon_json.main([KEY, "remove", URL, str(daemon), str(backup)])
    assert not backup.exists()  # the remove always deletes this stack's backup
    return status, capsys.readouterr().out, daemon


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("registry-mirror: ")
    return lines[0]


def test_install_without_a_daemon_json_writes_one_holding_only_our_mirror(tmp_path, capsys):
    status, said, daemon = install(tmp_path, None, capsys)
    assert (status, said) == (0, "changed\n")
    assert daemon.read_text() == '{\n  "registry-mirrors": [\n    "https://mirror.test:6000"\n  ]\n}\n'
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o644
    assert paths(tmp_path)[1].read_bytes() == daemon_json.ABSENT


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_install_treats_an_empty_or_blank_daemon_json_as_an_empty_object_and_backs_up_its_bytes(
    tmp_path, capsys, content
):
    status, said, daemon = install(tmp_path, content, capsys)
    assert (status, said) == (0, "changed\n")
    assert json.loads(daemon.read_text()) == {"registry-mirrors": [URL]}
    assert paths(tmp_path)[1].read_text() == content


def test_install_appends_our_mirror_and_keeps_every_other_key_in_order(tmp_path, capsys):
    original = dict(ORIGINAL, name="b\u00e4r")
    status, said, daemon = install(tmp_path, "\ufeff" + json.dumps(original), capsys)  # with a BOM
    assert (status, said) == (0, "changed\n")
    merged = json.loads(daemon.read_text(encoding="utf-8"))
    assert merged == dict(original, **{"registry-mirrors": ["https://mirror.gcr.io", URL]})
    assert list(merged) == list(original)
    assert "b\u00e4r" in daemon.read_text(encoding="utf-8")  # not escaped to \u00e4


@pytest.mark.parametrize("listed", [URL, URL + "/"])
def test_install_never_adds_a_mirror_that_is_already_listed_nor_backs_up(tmp_path, capsys, listed):
    text = json.dumps({"registry-mirrors": [listed]})
    status, said, daemon = install(tmp_path, text, capsys)
    assert (status, said) == (0, "unchanged\n")
    assert daemon.read_text() == text
    assert not paths(tmp_path)[1].exists()


def test_a_second_install_keeps_the_backup_of_the_first(tmp_path, capsys):
    install(tmp_path, json.dumps(ORIGINAL), capsys)
    daemon, backup = paths(tmp_path)
    daemon.write_text(json.dumps({"debug": True}))  # the user drops our URL
    status, said, _ = install(tmp_path, None, capsys)
    assert (status, said) == (0, "changed\n")
    assert json.loads(backup.read_text()) == ORIGINAL


def test_remove_of_an_untouched_merge_restores_the_original_bytes(tmp_path, capsys):
    original_text = json.dumps(ORIGINAL, indent=4)
    merged = dict(ORIGINAL, **{"registry-mirrors": ["https://mirror.gcr.io", URL]})
    status, said, daemon = remove(tmp_path, json.dumps(merged), original_text, capsys)
    assert (status, said) == (0, "restore\n")
    assert daemon.read_text() == original_text


def test_remove_restores_an_empty_original_as_the_empty_file_it_was(tmp_path, capsys):
    status, said, daemon = remove(tmp_path, json.dumps({"registry-mirrors": [URL]}), "", capsys)
    assert (status, said) == (0, "restore\n")
    assert daemon.read_bytes() == b""


def test_remove_when_the_file_already_holds_the_original_bytes_changes_nothing(tmp_path, capsys):
    text = json.dumps(ORIGINAL)
    status, said, daemon = remove(tmp_path, text, text, capsys)
    assert (status, said) == (0, "unchanged\n")
    assert daemon.read_text() == text


def test_remove_deletes_a_daemon_json_that_did_not_exist_before_the_install(tmp_path, capsys):
    status, said, daemon = remove(tmp_path, json.dumps({"registry-mirrors": [URL]}), daemon_json.ABSENT, capsys)
    assert (status, said) == (0, "delete\n")
    assert not daemon.exists()


def test_remove_takes_out_only_our_url_and_keeps_the_users_later_edits(tmp_path, capsys):
    edited = dict(ORIGINAL, debug=True, **{"registry-mirrors": ["https://mirror.gcr.io", URL + "/"]})
    status, said, daemon = remove(tmp_path, json.dumps(edited), json.dumps(ORIGINAL), capsys)
    assert (status, said) == (0, "changed\n")
    assert json.loads(daemon.read_text()) == dict(ORIGINAL, debug=True)


def test_remove_drops_the_key_it_created_but_keeps_a_key_the_user_had(tmp_path, capsys):
    status, _, daemon = remove(tmp_path, json.dumps({"registry-mirrors": [URL], "debug": True}), "{}", capsys)
    assert status == 0 and json.loads(daemon.read_text()) == {"debug": True}
    status, _, daemon = remove(tmp_path, json.dumps({"registry-mirrors": [URL], "debug": True}),
                               '{"registry-mirrors": []}', capsys)
    assert status == 0 and json.loads(daemon.read_text()) == {"registry-mirrors": [], "debug": True}


@pytest.mark.parametrize("first_out", ["a", "b"])
@pytest.mark.parametrize("original", ['{"debug": true}\n', json.dumps(ORIGINAL), '{"registry-mirrors": []}'])
def test_two_stacks_removed_in_either_order_give_back_the_original(tmp_path, capsys, first_out, original):
    daemon = tmp_path / "daemon.json"
    daemon.write_text(original)
    urls = {"a": "https://a.test:6000", "b": "https://b.test:7000"}
    backups = {k: str(tmp_path / f"daemon.json.{k}.bak") for k in urls}
    for k in ("a", "b"):
        assert daemon_json.main([KEY, "install", urls[k], str(daemon), backups[k]]) == 0
    for k in (first_out, "b" if first_out == "a" else "a"):
        assert daemon_json.main([KEY, "remove", urls[k], str(daemon), backups[k]]) == 0
    expected = json.loads(original)
    if expected == {"registry-mirrors": []} and first_out == "a":
        # The one case the backups cannot tell apart: b's backup holds ["https://a..."], not
        # the user's empty list, so b drops the emptied key (dockerd reads both as no mirror).
        expected = {}
    assert json.loads(daemon.read_text()) == expected


def test_remove_never_takes_out_a_url_the_user_had_listed_before_the_install(tmp_path, capsys):
    text = json.dumps({"registry-mirrors": [URL], "debug": False})
    edited = json.dumps({"registry-mirrors": [URL], "debug": True})
    status, said, daemon = remove(tmp_path, edited, text, capsys)
    assert (status, said) == (0, "unchanged\n")  # the URL stays, and so does the user's edit
    assert daemon.read_text() == edited


def test_remove_without_this_stacks_backup_touches_nothing(tmp_path, capsys):
    daemon, backup = paths(tmp_path)
    daemon.write_text(json.dumps({"registry-mirrors": [URL]}))
    assert daemon_json.main([KEY, "remove", URL, str(daemon), str(backup)]) == 0
    assert capsys.readouterr().out == "none\n"
    assert json.loads(daemon.read_text()) == {"registry-mirrors": [URL]}


# --------------------------------------------------------------------------- symlinks


def test_a_symlinked_daemon_json_stays_a_symlink_and_its_target_is_replaced(tmp_path, capsys):
    real_file = tmp_path / "real" / "daemon.json"
    real_file.parent.mkdir()
    real_file.write_text(json.dumps(ORIGINAL))
    real_file.chmod(0o640)
    daemon, backup = paths(tmp_path)
    daemon.symlink_to(real_file)
    assert daemon_json.main([KEY, "install", URL, str(daemon), str(backup)]) == 0
    assert daemon.is_symlink() and daemon.resolve() == real_file
    assert URL in json.loads(real_file.read_text())["registry-mirrors"]
    assert stat.S_IMODE(real_file.stat().st_mode) == 0o640
    assert sorted(x.name for x in real_file.parent.iterdir()) == ["daemon.json"]  # no temp file left
    assert daemon_json.main([KEY, "remove", URL, str(daemon), str(backup)]) == 0
    assert daemon.is_symlink() and json.loads(real_file.read_text()) == ORIGINAL


def test_a_dangling_symlink_survives_install_and_remove(tmp_path, capsys):
    target = tmp_path / "elsewhere" / "daemon.json"
    target.parent.mkdir()
    daemon, backup = paths(tmp_path)
    daemon.symlink_to(target)
    assert daemon_json.main([KEY, "install", URL, str(daemon), str(backup)]) == 0
    assert daemon.is_symlink() and json.loads(target.read_text()) == {"registry-mirrors": [URL]}
    assert backup.read_bytes() == daemon_json.ABSENT
    assert daemon_json.main([KEY, "remove", URL, str(daemon), str(backup)]) == 0
    assert capsys.readouterr().out == "changed\ndelete\n"
    assert daemon.is_symlink() and os.readlink(daemon) == str(target) and not target.exists()


# --------------------------------------------------------------------------- plans


def test_plans_name_the_word_and_the_first_path_this_user_cannot_write(tmp_path, capsys):
    daemon, backup = paths(tmp_path)
    daemon.write_text(json.dumps(ORIGINAL))
    assert daemon_json.main([KEY, "plan-install", URL, str(daemon), str(backup), str(daemon)]) == 0
    assert capsys.readouterr().out == "changed\n\n"
    assert not backup.exists()  # a plan writes nothing
    assert not (tmp_path / "daemon.json.registry-mirror.lock").exists()
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps({"registry-mirrors": [URL]}))
    assert daemon_json.main([KEY, "plan-install", URL, str(daemon), str(backup), str(listed)]) == 0
    assert capsys.readouterr().out == "unchanged\n\n"
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(dict(ORIGINAL, **{"registry-mirrors": ["https://mirror.gcr.io", URL]})))
    backup.write_text(json.dumps(ORIGINAL))
    assert daemon_json.main([KEY, "plan-remove", URL, str(daemon), str(backup), str(merged), str(backup)]) == 0
    assert capsys.readouterr().out == "restore\n\n"
    assert backup.exists()


def test_a_plan_names_an_unwritable_target_so_the_script_can_use_sudo(tmp_path, capsys, monkeypatch):
    daemon, backup = paths(tmp_path)
    daemon.write_text("{}")
    monkeypatch.setattr(daemon_json, "can_write", lambda path: path != str(daemon))
    assert daemon_json.main([KEY, "plan-install", URL, str(daemon), str(backup), str(daemon)]) == 0
    assert capsys.readouterr().out == f"changed\n{daemon}\n"


# --------------------------------------------------------------------------- failures


def test_malformed_json_fails_with_one_line_naming_the_file_and_the_way_out(tmp_path, capsys):
    daemon, backup = paths(tmp_path)
    daemon.write_text('{"log-driver": "json-file",')
    status = daemon_json.main([KEY, "install", URL, str(daemon), str(backup)])
    assert status == daemon_json.FAILED == 3
    line = one_error_line(capsys)
    assert line.startswith(f"registry-mirror: {daemon} is not valid JSON (")
    assert line.endswith(HINT)
    assert daemon.read_text() == '{"log-driver": "json-file",' and not backup.exists()


@pytest.mark.parametrize(
    "content,problem",
    [("[1, 2]", "does not hold a JSON object"),
     ('{"registry-mirrors": "https://x"}', "registry-mirrors is not a list of URLs"),
     ('{"registry-mirrors": [1]}', "registry-mirrors is not a list of URLs"),
     (b"\xff\xfe{}", "cannot read ")],
)
def test_a_daemon_json_that_is_not_a_usable_object_fails_with_one_line(tmp_path, capsys, content, problem):
    daemon, backup = paths(tmp_path)
    daemon.write_bytes(content if isinstance(content, bytes) else content.encode())
    status = daemon_json.main([KEY, "plan-install", URL, str(daemon), str(backup), str(daemon)])
    assert status == 3
    assert problem in one_error_line(capsys)


class _HalfThenFull:
    """A file whose writes put half the bytes down, then fail as a full disk does."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _HalfThenFull:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


@pytest.fixture
def disk_fills_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write to a file opened for writing stops halfway with ENOSPC, however the file
    was opened (open, os.fdopen, os.write)."""
    real_open, real_fdopen, real_write = builtins.open, os.fdopen, os.write

    def writing(mode: str) -> bool:
        return any(c in mode for c in "wax+")

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        return _HalfThenFull(handle) if writing(mode) else handle

    def fake_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return _HalfThenFull(handle) if writing(mode) else handle

    def fake_write(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    monkeypatch.setattr(os, "write", fake_write)


@pytest.mark.parametrize("backed_up", [False, True], ids=["first-install", "later-install"])
def test_a_write_failing_midway_leaves_the_original_bytes_and_no_temporary_file(
        tmp_path, capsys, disk_fills_midway, backed_up):
    """Docker reads daemon.json at its next start: a half-written file would keep it down."""
    daemon, backup = paths(tmp_path)
    original = json.dumps(ORIGINAL, indent=4).encode()
    daemon.write_bytes(original)
    saved = b'{"debug": true}' if backed_up else None
    if saved is not None:  # an earlier install's backup: this one writes daemon.json first
        backup.write_bytes(saved)
    status = daemon_json.main([KEY, "install", URL, str(daemon), str(backup)])
    assert status == 3
    assert "No space left on device" in one_error_line(capsys)
    assert daemon.read_bytes() == original
    # the backup is whole or absent: a half backup would be "restored" by the remove
    assert (backup.read_bytes() if backup.exists() else None) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [daemon.name, daemon_json.lock_path(str(daemon)).rsplit("/", 1)[1]] + ([backup.name] if backed_up else []))


def test_an_unexpected_error_is_one_line_too_never_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status = daemon_json.main([KEY, "install", URL, str(blocker / "daemon.json"), str(tmp_path / "b")])
    assert status == 3
    assert one_error_line(capsys).startswith("registry-mirror: cannot edit Docker's daemon.json: ")
    assert daemon_json.main([KEY, "merge", URL]) == 3
    assert "unexpected arguments" in one_error_line(capsys)


def test_run_as_a_program_it_prints_the_state_word_and_fails_with_status_3(tmp_path):
    program = Path(daemon_json.__file__)
    daemon, backup = paths(tmp_path)
    ok = subprocess.run([sys.executable, str(program), KEY, "install", URL, str(daemon), str(backup)],
                        capture_output=True, text=True, timeout=30)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "changed\n", "")
    daemon.write_text("{")
    bad = subprocess.run([sys.executable, str(program), KEY, "remove", URL, str(daemon), str(backup)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 3 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_the_merger_is_python_3_6_syntax_with_only_standard_modules_it_had():
    # The Docker host's python3 runs it: Debian 10 and Ubuntu 18.04 still ship 3.6/3.7.
    source = Path(daemon_json.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"copy", "fcntl", "json", "os", "stat", "sys", "tempfile", "typing"}
