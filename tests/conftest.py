"""Shared test plumbing.

`require_tool` (skip locally, fail under CI=true when a rehearsal binary is missing) lives
in `rehearsal/tools.py`, the one place of that policy; it is re-exported here so that tests
keep importing it from `tests.conftest`.
"""

from __future__ import annotations

from rehearsal.tools import TOOL_PACKAGES, require_tool

__all__ = ["TOOL_PACKAGES", "require_tool"]
