"""The one error type the commands raise: printed as one line, never as a traceback."""

from __future__ import annotations


class MirrorctlError(Exception):
    """An operator-facing failure: one clear line on stderr and a non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
