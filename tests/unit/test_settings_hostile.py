"""Hostile config values: every one is accepted or refused in one line per problem, naming its
key; never another exception, never a secret's value, and never a traceback from the program."""

from __future__ import annotations

import json
import os

import pulumi
import pytest

import settings
from rehearsal.fakes.program import evaluate
from settings import SettingsError, parse

# Generated per kind rather than hand-picked for a key: each value is tried on every key.
HOSTILE: tuple[str, ...] = (
    # empty and whitespace
    "", " ", "\t", "\n", "  x  ",
    # control characters and line breaks
    "\x00", "a\x00b", "a\nb", "a\r\nb", "\x1b[31mred", "\x7f",
    # numbers: huge (past Python's int-str limit), negative, float, other notations and scripts
    "9" * 5000, "-" + "9" * 5000, "-1", "0", "65536", "4294967296", "9223372036854775808",
    "1e309", "NaN", "inf", "0x10", "1_000", "+5", "１２３", "٣",
    # unicode: letters, emoji, a lone surrogate, direction override, zero-width space
    "é" * 10, "☃", "\ud800", "\u202eevil", "a\u200bb",
    # long text
    "x" * 100_000, "a." * 200 + "lan",
    # JSON and YAML shapes, wrong types
    "[" * 5000, "[]", "[1, 2]", '["a", 1]', '{"a": 1}', "{}", "null", "true", "TRUE", "yes", '"quoted"',
    "[\"a\\n.lan\"]", '["' + "b" * 300 + '.lan"]', "[" + ", ".join(f'"h{i}.lan"' for i in range(101)) + "]",
    # paths and shell
    "/", "//", "~", "~nosuchuser/x", "../../etc/passwd", "/etc/docker/", "$(id)", "`id`", "'; rm -rf / #",
    # names with a trailing dot and URLs
    "registry.lan.", "localhost.", "*", "*.", "ssh://u@h:abc", "http://x",
)


def _values_for(key: str) -> list[str]:
    """The hostile values plus each key's own default with hostile additions."""
    default = settings.StackConfig.model_fields[key].default
    if default is None or isinstance(default, tuple):
        return list(HOSTILE)
    text = str(default).lower() if isinstance(default, bool) else str(default)
    return [*HOSTILE, *(text + suffix for suffix in ("\n", "\x00", " ", ".", "0" * 40))]


def _check(message: str, key: str) -> None:
    header, *lines = message.split("\n")
    assert header == "invalid stack configuration:"
    assert lines, "an error with no problem line"
    for line in lines:
        assert line.startswith(("  registry-mirror:", "  docker:host ")), line
        assert key in line, (key, line)
        assert line.isprintable(), line  # one line each: no raw control character shows
    assert "pydantic" not in message and "Input should" not in message


def test_hostile_values_number_well_over_two_hundred_per_run():
    assert len(HOSTILE) >= 60
    assert sum(len(_values_for(key)) for key in settings.KEYS) >= 200 * 10


@pytest.mark.parametrize("key", [k for k in settings.KEYS if k not in settings.SECRET_KEYS])
def test_a_hostile_value_is_accepted_or_refused_in_lines_naming_its_key(key):
    refused = 0
    for value in _values_for(key):
        try:
            parse({key: value}, stack="dev")
        except SettingsError as err:
            _check(str(err), key)
            refused += 1
    assert refused, f"{key} accepted every hostile value"


@pytest.mark.parametrize("key", settings.KEYS)
def test_a_hostile_value_of_a_key_set_as_secret_is_never_shown(key):
    marker = "S3CR3T-"
    for value in _values_for(key):
        for secret_keys in ((key,), ()):
            if key in settings.SECRET_KEYS or secret_keys:
                try:
                    parse({key: marker + value}, stack="dev", secret_keys=secret_keys)
                except SettingsError as err:
                    _check(str(err), key)
                    assert marker not in str(err)


def test_every_hostile_docker_host_is_accepted_or_refused_in_lines_naming_docker_host():
    extra = ("ssh://", "ssh://u@h:99999", "ssh://u@h:0", "tcp://:2376", "ssh://u@[::1", "unix://", "npipe://",
             "ssh://u@h:22\n", "tcp://h:2376 x")
    refused = 0
    for value in (*HOSTILE, *extra):
        try:
            parse({}, stack="dev", docker_host=value)
        except SettingsError as err:
            _check(str(err), "docker:host")
            refused += 1
    assert refused >= len(extra)


def test_unknown_keys_however_hostile_are_each_one_line_with_the_closest_known_key():
    with pytest.raises(SettingsError) as err:
        parse({"registryport": "1", "a\nb": "1", "x" * 1000: "1"}, stack="dev")
    lines = str(err.value).split("\n")[1:]
    assert len(lines) == 3 and all(line.isprintable() for line in lines)
    assert "registry-mirror:registryport is not a known setting: did you mean 'registryPort'?" in lines[0]


# Values that made the program crash with a traceback before the settings refused them.
CRASHED = [
    ({"hostname": "registry.lan."}, None, "hostname"),
    ({"hostname": "localhost."}, None, "hostname"),
    ({"hostname": "a" * 63 + ".lan"}, None, "hostname"),  # a CN over 64 characters
    ({"dockerDaemonJsonPath": "/etc/docker/"}, None, "dockerDaemonJsonPath"),
    ({"dockerCertsDir": "/etc/docker/certs.d\n"}, None, "dockerCertsDir"),
    ({"dockerDaemonJsonPath": "/etc/docker/daemon\x00.json"}, None, "dockerDaemonJsonPath"),
    ({}, "ssh://u@h:abc", "docker:host"),
    ({}, "ssh://u@h:99999", "docker:host"),
    ({"registryPort": "9" * 5000}, None, "registryPort"),
    ({"earlyRenewalHours": "9" * 5000}, None, "earlyRenewalHours"),
]


@pytest.mark.parametrize(("config", "docker_host", "key"), CRASHED, ids=[c[2] for c in CRASHED])
def test_a_value_that_crashed_the_program_now_fails_it_with_one_line_naming_the_key(config, docker_host, key):
    with pytest.raises(SettingsError) as err:
        evaluate(config, other_config={"docker:host": docker_host} if docker_host else None)
    _check(str(err.value), key)
    assert len(str(err.value).split("\n")) == 2


def test_a_bad_docker_host_variable_is_named_as_the_variable_the_user_set(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://u@h:abc")
    with pytest.raises(SettingsError) as err:
        evaluate({})
    assert str(err.value).split("\n")[1].startswith("  DOCKER_HOST = 'ssh://u@h:abc' is invalid: an ssh:// URL")


def test_a_bad_secret_value_fails_the_program_without_showing_it():
    with pytest.raises(SettingsError) as err:
        evaluate({"dockerHubUsername": "alice", "registryBindAddress": "127.0.0.1"},
                 secrets={"dockerHubPassword": "hunter2\n"})
    assert str(err.value).split("\n")[1:] == [
        "  registry-mirror:dockerHubPassword = <secret> is invalid: must be 1-1024 characters, no control characters"]


def test_any_key_set_with_secret_has_its_bad_value_hidden_by_the_program():
    with pytest.raises(SettingsError) as err:
        evaluate({"hostname": "bad host"}, secrets={"dockerHubUsername": "al ice"})
    text = str(err.value)
    assert "registry-mirror:dockerHubUsername = <secret> is invalid" in text and "al ice" not in text
    assert "registry-mirror:hostname = 'bad host'" in text


def test_evaluate_sets_the_cli_config_environment_only_while_the_program_runs():
    before = {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    evaluate({"monitoring": "false", "installTrust": "false"})
    assert {k: os.environ.get(k) for k in before} == before


def test_load_takes_secretness_from_the_cli_environment_not_only_from_set_all_config():
    seen: dict[str, object] = {}

    def program() -> None:
        # what is left when only PULUMI_CONFIG_SECRET_KEYS says which keys are secret
        pulumi.runtime.set_all_config(json.loads(os.environ["PULUMI_CONFIG"]), secret_keys=[])
        seen["password"] = settings.load().registry.docker_hub_password

    evaluate({"dockerHubUsername": "alice", "registryBindAddress": "127.0.0.1"},
             secrets={"dockerHubPassword": "token"}, program=program)
    assert isinstance(seen["password"], pulumi.Output)


def test_load_takes_key_names_from_pulumi_config_as_a_real_run_passes_them():
    seen: dict[str, object] = {}

    def program() -> None:
        env = json.loads(os.environ["PULUMI_CONFIG"])
        assert env["registry-mirror:registryPort"] == "6000"  # Pulumi.yaml's default, passed like the CLI
        os.environ["PULUMI_CONFIG"] = json.dumps(env | {"registry-mirror:registyPort": "1"})
        try:
            settings.load()
        except SettingsError as err:
            seen["error"] = str(err)

    evaluate({}, program=program)
    assert "registry-mirror:registyPort is not a known setting: did you mean 'registryPort'?" in str(seen["error"])
