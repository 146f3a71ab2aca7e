"""Settings at their edges: every pattern-checked value is matched whole, every security-relevant
bound holds at both ends, and the refusal of upstream credentials on an open port covers every
`mirrors` entry.

A value is always tried first as given (it must pass) and then with one change (it must not),
so a refusal here can only come from the rule under test.
"""

from __future__ import annotations

import json

import pytest

import settings
from settings import SettingsError, parse

# Appended to a valid value: a line break (what `re.match(...$)` lets through), a space, a query
# and a letter outside ASCII. None of them is in the alphabet of any pattern below.
JUNK = ("\n", " x", "?x", "\u00e9")
# the whole-number rule strips surrounding blanks before its pattern: a trailing newline is
# read as the number, which is harmless; what follows a number must still be refused
NUMBER_JUNK = (" 1", "x", "?x", "\u00e9")

TOP_LEVEL = {
    "hostname": ("registry.lan", JUNK),
    "proxyTtl": ("72h30m", JUNK),
    "prometheusRetention": ("15d", JUNK),
    "lokiRetention": ("168h", JUNK),
    "grafanaAdminUser": ("admin", JUNK),
    **{key: (settings.StackConfig.model_fields[key].default, JUNK)
       for key, field in settings.StackConfig.model_fields.items() if field.annotation is str
       and key.endswith("Image")},
    **{key: (str(settings.StackConfig.model_fields[key].default), NUMBER_JUNK)
       for key in ("registryPort", "privateRegistryPort", "grafanaPort", "registryMemoryLimitMb",
                   "tagConcurrencyLimit", "portOffset", "pkiRsaBits", "certValidityHours", "earlyRenewalHours")},
}


def test_every_image_key_is_in_the_table():
    images = [k for k in settings.KEYS if k.endswith("Image")]
    assert len(images) >= 8 and set(images) <= set(TOP_LEVEL)


@pytest.mark.parametrize("key", sorted(TOP_LEVEL))
def test_a_valid_value_with_anything_appended_is_refused(key):
    valid, junk = TOP_LEVEL[key]
    parse({key: valid}, stack="dev")
    for tail in junk:
        with pytest.raises(SettingsError, match=f"registry-mirror:{key} = "):
            parse({key: valid + tail}, stack="dev")


def test_an_alt_name_or_a_user_name_with_anything_appended_is_refused():
    parse({"altNames": '["a.lan", "10.0.0.1"]'}, stack="dev")
    users = {"alice": "correct-horse-battery"}
    parse({"registryUsers": json.dumps(users)}, stack="dev", secret_keys=["registryUsers"])
    for tail in JUNK:
        # entries of the list are stripped of surrounding blanks: a trailing newline is read
        # as the name; anything else after it must be refused
        for names in ([] if tail == "\n" else [[f"a.lan{tail}"], [f"10.0.0.1{tail}"]]):
            with pytest.raises(SettingsError, match="registry-mirror:altNames = "):
                parse({"altNames": json.dumps(names)}, stack="dev")
        with pytest.raises(SettingsError, match="registry-mirror:registryUsers = <secret>"):
            parse({"registryUsers": json.dumps({"alice" + tail: users["alice"]})}, stack="dev",
                  secret_keys=["registryUsers"])


# fields of a `mirrors` entry checked by a pattern, with a valid value
ENTRY = {"upstream": "ghcr.io", "port": 6001, "remoteUrl": "https://ghcr.io", "tokenRealm": "https://ghcr.io/token",
         "tokenService": "ghcr.io", "ttl": "72h"}
ENTRY_PATTERNS = {"upstream": JUNK, "remoteUrl": JUNK, "tokenRealm": JUNK, "tokenService": JUNK, "ttl": JUNK,
                  # any non-blank character is allowed in an upstream's user name
                  "username": ("\n", " x")}


def _mirrors(entry: dict[str, object]) -> dict[str, str]:
    # loopback: credentials on an open port are refused for another reason (tested below)
    return {"mirrors": json.dumps([{"upstream": "docker.io"}, entry]), "registryBindAddress": "127.0.0.1"}


@pytest.mark.parametrize("field", sorted(ENTRY_PATTERNS))
def test_a_mirrors_field_with_anything_appended_is_refused(field):
    entry = dict(ENTRY, username="bot", password="token-1") if field == "username" else dict(ENTRY)
    parse(_mirrors(entry), stack="dev", secret_keys=["mirrors"])
    for tail in ENTRY_PATTERNS[field]:
        bad = dict(entry, **{field: str(entry[field]) + tail})
        with pytest.raises(SettingsError, match=rf"registry-mirror:mirrors\[1\]\.{field} = "):
            parse(_mirrors(bad), stack="dev", secret_keys=["mirrors"])


# --------------------------------------------------------------------------- bounds, both ends


def _accepted(values: dict[str, str], secret: tuple[str, ...] = ()) -> bool:
    try:
        parse(values, stack="dev", secret_keys=secret)
    except SettingsError:
        return False
    return True


def test_registry_user_passwords_are_12_characters_to_72_bytes():
    def users(password: str) -> dict[str, str]:
        return {"registryUsers": json.dumps({"alice": password})}
    secret = ("registryUsers",)
    assert [_accepted(users("p" * n), secret) for n in (11, 12, 72, 73)] == [False, True, True, False]
    # bytes, not characters: 36 two-byte characters are 72 bytes, 37 are 74
    assert [_accepted(users("é" * n), secret) for n in (36, 37)] == [True, False]


def test_registry_users_number_1_to_100_with_names_of_1_to_64_characters():
    def users(names: list[str]) -> dict[str, str]:
        return {"registryUsers": json.dumps(dict.fromkeys(names, "correct-horse-battery"))}
    secret = ("registryUsers",)
    assert [_accepted(users([f"u{i}" for i in range(n)]), secret) for n in (0, 1, 100, 101)] == [
        False, True, True, False]
    assert [_accepted(users(["a" * n]), secret) for n in (64, 65)] == [True, False]


def test_the_grafana_password_is_12_to_1024_characters():
    def given(n: int) -> dict[str, str]:
        return {"grafanaAdminPassword": "g" * n}
    assert [_accepted(given(n), ("grafanaAdminPassword",)) for n in (11, 12, 1024, 1025)] == [
        False, True, True, False]


def test_upstream_passwords_are_1_to_1024_characters():
    def hub(n: int) -> dict[str, str]:
        return {"dockerHubUsername": "alice", "dockerHubPassword": "h" * n, "registryBindAddress": "127.0.0.1"}

    def entry(n: int) -> dict[str, str]:
        return _mirrors(dict(ENTRY, username="bot", password="m" * n))
    assert [_accepted(hub(n), ("dockerHubPassword",)) for n in (0, 1, 1024, 1025)] == [False, True, True, False]
    assert [_accepted(entry(n), ("mirrors",)) for n in (0, 1, 1024, 1025)] == [False, True, True, False]


def test_mirrors_hold_1_to_20_entries():
    def entries(n: int) -> dict[str, str]:
        listed: list[dict[str, object]] = [{"upstream": "docker.io"}]
        listed += [{"upstream": f"r{i}.example", "port": 7000 + i, "tokenRealm": ""} for i in range(1, n)]
        return {"mirrors": json.dumps(listed[:n])}
    assert [_accepted(entries(n)) for n in (0, 1, 20, 21)] == [False, True, True, False]


@pytest.mark.parametrize("key", ["registryPort", "privateRegistryPort", "grafanaPort"])
def test_a_port_is_1_to_65535(key):
    extra = {"privateRegistry": "true", "registryBindAddress": "127.0.0.1"} if key == "privateRegistryPort" else {}
    assert [_accepted({key: str(n), **extra}) for n in (0, 1, 65535, 65536)] == [False, True, True, False]


def test_a_mirrors_port_is_1_to_65535():
    assert [_accepted(_mirrors(dict(ENTRY, port=n))) for n in (0, 1, 65535, 65536)] == [False, True, True, False]


def test_the_port_offset_may_take_a_port_to_65535_and_no_further():
    quiet = {"monitoring": "false"}
    assert [_accepted({"registryPort": "65000", "portOffset": str(n), **quiet}) for n in (535, 536)] == [True, False]
    assert [_accepted({**_mirrors(dict(ENTRY, port=65000)), "portOffset": str(n), **quiet})
            for n in (535, 536)] == [True, False]
    low = {key: str(i) for i, key in enumerate(
        ("registryPort", "grafanaPort", "prometheusPort", "jaegerPort", "lokiPort", "alloyPort"), start=1)}
    assert [_accepted({**low, "portOffset": str(n)}) for n in (-1, 0, 60000, 60001)] == [False, True, True, False]


def test_the_hostname_is_at_most_64_characters_and_alt_names_at_most_100():
    assert [_accepted({"hostname": "a" * 60 + ".lan" + "x" * n}) for n in (0, 1)] == [True, False]
    assert [_accepted({"altNames": json.dumps([f"h{i}.lan" for i in range(n)])}) for n in (100, 101)] == [
        True, False]


# --------------------------------------------------------------------------- credentials on an open port


UPSTREAMS = [{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": 6001}, {"upstream": "quay.io", "port": 6002}]


def _with_credentials(*indexes: int) -> dict[str, str]:
    entries = [dict(e, username=f"bot{i}", password="token-1") if i in indexes else dict(e)
               for i, e in enumerate(UPSTREAMS)]
    return {"mirrors": json.dumps(entries)}


@pytest.mark.parametrize("index", range(len(UPSTREAMS)))
def test_credentials_of_any_mirrors_entry_on_an_open_port_need_client_authentication(index):
    upstream = UPSTREAMS[index]["upstream"]
    with pytest.raises(SettingsError) as err:
        parse(_with_credentials(index), stack="dev", secret_keys=["mirrors"])
    assert str(err.value).splitlines()[1:] == [
        f"  registry-mirror:mirrors: the {upstream} mirror pulls as bot{index} and anyone who reaches its port "
        "pulls as that account: set registryUsers, set requireClientCert true, or set registryBindAddress 127.0.0.1"]
    for way_out in ({"registryBindAddress": "127.0.0.1"}, {"requireClientCert": "true"},
                    {"registryUsers": json.dumps({"alice": "correct-horse-battery"})}):
        parse(_with_credentials(index) | way_out, stack="dev", secret_keys=["mirrors", "registryUsers"])


def test_every_entry_with_credentials_on_an_open_port_gets_its_own_line():
    with pytest.raises(SettingsError) as err:
        parse(_with_credentials(0, 1, 2), stack="dev", secret_keys=["mirrors"])
    lines = str(err.value).splitlines()[1:]
    assert [line.split(" mirror pulls as ")[0].rsplit(" ", 1)[1] for line in lines] == [
        "docker.io", "ghcr.io", "quay.io"]


def test_docker_hub_credentials_by_the_legacy_keys_are_refused_once_on_an_open_port():
    with pytest.raises(SettingsError) as err:
        parse({"dockerHubUsername": "alice", "dockerHubPassword": "hub"}, stack="dev",
              secret_keys=["dockerHubPassword"])
    assert len(str(err.value).splitlines()) == 2
    assert "registry-mirror:registryBindAddress = '0.0.0.0' is invalid: with dockerHubUsername set" in str(err.value)
