"""Remote Docker hosts: trust goes to the host whose daemon pulls."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

import pulumi
import pytest

from rehearsal.fakes.program import evaluate
from settings import SettingsError, parse
from tests.conftest import require_tool
from trust import known_hosts

BASE = {"hostname": "mirror.lan", "monitoring": "false"}


def test_ssh_docker_host_installs_trust_over_ssh_with_the_same_scripts(tmp_path):
    ev = evaluate(BASE | {"dockerCertsDir": str(tmp_path / "certs.d")},
                  other_config={"docker:host": "ssh://ops@build-box:2222"})
    cmd = ev.find("command:remote:Command", "install-ca")
    assert cmd.inputs["connection"]["host"] == "build-box"
    assert cmd.inputs["connection"]["user"] == "ops"
    assert cmd.inputs["connection"]["port"] == 2222
    assert "privateKey" not in cmd.inputs["connection"] and "password" not in cmd.inputs["connection"]
    assert cmd.inputs["stdin"] == ev.outputs["caCertPem"]
    assert cmd.inputs["create"].startswith("sh -c '")
    assert ev.of_type("command:local:Command") == []
    assert ev.outputs["trustInstalledOn"] == "ssh"

    # what the remote shell would run: prove the sh -c wrapping keeps the script intact
    run = subprocess.run(["/bin/sh", "-c", cmd.inputs["create"]], input=ev.outputs["caCertPem"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    ca = tmp_path / "certs.d" / "mirror.lan:6000" / "ca.crt"
    assert ca.read_text() == ev.outputs["caCertPem"]
    run = subprocess.run(["/bin/sh", "-c", cmd.inputs["delete"]], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not ca.exists()


def test_tcp_docker_host_gets_the_exact_steps_instead_of_a_command():
    ev = evaluate(BASE, other_config={"docker:host": "tcp://10.0.0.5:2376"})
    assert ev.of_type("command:local:Command") == [] and ev.of_type("command:remote:Command") == []
    assert ev.outputs["trustInstalledOn"] == "manual"
    steps = ev.outputs["trustSteps"]
    assert "sudo mkdir -p /etc/docker/certs.d/mirror.lan:6000" in steps
    assert "caCertPem" in steps and "/etc/docker/certs.d/mirror.lan:6000/ca.crt" in steps


def test_local_docker_host_keeps_the_local_command():
    ev = evaluate(BASE, other_config={"docker:host": "unix:///var/run/docker.sock"})
    assert len(ev.of_type("command:local:Command")) == 1
    assert ev.outputs["trustInstalledOn"] == "local"


def test_docker_host_from_the_environment_is_honoured_like_the_provider_does(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@far")
    ev = evaluate(BASE)
    assert ev.find("command:remote:Command", "install-ca").inputs["connection"]["host"] == "far"


@pytest.mark.parametrize("url", ["http://x", "ssh://"])
def test_unusable_docker_host_fails_at_preview(url):
    with pytest.raises(SettingsError, match="docker:host"):
        parse({}, stack="dev", docker_host=url)


def test_readme_tells_how_to_point_another_client_at_the_mirror():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "Remote Docker hosts" in readme and "Other clients" in readme


# --------------------------------------------------------------------------- ssh login and host key


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: seen.append(msg))
    return seen


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME, and no system-wide known_hosts: what the host key may come from."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(known_hosts, "default_files",
                        lambda: [Path.home() / ".ssh" / "known_hosts", tmp_path / "no-system-file"])
    return tmp_path


def test_ssh_url_without_a_user_logs_in_as_the_local_user_never_root(home, warnings, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "builder")
    ev = evaluate(BASE, other_config={"docker:host": "ssh://build-box"})
    connection = ev.find("command:remote:Command", "install-ca").inputs["connection"]
    assert connection["user"] == "builder"
    ev = evaluate(BASE, other_config={"docker:host": "ssh://ops@build-box"})
    assert ev.find("command:remote:Command", "install-ca").inputs["connection"]["user"] == "ops"


def test_ssh_host_without_a_known_hosts_entry_warns_naming_the_risk_and_the_fix(home, warnings):
    ev = evaluate(BASE, other_config={"docker:host": "ssh://ops@build-box:2222"})
    assert "hostKey" not in ev.find("command:remote:Command", "install-ca").inputs["connection"]
    (line,) = [w for w in warnings if "known_hosts" in w]
    assert "[build-box]:2222" in line and "WITHOUT checking its host key" in line
    assert "ssh-keyscan -p 2222 build-box | ssh-keygen -lf -" in line and "fingerprint" in line


@pytest.mark.parametrize("hash_it", [False, True])
def test_ssh_host_key_from_known_hosts_is_pinned_on_the_connection(home, warnings, hash_it):
    keygen = require_tool("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(home / "hostkey")],
                   check=True, capture_output=True, timeout=60)
    key = " ".join((home / "hostkey.pub").read_text().split()[:2])
    kh = home / ".ssh" / "known_hosts"
    kh.parent.mkdir()
    kh.write_text(f"[build-box]:2222 {key}\n")
    if hash_it:
        subprocess.run([keygen, "-H", "-f", str(kh)], check=True, capture_output=True, timeout=60)
    ev = evaluate(BASE, other_config={"docker:host": "ssh://ops@build-box:2222"})
    assert ev.find("command:remote:Command", "install-ca").inputs["connection"]["hostKey"] == key
    assert not [w for w in warnings if "known_hosts" in w]


# --------------------------------------------------------------------------- client certificate


def test_with_require_client_cert_stdin_carries_ca_chain_and_key_as_a_secret(tmp_path):
    ev = evaluate(BASE | {"requireClientCert": "true", "dockerCertsDir": str(tmp_path / "certs.d")})
    cmd = ev.find("command:local:Command", "install-ca")
    assert cmd.secret_paths() == ["stdin"]
    assert cmd.options["additionalSecretOutputs"] == ["stdin"]
    root = ev.outputs["caCertPem"]
    client = ev.find("tls:index/locallySignedCert:LocallySignedCert", "client-cert").state["certPem"]
    inter = ev.find("tls:index/locallySignedCert:LocallySignedCert", "intermediate-ca").state["certPem"]
    key = ev.find("tls:index/privateKey:PrivateKey", "client-key").state["privateKeyPem"]
    assert cmd.inputs["stdin"] == root + client + inter + key
    assert key not in cmd.inputs["create"] and key not in cmd.inputs["delete"]

    # the command as the provider runs it, with that stdin: Docker's three files
    run = subprocess.run(["/bin/sh", "-c", cmd.inputs["create"]], input=cmd.inputs["stdin"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    host_dir = tmp_path / "certs.d" / "mirror.lan:6000"
    assert (host_dir / "client.cert").read_text() == client + inter
    assert (host_dir / "client.key").read_text() == key
    assert key not in run.stdout + run.stderr


def test_without_client_certs_stdin_is_the_public_root_ca_only():
    ev = evaluate(BASE)
    cmd = ev.find("command:local:Command", "install-ca")
    assert cmd.inputs["stdin"] == ev.outputs["caCertPem"]
    assert cmd.secret_paths() == [] and cmd.options["additionalSecretOutputs"] == []


def test_over_ssh_too_the_client_key_travels_only_on_the_secret_stdin(home, warnings):
    ev = evaluate(BASE | {"requireClientCert": "true"}, other_config={"docker:host": "ssh://ops@build-box"})
    cmd = ev.find("command:remote:Command", "install-ca")
    key = ev.find("tls:index/privateKey:PrivateKey", "client-key").state["privateKeyPem"]
    # pulumi-command's SDK makes the whole connection secret itself (it may hold a password),
    # as an input and as an output
    assert sorted(cmd.secret_paths()) == ["connection", "stdin"]
    assert sorted(cmd.options["additionalSecretOutputs"]) == ["connection", "stdin"]
    assert cmd.inputs["stdin"].endswith(key)
    assert key not in cmd.inputs["create"] and key not in cmd.inputs["delete"]
