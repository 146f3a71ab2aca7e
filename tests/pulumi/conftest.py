"""The real Pulumi CLI and Python language host on a copy of the program (rehearsal/pulumi_cli.py).

The four resource providers cannot be built here (the Go module proxy refuses their modules:
docs/verification.md, "Toolchain"), so this tier runs what needs no provider: the CLI's own
config checks and the program up to its settings, where every bad value stops `pulumi
preview` before a resource is registered. Under CI=true a CLI that cannot be built fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rehearsal import toolchain
from rehearsal.pulumi_cli import PulumiCli, program_copy
from rehearsal.tools import unavailable


@pytest.fixture()
def cli(tmp_path: Path) -> PulumiCli:
    try:
        pulumi = PulumiCli(program_copy(tmp_path), tmp_path / "home", tmp_path / "state")
    except toolchain.ToolchainError as error:
        unavailable(f"the Pulumi CLI from the toolchain is unavailable: {error}")
    pulumi.run("stack", "init", "t", "--secrets-provider", "passphrase")
    return pulumi
