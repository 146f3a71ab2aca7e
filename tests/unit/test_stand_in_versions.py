"""rehearsal/images.py: a stand-in image carries its tag's version only when its binary has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import IMAGES
from rehearsal import images


def fake_binary(tmp_path: Path, line: str) -> Path:
    binary = tmp_path / "bin"
    binary.write_text(f"#!/bin/sh\necho '{line}' >&2\n")
    binary.chmod(0o755)
    return binary


@pytest.mark.parametrize(("reference", "version"), [
    ("registry:3.1.1", "3.1.1"), ("prom/prometheus:v3.7.3", "3.7.3"), ("nginx:1.31.5-alpine", "1.31.5"),
    ("prom/blackbox-exporter:v0.27.0", "0.27.0"),
])
def test_the_version_of_a_tag(reference: str, version: str):
    assert images.tag_version(reference) == version


@pytest.mark.parametrize("line", [
    "registry github.com/distribution/distribution/v3 v3.1.1+unknown",
    "prometheus, version 3.7.3 (branch: HEAD, revision: 0a41f0000705)",
])
def test_a_binary_of_the_tags_version_is_taken(tmp_path: Path, line: str):
    reference = IMAGES["registry"] if line.startswith("registry") else IMAGES["prometheus"]
    assert images.require_version(fake_binary(tmp_path, line), reference) == line


@pytest.mark.parametrize(("line", "reference"), [
    ("prometheus, version 2.42.0+ds (branch: debian/sid)", "prom/prometheus:v3.7.3"),  # Debian's
    ("prometheus, version 3.7.30", "prom/prometheus:v3.7.3"),
    ("prometheus, version 13.7.3", "prom/prometheus:v3.7.3"),
    ("blackbox_exporter, version 0.23.0+ds", "prom/blackbox-exporter:v0.27.0"),
    ("registry github.com/distribution/distribution/v3 v3.1.0", "registry:3.1.1"),
])
def test_a_binary_of_another_version_never_gets_the_tag(tmp_path: Path, line: str, reference: str):
    with pytest.raises(ValueError, match="not the"):
        images.require_version(fake_binary(tmp_path, line), reference)


def test_the_path_a_binary_prints_first_is_not_part_of_its_version(tmp_path: Path):
    binary = tmp_path / "registry"
    binary.write_text(f"#!/bin/sh\necho '{binary} github.com/distribution/distribution/v3 v3.1.1+unknown'\n")
    binary.chmod(0o755)
    assert images.binary_version(binary) == "github.com/distribution/distribution/v3 v3.1.1+unknown"



def test_the_python_stand_in_is_refused_the_programs_pin_its_python_is_not(tmp_path: Path):
    """The keeper's pinned image (Python 3.13) has no stand-in: Debian's 3.11.2 takes only
    the tag of its own version, which the engine tests name with `cacheImage`."""
    python = fake_binary(tmp_path, "Python 3.11.2")
    with pytest.raises(ValueError, match="not the 3.13"):
        images.require_version(python, IMAGES["cache"])
    assert images.require_version(python, "python:3.11.2-slim") == "Python 3.11.2"
