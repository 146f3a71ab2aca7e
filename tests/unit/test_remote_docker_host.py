"""Remote Docker hosts: trust goes to the host whose daemon pulls."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rehearsal.fakes.program import evaluate
from settings import SettingsError, parse

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
