"""renovate.json's custom managers find every image pin, in contract.py and in Pulumi.yaml.

The regexes are read from renovate.json and applied the way Renovate's regex manager applies
them (each `matchStrings` entry with the `g` flag only, over the whole file: no `m`, so `^`
and `$` would anchor to the file), after turning JavaScript's named groups `(?<name>...)`
into Python's `(?P<name>...)`. The expected pins come from `contract.IMAGES` and from the
`*Image` defaults of Pulumi.yaml read as YAML, not from the regexes.
tests/rehearsal/test_renovate_rehearsal.py runs Renovate's own extraction on the same files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import IMAGES

ROOT = Path(__file__).resolve().parents[2]
RENOVATE_JSON = ROOT / "renovate.json"
PINNED_FILES = ("contract.py", "Pulumi.yaml")


def renovate_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(RENOVATE_JSON.read_text())
    return config


def python_regex(javascript: str) -> re.Pattern[str]:
    # only named groups: a lookbehind `(?<=` / `(?<!` is not followed by a letter
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", javascript))


def managers_for(file_name: str) -> list[dict[str, Any]]:
    return [
        manager
        for manager in renovate_config()["customManagers"]
        if any(re.search(pattern, file_name) for pattern in manager["fileMatch"])
    ]


def found_pins(file_name: str, text: str) -> list[tuple[str, str]]:
    """(depName, currentValue) of every match of every custom manager that covers the file."""
    pins = []
    for manager in managers_for(file_name):
        assert manager["customType"] == "regex"
        assert manager["datasourceTemplate"] == "docker"
        for match_string in manager["matchStrings"]:
            for match in python_regex(match_string).finditer(text):
                pins.append((match["depName"], match["currentValue"]))
    return pins


def split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    return name, tag


def pulumi_yaml_image_defaults() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return {key: spec["default"] for key, spec in config.items() if key.endswith("Image")}


def test_pulumi_yaml_declares_one_image_default_per_pinned_image() -> None:
    """The premise of the check below: the two files pin the same images."""
    defaults = pulumi_yaml_image_defaults()
    assert sorted(defaults.values()) == sorted(IMAGES.values())
    assert IMAGES


def test_each_pinned_file_is_covered_by_exactly_one_custom_manager() -> None:
    for file_name in PINNED_FILES:
        assert len(managers_for(file_name)) == 1, file_name
    assert managers_for("requirements.txt") == []  # left to the pip_requirements manager


def test_the_contract_regex_finds_every_image_pin_with_its_name_and_tag() -> None:
    text = (ROOT / "contract.py").read_text()
    assert found_pins("contract.py", text) == [split_image(image) for image in IMAGES.values()]


def test_the_pulumi_yaml_regex_finds_every_image_default_with_its_name_and_tag() -> None:
    text = (ROOT / "Pulumi.yaml").read_text()
    expected = [split_image(image) for image in pulumi_yaml_image_defaults().values()]
    assert found_pins("Pulumi.yaml", text) == expected


@pytest.mark.parametrize("quote", ["'", '"'])
def test_the_pulumi_yaml_regex_also_finds_a_quoted_default(quote: str) -> None:
    """The generator quotes a string when YAML needs it; the pin is found either way."""
    text = (ROOT / "Pulumi.yaml").read_text()
    image = IMAGES["registry"]
    quoted = text.replace(f"default: {image}\n", f"default: {quote}{image}{quote}\n", 1)
    assert quoted != text
    assert found_pins("Pulumi.yaml", quoted) == found_pins("Pulumi.yaml", text)


def test_both_files_give_each_image_the_same_dep_name_so_one_group_takes_both() -> None:
    contract = found_pins("contract.py", (ROOT / "contract.py").read_text())
    pulumi = found_pins("Pulumi.yaml", (ROOT / "Pulumi.yaml").read_text())
    assert sorted(contract) == sorted(pulumi)
    [rule] = [r for r in renovate_config()["packageRules"] if r.get("matchManagers") == ["custom.regex"]]
    assert rule["matchDatasources"] == ["docker"]
    # a group per image (not one group of all images): the name is templated on the depName
    assert "{{depName}}" in rule["groupName"]


@pytest.mark.parametrize(
    ("file_name", "service", "pinned", "mutated"),
    [
        # the pin built from a constant: nothing literal to bump
        ("contract.py", "registry", '    "registry": "{image}",', '    "registry": f"registry:{{TAG}}",'),
        # two pins on one line: the regex wants the line's own indentation
        ("contract.py", "prometheus", '\n    "prometheus": "{image}",', ' "prometheus": "{image}",'),
        # a default the generator wrote as a block scalar, or behind a YAML anchor
        ("Pulumi.yaml", "registry", "default: {image}\n", "default: >-\n      {image}\n"),
        ("Pulumi.yaml", "grafana", "default: {image}\n", "default: &grafana {image}\n"),
    ],
)
def test_a_pin_in_another_format_is_not_matched(file_name: str, service: str, pinned: str, mutated: str) -> None:
    """Negative control: the regexes are tied to the pin format, so a changed generator shows."""
    image = IMAGES[service]  # today's pin, so a Renovate bump does not break this test
    pinned, mutated = pinned.format(image=image), mutated.format(image=image)
    text = (ROOT / file_name).read_text()
    assert pinned in text
    before = found_pins(file_name, text)
    after = found_pins(file_name, text.replace(pinned, mutated, 1))
    dep = split_image(image)[0]
    assert len(after) == len(before) - 1
    assert dep in {name for name, _ in before}
    assert dep not in {name for name, _ in after}
