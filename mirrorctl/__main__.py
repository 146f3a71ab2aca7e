"""`python -m mirrorctl ...`"""

from __future__ import annotations

from mirrorctl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
