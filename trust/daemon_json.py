"""Add our mirror URL to Docker's daemon.json `registry-mirrors`, or take it out again.

The trust scripts embed this file and run it with the host's python3, which may be as old as
3.6: hence typing aliases and no `from __future__ import annotations`. It only reads copies the
script can read and writes the new content to OUT; the script decides privileges and copies
OUT into place. dockerd rejects unknown keys in daemon.json, so no marker can record our
change: the backup the install makes before its first change does.

    daemon_json.py CONFIG_KEY install URL SHOWN CURRENT OUT
    daemon_json.py CONFIG_KEY remove URL SHOWN SHOWN_BACKUP CURRENT BACKUP OUT

SHOWN names the file in messages; CURRENT is "" when there is no daemon.json; an empty
BACKUP means there was none before the install. Prints one word: changed or unchanged
(install); changed, unchanged, restore or delete (remove). A failure is one line on stderr
and exit status 3, never a traceback.
"""

import copy
import json
import sys
from typing import Any, Dict, List, Tuple

KEY = "registry-mirrors"
FAILED = 3


class Failure(Exception):
    """The one line to print: what is wrong and what to do about it."""


def load(path: str, shown: str, hint: str) -> Tuple[Dict[str, Any], bytes]:
    """The JSON object in PATH (a whitespace-only file is empty, as dockerd reads it)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeError) as err:
        raise Failure(f"cannot read {shown}: {err}") from err
    if not text.strip():
        return {}, raw
    try:
        data = json.loads(text)
    except ValueError as err:
        raise Failure(f"{shown} is not valid JSON ({err}); {hint}") from err
    if not isinstance(data, dict):
        raise Failure(f"{shown} does not hold a JSON object; {hint}")
    mirrors = data.get(KEY, [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise Failure(f"{shown}: {KEY} is not a list of URLs; {hint}")
    return data, raw


def same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def write(path: str, data: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def install(url: str, shown: str, current: str, out: str, hint: str) -> str:
    data = load(current, shown, hint)[0] if current else {}
    mirrors: List[str] = data.get(KEY, [])
    if any(same(m, url) for m in mirrors):
        return "unchanged"
    data[KEY] = mirrors + [url]
    write(out, data)
    return "changed"


def remove(
    url: str, shown: str, shown_backup: str, current: str, backup: str, out: str, hint: str
) -> str:
    original, original_raw = load(backup, shown_backup, hint)
    data, raw = load(current, shown, hint)
    before = copy.deepcopy(data)
    # A URL the user had listed before the install was not ours to take out.
    if KEY in data and not any(same(m, url) for m in original.get(KEY, [])):
        kept = [m for m in data[KEY] if not same(m, url)]
        if kept or KEY in original:
            data[KEY] = kept
        else:
            del data[KEY]
    if data == original:
        if not original_raw.strip():
            return "delete"
        # Its own bytes back (the user's layout), not our re-serialisation of them.
        return "unchanged" if raw == original_raw else "restore"
    if data == before:
        return "unchanged"
    write(out, data)
    return "changed"


def run(argv: List[str]) -> str:
    if len(argv) == 6 and argv[1] == "install":
        hint = f"fix it, or run: pulumi config set {argv[0]} false"
        return install(argv[2], argv[3], argv[4], argv[5], hint)
    if len(argv) == 8 and argv[1] == "remove":
        hint = f"fix it, or run: pulumi config set {argv[0]} false"
        return remove(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], hint)
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
