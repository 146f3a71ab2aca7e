"""Shared test plumbing.

The one policy for a missing rehearsal binary (skip on a developer machine with what to
install; fail under CI=true, because CI must prove every rehearsal) is `unavailable` in
`rehearsal/tools.py`. `require_tool` (Debian binaries) is re-exported from there, so tests keep
importing it from `tests.conftest`; `require_npm_tool` applies the same policy to the npm
tools pinned under tools/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rehearsal.tools import TOOL_PACKAGES, require_tool, unavailable

__all__ = ["NPM_TOOLS", "TOOL_PACKAGES", "require_npm_tool", "require_tool"]

# npm tool -> the folder whose package.json and package-lock.json pin it (scripts/lib.sh
# `ensure_npm_tools` runs `npm ci` there)
NPM_TOOLS = {
    "renovate": "tools/renovate",
    "renovate-config-validator": "tools/renovate",
}
REPO_ROOT = Path(__file__).resolve().parents[1]


def require_npm_tool(name: str) -> str:
    """Return the path of a pinned npm tool; skip locally, fail under CI=true."""
    folder = NPM_TOOLS[name]
    path = REPO_ROOT / folder / "node_modules" / ".bin" / name
    if path.exists() and shutil.which("node"):
        return str(path)
    unavailable(f"npm tool {name!r} is missing (cd {folder} && npm ci --ignore-scripts; needs node and npm)")
