"""The daemon.json merger (trust/daemon_json.py), called directly: `main(argv)` with files
under tmp_path. How the scripts use it on a host is rehearsed in
tests/rehearsal/test_trust_scripts.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trust import daemon_json

KEY = "registry-mirror:configureDockerMirror"
URL = "https://mirror.test:6000"
HINT = f"fix it, or run: pulumi config set {KEY} false"
ORIGINAL = {"log-driver": "json-file", "registry-mirrors": ["https://mirror.gcr.io"],
            "features": {"buildkit": True}}


def install(tmp_path: Path, current: str | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    """Run the install action on CURRENT (None: no daemon.json); status, stdout, OUT path."""
    path = ""
    if current is not None:
        (tmp_path / "daemon.json").write_text(current, encoding="utf-8")
        path = str(tmp_path / "daemon.json")
    out = tmp_path / "daemon.new"
    status = daemon_json.main([KEY, "install", URL, "/etc/docker/daemon.json", path, str(out)])
    return status, capsys.readouterr().out, out


def remove(tmp_path: Path, current: str, backup: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    (tmp_path / "daemon.json").write_text(current, encoding="utf-8")
    (tmp_path / "daemon.bak").write_text(backup, encoding="utf-8")
    out = tmp_path / "daemon.new"
    status = daemon_json.main([
        KEY, "remove", URL, "/etc/docker/daemon.json", "/etc/docker/daemon.json.x.bak",
        str(tmp_path / "daemon.json"), str(tmp_path / "daemon.bak"), str(out),
    ])
    return status, capsys.readouterr().out, out


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("registry-mirror: ")
    return lines[0]


def test_install_without_a_daemon_json_writes_one_holding_only_our_mirror(tmp_path, capsys):
    status, said, out = install(tmp_path, None, capsys)
    assert (status, said) == (0, "changed\n")
    assert out.read_text() == '{\n  "registry-mirrors": [\n    "https://mirror.test:6000"\n  ]\n}\n'


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_install_treats_an_empty_or_blank_daemon_json_as_an_empty_object(tmp_path, capsys, content):
    status, said, out = install(tmp_path, content, capsys)
    assert (status, said) == (0, "changed\n")
    assert json.loads(out.read_text()) == {"registry-mirrors": [URL]}


def test_install_appends_our_mirror_and_keeps_every_other_key_in_order(tmp_path, capsys):
    original = dict(ORIGINAL, name="b\u00e4r")
    status, said, out = install(tmp_path, "\ufeff" + json.dumps(original), capsys)  # with a BOM
    assert (status, said) == (0, "changed\n")
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert merged == dict(original, **{"registry-mirrors": ["https://mirror.gcr.io", URL]})
    assert list(merged) == list(original)
    assert "b\u00e4r" in out.read_text(encoding="utf-8")  # not escaped to \u00e4


@pytest.mark.parametrize("listed", [URL, URL + "/"])
def test_install_never_adds_a_mirror_that_is_already_listed(tmp_path, capsys, listed):
    status, said, out = install(tmp_path, json.dumps({"registry-mirrors": [listed]}), capsys)
    assert (status, said) == (0, "unchanged\n")
    assert not out.exists()


def test_remove_of_an_untouched_merge_restores_the_original_bytes(tmp_path, capsys):
    original_text = json.dumps(ORIGINAL, indent=4)
    merged = dict(ORIGINAL, **{"registry-mirrors": ["https://mirror.gcr.io", URL]})
    status, said, out = remove(tmp_path, json.dumps(merged), original_text, capsys)
    assert (status, said) == (0, "restore\n")  # the script copies the backup back
    assert not out.exists()


def test_remove_when_the_file_already_holds_the_original_bytes_changes_nothing(tmp_path, capsys):
    text = json.dumps(ORIGINAL)
    status, said, out = remove(tmp_path, text, text, capsys)
    assert (status, said) == (0, "unchanged\n")
    assert not out.exists()


def test_remove_deletes_a_daemon_json_that_did_not_exist_before_the_install(tmp_path, capsys):
    status, said, _ = remove(tmp_path, json.dumps({"registry-mirrors": [URL]}), "", capsys)
    assert (status, said) == (0, "delete\n")


def test_remove_takes_out_only_our_url_and_keeps_the_users_later_edits(tmp_path, capsys):
    edited = dict(ORIGINAL, debug=True, **{"registry-mirrors": ["https://mirror.gcr.io", URL + "/"]})
    status, said, out = remove(tmp_path, json.dumps(edited), json.dumps(ORIGINAL), capsys)
    assert (status, said) == (0, "changed\n")
    assert json.loads(out.read_text()) == dict(ORIGINAL, debug=True)


def test_remove_drops_the_key_it_created_but_keeps_a_key_the_user_had(tmp_path, capsys):
    status, _, out = remove(tmp_path, json.dumps({"registry-mirrors": [URL], "debug": True}), "{}", capsys)
    assert status == 0 and json.loads(out.read_text()) == {"debug": True}
    status, _, out = remove(tmp_path, json.dumps({"registry-mirrors": [URL], "debug": True}),
                            '{"registry-mirrors": []}', capsys)
    assert status == 0 and json.loads(out.read_text()) == {"registry-mirrors": [], "debug": True}


def test_remove_never_takes_out_a_url_the_user_had_listed_before_the_install(tmp_path, capsys):
    text = json.dumps({"registry-mirrors": [URL], "debug": False})
    status, said, out = remove(tmp_path, json.dumps({"registry-mirrors": [URL], "debug": True}), text, capsys)
    assert (status, said) == (0, "unchanged\n")  # the URL stays, and so does the user's edit
    assert not out.exists()


def test_malformed_json_fails_with_one_line_naming_the_file_and_the_way_out(tmp_path, capsys):
    (tmp_path / "daemon.json").write_text('{"log-driver": "json-file",')
    out = tmp_path / "daemon.new"
    status = daemon_json.main([KEY, "install", URL, "/etc/docker/daemon.json",
                               str(tmp_path / "daemon.json"), str(out)])
    assert status == daemon_json.FAILED == 3
    line = one_error_line(capsys)
    assert line.startswith("registry-mirror: /etc/docker/daemon.json is not valid JSON (")
    assert line.endswith(HINT)
    assert not out.exists()


@pytest.mark.parametrize(
    "content,problem",
    [("[1, 2]", "does not hold a JSON object"),
     ('{"registry-mirrors": "https://x"}', "registry-mirrors is not a list of URLs"),
     ('{"registry-mirrors": [1]}', "registry-mirrors is not a list of URLs"),
     (b"\xff\xfe{}", "cannot read /etc/docker/daemon.json")],
)
def test_a_daemon_json_that_is_not_a_usable_object_fails_with_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "daemon.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    status = daemon_json.main([KEY, "install", URL, "/etc/docker/daemon.json", str(path),
                               str(tmp_path / "daemon.new")])
    assert status == 3
    assert problem in one_error_line(capsys)


def test_an_unexpected_error_is_one_line_too_never_a_traceback(tmp_path, capsys):
    status = daemon_json.main([KEY, "install", URL, "/etc/docker/daemon.json", "",
                               str(tmp_path / "no-such-dir" / "daemon.new")])
    assert status == 3
    assert one_error_line(capsys).startswith("registry-mirror: cannot edit Docker's daemon.json: ")
    assert daemon_json.main([KEY, "merge", URL]) == 3
    assert "unexpected arguments" in one_error_line(capsys)


def test_run_as_a_program_it_prints_the_state_word_and_fails_with_status_3(tmp_path):
    program = Path(daemon_json.__file__)
    out = tmp_path / "daemon.new"
    ok = subprocess.run([sys.executable, str(program), KEY, "install", URL, "d.json", "", str(out)],
                        capture_output=True, text=True, timeout=30)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "changed\n", "")
    (tmp_path / "bad.json").write_text("{")
    bad = subprocess.run([sys.executable, str(program), KEY, "install", URL, "d.json",
                          str(tmp_path / "bad.json"), str(out)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 3 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_the_merger_is_python_3_6_syntax_with_only_standard_modules_it_had():
    # The Docker host's python3 runs it: Debian 10 and Ubuntu 18.04 still ship 3.6/3.7.
    source = Path(daemon_json.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"copy", "json", "sys", "typing"}
