"""Add our mirror URL to Docker's daemon.json `registry-mirrors`, or take it out again.

The trust scripts embed this file and run it with the host's python3, which may be as old as
3.6: hence typing aliases and no `from __future__ import annotations`. dockerd rejects unknown
keys in daemon.json, so no marker can record our change: the backup the install makes before
its first change does (one backup per stack: `<daemon.json>.<project>-<stack>.bak`).

Several stacks may share one daemon.json and run at the same time, so `install` and `remove`
hold an exclusive `flock` on `<daemon.json>.registry-mirror.lock` (left in place: deleting a
lock file another process is waiting on would let a third one take a different lock) while
they read, merge and write. Every write goes to a temporary file beside the real target and
is renamed over it, so a reader never sees half a file; a symlinked daemon.json stays a
symlink and its target is replaced.

    daemon_json.py CONFIG_KEY plan-install URL DAEMON_JSON BACKUP CURRENT
    daemon_json.py CONFIG_KEY plan-remove URL DAEMON_JSON BACKUP CURRENT BACKUP_COPY
    daemon_json.py CONFIG_KEY install URL DAEMON_JSON BACKUP
    daemon_json.py CONFIG_KEY remove URL DAEMON_JSON BACKUP

The plan actions write nothing: they read copies the script could read (CURRENT "" when
there is no daemon.json), print the state word the action would print and, on a second
line, the first path it would write that this user cannot (empty when none), so the script
knows before its first change whether the action needs sudo. `install` and `remove` then do
it for real and print the word they ended with. Words: changed or unchanged (install);
changed, unchanged, restore, delete, gone or none (remove). A failure is one line on stderr
and exit status 3, never a traceback.
"""

import copy
import fcntl
import json
import os
import stat
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

KEY = "registry-mirrors"
FAILED = 3
# The backup of a stack that found no daemon.json. Every backed-up original is a JSON object
# or blank (the install refuses anything else), so these bytes cannot be mistaken for one;
# an empty original is backed up, and restored, as the empty file it was.
ABSENT = b"registry-mirror: there was no daemon.json before this install; to undo it, delete daemon.json\n"


class Failure(Exception):
    """The one line to print: what is wrong and what to do about it."""


def read(path: str, shown: str) -> Optional[bytes]:
    """The bytes of PATH, None when it does not exist (a dangling symlink included)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Failure(f"cannot read {shown}: {err}") from err


def parse(raw: bytes, shown: str, hint: str) -> Dict[str, Any]:
    """The JSON object in RAW (a whitespace-only file is empty, as dockerd reads it)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeError as err:
        raise Failure(f"cannot read {shown}: {err}") from err
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as err:
        raise Failure(f"{shown} is not valid JSON ({err}); {hint}") from err
    if not isinstance(data, dict):
        raise Failure(f"{shown} does not hold a JSON object; {hint}")
    mirrors = data.get(KEY, [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise Failure(f"{shown}: {KEY} is not a list of URLs; {hint}")
    return data


def same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def dump(data: Dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def installed(url: str, raw: Optional[bytes], shown: str, hint: str) -> Optional[bytes]:
    """The new daemon.json bytes, or None when URL is listed already."""
    data = parse(raw, shown, hint) if raw is not None else {}
    mirrors: List[str] = data.get(KEY, [])
    if any(same(m, url) for m in mirrors):
        return None
    data[KEY] = mirrors + [url]
    return dump(data)


def removed(
    url: str, raw: Optional[bytes], backup: bytes, shown: str, shown_backup: str, hint: str
) -> Tuple[str, Optional[bytes]]:
    """What taking URL out of RAW means, given this stack's BACKUP: the word and the new bytes
    (for changed and restore)."""
    if raw is None:
        return "gone", None
    original_raw = None if backup == ABSENT else backup
    original = parse(original_raw, shown_backup, hint) if original_raw is not None else {}
    data = parse(raw, shown, hint)
    before = copy.deepcopy(data)
    # A URL the user had listed before the install was not ours to take out.
    if KEY in data and not any(same(m, url) for m in original.get(KEY, [])):
        kept = [m for m in data[KEY] if not same(m, url)]
        # An emptied list stays only where the original held an empty one. A list that held
        # URLs (the user's, or another stack's when this backup was taken after that stack's
        # install) has lost them to their owners; dockerd reads no key as no mirrors.
        if kept or original.get(KEY) == []:
            data[KEY] = kept
        else:
            del data[KEY]
    if data == original:
        if original_raw is None:
            return "delete", None
        # Its own bytes back (the user's layout), not our re-serialisation of them.
        return ("unchanged", None) if raw == original_raw else ("restore", original_raw)
    if data == before:
        return "unchanged", None
    return "changed", dump(data)


# --------------------------------------------------------------------------- files


def real(path: str) -> str:
    """The file a write to PATH must replace: a symlink's (final) target, else PATH."""
    return os.path.realpath(path)


def can_write(path: str) -> bool:
    """Whether this user can create or replace PATH: PATH (when it exists) and its nearest
    existing directory are writable (a rename needs the directory)."""
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        return False
    parent = os.path.dirname(path) or "."
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent) or "."
    return os.access(parent, os.W_OK | os.X_OK)


def blocker(paths: List[str]) -> str:
    return next((p for p in paths if not can_write(p)), "")


def lock_path(daemon_json: str) -> str:
    return daemon_json + ".registry-mirror.lock"


def write_atomically(path: str, content: bytes, like: Optional[str]) -> None:
    """Replace PATH by CONTENT through a temporary file in PATH's directory and a rename, with
    the mode (and, when allowed, the owner) of LIKE, or 0644 when LIKE does not exist."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st: Optional[os.stat_result] = os.stat(like) if like else None
    except FileNotFoundError:
        st = None
    fd, temp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, stat.S_IMODE(st.st_mode) if st else 0o644)
        if st and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(temp, st.st_uid, st.st_gid)
            except PermissionError:
                pass  # only root may give a file away; the content is what matters
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


class Locked:
    """An exclusive flock on the lock file beside DAEMON_JSON, for the `with` block."""

    def __init__(self, daemon_json: str) -> None:
        self.path = lock_path(daemon_json)
        self.fd = -1

    def __enter__(self) -> "Locked":
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            self.fd = os.open(self.path, os.O_RDONLY)  # flock needs no write access
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the last descriptor releases the lock


# --------------------------------------------------------------------------- actions


def plan_install(url: str, daemon_json: str, backup: str, current: str, hint: str) -> Tuple[str, str]:
    raw = read(current, daemon_json) if current else None
    if installed(url, raw, daemon_json, hint) is None:
        return "unchanged", ""
    writes = [real(daemon_json)]
    writes += [] if os.path.lexists(backup) else [backup]
    writes += [] if os.path.lexists(lock_path(daemon_json)) else [lock_path(daemon_json)]
    return "changed", blocker(writes)


def install(url: str, daemon_json: str, backup: str, hint: str) -> str:
    with Locked(daemon_json):
        raw = read(daemon_json, daemon_json)
        new = installed(url, raw, daemon_json, hint)
        if new is None:
            return "unchanged"
        if not os.path.lexists(backup):
            # Once, before this stack's first change: what a later remove restores.
            write_atomically(backup, ABSENT if raw is None else raw, real(daemon_json))
        write_atomically(real(daemon_json), new, real(daemon_json))
        return "changed"


def plan_remove(
    url: str, daemon_json: str, backup: str, current: str, backup_copy: str, hint: str
) -> Tuple[str, str]:
    saved = read(backup_copy, backup)
    if saved is None:
        return "none", ""
    raw = read(current, daemon_json) if current else None
    word = removed(url, raw, saved, daemon_json, backup, hint)[0]
    writes = [backup] + ([real(daemon_json)] if word in ("changed", "restore", "delete") else [])
    writes += [] if os.path.lexists(lock_path(daemon_json)) else [lock_path(daemon_json)]
    return word, blocker(writes)


def remove(url: str, daemon_json: str, backup: str, hint: str) -> str:
    with Locked(daemon_json):
        saved = read(backup, backup)
        if saved is None:
            return "none"
        target = real(daemon_json)
        word, new = removed(url, read(daemon_json, daemon_json), saved, daemon_json, backup, hint)
        if new is not None:
            write_atomically(target, new, target)
        elif word == "delete":
            os.unlink(target)  # a symlink stays: only the file it points to was ours
        os.unlink(backup)
        return word


def run(argv: List[str]) -> str:
    if len(argv) < 2:
        raise Failure(f"cannot edit Docker's daemon.json: unexpected arguments {argv!r}")
    hint = f"fix it, or run: pulumi config set {argv[0]} false"
    action, a = argv[1], argv[2:]
    if action == "plan-install" and len(a) == 4:
        return "\n".join(plan_install(a[0], a[1], a[2], a[3], hint))
    if action == "plan-remove" and len(a) == 5:
        return "\n".join(plan_remove(a[0], a[1], a[2], a[3], a[4], hint))
    if action == "install" and len(a) == 3:
        return install(a[0], a[1], a[2], hint)
    if action == "remove" and len(a) == 3:
        return remove(a[0], a[1], a[2], hint)
    raise Failure(f"cannot edit Docker's daemon.json: unexpected arguments {argv!r}")


def main(argv: List[str]) -> int:
    """Run with ARGV (the arguments after the program name); the exit status."""
    try:
        print(run(argv))
    except Failure as err:
        sys.stderr.write(f"registry-mirror: {err}\n")
        return FAILED
    except Exception as err:  # one line, never a traceback
        sys.stderr.write(f"registry-mirror: cannot edit Docker's daemon.json: {err}\n")
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
