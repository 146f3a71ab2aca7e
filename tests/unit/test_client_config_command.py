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


# --- issue 20 finding 5: the serializer, modes from the start, no symlinks, only the kind's roots


HOSTILE_PASSWORDS = ["correct horse #battery", '"leading quote and a-long-one', "first line\nsecond: line",
                     "{flow: mapping}, [x]", "trailing space ", "- dash first"]


def test_a_k3s_password_of_any_text_round_trips_through_the_yaml_serializer(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan"},
                            secrets={"registryUsers": json.dumps({"alice": "a-long-password-1"})})
    for index, password in enumerate(HOSTILE_PASSWORDS):
        root = tmp_path / f"r{index}"
        result = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(root),
                         "--user", "alice", env={"REGISTRY_PASSWORD": password})
        assert result.returncode == 0, result.stderr
        registries = yaml.safe_load((root / "etc/rancher/k3s/registries.yaml").read_text())
        assert registries["configs"]["mirror.lan:6000"]["auth"] == {"username": "alice", "password": password}
        # nothing else changed: the same document as printed, but for the two values
        printed = yaml.safe_load(json.loads(outputs.read_text())["clientConfigs"]["k3s"][
            "/etc/rancher/k3s/registries.yaml"])
        printed["configs"]["mirror.lan:6000"]["auth"] = {"username": "alice", "password": password}
        assert registries == printed


def test_every_file_is_created_with_its_final_mode_never_wider_first(tmp_path: Path, monkeypatch):
    """The key and a file holding a password never exist world-readable, not even for an
    instant: every open that creates a file already asks for its final mode."""
    import os as os_module

    from mirrorctl import clientconfig

    created: list[tuple[str, int]] = []
    real_open = os_module.open

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os_module.O_CREAT:
            created.append((str(path), mode))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(clientconfig.os, "open", spy)
    plan = clientconfig.Plan(files={"/etc/rancher/k3s/registry-mirror/client.key": "KEY",
                                    "/etc/rancher/k3s/registries.yaml": "auth:\n  password: x\n",
                                    "/etc/rancher/k3s/registry-mirror/ca.crt": "CA"}, fragments={})
    written = clientconfig.write(plan, tmp_path)
    assert len(written) == 3 and len(created) == 3
    for path, mode in created:
        assert mode == (0o644 if "ca.crt" in path else 0o600), created
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == (0o644 if path.name == "ca.crt" else 0o600)


def test_a_symlink_at_a_target_or_in_its_directories_is_refused_and_nothing_is_written_through_it(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan", "requireClientCert": "true"})
    key = tmp_path / "client.key"
    key.write_text("KEY PEM")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    root = tmp_path / "r"
    (root / "etc/rancher/k3s/registry-mirror").mkdir(parents=True)
    (root / "etc/rancher/k3s/registry-mirror/client.key").symlink_to(victim)
    refused = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(root), "--client-key", str(key))
    assert_one_line_error(refused, "symbolic link", "client.key")
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644

    other = tmp_path / "elsewhere"
    other.mkdir()
    root2 = tmp_path / "r2"
    (root2 / "etc").mkdir(parents=True)
    (root2 / "etc/rancher").symlink_to(other)
    refused = run_cli("--outputs", str(outputs), "client-config", "k3s", "--root", str(root2), "--client-key", str(key))
    assert_one_line_error(refused, "symbolic link", "rancher")
    assert list(other.iterdir()) == []


def test_a_path_outside_the_roots_of_its_client_kind_is_refused_before_anything_is_written(tmp_path: Path):
    outputs = saved_outputs(tmp_path, {"hostname": "mirror.lan"})
    document = json.loads(outputs.read_text())
    for kind, path in (("docker", "/etc/shadow"), ("containerd", "/etc/docker/certs.d/x/ca.crt"),
                       ("k3s", "/etc/rancher/k3s/../../cron.d/job"), ("kind", "/root/.ssh/authorized_keys"),
                       ("k3s", "/etc/rancher/k3s2/registries.yaml")):
        hostile = json.loads(json.dumps(document))
        hostile["clientConfigs"]["kind"] = {"/etc/registry-mirror/kind/cluster.yaml": "kind: Cluster\n"}
        hostile["clientConfigs"][kind][path] = "pwned\n"
        changed = tmp_path / f"hostile-{kind}.json"
        changed.write_text(json.dumps(hostile))
        root = tmp_path / f"r-{kind}"
        refused = run_cli("--outputs", str(changed), "client-config", kind, "--root", str(root))
        assert_one_line_error(refused, "outside", kind)
        assert not root.exists(), path
