"""Host trust scripts: POSIX sh text for the pulumi-command `local.Command` of host trust.

The install script reads the root CA from stdin (never from the command text, which Pulumi
stores and shows); the remove script undoes only what the install added. Both are idempotent
and decide every change and privilege before the first one (`render_install_script`).

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONFIG_NAMESPACE = "registry-mirror"
USE_SUDO_KEY = f"{CONFIG_NAMESPACE}:trustUseSudo"
SYSTEM_TRUST_KEY = f"{CONFIG_NAMESPACE}:installSystemTrust"
DOCKER_MIRROR_KEY = f"{CONFIG_NAMESPACE}:configureDockerMirror"

DEFAULT_DOCKER_CERTS_DIR = "/etc/docker/certs.d"
DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_SYSTEM_CA_DIR = "/usr/local/share/ca-certificates"
MACOS_SYSTEM_KEYCHAIN = "/Library/Keychains/System.keychain"


@dataclass(frozen=True)
class TrustParams:
    registry_host: str  # "<hostname>:<registryPort>", e.g. "localhost:6000"
    mirror_url: str  # "https://<hostname>:<registryPort>"
    docker_certs_dir: str  # absolute; /etc/docker/certs.d (Docker Desktop: ~/.docker/certs.d)
    install_system_trust: bool  # also add the root CA to the OS trust store
    configure_docker_mirror: bool  # merge "registry-mirrors" into daemon.json
    docker_daemon_json_path: str  # default /etc/docker/daemon.json
    use_sudo: bool  # use `sudo -n` when a target is not writable
    instance: str  # "<project>-<stack>": keys backup files and the system-trust file name
    system_ca_dir: str = DEFAULT_SYSTEM_CA_DIR  # Debian/Ubuntu


_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):\d{1,5}$"
)
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+/?$")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check(p: TrustParams) -> None:
    """Reject values that would make a wrong script. Nothing multi-line (such as a PEM) can
    pass, so certificate material can never end up in the command text."""
    if not _HOST_RE.fullmatch(p.registry_host):
        raise ValueError(f"registry_host must be <dns-name>:<port>, got {p.registry_host!r}")
    if not _URL_RE.fullmatch(p.mirror_url):
        raise ValueError(f"mirror_url must be http(s)://<host>:<port>, got {p.mirror_url!r}")
    if not _INSTANCE_RE.fullmatch(p.instance):
        raise ValueError(f"instance must match {_INSTANCE_RE.pattern}, got {p.instance!r}")
    paths = {
        "docker_certs_dir": p.docker_certs_dir,
        "docker_daemon_json_path": p.docker_daemon_json_path,
        "system_ca_dir": p.system_ca_dir,
    }
    for name, value in paths.items():
        if not value.startswith("/") or any(c in value for c in "\n\r\0"):
            raise ValueError(f"{name} must be an absolute single-line path, got {value!r}")
    if p.docker_daemon_json_path.endswith("/"):
        raise ValueError("docker_daemon_json_path must name a file")


def _sq(value: str) -> str:
    """Single-quote a value for POSIX sh (always quoted, so the text is uniform)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _dir(path: str) -> str:
    return path.rstrip("/") or "/"


def _parent(path: str) -> str:
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def _join(directory: str, name: str) -> str:
    d = _dir(directory)
    return f"{d}{name}" if d == "/" else f"{d}/{name}"


def _assignments(p: TrustParams, install: bool) -> list[str]:
    """Shell variables for the values a script uses (only those: shellcheck flags the rest)."""
    ca_dir = _join(p.docker_certs_dir, p.registry_host)
    values: list[tuple[str, str]] = []
    if install:
        values.append(("T_HOST", p.registry_host))
    values += [("T_CA_DIR", ca_dir), ("T_CA_FILE", _join(ca_dir, "ca.crt"))]
    if p.install_system_trust:
        if install:
            values.append(("T_SYS_CA_DIR", _dir(p.system_ca_dir)))
        values += [
            ("T_SYS_CA_FILE", _join(p.system_ca_dir, f"{p.instance}.crt")),
            ("T_KEYCHAIN", MACOS_SYSTEM_KEYCHAIN),
        ]
    if p.configure_docker_mirror:
        values += [("T_MIRROR_URL", p.mirror_url), ("T_DAEMON_JSON", p.docker_daemon_json_path)]
        if install:
            values.append(("T_DAEMON_DIR", _parent(p.docker_daemon_json_path)))
        values.append(("T_DAEMON_BAK", f"{p.docker_daemon_json_path}.{p.instance}.bak"))
    return [f"{name}={_sq(value)}" for name, value in values]


_HEADER = """\
# registry-mirror: {action} host trust for {host} (rendered by configs/trust.py).
# {stdin_note}
# POSIX sh: run as /bin/sh -c <this text>. Paths are quoted: they may contain spaces.
set -eu
umask 022
"""

_COMMON = """\
trust_die() {
  printf 'registry-mirror: %s\\n' "$*" >&2
  exit 1
}
trust_say() {
  printf 'registry-mirror: %s\\n' "$*"
}
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/registry-mirror.XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT
trap 'exit 1' HUP INT TERM
T_USER=$(id -un 2>/dev/null || id -u)

# trust_first FILE STATUS: the first line of FILE, or "exit status STATUS" when it is empty.
trust_first() {
  T_LINE=$(sed -n 1p "$1")
  if [ -n "$T_LINE" ]; then
    printf '%s' "$T_LINE"
  else
    printf 'exit status %s' "$2"
  fi
}

# trust_writable PATH: true when this user may create, replace or delete PATH: PATH itself
# (when it exists) and its nearest existing parent directory are writable. T_BLOCKER names
# the first of them that is not.
trust_writable() {
  T_BLOCKER=$1
  if [ -e "$1" ] && [ ! -w "$1" ]; then
    return 1
  fi
  T_BLOCKER=$(dirname "$1")
  while [ ! -d "$T_BLOCKER" ]; do
    T_BLOCKER=$(dirname "$T_BLOCKER")
  done
  [ -w "$T_BLOCKER" ] && [ -x "$T_BLOCKER" ]
}
"""

_PRIVILEGE_SUDO = """\
# trust_privilege PATH: T_PRIV=1 when PATH must be written through `sudo -n`, 0 when this
# user can write it. sudo only ever runs with -n (never a prompt that would hang pulumi); it
# is tried once, before the first change.
T_SUDO_CHECKED=0
trust_privilege() {
  T_PRIV=0
  if trust_writable "$1"; then
    return 0
  fi
  if [ "$T_SUDO_CHECKED" = 0 ]; then
    T_RC=0
    sudo -n true 2>"$T_TMP/err" || T_RC=$?
    if [ "$T_RC" != 0 ]; then
      trust_die "cannot write $1 as $T_USER ($T_BLOCKER is not writable) and sudo -n \
failed ($(trust_first "$T_TMP/err" "$T_RC")); run: sudo -v, then run pulumi again from the \
same terminal"
    fi
    T_SUDO_CHECKED=1
  fi
  T_PRIV=1
}
"""

_PRIVILEGE_NO_SUDO = f"""\
# trust_privilege PATH: T_PRIV=0 when this user can write PATH; otherwise stop with one line
# ({USE_SUDO_KEY} is false, so sudo is never used).
trust_privilege() {{
  T_PRIV=0
  if trust_writable "$1"; then
    return 0
  fi
  trust_die "cannot write $1 as $T_USER ($T_BLOCKER is not writable); run: pulumi config \
set {USE_SUDO_KEY} true && sudo -v, then run pulumi again"
}}
"""

_TRY_SUDO = """\
# trust_try PRIV CMD...: run CMD (through `sudo -n` when PRIV is 1); its stderr is kept in
# $T_TMP/err, its exit status in T_RC and its words in T_CMD.
trust_try() {
  T_RC=0
  if [ "$1" = 1 ]; then
    shift
    T_CMD="sudo -n $*"
    sudo -n "$@" 2>"$T_TMP/err" || T_RC=$?
  else
    shift
    T_CMD="$*"
    "$@" 2>"$T_TMP/err" || T_RC=$?
  fi
}
"""

_TRY_NO_SUDO = """\
# trust_try PRIV CMD...: run CMD as this user (PRIV is always 0 here); its stderr is kept in
# $T_TMP/err, its exit status in T_RC and its words in T_CMD.
trust_try() {
  shift
  T_RC=0
  T_CMD="$*"
  "$@" 2>"$T_TMP/err" || T_RC=$?
}
"""

_RUN = """\
# trust_run PRIV CMD...: trust_try; on failure one line on stderr and exit.
trust_run() {
  trust_try "$@"
  if [ "$T_RC" != 0 ]; then
    trust_die "$T_CMD failed: $(trust_first "$T_TMP/err" "$T_RC")"
  fi
  cat "$T_TMP/err" >&2
}
"""

_READ = """\
# trust_read PATH COPY: T_READ names a file with PATH's bytes that this user can read.
trust_read() {
  T_READ=$1
  if [ ! -r "$1" ]; then
    trust_privilege "$1"
    trust_run "$T_PRIV" cat "$1" >"$2"
    T_READ=$2
  fi
}
"""

_STDIN = """\
# The root CA arrives on stdin and only there. Root CA only: a chain or a key is refused.
cat >"$T_TMP/ca.crt"
T_COUNT=$(grep -c -e '-----BEGIN CERTIFICATE-----' "$T_TMP/ca.crt" || true)
if [ "$T_COUNT" != 1 ] || ! grep -q -e '-----END CERTIFICATE-----' "$T_TMP/ca.crt"; then
  trust_die "expected exactly one PEM certificate (the root CA) on stdin, found $T_COUNT"
fi
if grep -q -e 'PRIVATE KEY' "$T_TMP/ca.crt"; then
  trust_die "stdin holds a private key: only the root CA certificate belongs here"
fi
"""

_OS_INSTALL = f"""\
# System trust: Debian/Ubuntu (update-ca-certificates) or macOS (security); nothing else.
T_OS=$(uname -s)
case $T_OS in
  Linux)
    T_UCC=$(command -v update-ca-certificates || true)
    if [ -z "$T_UCC" ] && [ -x /usr/sbin/update-ca-certificates ]; then
      T_UCC=/usr/sbin/update-ca-certificates
    fi
    if [ -z "$T_UCC" ]; then
      trust_die "system trust on Linux needs update-ca-certificates (Debian/Ubuntu), not \
found; trust $T_CA_FILE by hand and run: pulumi config set {SYSTEM_TRUST_KEY} false"
    fi
    ;;
  Darwin)
    ;;
  *)
    trust_die "system trust supports Debian/Ubuntu and macOS, not $T_OS; trust \
$T_CA_FILE by hand and run: pulumi config set {SYSTEM_TRUST_KEY} false"
    ;;
esac
"""

_PYTHON_CHECK = f"""\
T_PY=$(command -v python3 || true)
if [ -z "$T_PY" ]; then
  trust_die "editing $T_DAEMON_JSON needs python3 on PATH; install it or run: pulumi \
config set {DOCKER_MIRROR_KEY} false"
fi
"""

# Edits daemon.json as the invoking user, into a temp file; prints one state word.
# Runs on whatever python3 the host has (3.6+): no f-strings, no walrus.
_DAEMON_PY = (
    """\
import copy
import json
import sys

KEY = "registry-mirrors"
HINT = "fix it, or run: pulumi config set %s false"


def fail(message):
    sys.stderr.write("registry-mirror: " + message + "\\n")
    sys.exit(3)


def load(path, shown):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeError) as err:
        fail("cannot read %s: %s" % (shown, err))
    if not text.strip():
        return {}, raw
    try:
        data = json.loads(text)
    except ValueError as err:
        fail("%s is not valid JSON (%s); %s" % (shown, err, HINT))
    if not isinstance(data, dict):
        fail("%s does not hold a JSON object; %s" % (shown, HINT))
    mirrors = data.get(KEY, [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        fail("%s: %s is not a list of URLs; %s" % (shown, KEY, HINT))
    return data, raw


def same(a, b):
    return a.rstrip("/") == b.rstrip("/")


def write(path, data):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\\n")


def install(url, shown, current, out):
    data = load(current, shown)[0] if current else {}
    mirrors = data.get(KEY, [])
    if any(same(m, url) for m in mirrors):
        return "unchanged"
    data[KEY] = mirrors + [url]
    write(out, data)
    return "changed"


def remove(url, shown, shown_backup, current, backup, out):
    # The backup holds the bytes from before our first change (empty: there was no file).
    original, original_raw = load(backup, shown_backup)
    data, raw = load(current, shown)
    before = copy.deepcopy(data)
    if KEY in data and not any(same(m, url) for m in original.get(KEY, [])):
        kept = [m for m in data[KEY] if not same(m, url)]
        if kept or KEY in original:
            data[KEY] = kept
        else:
            del data[KEY]
    if data == original:
        if not original_raw.strip():
            return "delete"
        return "unchanged" if raw == original_raw else "restore"
    if data == before:
        return "unchanged"
    write(out, data)
    return "changed"


def main(args):
    if args[0] == "install":
        return install(*args[1:5])
    return remove(*args[1:7])


try:
    HINT = HINT % sys.argv[1]
    print(main(sys.argv[2:]))
except Exception as err:  # one line, never a traceback
    fail("cannot edit Docker's daemon.json: %s" % (err,))
"""
)

_WRITE_PY = """\
cat >"$T_TMP/daemon.py" <<'TRUST_PY'
{program}TRUST_PY
"""

# ---------------------------------------------------------------- install sections

_CERTS_PLAN = """\
# Docker's fixed layout: <certs.d>/<host>:<port>/ca.crt. Unchanged content: nothing to do.
T_CERTS_WRITE=1
T_CERTS_PRIV=0
if [ -f "$T_CA_FILE" ] && cmp -s "$T_TMP/ca.crt" "$T_CA_FILE"; then
  T_CERTS_WRITE=0
else
  trust_privilege "$T_CA_FILE"
  T_CERTS_PRIV=$T_PRIV
fi
"""

_SYS_PLAN = """\
# update-ca-certificates also writes /etc/ssl/certs: the CA directory's privilege stands for it.
T_SYS_WRITE=1
T_SYS_PRIV=0
if [ "$T_OS" = Linux ]; then
  if [ -f "$T_SYS_CA_FILE" ] && cmp -s "$T_TMP/ca.crt" "$T_SYS_CA_FILE"; then
    T_SYS_WRITE=0
  else
    trust_privilege "$T_SYS_CA_FILE"
    T_SYS_PRIV=$T_PRIV
  fi
else
  trust_privilege "$T_KEYCHAIN"
  T_SYS_PRIV=$T_PRIV
fi
"""

_MIRROR_PLAN_INSTALL = f"""\
# daemon.json: the new content is computed as the invoking user, before any change.
T_DJ_CURRENT=
if [ -e "$T_DAEMON_JSON" ]; then
  trust_read "$T_DAEMON_JSON" "$T_TMP/daemon.current"
  T_DJ_CURRENT=$T_READ
fi
T_DJ_STATE=$("$T_PY" "$T_TMP/daemon.py" {_sq(DOCKER_MIRROR_KEY)} install "$T_MIRROR_URL" \\
  "$T_DAEMON_JSON" "$T_DJ_CURRENT" "$T_TMP/daemon.new")
T_DJ_PRIV=0
if [ "$T_DJ_STATE" = changed ]; then
  trust_privilege "$T_DAEMON_JSON"
  T_DJ_PRIV=$T_PRIV
fi
"""

_CERTS_APPLY = """\
if [ "$T_CERTS_WRITE" = 1 ]; then
  trust_run "$T_CERTS_PRIV" mkdir -p "$T_CA_DIR"
  trust_run "$T_CERTS_PRIV" install -m 0644 "$T_TMP/ca.crt" "$T_CA_FILE"
  trust_say "installed the root CA for $T_HOST in $T_CA_FILE"
else
  trust_say "$T_CA_FILE already holds this root CA"
fi
"""

_SYS_APPLY = """\
if [ "$T_SYS_WRITE" = 1 ]; then
  if [ "$T_OS" = Linux ]; then
    trust_run "$T_SYS_PRIV" mkdir -p "$T_SYS_CA_DIR"
    trust_run "$T_SYS_PRIV" install -m 0644 "$T_TMP/ca.crt" "$T_SYS_CA_FILE"
    trust_run "$T_SYS_PRIV" "$T_UCC"
    trust_say "added the root CA to the system trust store as $T_SYS_CA_FILE"
  else
    # Root CA only, admin trust domain. Since macOS 11 this asks for an administrator
    # password in a dialog even when run as root (Apple's release notes).
    trust_run "$T_SYS_PRIV" security add-trusted-cert -d -r trustRoot -k "$T_KEYCHAIN" \\
      "$T_TMP/ca.crt"
    trust_say "trusted the root CA in $T_KEYCHAIN"
  fi
else
  trust_say "$T_SYS_CA_FILE already holds this root CA"
fi
"""

_MIRROR_APPLY_INSTALL = """\
if [ "$T_DJ_STATE" = changed ]; then
  trust_run "$T_DJ_PRIV" mkdir -p "$T_DAEMON_DIR"
  if [ ! -e "$T_DAEMON_BAK" ]; then
    # Backed up once, before the first change. An empty backup: there was no daemon.json.
    if [ -e "$T_DAEMON_JSON" ]; then
      trust_run "$T_DJ_PRIV" cp -p "$T_DAEMON_JSON" "$T_DAEMON_BAK"
    else
      : >"$T_TMP/empty"
      trust_run "$T_DJ_PRIV" install -m 0644 "$T_TMP/empty" "$T_DAEMON_BAK"
    fi
  fi
  if [ -e "$T_DAEMON_JSON" ]; then
    trust_run "$T_DJ_PRIV" cp "$T_TMP/daemon.new" "$T_DAEMON_JSON"
  else
    trust_run "$T_DJ_PRIV" install -m 0644 "$T_TMP/daemon.new" "$T_DAEMON_JSON"
  fi
  trust_say "added $T_MIRROR_URL to registry-mirrors in $T_DAEMON_JSON (original kept in \\
$T_DAEMON_BAK); Docker must be restarted to use it: sudo systemctl restart docker \\
(Docker Desktop: restart it from its menu)"
else
  trust_say "$T_DAEMON_JSON already lists $T_MIRROR_URL in registry-mirrors"
fi
"""

# ---------------------------------------------------------------- remove sections

_LINUX_REMOVE_NOTE = """\
# Why --fresh: Debian's update-ca-certificates rebuilds ca-certificates.crt on every run, but
# deletes dangling links in /etc/ssl/certs (and runs `openssl rehash`) only when a certificate
# was added, or removed through a "!" line of ca-certificates.conf. Deleting our .crt alone
# adds and removes nothing, so a plain run leaves <instance>.pem and its hash link dangling;
# --fresh clears the links into the ca-certificates dirs, drops dangling ones and rehashes.
"""

_OS_REMOVE = """\
T_SYS_REMOVE=0
T_SYS_PRIV=0
T_OS=$(uname -s)
case $T_OS in
  Linux)
    if [ -e "$T_SYS_CA_FILE" ]; then
      T_UCC=$(command -v update-ca-certificates || true)
      if [ -z "$T_UCC" ] && [ -x /usr/sbin/update-ca-certificates ]; then
        T_UCC=/usr/sbin/update-ca-certificates
      fi
      if [ -z "$T_UCC" ]; then
        trust_die "update-ca-certificates not found: cannot take $T_SYS_CA_FILE out of the \\
system trust store; delete it and refresh the store by hand"
      fi
      trust_privilege "$T_SYS_CA_FILE"
      T_SYS_PRIV=$T_PRIV
      T_SYS_REMOVE=1
    fi
    ;;
  Darwin)
    # Found by SHA-1, not by common name (`-c`): a renewed CA keeps its name, and
    # `delete-certificate -c` deletes nothing when the name matches more than one
    # certificate. The hash comes from our ca.crt, which is still in place.
    if [ -f "$T_CA_FILE" ]; then
      T_SHA1=$(openssl x509 -noout -fingerprint -sha1 -in "$T_CA_FILE" 2>/dev/null \\
        | sed -e 's/^.*=//' -e 's/://g')
      if [ -z "$T_SHA1" ]; then
        trust_die "cannot read the SHA-1 fingerprint of $T_CA_FILE with openssl"
      fi
      trust_privilege "$T_KEYCHAIN"
      T_SYS_PRIV=$T_PRIV
      T_SYS_REMOVE=1
    else
      trust_say "$T_CA_FILE is gone, so the root CA cannot be identified in $T_KEYCHAIN; \\
delete it in Keychain Access if it is still there"
    fi
    ;;
  *)
    # The install refuses other systems: nothing of ours to undo.
    ;;
esac
"""

_MIRROR_PLAN_REMOVE = f"""\
# daemon.json: only a backup of ours means we changed the file; take out only what we added.
T_DJ_STATE=none
T_DJ_PRIV=0
if [ -e "$T_DAEMON_BAK" ]; then
  T_DJ_STATE=gone
  if [ -e "$T_DAEMON_JSON" ]; then
    T_PY=$(command -v python3 || true)
    if [ -z "$T_PY" ]; then
      trust_die "taking $T_MIRROR_URL out of $T_DAEMON_JSON needs python3 on PATH; install \
it, or restore $T_DAEMON_BAK by hand"
    fi
    trust_read "$T_DAEMON_JSON" "$T_TMP/daemon.current"
    T_DJ_CURRENT=$T_READ
    trust_read "$T_DAEMON_BAK" "$T_TMP/daemon.backup"
    T_DJ_BACKUP=$T_READ
    T_DJ_STATE=$("$T_PY" "$T_TMP/daemon.py" {_sq(DOCKER_MIRROR_KEY)} remove "$T_MIRROR_URL" \\
      "$T_DAEMON_JSON" "$T_DAEMON_BAK" "$T_DJ_CURRENT" "$T_DJ_BACKUP" "$T_TMP/daemon.new")
  fi
  trust_privilege "$T_DAEMON_JSON"
  T_DJ_PRIV=$T_PRIV
fi
"""

_CERTS_PLAN_REMOVE = """\
T_CA_REMOVE=0
T_CA_PRIV=0
if [ -e "$T_CA_FILE" ]; then
  trust_privilege "$T_CA_FILE"
  T_CA_PRIV=$T_PRIV
  T_CA_REMOVE=1
fi
# The <host>:<port> directory goes too when nothing but our ca.crt is in it.
T_DIR_REMOVE=0
T_DIR_PRIV=0
if [ -d "$T_CA_DIR" ]; then
  T_LEFT=$(ls -A "$T_CA_DIR" 2>/dev/null || echo '?')
  if [ -z "$T_LEFT" ] || [ "$T_LEFT" = ca.crt ]; then
    trust_privilege "$T_CA_DIR"
    T_DIR_PRIV=$T_PRIV
    T_DIR_REMOVE=1
  fi
fi
"""

_SYS_APPLY_REMOVE = """\
if [ "$T_SYS_REMOVE" = 1 ]; then
  if [ "$T_OS" = Linux ]; then
    trust_run "$T_SYS_PRIV" rm -f "$T_SYS_CA_FILE"
    trust_run "$T_SYS_PRIV" "$T_UCC" --fresh
    trust_say "removed the root CA from the system trust store ($T_SYS_CA_FILE)"
  else
    # -t as root also removes the admin-domain trust settings that add-trusted-cert -d made.
    trust_try "$T_SYS_PRIV" security delete-certificate -t -Z "$T_SHA1" "$T_KEYCHAIN"
    if [ "$T_RC" = 0 ]; then
      trust_say "removed the root CA ($T_SHA1) from $T_KEYCHAIN"
    elif grep -q 'Unable to delete certificate matching' "$T_TMP/err"; then
      trust_say "the root CA ($T_SHA1) is not in $T_KEYCHAIN"
    else
      trust_die "$T_CMD failed: $(trust_first "$T_TMP/err" "$T_RC")"
    fi
  fi
fi
"""

_MIRROR_APPLY_REMOVE = """\
case $T_DJ_STATE in
  changed)
    trust_run "$T_DJ_PRIV" cp "$T_TMP/daemon.new" "$T_DAEMON_JSON"
    ;;
  restore)
    trust_run "$T_DJ_PRIV" cp "$T_DAEMON_BAK" "$T_DAEMON_JSON"
    ;;
  delete)
    trust_run "$T_DJ_PRIV" rm -f "$T_DAEMON_JSON"
    ;;
  *)
    ;;
esac
if [ "$T_DJ_STATE" != none ]; then
  trust_run "$T_DJ_PRIV" rm -f "$T_DAEMON_BAK"
fi
case $T_DJ_STATE in
  changed | restore | delete)
    trust_say "took $T_MIRROR_URL out of $T_DAEMON_JSON; Docker must be restarted to stop \\
using it: sudo systemctl restart docker (Docker Desktop: restart it from its menu)"
    ;;
  *)
    ;;
esac
"""

_CERTS_APPLY_REMOVE = """\
if [ "$T_CA_REMOVE" = 1 ]; then
  trust_run "$T_CA_PRIV" rm -f "$T_CA_FILE"
  trust_say "removed $T_CA_FILE"
fi
if [ "$T_DIR_REMOVE" = 1 ]; then
  trust_run "$T_DIR_PRIV" rmdir "$T_CA_DIR"
fi
"""


def _prelude(p: TrustParams, install: bool, stdin_note: str) -> list[str]:
    parts = [
        _HEADER.format(
            action="install" if install else "remove", host=p.registry_host, stdin_note=stdin_note
        ),
        "\n".join(_assignments(p, install)) + "\n",
        _COMMON,
        _PRIVILEGE_SUDO if p.use_sudo else _PRIVILEGE_NO_SUDO,
        _TRY_SUDO if p.use_sudo else _TRY_NO_SUDO,
        _RUN,
    ]
    if p.configure_docker_mirror:
        parts.append(_READ)
    return parts


def render_install_script(p: TrustParams) -> str:
    """The `create` command. Reads the root CA PEM from stdin.

    The CA never appears in the command text, which Pulumi stores in its state and shows in
    previews. The script

    * writes it to Docker's fixed layout `<dockerCertsDir>/<host>:<port>/ca.crt` (mode 0644);
    * optionally adds it to the OS trust store: Debian/Ubuntu `update-ca-certificates`, macOS
      `security add-trusted-cert` into the System keychain; any other OS fails with one line;
    * optionally merges `"registry-mirrors": [<mirror_url>]` into Docker's `daemon.json`,
      keeping every other key, backing the original up once, never adding a duplicate, and
      printing that Docker must be restarted (it never restarts Docker itself). dockerd
      rejects unknown keys, so no marker can be stored inside the file.

    Privileges: a target this user cannot write (for a path still to be created: its nearest
    existing parent directory) is written through `sudo -n` when `use_sudo` is true. `-n`
    never prompts (a password prompt would hang `pulumi up`); when it fails, or `use_sudo` is
    false, the script stops before changing anything, with ONE line on stderr that names the
    path and the command to run. The plan (what changes, which privileges) is made before the
    first change, so a refusal leaves the host untouched.
    """
    _check(p)
    note = "The root CA PEM is read from stdin; no certificate is in this text."
    parts = _prelude(p, True, note)
    parts.append(_STDIN)
    if p.install_system_trust:
        parts.append(_OS_INSTALL)
    if p.configure_docker_mirror:
        parts.append(_PYTHON_CHECK)
        parts.append(_WRITE_PY.format(program=_DAEMON_PY))
    parts.append("# ---- plan: decide every change and privilege before the first change\n")
    parts.append(_CERTS_PLAN)
    if p.install_system_trust:
        parts.append(_SYS_PLAN)
    if p.configure_docker_mirror:
        parts.append(_MIRROR_PLAN_INSTALL)
    parts.append("# ---- apply\n")
    parts.append(_CERTS_APPLY)
    if p.install_system_trust:
        parts.append(_SYS_APPLY)
    if p.configure_docker_mirror:
        parts.append(_MIRROR_APPLY_INSTALL)
    return "\n".join(parts)


def render_remove_script(p: TrustParams) -> str:
    """The `delete` command. Never reads stdin; undoes only what the install added.

    Privileges work as in `render_install_script`. On macOS a certificate is deleted by its
    SHA-1 (`-Z`), because a name can match more than one certificate.
    """
    _check(p)
    parts = _prelude(p, False, "Never reads stdin. Idempotent: what is already gone is fine.")
    if p.configure_docker_mirror:
        parts.append(_WRITE_PY.format(program=_DAEMON_PY))
    parts.append("# ---- plan: decide every change and privilege before the first change\n")
    if p.install_system_trust:
        parts.append(_LINUX_REMOVE_NOTE + _OS_REMOVE)
    if p.configure_docker_mirror:
        parts.append(_MIRROR_PLAN_REMOVE)
    parts.append(_CERTS_PLAN_REMOVE)
    parts.append("# ---- apply\n")
    if p.install_system_trust:
        parts.append(_SYS_APPLY_REMOVE)
    if p.configure_docker_mirror:
        parts.append(_MIRROR_APPLY_REMOVE)
    parts.append(_CERTS_APPLY_REMOVE)
    return "\n".join(parts)
