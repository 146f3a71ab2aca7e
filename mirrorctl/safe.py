"""Text from the network made safe to print: control characters escaped, URL credentials hidden.

Everything mirrorctl prints that it did not write itself (repository names, tags, headers,
error bodies, Prometheus labels, Docker and Pulumi CLI output, and the URLs the operator
gave) goes through `clean` (or `json_text` for JSON), so a hostile registry cannot move the
cursor, rewrite earlier lines, set the window title or reorder text with bidi controls, and
a password in `--url` never reaches the terminal or a log.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 controls, DEL and C1 controls; then the Unicode bidi embeddings, overrides, isolates
# and marks (Trojan Source, CVE-2021-42574) and the two separators that some terminals and
# Python's str.splitlines() treat as line breaks.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_FORMATS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escaped(code: int) -> str:
    if code in _SHORT:
        return _SHORT[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {code: _escaped(code) for code in [*_CONTROLS, *_FORMATS]}
_TABLE_KEEP_LINES = {code: value for code, value in _TABLE.items() if code != 0x0A}

# scheme://userinfo@ : the userinfo ends at the last "@" before the first "/", "?", "#"
# (as urllib.parse and httpx split it), so a password holding "@" is hidden whole.
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """Control and bidi characters as visible escapes: ESC -> `\\x1b`, U+202E -> `\\u202e`.

    `keep_newlines` is for multi-line blocks (a collector's output); single values (a tag,
    a header) keep no line breaks, so one value cannot forge a line of its own.
    """
    return text.translate(_TABLE_KEEP_LINES if keep_newlines else _TABLE)


def _mask(userinfo: str) -> str:
    # Only the user name survives, and only when a password follows it: a bare userinfo
    # is often a token, so it is hidden whole.
    user, sep, _ = userinfo.partition(":")
    return f"{user}:***" if sep and user else "***"


def redact(text: str) -> str:
    """Every `scheme://user:password@` in `text` as `scheme://user:***@` (a bare user: `***@`)."""
    return _USERINFO_RE.sub(lambda m: f"{m['scheme']}{_mask(m['userinfo'])}@", text)


def redact_url(value: str) -> str:
    """A value the operator meant as a URL, credentials hidden even when it has no scheme.

    `user:secret@host:6000` has no `scheme://`, so `redact` cannot tell it from text; here
    it is known to be a URL, so everything before the last `@` of its authority is hidden.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    authority_end = len(re.split(r"[/?#]", rest, maxsplit=1)[0])
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return redact(value)
    prefix = f"{scheme}://" if sep else ""
    return redact(f"{prefix}{_mask(userinfo)}@{host}{tail}")


def clean(value: object, *, keep_newlines: bool = False) -> str:
    """What every printer prints: credentials redacted, then controls escaped."""
    return escape(redact(str(value)), keep_newlines=keep_newlines)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def json_text(document: Any, *, sort_keys: bool = False) -> str:
    """JSON with every string redacted.

    No escaping is added: with `ensure_ascii` json.dumps already writes every control
    character (C0, DEL, C1) and every non-ASCII character (bidi controls) as `\\uXXXX`.
    `allow_nan=False`: NaN or Infinity would not be JSON that other tools can read.
    """
    return json.dumps(_redacted(document), indent=2, sort_keys=sort_keys, ensure_ascii=True, allow_nan=False)
