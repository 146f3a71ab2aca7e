"""The SSH host key to pin for an `ssh://` Docker host, read from OpenSSH's known_hosts files.

pulumi-command 1.2.1 checks the server against `ConnectionArgs.host_key` (one key, in
authorized_keys form: `<type> <base64>`, also pinning the host key algorithm to that type)
and checks nothing at all when it is unset. Docker's own `ssh://` transport runs the `ssh`
binary, which checks `~/.ssh/known_hosts`: reading the same file gives the trust command the
check Docker already has. Pure functions, run at preview.

Supported entry forms (OpenSSH sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): comma-separated
patterns with `*`, `?` and `!` negation, `[host]:port` for a port other than 22, hashed
names `|1|<base64 salt>|<base64 HMAC-SHA1(salt, name)>`; `@revoked` keys are never chosen
and `@cert-authority` lines are skipped (a CA key is not the host's key). A key revoked in
any of the files is revoked in all of them: `ssh` loads the user's and the system's files
into one set before it checks a key (OpenSSH sshconnect.c `check_host_key`), so a key
`@revoked` in /etc/ssh/ssh_known_hosts is refused even when ~/.ssh/known_hosts lists it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Iterable
from pathlib import Path

# Preferred first. RSA comes last: pinned as `ssh-rsa`, Go's client asks for SHA-1 signatures,
# which OpenSSH 8.8 and later refuse by default.
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


def default_files() -> list[Path]:
    """Where `ssh` looks by default: the user's file, then the system-wide one."""
    return [Path.home() / ".ssh" / "known_hosts", Path("/etc/ssh/ssh_known_hosts")]


def lookup_name(host: str, port: int) -> str:
    """The name OpenSSH records for HOST:PORT (lower case; bracketed unless port 22)."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def _wildcard(pattern: str, name: str) -> bool:
    # only * and ? are special in known_hosts; `[` is literal (as in "[host]:2222")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _hashed(field: str, name: str) -> bool:
    parts = field.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def matches(field: str, name: str) -> bool:
    """Whether a known_hosts host field names NAME."""
    if field.startswith("|"):
        return _hashed(field, name)
    hit = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _wildcard(pattern[1:], name):
                return False  # a negated match rules the line out whatever else matches
        elif _wildcard(pattern, name):
            hit = True
    return hit


def _well_formed(key_type: str, blob: str) -> bool:
    """The base64 decodes and the key inside names the same type."""
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
    except (binascii.Error, ValueError, struct.error):
        return False
    return raw[4 : 4 + length] == key_type.encode()


def _entries(lines: Iterable[str], name: str) -> Iterable[tuple[str, str, str]]:
    """(marker, key type, base64 blob) of every line naming NAME ("" marker: a plain entry)."""
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) < 3 or not matches(fields[0], name):
            continue
        yield marker, fields[1], fields[2]


def revoked_keys(lines: Iterable[str], host: str, port: int) -> set[str]:
    """The base64 blobs of the keys `@revoked` for HOST:PORT in these lines."""
    return {blob for marker, _, blob in _entries(lines, lookup_name(host, port)) if marker == "@revoked"}


def host_key(lines: Iterable[str], host: str, port: int, revoked: Iterable[str] = ()) -> str | None:
    """The key to pin for HOST:PORT as `<type> <base64>`, or None when no usable entry names
    it. A key `@revoked` in these lines or listed in `revoked` (other files') is never
    chosen. Among several keys the type first in KEY_TYPES wins, then the first listed."""
    lines = list(lines)
    found: list[tuple[str, str]] = []
    refused = set(revoked) | revoked_keys(lines, host, port)
    for marker, key_type, blob in _entries(lines, lookup_name(host, port)):
        if not marker and key_type in KEY_TYPES and _well_formed(key_type, blob):
            found.append((key_type, blob))
    usable = [k for k in found if k[1] not in refused]
    if not usable:
        return None
    key_type, blob = min(usable, key=lambda k: KEY_TYPES.index(k[0]))
    return f"{key_type} {blob}"


def read_host_key(host: str, port: int, files: Iterable[Path] | None = None) -> str | None:
    """`host_key` over the known_hosts files that exist and can be read: the first file with
    a usable entry decides, and a key revoked in any file is usable in none."""
    texts: list[list[str]] = []
    for path in default_files() if files is None else files:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            continue
    revoked = set().union(*(revoked_keys(lines, host, port) for lines in texts))
    for lines in texts:
        key = host_key(lines, host, port, revoked)
        if key is not None:
            return key
    return None
