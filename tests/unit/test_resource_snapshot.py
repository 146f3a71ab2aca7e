"""Behaviour unchanged: every resource, its inputs and options, and every output match the
snapshot of `tests/snapshots/` (taken at commit 2ae3554, before the redesign; a later change
that re-takes it says why in its commit)."""

from __future__ import annotations

import json
import re

import pytest

from tests import snapshot


@pytest.mark.parametrize("name", sorted(snapshot.STACKS))
def test_program_registers_the_same_resources_inputs_options_and_outputs_as_the_snapshot(name):
    want = json.loads(snapshot.path(name).read_text())
    got = snapshot.take(name)
    assert sorted(got["resources"]) == sorted(want["resources"]), "the set of URNs changed"
    for urn, resource in want["resources"].items():
        assert got["resources"][urn] == resource, urn
    assert got["outputs"] == want["outputs"]


def test_snapshot_masks_pems_secrets_and_random_values_but_nothing_else():
    text = snapshot.path("alice").read_text()
    # no PEM block (the trust script's own PEM parser names "-----BEGIN" without a block)
    assert not re.search(r"-----BEGIN [A-Z0-9 ]+-----(\\n|\n)[A-Za-z0-9+/=]{16}", text)
    assert "[pem CERTIFICATE]" in text and "alice-hub-token" not in text
    assert "[secret]" in text
    assert "alice.lan" in text and "7000" in text  # hostname and offset port stay readable
