"""Settings: Pulumi.yaml is generated from the model, and every bad value fails naming key and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import settings
from contract import IMAGES
from settings import SettingsError, parse

ROOT = Path(__file__).resolve().parents[2]


def test_pulumi_yaml_config_block_is_exactly_the_one_generated_from_the_model():
    text = (ROOT / "Pulumi.yaml").read_text()
    assert settings.with_generated_config(text) == text, "run: python -m settings --pulumi-yaml"


def test_pulumi_yaml_declares_every_defaulted_key_with_the_model_default_and_type():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    fields = settings.StackConfig.model_fields
    expected = {key: f for key, f in fields.items() if f.default is not None}
    assert set(declared) == set(expected)
    types = {bool: "boolean", int: "integer", str: "string", tuple[str, ...]: "array"}
    for key, field in expected.items():
        assert declared[key]["type"] == types[field.annotation], key
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        assert declared[key]["default"] == default, key
        assert declared[key]["description"] == field.description, key


def test_generator_replaces_only_the_config_block_of_pulumi_yaml():
    text = (ROOT / "Pulumi.yaml").read_text()
    stale = text.replace("    default: 6000\n", "    default: 6001\n")
    stale = stale.replace("config:\n", "config:\n  gone:\n    type: string\n", 1)
    assert stale != text
    assert settings.with_generated_config(stale + "# about the next section\nother: 1\n") == (
        text + "# about the next section\nother: 1\n")


def test_defaults_pass_their_own_rules():
    defaults = {key: f.default for key, f in settings.StackConfig.model_fields.items() if f.default is not None}
    raw = {k: json.dumps(list(v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)
           for k, v in defaults.items()}
    assert settings.StackConfig.model_validate(raw) == settings.StackConfig()


def test_image_defaults_are_the_pins_of_contract():
    fields = settings.StackConfig.model_fields
    assert fields["registryImage"].default == IMAGES["registry"]
    for service in ("prometheus", "blackbox", "jaeger", "loki", "alloy", "grafana"):
        assert fields[f"{service}Image"].default == IMAGES[service]


def test_keys_without_default_are_not_declared_because_pulumi_would_require_them():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    for key in ("dockerHubUsername", "dockerHubPassword", "grafanaAdminPassword"):
        assert key not in declared


def test_dev_stack_file_parses_and_holds_no_secret_or_salt():
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    assert "encryptionsalt" not in doc
    values = {}
    for full, value in doc["config"].items():
        project, key = full.split(":", 1)
        assert project == "registry-mirror"
        assert not isinstance(value, dict), f"{key} is a secure value"
        values[key] = value if isinstance(value, str) else yaml.safe_dump(value)
    values["altNames"] = str(doc["config"]["registry-mirror:altNames"]).replace("'", '"')
    parse(values, stack="dev")


def test_defaults_give_a_localhost_mirror_on_6000_with_ecdsa_and_seed_lifetimes():
    s = parse({}, stack="dev")
    assert s.registry.host == "localhost:6000"
    assert s.registry.url == "https://localhost:6000"
    assert s.registry.bind_address == "0.0.0.0"
    assert s.registry.proxy_ttl == "168h"
    assert s.registry.image.startswith("registry:3.")
    assert s.pki.key_algorithm == "ECDSA"
    # the seed: about 5 years for the CAs, 1 year for the server certificate
    assert s.pki.root_ca_validity_hours == 43800
    assert 40000 < s.pki.intermediate_ca_validity_hours <= s.pki.root_ca_validity_hours
    assert s.pki.cert_validity_hours == 8760
    assert s.trust.install_trust and not s.trust.install_system_trust
    assert not s.trust.configure_docker_mirror
    assert s.trust.docker_certs_dir == "/etc/docker/certs.d"
    assert s.registry.keep_data_on_destroy


def test_sans_cover_hostname_altnames_localhost_loopback_and_network_alias():
    s = parse({"hostname": "Mirror.LAN", "altNames": '["*.local", "10.0.0.7", "reg.lan"]'},
              stack="dev")
    assert s.registry.hostname == "mirror.lan"
    assert s.registry.san_dns_names == ["mirror.lan", "*.local", "reg.lan", "localhost", "registry"]
    assert s.registry.san_ip_addresses == ["10.0.0.7", "127.0.0.1"]


def test_ipv4_hostname_goes_to_ip_sans():
    s = parse({"hostname": "192.168.1.20"}, stack="dev")
    assert s.registry.san_ip_addresses == ["192.168.1.20", "127.0.0.1"]
    assert "192.168.1.20" not in s.registry.san_dns_names


def test_alt_names_are_a_json_list_as_the_cli_passes_them():
    s = parse({"altNames": '["a.lan", " b.lan"]'}, stack="dev")
    assert s.registry.alt_names == ("a.lan", "b.lan")


def test_alt_names_as_text_are_refused_with_the_way_to_set_a_list():
    with pytest.raises(SettingsError, match=r"altNames = 'a.lan, b.lan' is invalid: .*--path 'altNames\[0\]'"):
        parse({"altNames": "a.lan, b.lan"}, stack="dev")


def test_tilde_in_docker_paths_is_expanded(monkeypatch):
    monkeypatch.setenv("HOME", "/home/dev")
    s = parse({"dockerCertsDir": "~/.docker/certs.d", "dockerDaemonJsonPath": "~/.docker/daemon.json"},
              stack="dev")
    assert s.trust.docker_certs_dir == "/home/dev/.docker/certs.d"
    assert s.trust.docker_daemon_json_path == "/home/dev/.docker/daemon.json"


def test_port_offset_shifts_every_published_port():
    s = parse({"portOffset": "1000"}, stack="bob")
    assert s.published_ports() == {
        "registryPort": 7000, "grafanaPort": 4000, "prometheusPort": 10090,
        "jaegerPort": 17686, "lokiPort": 4100, "alloyPort": 13345,
    }


def test_credentials_are_kept_as_given_secret_object():
    marker = object()
    s = parse({"dockerHubUsername": "alice", "dockerHubPassword": "<set>", "registryBindAddress": "127.0.0.1"},
              stack="dev",
              secrets={"dockerHubPassword": marker})
    assert s.registry.docker_hub_username == "alice"
    assert s.registry.docker_hub_password is marker
    assert "alice" not in repr(s.registry) or "password" not in repr(s.registry).lower()


INVALID = [
    ({"hostname": "bad_host!"}, "hostname", "'bad_host!'", "DNS name"),
    ({"hostname": "-lead.lan"}, "hostname", "'-lead.lan'", "DNS name"),
    ({"registryPort": "0"}, "registryPort", "'0'", "1 to 65535"),
    ({"registryPort": "70000"}, "registryPort", "'70000'", "1 to 65535"),
    ({"registryPort": "http"}, "registryPort", "'http'", "whole number"),
    ({"registryBindAddress": "everywhere"}, "registryBindAddress", "'everywhere'", "IP address"),
    ({"pkiKeyAlgorithm": "DSA"}, "pkiKeyAlgorithm", "'DSA'", "ECDSA (P-256) or RSA"),
    ({"pkiRsaBits": "1024"}, "pkiRsaBits", "'1024'", "2048"),
    ({"pkiCountry": "USA"}, "pkiCountry", "'USA'", "two-letter"),
    ({"rootCaValidityHours": "0"}, "rootCaValidityHours", "'0'", "from 1"),
    ({"certValidityHours": "-5"}, "certValidityHours", "'-5'", "from 1"),
    ({"earlyRenewalHours": "8760"}, "earlyRenewalHours", "8760", "less than the shortest"),
    ({"earlyRenewalHours": "9999"}, "earlyRenewalHours", "9999", "less than the shortest"),
    ({"intermediateCaValidityHours": "50000"}, "intermediateCaValidityHours", "50000", "at most rootCaValidityHours"),
    ({"altNames": '["ok.lan", "bad name"]'}, "altNames", "'bad name'", "DNS name"),
    ({"altNames": '["*"]'}, "altNames", "'*'", "DNS name"),
    ({"proxyTtl": "7 days"}, "proxyTtl", "'7 days'", "Go duration"),
    ({"installTrust": "yes"}, "installTrust", "'yes'", "true or false"),
    ({"registryImage": "Registry:latest"}, "registryImage", "'Registry:latest'", "image reference"),
    ({"tagConcurrencyLimit": "0"}, "tagConcurrencyLimit", "'0'", "1 to 1000"),
    ({"dockerCertsDir": "relative/dir"}, "dockerCertsDir", "'relative/dir'", "absolute path"),
    ({"portOffset": "-1"}, "portOffset", "'-1'", "0 to 60000"),
    ({"lokiRetention": "12h"}, "lokiRetention", "'12h'", "at least 24h"),
    ({"prometheusRetention": "two weeks"}, "prometheusRetention", "'two weeks'", "Prometheus duration"),
    # fullmatch: a trailing newline is not the end of a valid value
    ({"proxyTtl": "168h\n"}, "proxyTtl", "'168h\\n'", "Go duration"),
    ({"registryImage": "registry:3.1.1\n"}, "registryImage", "'registry:3.1.1\\n'", "image reference"),
    ({"altNames": '["a\\n.lan"]'}, "altNames", "'a\\n.lan'", "DNS name"),
    ({"hostname": "registry.lan\n"}, "hostname", "'registry.lan\\n'", "DNS name"),
    ({"grafanaAdminUser": "admin\n"}, "grafanaAdminUser", "'admin\\n'", "letters, digits"),
    # a trailing dot is refused, not normalized: certs.d and the CN would not match the name Docker uses
    ({"hostname": "registry.lan."}, "hostname", "'registry.lan.'", "no trailing dot"),
    ({"altNames": '["a.lan."]'}, "altNames", "'a.lan.'", "no trailing dot"),
    ({"hostname": "a" * 63 + ".lan"}, "hostname", "'aaaa", "at most 64 characters"),
    ({"dockerDaemonJsonPath": "/etc/docker/"}, "dockerDaemonJsonPath", "'/etc/docker/'", "not ending in /"),
    ({"dockerCertsDir": "/etc/\x00d"}, "dockerCertsDir", "'/etc/\\x00d'", "no control characters"),
    ({"pkiOrganization": "Acme\nInc"}, "pkiOrganization", "'Acme\\nInc'", "no control characters"),
    ({"pkiOrganization": "O" * 49}, "pkiOrganization", "'OOO", "1-48 characters"),
    ({"pkiLocality": "\ud800"}, "pkiLocality", "'\\ud800'", "no control characters"),
    ({"registryPort": "9" * 5000}, "registryPort", "(5000 characters)", "whole number"),
    ({"rootCaValidityHours": "876001"}, "rootCaValidityHours", "'876001'", "1 to 876000"),
    ({"registryMemoryLimitMb": "1048577"}, "registryMemoryLimitMb", "'1048577'", "64 to 1048576"),
    ({"proxyTtl": "87601h"}, "proxyTtl", "'87601h'", "up to 87600h"),
    ({"prometheusRetention": "2d1w"}, "prometheusRetention", "'2d1w'", "in that order"),
    ({"prometheusRetention": "101y"}, "prometheusRetention", "'101y'", "up to 100y"),
    ({"prometheusRetention": "0d"}, "prometheusRetention", "'0d'", "Prometheus duration"),
    ({"altNames": json.dumps([f"h{i}.lan" for i in range(101)])}, "altNames", "h0.lan", "at most 100 names"),
    ({"altNames": "[" * 5000}, "altNames", "'[[[", "list of strings"),
    ({"altNames": '["fe80::1%eth0"]'}, "altNames", "'fe80::1%eth0'", "IP address"),
    ({"dockerHubUsername": "al ice", "dockerHubPassword": "<set>"}, "dockerHubUsername", "'al ice'", "without spaces"),
]


@pytest.mark.parametrize(("values", "key", "shown", "allowed"), INVALID,
                         ids=[f"{c[1]}={c[0][c[1]][:20]!r}" for c in INVALID])
def test_invalid_value_fails_naming_key_value_and_what_is_allowed(values, key, shown, allowed):
    with pytest.raises(SettingsError) as err:
        parse(values, stack="dev", secret_keys=["dockerHubPassword"] if "dockerHubPassword" in values else ())
    line = next(ln for ln in str(err.value).splitlines() if f"registry-mirror:{key} " in ln)
    assert shown in line
    assert allowed in line


@pytest.mark.parametrize(("url", "allowed"), [
    ("ssh://u@h:abc", "port from 1 to 65535"), ("ssh://u@h:99999", "port from 1 to 65535"),
    ("ssh://u@h:0", "port from 1 to 65535"), ("tcp://:2376", "needs a host"), ("unix://", "socket path"),
    ("http://x", "must be unix://"), ("ssh://h\n", "must be unix://"),
])
def test_unusable_docker_host_is_one_line_saying_what_is_allowed(url, allowed):
    with pytest.raises(SettingsError) as err:
        parse({}, stack="dev", docker_host=url)
    assert str(err.value).split("\n")[1:] == [f"  docker:host = {url!r} is invalid: " + str(err.value).split(
        "is invalid: ", 1)[1]]
    assert allowed in str(err.value)


def test_usable_docker_hosts_are_kept_with_their_kind():
    for url, kind in (("unix:///var/run/docker.sock", "local"), ("npipe:////./pipe/docker_engine", "local"),
                      ("ssh://ops@box:2222", "ssh"), ("tcp://10.0.0.5:2376", "tcp")):
        assert parse({}, stack="dev", docker_host=url).trust.docker_host.kind == kind
    assert parse({}, stack="dev", docker_host="ssh://ops@box:2222").trust.docker_host.ssh == ("ops", "box", 2222)


def test_early_renewal_names_the_shortest_lifetime_it_must_stay_under():
    with pytest.raises(SettingsError, match="earlyRenewalHours = 720 .*certValidityHours: 700 hours"):
        parse({"certValidityHours": "700"}, stack="dev")


def test_a_key_set_as_secret_shows_no_value_in_its_error():
    with pytest.raises(SettingsError) as err:
        parse({"hostname": "bad host"}, stack="dev", secret_keys=["hostname"])
    assert "registry-mirror:hostname = <secret> is invalid" in str(err.value)
    assert "bad host" not in str(err.value)


def test_a_bad_value_takes_no_part_in_cross_key_checks():
    # registryPort is refused; its default must not then be reported as colliding with grafana's
    with pytest.raises(SettingsError) as err:
        parse({"registryPort": "x", "grafanaPort": "6000"}, stack="dev")
    assert str(err.value).count("\n") == 1


def test_username_without_password_names_both_keys():
    with pytest.raises(SettingsError, match="dockerHubUsername and registry-mirror:dockerHubPassword"
                       ".*the password is missing"):
        parse({"dockerHubUsername": "alice"}, stack="dev")


def test_password_without_username_names_both_keys_and_hides_the_value():
    with pytest.raises(SettingsError) as err:
        parse({"dockerHubPassword": "<set>"}, stack="dev", secrets={"dockerHubPassword": "hunter2"})
    assert "the username is missing" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_password_set_in_plain_text_is_refused_with_the_command_to_fix_it():
    with pytest.raises(SettingsError, match="set --secret dockerHubPassword"):
        parse({"dockerHubUsername": "a", "dockerHubPassword": "<set>"}, stack="dev")


def test_unknown_key_is_reported_with_the_closest_known_key():
    with pytest.raises(SettingsError, match="registyPort is not a known setting: did you mean 'registryPort'"):
        parse({"registyPort": "6001"}, stack="dev")


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as err:
        parse({"hostname": "x y", "registryPort": "0", "pkiKeyAlgorithm": "X"}, stack="dev")
    text = str(err.value)
    assert all(k in text for k in ("hostname", "registryPort", "pkiKeyAlgorithm"))


def test_ports_of_one_stack_that_collide_fail_at_preview():
    with pytest.raises(SettingsError, match="grafanaPort = 6000 .* registryPort already uses"):
        parse({"grafanaPort": "6000"}, stack="dev")


def test_port_pushed_above_65535_by_the_offset_fails():
    with pytest.raises(SettingsError, match="alloyPort = 12345 .*portOffset 60000"):
        parse({"portOffset": "60000"}, stack="dev")


def test_trust_options_need_install_trust():
    with pytest.raises(SettingsError, match="configureDockerMirror = 'true' .*needs installTrust"):
        parse({"installTrust": "false", "configureDockerMirror": "true"}, stack="dev")


def test_settings_error_is_a_pulumi_run_error_so_preview_prints_no_stack_trace():
    import pulumi

    assert issubclass(SettingsError, pulumi.RunError)


def test_monitoring_off_accepts_its_sub_switches_off_too():
    s = parse({"monitoring": "false", "tracing": "false", "logging": "false"}, stack="dev")
    assert not s.monitoring.enabled


def test_offsets_in_steps_of_1000_keep_three_default_stacks_apart_but_3000_apart_collide():
    def ports(offset):
        return set(parse({"portOffset": str(offset)}, stack="s").published_ports().values())
    assert not ports(0) & ports(1000) and not ports(0) & ports(2000) and not ports(1000) & ports(2000)
    assert ports(0) & ports(3000) == {6000}  # Grafana 3000+3000 meets the registry: documented
    assert not (ports(0) | ports(1000) | ports(2000)) & (ports(10000) | ports(11000))


def test_every_config_key_is_documented_for_users():
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "operations.md").read_text()
    missing = [key for key in settings.KEYS if f"`{key}`" not in docs]
    assert missing == []


# --- issue 20 finding 6: refusals that stop a broken or exposed stack at preview


def _lines(values: dict[str, str], **kwargs: object) -> list[str]:
    with pytest.raises(SettingsError) as err:
        parse(values, stack="dev", **kwargs)  # type: ignore[arg-type]
    return [line.strip() for line in str(err.value).splitlines()[1:]]


def test_a_registry_user_password_over_bcrypts_72_bytes_is_one_line_that_never_shows_it():
    long_password = "é" * 37  # 37 characters, 74 bytes
    lines = _lines({"registryUsers": json.dumps({"alice": long_password})}, secret_keys=["registryUsers"])
    assert len(lines) == 1
    assert lines[0].startswith("registry-mirror:registryUsers = <secret> is invalid:")
    assert "72 bytes" in lines[0] and long_password not in lines[0]
    # 72 bytes exactly is bcrypt's limit, and fine
    ok = parse({"registryUsers": json.dumps({"alice": "é" * 36})}, stack="dev", secret_keys=["registryUsers"])
    assert ok.registry.users is not None


def test_a_registry_user_password_of_72_bytes_makes_an_htpasswd_line_bcrypt_checks():
    import bcrypt

    from configs import registry as registry_config

    password = "p" * 72
    text = registry_config.render_htpasswd(json.dumps({"alice": password}), "0123456789abcdef")
    user, hashed = text.strip().split(":", 1)
    assert user == "alice" and bcrypt.checkpw(password.encode(), hashed.encode())


def test_a_token_realm_in_clear_is_refused_for_an_entry_with_credentials():
    mirrors = json.dumps([{"upstream": "registry.example.com", "port": 6001, "username": "robot",
                           "password": "s3cret-token", "tokenRealm": "http://registry.example.com/token",
                           "tokenService": "registry.example.com"}])
    lines = _lines({"mirrors": mirrors, "registryBindAddress": "127.0.0.1"}, secret_keys=["mirrors"])
    assert lines == ["registry-mirror:mirrors[0].tokenRealm = 'http://registry.example.com/token' is invalid: "
                     "must be https when the entry has a username and password (the upstream front sends "
                     "them to the realm)"]
    # without credentials an http realm stays allowed (a registry on a private network)
    anonymous = json.dumps([{"upstream": "registry.example.com", "port": 6001,
                             "tokenRealm": "http://registry.example.com/token",
                             "tokenService": "registry.example.com"}])
    assert parse({"mirrors": anonymous}, stack="dev").mirrors[1].token_realm == "http://registry.example.com/token"


def test_a_non_loopback_ui_address_is_refused_unless_expose_uis_says_so():
    lines = _lines({"uiBindAddress": "0.0.0.0"})
    assert lines == ["registry-mirror:uiBindAddress = '0.0.0.0' is invalid: would publish Prometheus, the "
                     "Jaeger UI, Loki (which accepts log pushes) and the Alloy UI, none of which asks for a "
                     "login, and Grafana's anonymous viewer: set exposeUis true to publish them anyway, or "
                     "keep uiBindAddress 127.0.0.1"]
    s = parse({"uiBindAddress": "0.0.0.0", "exposeUis": "true"}, stack="dev")
    assert s.monitoring.ui_bind_address == "0.0.0.0"
    assert parse({"uiBindAddress": "::1"}, stack="dev").monitoring.ui_bind_address == "::1"
