"""Access control and safe defaults under mocks: htpasswd users, client certificates, the
preview refusals, and no debug or metrics port published. What the real registry and Docker
client do with them: tests/rehearsal/test_access_rehearsal.py and tests/engine/."""

from __future__ import annotations

import json

import bcrypt
import pytest
import yaml

from configs.registry import render_htpasswd
from rehearsal.fakes.program import evaluate
from settings import SettingsError, parse

USERS = {"alice": "correct-horse-battery", "ci.bot": "staple-horse-battery-9"}
BASE = {"hostname": "mirror.test", "installTrust": "false"}


def _config(ev, service="registry"):
    return yaml.safe_load(ev.uploads(service)["/etc/distribution/config.yml"])


def test_registry_users_put_bcrypt_htpasswd_auth_in_front_of_every_pull():
    ev = evaluate(BASE, secrets={"registryUsers": json.dumps(USERS)})
    config = _config(ev)
    assert config["auth"] == {"htpasswd": {"realm": "registry-mirror", "path": "/etc/distribution/htpasswd"}}
    lines = ev.uploads("registry")["/etc/distribution/htpasswd"].splitlines()
    hashes = dict(line.split(":", 1) for line in lines)
    assert sorted(hashes) == sorted(USERS)
    for user, password in USERS.items():
        assert hashes[user].startswith("$2b$10$")
        assert bcrypt.checkpw(password.encode(), hashes[user].encode())
        assert not bcrypt.checkpw(b"wrong-password-123", hashes[user].encode())


def test_the_htpasswd_file_is_a_secret_upload_and_stable_between_evaluations():
    first = evaluate(BASE, secrets={"registryUsers": json.dumps(USERS)})
    again = evaluate(BASE, secrets={"registryUsers": json.dumps(USERS)})
    assert first.uploads("registry") == again.uploads("registry")
    registry = first.container("registry")
    files = [u["file"] for u in registry.inputs["uploads"]]
    index = files.index("/etc/distribution/htpasswd")
    assert f"uploads[{index}].content" in registry.secret_paths()
    assert "uploads" in registry.options["additionalSecretOutputs"]
    assert next(u for u in registry.inputs["uploads"] if u["file"].endswith("htpasswd"))["permissions"] == "0600"
    assert "correct-horse-battery" not in json.dumps(first.outputs)


def test_a_changed_password_or_salt_changes_the_file():
    base = render_htpasswd(json.dumps(USERS), "seed-1")
    assert render_htpasswd(json.dumps(USERS), "seed-1") == base
    assert render_htpasswd(json.dumps(USERS), "seed-2") != base
    assert render_htpasswd(json.dumps(USERS | {"alice": "another-password-1"}), "seed-1") != base


def test_each_user_gets_a_salt_of_its_own_so_equal_passwords_give_unrelated_hashes():
    """One salt for every user would give two users with one password the same hash: whoever
    reads the file sees they share it, and one cracked hash opens both."""
    users = {f"user{i}": "shared-password-123" for i in range(4)}
    hashes = dict(line.split(":", 1) for line in render_htpasswd(json.dumps(users), "seed-1").splitlines())
    salts = {user: h[7:29] for user, h in hashes.items()}  # $2b$10$ then 22 characters of salt
    assert len(set(salts.values())) == len(users), salts
    assert len(set(hashes.values())) == len(users)
    for h in hashes.values():
        assert bcrypt.checkpw(b"shared-password-123", h.encode())
    # and a user's salt follows the seed: another stack's file shares no salt with this one
    other = dict(line.split(":", 1) for line in render_htpasswd(json.dumps(users), "seed-2").splitlines())
    assert not {h[7:29] for h in other.values()} & set(salts.values())


def test_without_users_or_client_cert_the_registry_asks_for_neither():
    ev = evaluate(BASE)
    config = _config(ev)
    assert "auth" not in config and "clientcas" not in config["http"]["tls"]
    assert not {"/etc/distribution/htpasswd", "/etc/distribution/certs/client-ca.crt"} & set(ev.uploads("registry"))


def test_require_client_cert_puts_the_stack_root_ca_in_clientcas():
    ev = evaluate(BASE | {"requireClientCert": "true"})
    assert _config(ev)["http"]["tls"]["clientcas"] == ["/etc/distribution/certs/client-ca.crt"]
    root = ev.find("tls:index/selfSignedCert:SelfSignedCert", "root-ca").state["certPem"]
    assert ev.uploads("registry")["/etc/distribution/certs/client-ca.crt"] == root


def test_the_blackbox_probe_expects_401_with_users_and_presents_the_client_chain_with_mtls():
    ev = evaluate(BASE | {"requireClientCert": "true"}, secrets={"registryUsers": json.dumps(USERS)})
    module = yaml.safe_load(ev.uploads("blackbox")["/etc/blackbox_exporter/config.yml"])["modules"]["registry_tls"]
    assert module["http"]["valid_status_codes"] == [401]
    tls = module["http"]["tls_config"]
    assert tls["cert_file"] == "/etc/blackbox/client.crt" and tls["key_file"] == "/etc/blackbox/client.key"
    client = ev.find("tls:index/locallySignedCert:LocallySignedCert", "client-cert").state["certPem"]
    inter = ev.find("tls:index/locallySignedCert:LocallySignedCert", "intermediate-ca").state["certPem"]
    assert ev.uploads("blackbox")["/etc/blackbox/client.crt"] == client + inter
    blackbox = ev.container("blackbox")
    assert "uploads" in blackbox.options["additionalSecretOutputs"]
    plain = evaluate(BASE)
    plain_module = yaml.safe_load(plain.uploads("blackbox")["/etc/blackbox_exporter/config.yml"])
    assert plain_module["modules"]["registry_tls"]["http"]["valid_status_codes"] == [200]


def _one_line(values: dict[str, str], secret_keys=()) -> str:
    with pytest.raises(SettingsError) as err:
        parse(values, stack="dev", secret_keys=secret_keys)
    lines = [line.strip() for line in str(err.value).splitlines()[1:]]
    assert len(lines) == 1, lines
    return lines[0]


def test_docker_mirror_setting_with_registry_users_fails_preview_saying_why_and_what_works():
    line = _one_line({"configureDockerMirror": "true", "registryUsers": json.dumps(USERS)},
                     secret_keys=["registryUsers"])
    assert "configureDockerMirror" in line and "moby/moby#30880" in line
    assert "requireClientCert" in line and "docker login" in line
    assert "correct-horse" not in line


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.20"])
def test_credentials_on_an_open_port_without_client_auth_fail_preview_naming_three_ways_out(bind):
    line = _one_line({"registryBindAddress": bind, "dockerHubUsername": "alice", "dockerHubPassword": "tok"},
                     secret_keys=["dockerHubPassword"])
    assert line.startswith(f"registry-mirror:registryBindAddress = '{bind}'")
    for way_out in ("registryUsers", "requireClientCert", "registryBindAddress 127.0.0.1"):
        assert way_out in line


@pytest.mark.parametrize("extra", [
    {"registryBindAddress": "127.0.0.1"},
    {"requireClientCert": "true"},
    {"registryUsers": json.dumps(USERS)},
])
def test_each_way_out_lets_credentials_through_preview(extra):
    parse({"dockerHubUsername": "alice", "dockerHubPassword": "tok"} | extra, stack="dev",
          secret_keys=["dockerHubPassword", "registryUsers"])


@pytest.mark.parametrize("bad", ["", "short", "elevenchars", "admin"])
def test_a_grafana_password_shorter_than_12_is_refused_with_the_minimum(bad):
    line = _one_line({"grafanaAdminPassword": bad}, secret_keys=["grafanaAdminPassword"])
    assert "grafanaAdminPassword = <secret>" in line and "12" in line


def test_an_unset_grafana_password_is_generated_and_exported_as_a_secret():
    ev = evaluate(BASE)
    generated = ev.find("random:index/randomPassword:RandomPassword", "grafana-admin-password")
    assert generated.inputs["length"] >= 12
    assert "grafanaAdminPassword" in ev.secret_outputs


@pytest.mark.parametrize("users", [
    "{}", "[]", '{"alice": "short"}', '{"bad user": "long-enough-password"}', '{"a:b": "long-enough-password"}',
    '{"alice": 12345678901234}', "not json",
])
def test_bad_registry_users_are_refused_without_showing_them(users):
    line = _one_line({"registryUsers": users}, secret_keys=["registryUsers"])
    assert "registryUsers = <secret>" in line
    assert "long-enough" not in line


def test_registry_users_set_in_plain_text_are_refused():
    line = _one_line({"registryUsers": json.dumps(USERS)})
    assert "must be set as a secret" in line


def test_no_debug_or_metrics_port_is_ever_published():
    """Over every container of the fullest stack: only the TLS API and the UIs are published."""
    ev = evaluate(BASE | {"requireClientCert": "true"}, secrets={"registryUsers": json.dumps(USERS)})
    never = {5001, 8888, 13133, 4317, 4318, 9115}  # registry debug, Jaeger metrics/health/OTLP, blackbox
    published = {c.name: {p["internal"] for p in c.inputs.get("ports", [])} for c in ev.of_type(
        "docker:index/container:Container")}
    assert len(published) == 8
    for name, ports in published.items():
        assert not ports & never, name
    assert published["registry"] == {5000}
    assert published["registry-front"] == set()  # the upstream front: private network only
    assert published["blackbox"] == set()


def test_every_container_drops_net_raw_and_gains_no_privileges():
    """Issue 20: no raw sockets (the registry sends upstream credentials to its front in plain
    HTTP on the bridge network, which a container with NET_RAW could sniff or spoof on) and
    no privilege gained through execve, on every container of the fullest stack: the
    monitoring services, every mirror and front, the router and the private registry."""
    ev = evaluate(BASE | {"requireClientCert": "true", "privateRegistry": "true",
                          "mirrors": json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": 6001}])},
                  secrets={"registryUsers": json.dumps(USERS)})
    containers = ev.of_type("docker:index/container:Container")
    assert {c.name for c in containers} >= {"registry", "registry-front", "registry-ghcr", "registry-router",
                                            "registry-private", "prometheus", "blackbox", "jaeger", "loki",
                                            "alloy", "grafana"}
    for container in containers:
        assert container.inputs["capabilities"] == {"drops": ["NET_RAW"]}, container.name
        assert container.inputs["securityOpts"] == ["no-new-privileges:true"], container.name
