"""The limits the docs state are the code's: a documented limit that names a setting the
program no longer has, or a behaviour it no longer shows, fails here (issue 20).

Read: the README's `## Limits`, docs/operations.md's `## Troubleshooting` and the front's
"Limits and what happens past them" list and outage table. What each is held against comes
from the code itself (settings.KEYS and defaults, configs/front.py's timeouts), never from a
copy of the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

import settings
from configs import front

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def section(text: str, heading: str) -> str:
    """From `heading` (a whole line) to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + 1
    rest = text[start + len(heading):]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", rest, re.M)]
    return text[start:start + len(heading) + (ends[0] if ends else len(rest))]


def blocks(text: str) -> list[str]:
    """Paragraphs and list items: what one statement of a limit spans."""
    return [b for b in re.split(r"\n\s*\n|\n(?=- )|\n(?=\| )", text) if b.strip()]


LIMITS = "\n\n".join([
    section(README, "## Limits"),
    section(OPERATIONS, "## Troubleshooting"),
    section(OPERATIONS, "## The upstream front: what a user sees online, offline, rate-limited"),
])
# backticked camelCase words: how the docs write a config key
KEY_LIKE = re.compile(r"`([a-z]+[A-Z][A-Za-z0-9]*)(?:[.\[][^`]*)?(?:: [^`]*)?`")


def test_every_setting_a_documented_limit_names_is_a_setting_of_the_program():
    named = set(KEY_LIKE.findall(LIMITS))
    assert named, "no setting found: the sections were not read"
    # names the docs use for other things than keys (outputs, code)
    others = {"realmAllowed", "getAuthURLs"}
    # a key, or a field of a `mirrors` entry
    assert sorted(named - set(settings.KEYS) - set(settings.MIRROR_FIELDS) - others) == []


def test_a_limit_of_one_upstream_is_stated_per_registry_instance_now_that_mirrors_exists():
    assert "mirrors" in settings.KEYS  # the program mirrors several upstreams
    for block in blocks(LIMITS):
        # "one upstream per instance", not "one upstream fetch per pull"
        if re.search(r"\bone upstream per\b|\bonly one upstream\b", block, re.I):
            assert "`mirrors`" in block, block


def test_a_mirror_that_does_not_start_offline_is_documented_only_for_upstream_front_off():
    assert settings.StackConfig.model_fields["upstreamFront"].default is True  # the front answers /v2/ itself
    claims = [b for b in blocks(LIMITS) if re.search(r"does not start|exits during start-up", b)]
    assert claims, "the limit is no longer stated at all: say what happens with upstreamFront false"
    for block in claims:
        assert "upstreamFront" in block, block


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def test_the_documented_wait_on_a_silent_upstream_is_what_the_fronts_timeout_makes():
    """registry 3.1.1's tag check of a cached image is a HEAD, then a GET fallback, each cut
    by the front's metadata timeout; with the auth host silent too, the token request is
    cut once and the registry serves its copy (tests/rehearsal/test_front_rehearsal.py
    measures the second case)."""
    timeout = _seconds(front.METADATA_TIMEOUT)
    [row] = [b for b in blocks(section(OPERATIONS, "## The upstream front: what a user sees online, offline, "
                                                   "rate-limited")) if b.startswith("| **upstream down**")]
    assert f"{2 * timeout} s per pull" in row, row
    assert f"{timeout} s" in row, row
    assert f"{timeout} s timeout per pull" not in row, row
