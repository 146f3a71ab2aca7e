"""`mirrorctl client-config KIND`: the files of `clientConfigs` written where they are printed,
secrets filled from a file and the environment, and one-line refusals."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import yaml

from rehearsal.fakes.program import evaluate
from tests.unit.test_mirrorctl import assert_one_line_error, run_cli

MIRRORS = json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": 6001}])


def saved_outputs(tmp_path: Path, config: dict[str, str], secrets: dict[str, str] | None = None) -> Path:
    ev = evaluate({"installTrust": "false", "registryBindAddress": "127.0.0.1", "mirrors": MIRRORS} | config,
                  secrets=secrets)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(ev.outputs))
    return path


def test_containerd_files_land_at_their_printed_paths_with_the_ca_beside_each_hosts_toml(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan"})
    result = run_cli("--outputs", str(outputs), "client-config", "containerd", "--root", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    for upstream in ("docker.io", "ghcr.io"):
        hosts = tomllib.loads((tmp_path / f"r/etc/containerd/certs.d/{upstream}/hosts.toml").read_text())
        ca = hosts["host"]["https://mirror.lan:6000"]["ca"]
        assert ca == f"/etc/containerd/certs.d/{upstream}/ca.crt"
        assert (tmp_path / "r" / ca.lstrip("/")).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert '[plugins."io.containerd.grpc.v1.cri".registry]' in result.stdout
    assert '[plugins."io.containerd.cri.v1.images".registry]' in result.stdout


def test_a_stack_requiring_client_certificates_needs_the_key_file_and_writes_it_private(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan", "requireClientCert": "true"})
    refused = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(tmp_path / "r"))
    assert_one_line_error(refused, "--client-key FILE")
    key = tmp_path / "client.key"
    key.write_text("KEY PEM")
    result = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(tmp_path / "r"),
                     "--client-key", str(key))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "r/etc/rancher/k3s/registry-mirror/client.key"
    assert written.read_text() == "KEY PEM" and stat.S_IMODE(written.stat().st_mode) == 0o600
    registries = yaml.safe_load((tmp_path / "r/etc/rancher/k3s/registries.yaml").read_text())
    assert registries["configs"]["mirror.lan:6000"]["tls"]["key_file"] == "/etc/rancher/k3s/registry-mirror/client.key"


def test_k3s_with_registry_users_takes_the_user_from_a_flag_and_the_password_from_the_environment(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan"},
                            secrets={"registryUsers": json.dumps({"alice": "a-long-password-1"})})
    refused = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(tmp_path / "r"))
    assert_one_line_error(refused, "--user NAME", "REGISTRY_PASSWORD")
    result = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(tmp_path / "r"),
                     "--user", "alice", env={"REGISTRY_PASSWORD": "a-long-password-1"})
    assert result.returncode == 0, result.stderr
    registries = tmp_path / "r/etc/rancher/k3s/registries.yaml"
    assert yaml.safe_load(registries.read_text())["configs"]["mirror.lan:6000"]["auth"] == {
        "username": "alice", "password": "a-long-password-1"}
    assert stat.S_IMODE(registries.stat().st_mode) == 0o600
    assert "a-long-password-1" not in result.stdout + result.stderr


def test_kind_refuses_a_mirror_at_localhost_in_one_line(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "localhost"})
    refused = run_cli("--outputs", str(outputs), "client-config", "kind", "--root", str(tmp_path / "r"))
    assert_one_line_error(refused, "kind nodes cannot use a mirror at localhost", "hostname")
    assert not (tmp_path / "r").exists()


def test_an_unknown_kind_is_refused_in_one_line(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan"})
    assert_one_line_error(run_cli("--outputs", str(outputs), "client-config", "podman"), "unknown client kind")
