"""The host key pinned for an ssh:// Docker host (trust/known_hosts.py), from known_hosts files
written and hashed by the real OpenSSH `ssh-keygen`, which also serves as the oracle
(`ssh-keygen -F <name>` finds the same entries)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from trust.known_hosts import host_key, lookup_name, matches, read_host_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real host keys, as `<type> <base64>`."""
    keygen = require_tool("ssh-keygen")
    d = tmp_path_factory.mktemp("hostkeys")
    out = {}
    for name, kind in (("ed25519", "ed25519"), ("ecdsa", "ecdsa"), ("other", "ed25519"), ("rsa", "rsa")):
        subprocess.run([keygen, "-q", "-t", kind, "-N", "", "-C", "", "-f", str(d / name)],
                       check=True, capture_output=True, timeout=60)
        out[name] = " ".join((d / f"{name}.pub").read_text().split()[:2])
    return out


def hashed(path: Path) -> None:
    subprocess.run([require_tool("ssh-keygen"), "-H", "-f", str(path)], check=True, capture_output=True,
                   timeout=60)
    assert "|1|" in path.read_text()


def openssh_finds(path: Path, name: str) -> set[str]:
    """The keys `ssh-keygen -F` finds for NAME in PATH."""
    r = subprocess.run([require_tool("ssh-keygen"), "-F", name, "-f", str(path)], capture_output=True,
                       text=True, timeout=60)
    return {" ".join(line.split()[1:3]) for line in r.stdout.splitlines() if not line.startswith("#")}


def test_a_plain_entry_pins_that_hosts_key_and_no_other_hosts(tmp_path: Path, keys: dict[str, str]) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"other-box {keys['other']}\nBuild-Box,10.0.0.5 {keys['ed25519']}\n")
    assert read_host_key("build-box", 22, [kh]) == keys["ed25519"]
    assert read_host_key("10.0.0.5", 22, [kh]) == keys["ed25519"]
    assert read_host_key("build-box", 2222, [kh]) is None  # another port is another entry
    assert read_host_key("third-box", 22, [kh]) is None
    assert openssh_finds(kh, "build-box") == {keys["ed25519"]}


def test_a_hashed_entry_is_found_as_openssh_finds_it(tmp_path: Path, keys: dict[str, str]) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"build-box {keys['ed25519']}\nother-box {keys['other']}\n")
    hashed(kh)
    assert "build-box" not in kh.read_text()
    assert read_host_key("build-box", 22, [kh]) == keys["ed25519"]
    assert read_host_key("other-box", 22, [kh]) == keys["other"]
    assert read_host_key("third-box", 22, [kh]) is None
    assert openssh_finds(kh, "build-box") == {keys["ed25519"]}


@pytest.mark.parametrize("hash_it", [False, True])
def test_a_bracketed_host_port_entry_is_used_for_that_port_only(
    tmp_path: Path, keys: dict[str, str], hash_it: bool
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[build-box]:2222 {keys['ed25519']}\nbuild-box {keys['other']}\n")
    if hash_it:
        hashed(kh)
    assert read_host_key("build-box", 2222, [kh]) == keys["ed25519"]
    assert read_host_key("build-box", 22, [kh]) == keys["other"]
    assert openssh_finds(kh, "[build-box]:2222") == {keys["ed25519"]}


def test_a_missing_or_unreadable_file_gives_no_key(tmp_path: Path) -> None:
    assert read_host_key("build-box", 22, [tmp_path / "absent"]) is None
    assert read_host_key("build-box", 22, [tmp_path]) is None  # a directory cannot be read


def test_of_several_keys_ed25519_wins_and_rsa_comes_last(tmp_path: Path, keys: dict[str, str]) -> None:
    lines = [f"build-box {keys['rsa']}", f"build-box {keys['ecdsa']}", f"build-box {keys['ed25519']}"]
    assert host_key(lines, "build-box", 22) == keys["ed25519"]
    assert host_key(lines[:2], "build-box", 22) == keys["ecdsa"]
    assert host_key(lines[:1], "build-box", 22) == keys["rsa"]


def test_revoked_ca_commented_and_malformed_lines_are_never_pinned(keys: dict[str, str]) -> None:
    ed_type, ed_blob = keys["ed25519"].split()
    lines = [
        f"@revoked build-box {keys['ed25519']}",
        f"build-box {keys['ed25519']}",
        f"@cert-authority build-box {keys['other']}",
        f"# build-box {keys['other']}",
        f"build-box {ed_type} not-base64!",
        f"build-box ssh-rsa {ed_blob}",  # the blob is an ed25519 key: the type is a lie
        "build-box",
    ]
    assert host_key(lines, "build-box", 22) is None
    assert host_key(lines[1:], "build-box", 22) == keys["ed25519"]


def test_wildcards_and_negations_match_like_openssh(tmp_path: Path, keys: dict[str, str]) -> None:
    assert matches("*.lan,!secret.lan", "build.lan")
    assert not matches("*.lan,!secret.lan", "secret.lan")
    assert matches("build-bo?", "build-box") and not matches("build-bo?", "build-boxes")
    assert matches("[build-box]:2222", "[build-box]:2222")  # brackets are literal, not a class
    assert not matches("[build-box]:2222", "b:2222")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"*.lan,!secret.lan {keys['ed25519']}\n")
    for name, expected in (("build.lan", True), ("secret.lan", False)):
        assert (read_host_key(name, 22, [kh]) is not None) is expected
        assert bool(openssh_finds(kh, name)) is expected


def test_lookup_names_follow_openssh() -> None:
    assert lookup_name("Build-Box", 22) == "build-box"
    assert lookup_name("build-box", 2222) == "[build-box]:2222"


@pytest.mark.parametrize("revoked_in", ["user", "system"])
def test_a_key_revoked_in_one_file_is_not_pinned_from_another(
    tmp_path: Path, keys: dict[str, str], revoked_in: str
) -> None:
    """Issue 20 finding 7: `ssh` loads every known_hosts file into one set before it checks a
    key, so `@revoked` in either file refuses the key whichever file lists it."""
    user, system = tmp_path / "known_hosts", tmp_path / "ssh_known_hosts"
    listed, revoking = (system, user) if revoked_in == "user" else (user, system)
    listed.write_text(f"build-box {keys['ed25519']}\n")
    revoking.write_text(f"@revoked * {keys['ed25519']}\n")
    assert read_host_key("build-box", 22, [user, system]) is None
    # another key of the host, not revoked, is pinned instead
    listed.write_text(f"build-box {keys['ed25519']}\nbuild-box {keys['ecdsa']}\n")
    assert read_host_key("build-box", 22, [user, system]) == keys["ecdsa"]
    # a revocation for another host revokes nothing here
    revoking.write_text(f"@revoked other-box {keys['ed25519']}\n")
    assert read_host_key("build-box", 22, [user, system]) == keys["ed25519"]
