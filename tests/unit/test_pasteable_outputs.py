"""Outputs a user pastes (shell lines, TOML, JSON) survive hostile paths: a certs dir with
quotes, `$(…)`, backticks and spaces is written as itself and runs nothing."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from configs import clients
from rehearsal.fakes.program import evaluate

HOSTILE = [
    "it's here",
    'a "quoted" dir',
    "$(touch PWNED)",
    "`touch PWNED`",
    "semi;colon && touch PWNED",
    "back\\slash $HOME",
    "{brace,expansion} *glob?",
]


def _fake_bin(tmp: Path) -> Path:
    """`pulumi` prints a PEM, `sudo` just runs its command: the steps run as written."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text("#!/bin/sh\nprintf 'PEM for %s\\n' \"$4\"\n")
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("name", HOSTILE)
def test_manual_trust_steps_install_the_ca_at_a_hostile_path_and_run_nothing_else(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    certs_dir = str(tmp_path / name / "certs.d")
    steps = clients.manual_trust_steps(certs_dir, ("mirror.lan:6000",), "dev; touch PWNED")
    env = {"PATH": f"{_fake_bin(tmp_path)}:/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(["/bin/sh", "-e", "-c", steps], cwd=work, env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    installed = Path(certs_dir) / "mirror.lan:6000" / "ca.crt"
    assert installed.read_text() == "PEM for dev; touch PWNED\n"
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("name", HOSTILE)
def test_containerd_hosts_toml_round_trips_a_hostile_directory(name):
    directory = f"/etc/{name}"
    parsed = tomllib.loads(clients.containerd_upstream_hosts_toml(
        "docker.io", "https://registry-1.docker.io", "https://mirror.lan:6000", directory, True))
    assert parsed == {
        "server": "https://registry-1.docker.io",
        "host": {"https://mirror.lan:6000": {"capabilities": ["pull", "resolve"], "ca": f"{directory}/ca.crt",
                                             "client": [[f"{directory}/client.crt", f"{directory}/client.key"]]}},
    }


def test_every_shell_line_in_the_outputs_splits_into_the_intended_words(tmp_path):
    import shlex

    ev = evaluate({"hostname": "mirror.lan", "dockerCertsDir": str(tmp_path / "a b$(x)"),
                   "installTrust": "false", "monitoring": "false"})
    out = ev.outputs
    assert shlex.split(out["pullExample"]) == ["docker", "pull", "mirror.lan:6000/library/alpine:latest"]
    assert shlex.split(out["curlExample"])[-1] == "https://mirror.lan:6000/v2/_catalog"
    mkdir = next(line for line in out["trustSteps"].splitlines() if "mkdir" in line)
    assert shlex.split(mkdir) == ["sudo", "mkdir", "-p", f"{tmp_path}/a b$(x)/mirror.lan:6000"]
    assert json.loads(out["dockerDaemonConfig"]) == {"registry-mirrors": ["https://mirror.lan:6000"]}
    # containerd's CA lives beside its hosts.toml, whatever dockerCertsDir says
    assert tomllib.loads(out["containerdHostsToml"])["host"]["https://mirror.lan:6000"]["ca"] == (
        "/etc/containerd/certs.d/docker.io/ca.crt")


def test_manual_steps_with_client_certificates_install_chain_and_private_key_as_docker_reads_them(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `pulumi stack output ... NAME` prints a line naming NAME; --show-secrets must come for the key
    (bin_dir / "pulumi").write_text(
        '#!/bin/sh\nlast=""; for a; do last=$a; done\n'
        'case " $* " in *" clientKeyPem "*) case " $* " in *" --show-secrets "*) ;; *) exit 9;; esac;; esac\n'
        'printf "%s\\n" "$last"\n')
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    certs_dir = tmp_path / "a dir" / "certs.d"
    steps = clients.manual_trust_steps(str(certs_dir), ("mirror.lan:6000",), "dev", client_cert=True)
    run = subprocess.run(["/bin/sh", "-e", "-c", steps], cwd=work, capture_output=True, text=True, timeout=30,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    entry = certs_dir / "mirror.lan:6000"
    assert (entry / "ca.crt").read_text() == "caCertPem\n"
    assert (entry / "client.cert").read_text() == "clientCertChainPem\n"
    assert (entry / "client.key").read_text() == "clientKeyPem\n"
    assert (entry / "client.key").stat().st_mode & 0o777 == 0o600
    assert (work / "client.key").stat().st_mode & 0o077 == 0
