"""Rehearsal of the host trust scripts (trust/, rendered) with the real /bin/sh (dash on Debian).

Every script runs as `/bin/sh -c <text>`, exactly as pulumi-command's `local.Command` runs it,
against temporary roots: Docker's certs.d, daemon.json and the Debian CA directories are
parameters pointing into the test's directories, and the programs that would touch the host
(`update-ca-certificates`, `security`, `uname`, `sudo`) are replaced by stand-ins placed first on
PATH. The real `update-ca-certificates` runs too, but only with its directory options aimed at
temporary directories. Nothing touches the real /etc.

Remove scripts always run with stdin on a pipe that is never written nor closed: a remove that
read stdin would block until the timeout and fail.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import shlex
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import require_tool
from trust import daemon_json
from trust.render import MACOS_SYSTEM_KEYCHAIN, TrustParams, render_install_script, render_remove_script

SH = "/bin/sh"
HOST = "localhost:6000"
URL = "https://localhost:6000"
INSTANCE = "registry-mirror-dev"
NOBODY = 65534
TIMEOUT = 30


# --------------------------------------------------------------------------- helpers


def _openssl_cert(directory: Path, name: str, subject: str) -> str:
    openssl = require_tool("openssl")
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", subject],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    return cert.read_text()


def _openssl_signed(directory: Path, name: str, subject: str, ca: str) -> str:
    """A certificate for a new P-256 key NAME.key, signed by CA (CA.crt and CA.key)."""
    openssl = require_tool("openssl")
    d = directory
    for argv in (
        ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", subject],
        ["x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.crt", "-CAkey", f"{d}/{ca}.key",
         "-CAcreateserial", "-days", "2", "-out", f"{d}/{name}.crt"],
    ):
        subprocess.run([openssl, *argv], check=True, capture_output=True, timeout=TIMEOUT)
    return (d / f"{name}.crt").read_text()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A root CA, an intermediate it signed, and a client leaf the intermediate signed (with
    its key): what `Pki` hands the trust command when requireClientCert is on."""
    d = tmp_path_factory.mktemp("pki")
    root = _openssl_cert(d, "root", "/CN=registry-mirror test root CA")
    intermediate = _openssl_signed(d, "intermediate", "/CN=registry-mirror intermediate", "root")
    client = _openssl_signed(d, "client", "/CN=registry-mirror client", "intermediate")
    return {
        "root": root,
        "other": _openssl_cert(d, "other", "/CN=some other CA"),
        "intermediate": intermediate,
        "client_chain": client + intermediate,
        "client_key": (d / "client.key").read_text(),
    }


def params(root: Path, **overrides: object) -> TrustParams:
    values: dict[str, object] = {
        "registry_host": HOST,
        "mirror_url": URL,
        "docker_certs_dir": str(root / "Application Support" / "certs.d"),
        "install_system_trust": False,
        "configure_docker_mirror": False,
        "docker_daemon_json_path": str(root / "etc" / "docker" / "daemon.json"),
        "use_sudo": False,
        "instance": INSTANCE,
        "system_ca_dir": str(root / "local-ca"),
    }
    values.update(overrides)
    return TrustParams(**values)  # type: ignore[arg-type]


def base_env(fake_bin: Path | None = None, tmpdir: Path | None = None) -> dict[str, str]:
    # The stand-ins first; the venv's python3 next (daemon.json editing); no /usr/sbin, so no
    # real system tool can be picked up by accident.
    dirs = [str(fake_bin)] if fake_bin else []
    dirs += [os.path.dirname(sys.executable), "/usr/bin", "/bin"]
    env = {"PATH": ":".join(dirs), "LC_ALL": "C", "HOME": str(tmpdir or tempfile.gettempdir())}
    if tmpdir:
        env["TMPDIR"] = str(tmpdir)
    return env


def run_script(
    script: str,
    *,
    pem: str | None,
    env: dict[str, str],
    as_nobody: bool = False,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run like local.Command: /bin/sh -c <script>. With pem=None, stdin is a pipe that stays
    open and empty for the whole run (a script that reads it blocks and hits the timeout)."""
    argv = [SH, "-c", script]
    if as_nobody:
        setpriv = require_tool("setpriv")
        argv = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    if pem is not None:
        return subprocess.run(argv, input=pem, text=True, capture_output=True, env=env,
                              cwd=cwd, timeout=TIMEOUT)
    read_end, write_end = os.pipe()
    try:
        return subprocess.run(argv, stdin=read_end, text=True, capture_output=True, env=env,
                              cwd=cwd, timeout=TIMEOUT)
    finally:
        os.close(read_end)
        os.close(write_end)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root -> file bytes (None for directories)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return out


def write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines!r}"
    return lines[0]


# --------------------------------------------------------------------------- Docker certs.d


def test_certs_round_trip_installs_stdin_pem_0644_idempotently_and_removes_only_ours(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path)
    certs = Path(p.docker_certs_dir)
    other = certs / "other.example:5000"  # another registry's trust, not ours
    other.mkdir(parents=True)
    (other / "ca.crt").write_text(pki["other"])
    before = tree(tmp_path)
    env = base_env()

    for _ in range(2):  # twice: idempotent
        r = run_script(render_install_script(p), pem=pki["root"], env=env)
        assert r.returncode == 0, r.stderr
    ca = certs / HOST / "ca.crt"
    assert ca.read_text() == pki["root"]
    assert stat.S_IMODE(ca.stat().st_mode) == 0o644
    # one copy, and the record of what this stack wrote there
    assert sorted(x.name for x in (certs / HOST).iterdir()) == [f".{INSTANCE}.installed", "ca.crt"]
    assert "already holds this root CA" in r.stdout

    for _ in range(2):  # twice: a missing file is fine
        r = run_script(render_remove_script(p), pem=None, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    assert tree(tmp_path) == before


def test_remove_keeps_a_host_dir_that_holds_more_than_our_ca(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path)
    env = base_env()
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    host_dir = Path(p.docker_certs_dir) / HOST
    (host_dir / "client.cert").write_text("user's client certificate\n")
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in host_dir.iterdir()) == ["client.cert"]


@pytest.mark.parametrize("stdin_kind", ["chain", "empty", "key"])
def test_install_takes_only_one_root_certificate_from_stdin(
    tmp_path: Path, pki: dict[str, str], stdin_kind: str
) -> None:
    stdin = {
        "chain": pki["intermediate"] + pki["root"],
        "empty": "",
        "key": pki["root"] + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }[stdin_kind]
    p = params(tmp_path, configure_docker_mirror=True)
    before = tree(tmp_path)
    r = run_script(render_install_script(p), pem=stdin, env=base_env())
    assert r.returncode != 0
    line = one_line(r.stderr)
    assert line.startswith("registry-mirror: ")
    assert "BEGIN" not in line and "MII" not in line  # never echoes certificate material
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- client certificate


def client_stdin(pki: dict[str, str]) -> str:
    return pki["root"] + pki["client_chain"] + pki["client_key"]


def key_body(pki: dict[str, str]) -> str:
    return _body(pki["client_key"])


def test_client_certificate_and_0600_key_land_beside_the_ca_and_remove_deletes_them(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, client_cert=True)
    Path(p.docker_certs_dir).mkdir(parents=True)  # Docker's; the install makes only <host>:<port>
    before = tree(tmp_path)
    install, remove = render_install_script(p), render_remove_script(p)
    assert key_body(pki) not in install and key_body(pki) not in remove
    host_dir = Path(p.docker_certs_dir) / HOST
    env = base_env()

    for _ in range(2):  # twice: idempotent
        r = run_script(install, pem=client_stdin(pki), env=env)
        assert r.returncode == 0, r.stderr
        assert key_body(pki) not in r.stdout + r.stderr and "PRIVATE" not in r.stdout + r.stderr
        assert (host_dir / "ca.crt").read_text() == pki["root"]
        assert (host_dir / "client.cert").read_text() == pki["client_chain"]
        assert (host_dir / "client.key").read_text() == pki["client_key"]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in host_dir.iterdir()}
        assert modes == {"ca.crt": 0o644, "client.cert": 0o644, "client.key": 0o600,
                         f".{INSTANCE}.installed": 0o600}
    assert "already holds this root CA and client certificate" in r.stdout

    r = run_script(remove, pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == before


def test_a_renewed_client_certificate_replaces_the_old_one(tmp_path: Path, pki: dict[str, str]) -> None:
    p = params(tmp_path, client_cert=True)
    host_dir = Path(p.docker_certs_dir) / HOST
    (host_dir).mkdir(parents=True)
    (host_dir / "client.cert").write_text(pki["other"])
    (host_dir / "client.key").write_text("old key\n")
    r = run_script(render_install_script(p), pem=client_stdin(pki), env=base_env())
    assert r.returncode == 0, r.stderr
    assert (host_dir / "client.cert").read_text() == pki["client_chain"]
    assert (host_dir / "client.key").read_text() == pki["client_key"]
    assert stat.S_IMODE((host_dir / "client.key").stat().st_mode) == 0o600


def modes(root: Path) -> dict[str, tuple[int, str | None]]:
    """Every path under root -> (mode bits, symlink target or None), without following links."""
    out: dict[str, tuple[int, str | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (stat.S_IMODE(st.st_mode),
                                            os.readlink(path) if path.is_symlink() else None)
    return out


USERS_CA = "a corporate CA the user put here\n"  # no PEM: the script must keep it as bytes


def test_a_users_own_ca_and_client_pair_are_kept_aside_on_install_and_put_back_byte_for_byte_on_remove(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    """Finding 3 of issue 20: the user's `ca.crt`, `client.cert` and `client.key` in the very
    directory the stack trusts are moved aside (Docker reads only *.crt, *.cert and *.key, so
    the kept copies are not read), ours take their place, and remove puts theirs back."""
    p = params(tmp_path, client_cert=True)
    host_dir = Path(p.docker_certs_dir) / HOST
    host_dir.mkdir(parents=True)
    (host_dir / "ca.crt").write_text(USERS_CA)
    (host_dir / "client.cert").write_text(pki["other"])
    (host_dir / "client.key").write_text("the user's own key\n")
    (host_dir / "client.key").chmod(0o640)
    (host_dir / "ca.crt").chmod(0o600)
    before, before_modes = tree(tmp_path), modes(tmp_path)
    env = base_env()

    for _ in range(2):  # twice: a second install keeps the FIRST original, never ours
        r = run_script(render_install_script(p), pem=client_stdin(pki), env=env)
        assert r.returncode == 0, r.stderr
        assert (host_dir / "ca.crt").read_text() == pki["root"]
        assert (host_dir / "client.cert").read_text() == pki["client_chain"]
        assert (host_dir / "client.key").read_text() == pki["client_key"]
    kept = {f.name: f.read_bytes() for f in host_dir.iterdir() if f.name.endswith(".bak")}
    assert sorted(kept.values()) == sorted(before[str(Path(p.docker_certs_dir, HOST, n).relative_to(tmp_path))]
                                           for n in ("ca.crt", "client.cert", "client.key"))
    # Docker's certs.d reader (moby registry.loadTLSConfig) goes by suffix: no kept copy counts
    assert not [n for n in kept if n.endswith((".crt", ".cert", ".key"))], kept

    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == before
    assert modes(tmp_path) == before_modes
    r = run_script(render_remove_script(p), pem=None, env=env)  # idempotent
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == before


def test_a_file_the_user_changed_after_the_install_is_left_by_remove_with_the_kept_original(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path)
    host_dir = Path(p.docker_certs_dir) / HOST
    host_dir.mkdir(parents=True)
    (host_dir / "ca.crt").write_text(USERS_CA)
    env = base_env()
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    (host_dir / "ca.crt").write_text("the user's newer CA\n")  # after the install
    for _ in range(2):
        r = run_script(render_remove_script(p), pem=None, env=env)
        assert r.returncode == 0, r.stderr
        assert (host_dir / "ca.crt").read_text() == "the user's newer CA\n"
        assert (host_dir / f"ca.crt.{INSTANCE}.bak").read_text() == USERS_CA
    assert "left" in r.stdout and "changed since the install" in r.stdout
    # a new install keeps both rather than guess which one the user wants
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode != 0
    assert "move one of them away" in one_line(r.stderr)


def test_a_users_symlinked_ca_comes_back_as_the_same_link(tmp_path: Path, pki: dict[str, str]) -> None:
    p = params(tmp_path)
    host_dir = Path(p.docker_certs_dir) / HOST
    host_dir.mkdir(parents=True)
    (tmp_path / "corporate.pem").write_text(USERS_CA)
    (host_dir / "ca.crt").symlink_to(tmp_path / "corporate.pem")
    before, before_modes = tree(tmp_path), modes(tmp_path)
    env = base_env()
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert not (host_dir / "ca.crt").is_symlink() and (host_dir / "ca.crt").read_text() == pki["root"]
    assert (tmp_path / "corporate.pem").read_text() == USERS_CA  # never written through the link
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert (tree(tmp_path), modes(tmp_path)) == (before, before_modes)


def test_every_published_tls_port_gets_the_ca_and_client_pair_and_remove_takes_them_all(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    """Finding 4: the further mirrors' ports and the private registry's are trusted too."""
    others = ("localhost:6001", "localhost:6100")
    p = params(tmp_path, client_cert=True, other_hosts=others)
    certs = Path(p.docker_certs_dir)
    certs.mkdir(parents=True)
    before = tree(tmp_path)
    env = base_env()
    r = run_script(render_install_script(p), pem=client_stdin(pki), env=env)
    assert r.returncode == 0, r.stderr
    for host in (HOST, *others):
        assert (certs / host / "ca.crt").read_text() == pki["root"], host
        assert (certs / host / "client.cert").read_text() == pki["client_chain"], host
        assert stat.S_IMODE((certs / host / "client.key").stat().st_mode) == 0o600, host
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == before


def test_containerd_files_beside_a_missing_hosts_toml_are_kept_aside_and_put_back(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    ctrd = tmp_path / "containerd" / "certs.d"
    p = params(tmp_path, client_cert=True, containerd_certs_dir=str(ctrd),
               containerd_upstreams=(("ghcr.io", "https://ghcr.io"),))
    Path(p.docker_certs_dir).mkdir(parents=True)  # Docker's; the install makes only <host>:<port>
    own = ctrd / "ghcr.io"
    own.mkdir(parents=True)
    (own / "ca.crt").write_text(USERS_CA)
    (own / "client.crt").write_text(pki["other"])
    (own / "client.key").write_text("the user's own key\n")
    (own / "client.key").chmod(0o600)
    before, before_modes = tree(tmp_path), modes(tmp_path)
    env = base_env()
    r = run_script(render_install_script(p), pem=client_stdin(pki), env=env)
    assert r.returncode == 0, r.stderr
    assert (own / "ca.crt").read_text() == pki["root"]
    assert (own / "client.crt").read_text() == pki["client_chain"]
    assert (own / "client.key").read_text() == pki["client_key"]
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert (tree(tmp_path), modes(tmp_path)) == (before, before_modes)


@pytest.mark.parametrize(
    "layout",
    ["root only", "no key", "key first", "two keys", "no chain", "key in the middle",
     "unterminated key", "stray text", "public key block", "crlf and blank lines fine"],
)
def test_client_stdin_of_the_wrong_shape_is_refused_with_one_line_before_any_change(
    tmp_path: Path, pki: dict[str, str], layout: str
) -> None:
    root, chain, key = pki["root"], pki["client_chain"], pki["client_key"]
    stdin = {
        "root only": root,
        "no key": root + chain,
        "key first": key + root + chain,
        "two keys": root + chain + key + key,
        "no chain": root + key,
        "key in the middle": root + key + chain,
        "unterminated key": root + chain + key.rsplit("-----END", 1)[0],
        "stray text": root + "hello\n" + chain + key,
        "public key block": root + chain + "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" + key,
        "crlf and blank lines fine": (root + "\n\n" + chain + "\n" + key).replace("\n", "\r\n"),
    }[layout]
    p = params(tmp_path, client_cert=True, configure_docker_mirror=True)
    before = tree(tmp_path)
    r = run_script(render_install_script(p), pem=stdin, env=base_env())
    if layout == "crlf and blank lines fine":
        assert r.returncode == 0, r.stderr
        host_dir = Path(p.docker_certs_dir) / HOST
        assert (host_dir / "client.key").read_text() == key  # line ends normalised
        return
    assert r.returncode != 0
    line = one_line(r.stderr)
    assert line.startswith("registry-mirror: ")
    assert "BEGIN" not in line and "MII" not in line and key_body(pki)[:20] not in line
    assert key_body(pki)[:20] not in r.stdout
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- daemon.json

LOCK_NAME = "daemon.json.registry-mirror.lock"
ORIGINAL_DAEMON_JSON = (
    '{\n    "log-driver": "json-file",\n    "registry-mirrors": ["https://mirror.gcr.io"],\n'
    '    "features": {"buildkit": true}\n}\n'
)


def test_daemon_json_merge_keeps_other_keys_adds_ours_once_backs_up_once_and_remove_restores(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    backup = Path(f"{daemon}.{INSTANCE}.bak")
    daemon.parent.mkdir(parents=True)
    daemon.write_text(ORIGINAL_DAEMON_JSON)
    original = json.loads(ORIGINAL_DAEMON_JSON)
    env = base_env()

    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert "restart" in r.stdout and "systemctl restart docker" in r.stdout
    merged = json.loads(daemon.read_text())
    assert merged["registry-mirrors"] == ["https://mirror.gcr.io", URL]
    assert {k: v for k, v in merged.items() if k != "registry-mirrors"} == {
        k: v for k, v in original.items() if k != "registry-mirrors"
    }
    assert backup.read_text() == ORIGINAL_DAEMON_JSON

    # Again: no duplicate, nothing changed, nothing to restart.
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert "restart" not in r.stdout
    assert json.loads(daemon.read_text())["registry-mirrors"] == ["https://mirror.gcr.io", URL]

    # The user edits the file (adds a key, drops our URL); the next install changes it again
    # but the backup still holds the bytes from before the FIRST change.
    daemon.write_text(json.dumps(dict(original, debug=True)))
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert "systemctl restart docker" in r.stdout
    assert json.loads(daemon.read_text())["registry-mirrors"] == ["https://mirror.gcr.io", URL]
    assert backup.read_text() == ORIGINAL_DAEMON_JSON

    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert "restart" in r.stdout
    assert json.loads(daemon.read_text()) == dict(original, debug=True)  # user's edit kept
    assert not backup.exists()

    r = run_script(render_remove_script(p), pem=None, env=env)  # idempotent
    assert r.returncode == 0, r.stderr
    assert json.loads(daemon.read_text()) == dict(original, debug=True)


def test_daemon_json_untouched_since_install_gets_its_original_bytes_back(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    daemon.parent.mkdir(parents=True)
    daemon.write_text(ORIGINAL_DAEMON_JSON)
    daemon.chmod(0o640)
    env = base_env()
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    assert daemon.read_text() != ORIGINAL_DAEMON_JSON
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.read_text() == ORIGINAL_DAEMON_JSON
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o640  # the user's mode, kept
    # no backup, no temporary file left; the lock file stays for the next stack (README)
    assert sorted(x.name for x in daemon.parent.iterdir()) == ["daemon.json", LOCK_NAME]


def test_absent_daemon_json_is_created_with_our_mirror_and_removed_again(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    env = base_env()
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(daemon.read_text()) == {"registry-mirrors": [URL]}
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o644
    assert "systemctl restart docker" in r.stdout
    backup = Path(f"{daemon}.{INSTANCE}.bak")
    assert backup.read_bytes() == daemon_json.ABSENT  # "there was no daemon.json"

    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert not daemon.exists() and not backup.exists()


def test_a_mirror_url_the_user_configured_is_never_added_twice_nor_removed(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    daemon.parent.mkdir(parents=True)
    text = json.dumps({"registry-mirrors": [URL + "/"], "debug": False})  # same URL, with "/"
    daemon.write_text(text)
    env = base_env()
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.read_text() == text
    assert not Path(f"{daemon}.{INSTANCE}.bak").exists()
    assert "restart" not in r.stdout
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.read_text() == text


def test_an_existing_key_stays_when_removal_empties_it(tmp_path: Path, pki: dict[str, str]) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    daemon.parent.mkdir(parents=True)
    daemon.write_text('{"registry-mirrors": []}')
    env = base_env()
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    daemon.write_text(json.dumps({"registry-mirrors": [URL], "debug": True}))  # a user edit
    assert run_script(render_remove_script(p), pem=None, env=env).returncode == 0
    assert json.loads(daemon.read_text()) == {"registry-mirrors": [], "debug": True}


def test_invalid_daemon_json_fails_with_one_line_before_any_change(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    daemon.parent.mkdir(parents=True)
    daemon.write_text('{"log-driver": "json-file",')
    before = tree(tmp_path)
    r = run_script(render_install_script(p), pem=pki["root"], env=base_env())
    assert r.returncode != 0
    line = one_line(r.stderr)
    assert str(daemon) in line and "not valid JSON" in line
    assert tree(tmp_path) == before  # not even certs.d was written


def test_an_empty_daemon_json_is_restored_empty_and_a_dangling_symlink_stays_dangling(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = params(tmp_path, configure_docker_mirror=True)
    daemon = Path(p.docker_daemon_json_path)
    daemon.parent.mkdir(parents=True)
    env = base_env()
    daemon.write_bytes(b"")
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    assert json.loads(daemon.read_text()) == {"registry-mirrors": [URL]}
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.read_bytes() == b"" and not daemon.is_symlink()

    daemon.unlink()
    target = tmp_path / "docker-desktop" / "daemon.json"  # its directory exists, the file not
    target.parent.mkdir()
    daemon.symlink_to(target)
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.is_symlink() and json.loads(target.read_text()) == {"registry-mirrors": [URL]}
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert daemon.is_symlink() and os.readlink(daemon) == str(target) and not target.exists()
    assert sorted(x.name for x in daemon.parent.iterdir()) == ["daemon.json", LOCK_NAME]


STRESS_ROUNDS = 50


def test_two_stacks_installing_and_removing_at_once_never_lose_a_url_a_key_or_a_backup(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    """Two stacks share one daemon.json (half the rounds through a symlink; half with no
    registry-mirrors key of the user's) and run their install, then their remove, at the same
    moment. Measured with the scripts from before the merger took a lock (plain file, 50
    rounds): 40 lost one of the two URLs in the installs, 28 left a wrong daemon.json after
    the removes."""
    env = base_env(tmpdir=tmp_path)
    losses: list[str] = []
    for round_ in range(STRESS_ROUNDS):
        text = ORIGINAL_DAEMON_JSON if (round_ // 2) % 2 == 0 else '{"debug": true}\n'
        original = json.loads(text)
        root = tmp_path / f"round{round_}"
        daemon = root / "etc" / "docker" / "daemon.json"
        daemon.parent.mkdir(parents=True)
        stacks = [params(root, registry_host=f"localhost:{port}", mirror_url=f"https://localhost:{port}",
                         instance=f"registry-mirror-s{port}", configure_docker_mirror=True)
                  for port in (6000, 7000)]
        if round_ % 2:
            real_file = root / "real-daemon.json"
            real_file.write_text(text)
            daemon.symlink_to(real_file)
        else:
            daemon.write_text(text)
        backups = [Path(f"{daemon}.{p.instance}.bak") for p in stacks]
        urls = [p.mirror_url for p in stacks]

        results = _at_once([(render_install_script(p), pki["root"]) for p in stacks], env)
        failed = [r.stderr for r in results if r.returncode != 0]
        merged = json.loads(daemon.read_text())
        if failed:
            losses.append(f"round {round_}: install failed: {failed}")
        if sorted(merged.get("registry-mirrors", [])) != sorted([*original.get("registry-mirrors", []), *urls]):
            losses.append(f"round {round_}: registry-mirrors after both installs: {merged.get('registry-mirrors')}")
        if {k: v for k, v in merged.items() if k != "registry-mirrors"} != {
                k: v for k, v in original.items() if k != "registry-mirrors"}:
            losses.append(f"round {round_}: a key was lost: {merged}")
        for backup, url in zip(backups, urls, strict=True):
            saved = json.loads(backup.read_text()) if backup.exists() else None
            if saved is None or url in saved.get("registry-mirrors", []):
                losses.append(f"round {round_}: backup {backup.name} is {saved}")

        results = _at_once([(render_remove_script(p), None) for p in stacks], env)
        failed = [r.stderr for r in results if r.returncode != 0]
        if failed:
            losses.append(f"round {round_}: remove failed: {failed}")
        if json.loads(daemon.read_text()) != original:
            losses.append(f"round {round_}: after both removes: {daemon.read_text()!r}")
        if round_ % 2 and not daemon.is_symlink():
            losses.append(f"round {round_}: the symlink was replaced by a file")
        left = sorted(x.name for x in daemon.parent.iterdir())
        if left != ["daemon.json", LOCK_NAME]:
            losses.append(f"round {round_}: left behind: {left}")
    assert losses == [], f"{len(losses)} problems in {STRESS_ROUNDS} rounds: {losses[:5]}"


def _at_once(runs: list[tuple[str, str | None]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Run every script in its own thread, all started together, as two `pulumi up`s would."""
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(run_script, script, pem=stdin, env=env) for script, stdin in runs]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- system trust


@pytest.fixture
def debian_store(tmp_path: Path, pki: dict[str, str]) -> dict[str, Path]:
    """The real Debian update-ca-certificates, aimed at temporary directories by a wrapper
    that sits first on PATH and records its arguments."""
    real = require_tool("update-ca-certificates")
    require_tool("openssl")  # it runs `openssl rehash`
    store = {
        "bin": tmp_path / "bin",
        "share": tmp_path / "share-ca",
        "conf": tmp_path / "ca-certificates.conf",
        "etc": tmp_path / "etc-ssl-certs",
        "local": tmp_path / "local-ca",
        "calls": tmp_path / "ucc-calls.log",
    }
    for key in ("bin", "share", "etc", "local"):
        store[key].mkdir()
    (store["share"] / "other.crt").write_text(pki["other"])
    store["conf"].write_text("other.crt\n")
    q = shlex.quote
    write_exe(
        store["bin"] / "update-ca-certificates",
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >>{q(str(store['calls']))}\n"
        f"exec {q(real)} --certsconf {q(str(store['conf']))} --certsdir {q(str(store['share']))}"
        f" --localcertsdir {q(str(store['local']))} --etccertsdir {q(str(store['etc']))}"
        f" --hooksdir {q(str(tmp_path / 'no-hooks'))} \"$@\"\n",
    )
    return store


def _subject_hash(pem_path: Path) -> str:
    out = subprocess.run(
        [require_tool("openssl"), "x509", "-hash", "-noout", "-in", str(pem_path)],
        check=True, capture_output=True, text=True, timeout=TIMEOUT,
    )
    return out.stdout.strip()


def _dangling(directory: Path) -> list[str]:
    return sorted(x.name for x in directory.iterdir() if x.is_symlink() and not x.exists())


def _body(pem: str) -> str:
    return "".join(pem.split("-----")[2].split())


def test_linux_system_trust_round_trip_with_the_real_update_ca_certificates(
    tmp_path: Path, pki: dict[str, str], debian_store: dict[str, Path]
) -> None:
    s = debian_store
    p = params(tmp_path, install_system_trust=True, system_ca_dir=str(s["local"]))
    env = base_env(s["bin"])

    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    ours = s["local"] / f"{INSTANCE}.crt"
    assert ours.read_text() == pki["root"]
    assert stat.S_IMODE(ours.stat().st_mode) == 0o644
    link = s["etc"] / f"{INSTANCE}.pem"
    assert link.is_symlink() and os.readlink(link) == str(ours)
    hash_link = s["etc"] / f"{_subject_hash(ours)}.0"
    assert hash_link.is_symlink() and hash_link.resolve() == ours.resolve()
    bundle = "".join((s["etc"] / "ca-certificates.crt").read_text().split())
    assert _body(pki["root"]) in bundle and _body(pki["other"]) in bundle
    assert s["calls"].read_text().splitlines() == [""]  # plain, no arguments

    # again: the same file is already there, nothing to do
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    assert s["calls"].read_text().splitlines() == [""]

    for _ in range(2):
        r = run_script(render_remove_script(p), pem=None, env=env)
        assert r.returncode == 0, r.stderr
    assert not ours.exists()
    assert not link.is_symlink() and not hash_link.is_symlink()
    assert _dangling(s["etc"]) == []
    bundle = "".join((s["etc"] / "ca-certificates.crt").read_text().split())
    assert _body(pki["root"]) not in bundle and _body(pki["other"]) in bundle
    assert s["calls"].read_text().splitlines() == ["", "--fresh"]  # second remove: no-op


def test_plain_update_ca_certificates_would_leave_dangling_links_hence_fresh(
    tmp_path: Path, pki: dict[str, str], debian_store: dict[str, Path]
) -> None:
    """Why the remove script runs `update-ca-certificates --fresh` (Debian's own behaviour)."""
    s = debian_store
    p = params(tmp_path, install_system_trust=True, system_ca_dir=str(s["local"]))
    env = base_env(s["bin"])
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    (s["local"] / f"{INSTANCE}.crt").unlink()
    subprocess.run([str(s["bin"] / "update-ca-certificates")], check=True, capture_output=True,
                   env=env, timeout=TIMEOUT)
    assert f"{INSTANCE}.pem" in _dangling(s["etc"])


def _fake_macos(bin_dir: Path, log: Path, captured: Path, gone_flag: Path) -> None:
    bin_dir.mkdir(exist_ok=True)
    write_exe(bin_dir / "uname", "#!/bin/sh\necho Darwin\n")
    q = shlex.quote
    write_exe(
        bin_dir / "security",
        "#!/bin/sh\n"
        f"{{ printf '%s\\n' \"$@\"; echo --; }} >>{q(str(log))}\n"
        'case $1 in\n'
        '  add-trusted-cert)\n'
        '    eval "last=\\${$#}"\n'
        f'    cp "$last" {q(str(captured))} ;;\n'
        '  delete-certificate)\n'
        f'    if [ -e {q(str(gone_flag))} ]; then\n'
        "      printf 'Unable to delete certificate matching \"%s\"' \"$4\" >&2\n"
        '      exit 1\n'
        '    fi\n'
        f'    : >{q(str(gone_flag))} ;;\n'
        'esac\n',
    )


def _calls(log: Path) -> list[list[str]]:
    calls: list[list[str]] = [[]]
    for line in log.read_text().splitlines():
        if line == "--":
            calls.append([])
        else:
            calls[-1].append(line)
    return calls[:-1]


def test_macos_trust_adds_the_root_ca_to_the_system_keychain_and_deletes_it_by_sha1(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    """No macOS here: `uname` and `security` are stand-ins recording their arguments; the
    SHA-1 comes from the real openssl and is checked against hashlib."""
    require_tool("openssl")
    bin_dir, log = tmp_path / "bin", tmp_path / "security.log"
    captured, gone = tmp_path / "added.pem", tmp_path / "gone"
    _fake_macos(bin_dir, log, captured, gone)
    p = params(tmp_path, install_system_trust=True)
    env = base_env(bin_dir)

    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    (add,) = _calls(log)
    assert add[:-1] == ["add-trusted-cert", "-d", "-r", "trustRoot", "-k", MACOS_SYSTEM_KEYCHAIN]
    assert captured.read_text() == pki["root"]  # the root CA, nothing else

    sha1 = hashlib.sha1(ssl.PEM_cert_to_DER_cert(pki["root"])).hexdigest().upper()
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    delete = _calls(log)[1]
    assert delete == ["delete-certificate", "-t", "-Z", sha1, MACOS_SYSTEM_KEYCHAIN]

    # Already deleted by hand (security reports no match): the remove still succeeds.
    assert run_script(render_install_script(p), pem=pki["root"], env=env).returncode == 0
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert "is not in" in r.stdout
    assert not (Path(p.docker_certs_dir) / HOST).exists()


def test_unsupported_os_fails_with_one_line_before_any_change(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_exe(bin_dir / "uname", "#!/bin/sh\necho FreeBSD\n")
    p = params(tmp_path, install_system_trust=True)
    before = tree(tmp_path)
    r = run_script(render_install_script(p), pem=pki["root"], env=base_env(bin_dir))
    assert r.returncode != 0
    line = one_line(r.stderr)
    assert "FreeBSD" in line and "registry-mirror:installSystemTrust false" in line
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- privileges


class SudoBroker:
    """Stands in for sudo when the script runs as nobody: the fake `sudo` hands its arguments
    through a FIFO to this broker in the (root) test process, which runs them as root with
    sudo's reset environment (secure_path) and hands back output and exit status. The fake
    refuses any call without -n."""

    SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def __init__(self, base: Path) -> None:
        self.dir = base / "broker"
        self.dir.mkdir(mode=0o755)
        self.req, self.rc = self.dir / "req", self.dir / "rc"
        self.out, self.err = self.dir / "out", self.dir / "err"
        os.mkfifo(self.req)
        os.mkfifo(self.rc)
        self.req.chmod(0o622)  # nobody writes requests
        self.rc.chmod(0o644)  # nobody reads exit statuses
        self.calls: list[list[str]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def client(self) -> str:
        q = lambda p: shlex.quote(str(p))  # noqa: E731
        return (
            "#!/bin/sh\n"
            'if [ "${1-}" != -n ]; then\n'
            "  echo 'fake sudo: called without -n' >&2\n"
            "  exit 97\n"
            "fi\n"
            f"printf '%s\\0' \"$@\" >{q(self.req)}\n"
            f"status=$(cat {q(self.rc)})\n"
            f"cat {q(self.out)}\n"
            f"cat {q(self.err)} >&2\n"
            'exit "$status"\n'
        )

    def _serve(self) -> None:
        while True:
            with open(self.req, "rb") as f:
                data = f.read()
            if data == b"STOP\0":
                return
            argv = [a.decode() for a in data.split(b"\0")[:-1]]
            self.calls.append(argv)
            result = subprocess.run(
                argv[1:], capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT,
                env={"PATH": self.SECURE_PATH, "LC_ALL": "C"},
            )
            for path, content in ((self.out, result.stdout), (self.err, result.stderr)):
                path.write_bytes(content)
                path.chmod(0o644)
            with open(self.rc, "w") as f:
                f.write(str(result.returncode))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        # Unblock a reply nobody reads, then send STOP once the broker waits for a request.
        with contextlib.suppress(OSError):
            os.close(os.open(self.rc, os.O_RDONLY | os.O_NONBLOCK))
        deadline = time.monotonic() + 5
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                fd = os.open(self.req, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                time.sleep(0.05)
                continue
            os.write(fd, b"STOP\0")
            os.close(fd)
            break
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "sudo broker did not stop"


@pytest.fixture
def nobody_root() -> Iterator[Path]:
    """A temporary root that uid 65534 can traverse (pytest's tmp_path lives under a 0700
    directory): bin/ for the fake sudo, tmp/ (1777) as TMPDIR, and a root-owned 0755
    etc/docker/certs.d as the target. Removed afterwards."""
    require_tool("setpriv")
    base = Path(tempfile.mkdtemp(prefix="registry-mirror-trust-"))
    try:
        base.chmod(0o755)
        (base / "bin").mkdir(mode=0o755)
        (base / "tmp").mkdir()
        (base / "tmp").chmod(0o1777)
        (base / "etc" / "docker" / "certs.d").mkdir(parents=True, mode=0o755)
        (base / "sudo.log").touch()
        (base / "sudo.log").chmod(0o666)
        yield base
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False, timeout=TIMEOUT)


def nobody_params(base: Path, use_sudo: bool) -> TrustParams:
    return params(base, docker_certs_dir=str(base / "etc" / "docker" / "certs.d"),
                  use_sudo=use_sudo)


def nobody_env(base: Path) -> dict[str, str]:
    return {"PATH": f"{base / 'bin'}:/usr/bin:/bin", "TMPDIR": str(base / "tmp"),
            "HOME": str(base / "tmp"), "LC_ALL": "C"}


def failing_sudo(base: Path, message: str) -> None:
    log = shlex.quote(str(base / "sudo.log"))
    write_exe(base / "bin" / "sudo",
              f"#!/bin/sh\nprintf '%s\\n' \"$*\" >>{log}\necho {shlex.quote(message)} >&2\nexit 1\n")


def test_unprivileged_without_use_sudo_fails_with_one_line_naming_path_and_command(
    nobody_root: Path, pki: dict[str, str]
) -> None:
    base = nobody_root
    failing_sudo(base, "tripwire: sudo must not be called")
    p = nobody_params(base, use_sudo=False)
    before = tree(base / "etc")
    r = run_script(render_install_script(p), pem=pki["root"], env=nobody_env(base),
                   as_nobody=True, cwd=base / "tmp")
    assert r.returncode != 0
    line = one_line(r.stderr)
    certs = str(base / "etc" / "docker" / "certs.d")
    assert f"({certs} is not writable)" in line
    assert "run: pulumi config set registry-mirror:trustUseSudo true && sudo -v" in line
    assert "as nobody" in line
    assert (base / "sudo.log").read_text() == ""
    assert tree(base / "etc") == before


def test_unprivileged_with_sudo_but_no_cached_credential_fails_with_one_line(
    nobody_root: Path, pki: dict[str, str]
) -> None:
    base = nobody_root
    failing_sudo(base, "sudo: a password is required")
    p = nobody_params(base, use_sudo=True)
    before = tree(base / "etc")
    r = run_script(render_install_script(p), pem=pki["root"], env=nobody_env(base),
                   as_nobody=True, cwd=base / "tmp")
    assert r.returncode != 0
    line = one_line(r.stderr)
    certs = str(base / "etc" / "docker" / "certs.d")
    assert f"({certs} is not writable)" in line
    assert "sudo -n failed (sudo: a password is required)" in line
    assert "run: sudo -v" in line
    assert (base / "sudo.log").read_text().splitlines() == ["-n true"]  # probe only, -n
    assert tree(base / "etc") == before


def test_unprivileged_with_working_sudo_installs_and_removes_through_sudo_n(
    nobody_root: Path, pki: dict[str, str]
) -> None:
    base = nobody_root
    broker = SudoBroker(base)
    write_exe(base / "bin" / "sudo", broker.client())
    p = nobody_params(base, use_sudo=True)
    ca = base / "etc" / "docker" / "certs.d" / HOST / "ca.crt"
    broker.start()
    try:
        r = run_script(render_install_script(p), pem=pki["root"], env=nobody_env(base),
                       as_nobody=True, cwd=base / "tmp")
        assert r.returncode == 0, r.stderr
        assert ca.read_text() == pki["root"]
        st = ca.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)  # written by root
        installed = list(broker.calls)
        r = run_script(render_remove_script(p), pem=None, env=nobody_env(base),
                       as_nobody=True, cwd=base / "tmp")
        assert r.returncode == 0, r.stderr
        removed = broker.calls[len(installed):]
    finally:
        broker.stop()
    assert all(call[0] == "-n" for call in broker.calls), broker.calls
    assert installed[0] == ["-n", "true"]
    assert ["-n", "mkdir", "-p", str(ca.parent)] in installed
    assert any(c[:4] == ["-n", "install", "-m", "0644"] and c[-1] == str(ca) for c in installed)
    assert ["-n", "rm", "-f", str(ca)] in removed
    assert ["-n", "rmdir", str(ca.parent)] in removed
    assert not ca.parent.exists()


def test_unprivileged_with_working_sudo_merges_daemon_json_and_writes_the_client_key_as_root(
    nobody_root: Path, pki: dict[str, str]
) -> None:
    base = nobody_root
    broker = SudoBroker(base)
    write_exe(base / "bin" / "sudo", broker.client())
    daemon = base / "etc" / "docker" / "daemon.json"
    daemon.write_text(ORIGINAL_DAEMON_JSON)
    p = params(base, docker_certs_dir=str(base / "etc" / "docker" / "certs.d"), use_sudo=True,
               configure_docker_mirror=True, docker_daemon_json_path=str(daemon), client_cert=True)
    backup = Path(f"{daemon}.{INSTANCE}.bak")
    key = base / "etc" / "docker" / "certs.d" / HOST / "client.key"
    broker.start()
    try:
        r = run_script(render_install_script(p), pem=client_stdin(pki), env=nobody_env(base),
                       as_nobody=True, cwd=base / "tmp")
        assert r.returncode == 0, r.stderr
        installed = list(broker.calls)
        assert URL in json.loads(daemon.read_text())["registry-mirrors"]
        assert backup.read_text() == ORIGINAL_DAEMON_JSON and backup.stat().st_uid == 0
        assert (key.stat().st_uid, stat.S_IMODE(key.stat().st_mode)) == (0, 0o600)
        assert key.read_text() == pki["client_key"]
        assert key_body(pki) not in r.stdout + r.stderr + repr(installed)
        r = run_script(render_remove_script(p), pem=None, env=nobody_env(base),
                       as_nobody=True, cwd=base / "tmp")
        assert r.returncode == 0, r.stderr
        removed = broker.calls[len(installed):]
    finally:
        broker.stop()
    # the merger itself runs through sudo -n, so it holds the lock while it writes as root
    merges = [c for c in broker.calls if c[2:3] and c[2].endswith("/daemon.py")]
    assert [c[4] for c in merges] == ["install", "remove"]
    assert all(c[0] == "-n" for c in broker.calls)
    assert merges[0] in installed and merges[1] in removed
    assert daemon.read_text() == ORIGINAL_DAEMON_JSON and not backup.exists()
    assert not key.parent.exists()


# --------------------------------------------------------------------------- shellcheck


def test_shellcheck_passes_on_every_rendered_variant(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    files = []
    for system, mirror, sudo, client in itertools.product([False, True], repeat=4):
        p = params(tmp_path, install_system_trust=system, configure_docker_mirror=mirror,
                   use_sudo=sudo, client_cert=client)
        for action, render in (("install", render_install_script), ("remove", render_remove_script)):
            name = f"{action}-system{int(system)}-mirror{int(mirror)}-sudo{int(sudo)}-client{int(client)}.sh"
            path = tmp_path / name
            path.write_text(render(p))
            files.append(str(path))
    assert len(files) == 32
    r = subprocess.run([shellcheck, "--shell=sh", "--severity=style", *files],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- containerd hosts.toml

CTRD_UPSTREAMS = (("docker.io", "https://registry-1.docker.io"), ("ghcr.io", "https://ghcr.io"))


def containerd_params(root: Path) -> TrustParams:
    return params(root, containerd_upstreams=CTRD_UPSTREAMS, containerd_certs_dir=str(root / "containerd" / "certs.d"))


@pytest.mark.parametrize("first_line", [
    'server = "https://ghcr.io"',  # the user's own file
    "# registry-mirror:registry-mirror-other installed this file; pulumi destroy removes it",  # another stack's
    "",  # the mark on a later line is no mark
])
def test_install_stops_at_a_hosts_toml_it_did_not_write_and_changes_nothing(
    tmp_path: Path, pki: dict[str, str], first_line: str
) -> None:
    p = containerd_params(tmp_path)
    mark = render_install_script(p).split("T_CTRD_MARK=", 1)[1].splitlines()[0].strip("'\"")
    theirs = Path(p.containerd_certs_dir) / "ghcr.io" / "hosts.toml"
    theirs.parent.mkdir(parents=True)
    body = f"{first_line}\n{mark}\n" if not first_line else f'{first_line}\n[host."https://other:5000"]\n'
    theirs.write_text(body)
    before = tree(tmp_path)
    r = run_script(render_install_script(p), pem=pki["root"], env=base_env())
    assert r.returncode != 0
    assert one_line(r.stderr) == (
        f"registry-mirror: {theirs} exists and was not written by this stack: move it away, or run: "
        "pulumi config set registry-mirror:installContainerdConfig false")
    assert tree(tmp_path) == before  # not even Docker's CA: the check comes before any write


def test_remove_deletes_only_the_hosts_toml_files_that_carry_this_stacks_mark(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    p = containerd_params(tmp_path)
    env = base_env()
    r = run_script(render_install_script(p), pem=pki["root"], env=env)
    assert r.returncode == 0, r.stderr
    certs = Path(p.containerd_certs_dir)
    assert sorted(x.name for x in (certs / "ghcr.io").iterdir()) == ["ca.crt", "hosts.toml"]
    # the user takes ghcr.io over after the install: their file, their CA beside it
    (certs / "ghcr.io" / "hosts.toml").write_text('server = "https://ghcr.io"\n')
    (certs / "ghcr.io" / "ca.crt").write_text(pki["other"])
    kept = tree(certs / "ghcr.io")
    r = run_script(render_remove_script(p), pem=None, env=env)
    assert r.returncode == 0, r.stderr
    assert not (certs / "docker.io").exists() or not any((certs / "docker.io").iterdir())
    assert tree(certs / "ghcr.io") == kept
