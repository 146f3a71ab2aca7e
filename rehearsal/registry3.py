"""The `registry` binary of distribution 3.1.1 (the `registry:3.1.1` image's).

    from rehearsal import registry3
    binary = registry3.registry_binary()    # pathlib.Path; raises Registry3Unavailable
    binary = registry3.require_registry3()  # in a test: skip locally, fail under CI=true

It is the toolchain's `registry` (tools/go/toolchain.toml): `go install
github.com/distribution/distribution/v3/cmd/registry@v3.1.1` from the Go module proxy with
the Go of requirements-dev.txt, cached by version (rehearsal/toolchain.py). About 1.5 minutes
on two cores the first time, instant after.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rehearsal import toolchain

NAME = "registry"
VERSION = toolchain.load().tools[NAME].version.lstrip("v")


class Registry3Unavailable(RuntimeError):
    """The toolchain could not give the binary; the message says why."""


_failure: str | None = None


def registry_binary() -> Path:
    """Path of the registry 3.1.1 binary (built and cached on first use).

    Raises Registry3Unavailable with the reason; a failure is remembered for the rest of
    the process, so a test session does not retry a build per test.
    """
    global _failure
    if _failure is not None:
        raise Registry3Unavailable(_failure)
    try:
        binary = toolchain.ensure(NAME)
        version = toolchain.binary_version(binary)
        if f"v{VERSION}" not in version:
            raise toolchain.ToolchainError(f"{binary} says {version!r}, not v{VERSION}")
        return binary
    except toolchain.ToolchainError as error:
        _failure = str(error)
        raise Registry3Unavailable(_failure) from error


def require_registry3() -> Path:
    """registry_binary() for a test: skip with the reason locally, fail under CI=true."""
    from rehearsal.tools import unavailable

    try:
        return registry_binary()
    except Registry3Unavailable as error:
        unavailable(f"registry {VERSION} is unavailable: {error}")


def main() -> int:
    """`python -m rehearsal.registry3`: build (or find) the binary and print its path."""
    try:
        path = registry_binary()
    except Registry3Unavailable as error:
        print(f"registry {VERSION} unavailable: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
