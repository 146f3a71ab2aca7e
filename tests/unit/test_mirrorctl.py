"""mirrorctl without the stack: where values come from, the Docker calls, the Makefile.

- Stack outputs: a fake `pulumi` on PATH records how `pulumi stack output --json` is run
  (arguments, directory, backend and passphrase file of scripts/up.sh) and what happens
  when it fails or is missing.
- `gc` and `logs`: a fake `docker` on PATH records every call (argv, stdin, env file, and
  whether the registry was running during the collection) and keeps the containers'
  running state, so the order stop -> collect -> start is proven, also when a step fails.
  The collector's real output format is proven by the rehearsal
  (tests/rehearsal/test_mirrorctl_rehearsal.py), which runs registry 3.1.1's collector
  behind the same fake.
- `status` against local stand-ins of Grafana, Loki, Alloy and Jaeger (no binaries here):
  the documented health paths are asked and a 503 is reported as unhealthy.
- The Makefile: `make -n` shows each target's command; `make help` lists them.

Every CLI run is a real `python -m mirrorctl` process, so "one line, no traceback" is
checked on the real stderr.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirrorctl.errors import MirrorctlError
from mirrorctl.registry import check_reference, normalize_repository
from mirrorctl.stack import StackContext, pulumi_env, read_pulumi_outputs
from mirrorctl.transport import tls_context
from rehearsal.http_stub import serve_http
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 60
REGISTRY = "registry-mirror-dev-registry"
CONFIG_TEXT = "storage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nversion: 0.1\n"

# ------------------------------------------------------------------------------ fakes

FAKE_PULUMI = """#!/bin/sh
calls="$FAKE_PULUMI_CALLS"
printf '%s\\n' "$(pwd)|$*|${PULUMI_BACKEND_URL:-}|${PULUMI_CONFIG_PASSPHRASE_FILE:-}" >> "$calls"
if [ -n "${FAKE_PULUMI_FAIL:-}" ]; then
  echo "error: $FAKE_PULUMI_FAIL" >&2
  exit 255
fi
cat "$FAKE_PULUMI_OUTPUTS"
"""


def install_fake_pulumi(bin_dir: Path, outputs: dict[str, Any], calls: Path) -> dict[str, str]:
    """A `pulumi` that prints `outputs` as `stack output --json`; returns the env it needs."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(0o755)
    outputs_file = bin_dir.parent / "pulumi-outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    return {"FAKE_PULUMI_OUTPUTS": str(outputs_file), "FAKE_PULUMI_CALLS": str(calls)}


def pulumi_calls(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    return [line.split("|") for line in calls.read_text().splitlines()]


FAKE_DOCKER = r'''#!{python}
"""A fake `docker` CLI: records every call and keeps the containers' running state."""
import json, os, subprocess, sys

state_path = os.environ["FAKE_DOCKER_STATE"]
with open(state_path) as f:
    state = json.load(f)
argv = sys.argv[1:]
entry = {"argv": argv}
containers = state["containers"]


def save():
    with open(state_path, "w") as f:
        json.dump(state, f)


def record():
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def fail_if_told(command):
    failure = state.get("fail", {}).get(command)
    if failure:
        record()
        sys.stderr.write(failure["stderr"] + "\n")
        sys.exit(failure.get("code", 1))


def no_such(name):
    record()
    sys.stderr.write(f"Error response from daemon: No such container: {name}\n")
    sys.exit(1)


command = argv[0]
if command == "container" and argv[1] == "inspect":
    name = argv[2]
    if name not in containers:
        no_such(name)
    c = containers[name]
    record()
    print(json.dumps([{
        "Name": "/" + name,
        "Image": c["image"],
        "State": {"Running": c["running"]},
        "Config": {"User": c.get("user", ""), "Env": c.get("env", []),
                   "Labels": c.get("labels", {}), "Image": "registry:3.1.1"},
        "Mounts": [{"Type": "volume", "Destination": d} for d in c.get("mounts", [])],
    }]))
elif command == "cp":
    fail_if_told("cp")
    source, dest = argv[1], argv[2]
    name, _, path = source.partition(":")
    if name not in containers:
        no_such(name)
    record()
    with open(dest, "w") as f:
        f.write(containers[name]["files"][path])
elif command in ("stop", "start"):
    fail_if_told(command)
    name = argv[1]
    if name not in containers:
        no_such(name)
    containers[name]["running"] = command == "start"
    save()
    record()
    print(name)
elif command == "run":
    data = sys.stdin.buffer.read()
    entry["stdin"] = data.decode()
    volumes_from = argv[argv.index("--volumes-from") + 1]
    entry["running_during_run"] = containers[volumes_from.split(":")[0]]["running"]
    if "--env-file" in argv:
        env_file = argv[argv.index("--env-file") + 1]
        entry["env_file"] = open(env_file).read()
        entry["env_file_mode"] = oct(os.stat(env_file).st_mode & 0o777)
    fail_if_told("run")
    record()
    gc = state.get("gc")
    if gc is None:
        sys.stdout.write(state.get("run_stdout", ""))
        sys.exit(0)
    # Execute the real collector: the image's /bin/registry is registry 3.1.1 here,
    # the config (read from stdin, as the container would) mapped onto rehearsal storage.
    sys.path.insert(0, gc["pythonpath"])
    from rehearsal.registry_proc import map_registry_config
    entrypoint = argv[argv.index("--entrypoint") + 1]
    assert entrypoint == "/bin/registry", entrypoint
    image_index = argv.index("--entrypoint") + 2
    args = argv[image_index + 1:]
    assert args[-1] == "/dev/stdin", args
    mapped = map_registry_config(data.decode(), {}, gc["root"], addr="127.0.0.1:1",
                                 debug_addr="127.0.0.1:2", upstream_url="http://127.0.0.1:3",
                                 output_name="gc-config.yml")
    with open(mapped, "rb") as config:
        result = subprocess.run([gc["registry_bin"], *args], stdin=config,
                                env={"PATH": "/usr/bin:/bin"}, timeout=120)
    sys.exit(result.returncode)
elif command == "logs":
    fail_if_told("logs")
    name = argv[-1]
    if name not in containers:
        no_such(name)
    record()
    sys.stdout.write(containers[name].get("logs", ""))
else:
    record()
    sys.stderr.write(f"fake docker: unsupported command {argv}\n")
    sys.exit(2)
'''


def registry_container(**overrides: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "image": "sha256:" + "ab" * 32,
        "running": True,
        "user": "",
        "env": ["REGISTRY_HTTP_SECRET=not-for-the-collector", "OTEL_TRACES_EXPORTER=none"],
        "labels": {"registry-mirror.service": "registry", "registry-mirror.stack": "dev"},
        "mounts": ["/var/lib/registry"],
        "files": {"/etc/distribution/config.yml": CONFIG_TEXT},
        "logs": "registry log line\n",
    }
    container.update(overrides)
    return container


class FakeDocker:
    """Installs the fake `docker` into `bin_dir`; `state` is its world, `calls()` its record."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bin_dir = directory / "bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = directory / "docker-state.json"
        self.log_path = directory / "docker-calls.jsonl"
        script = self.bin_dir / "docker"
        script.write_text(FAKE_DOCKER.replace("{python}", sys.executable, 1))
        script.chmod(0o755)
        self.write({"containers": {REGISTRY: registry_container()}})

    def write(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state))

    def read(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def update(self, **changes: Any) -> None:
        self.write(self.read() | changes)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [c["argv"][0] if c["argv"][0] != "container" else "inspect" for c in self.calls()]

    def env(self) -> dict[str, str]:
        return {"FAKE_DOCKER_STATE": str(self.state_path), "FAKE_DOCKER_LOG": str(self.log_path)}


@pytest.fixture
def fake_docker(tmp_path: Path) -> FakeDocker:
    return FakeDocker(tmp_path / "docker")


def run_cli(
    *args: str, env: dict[str, str] | None = None, path: list[Path] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python -m mirrorctl ARGS` in a clean environment; PATH = `path` + /usr/bin:/bin."""
    full_env = {
        "PATH": ":".join([*(str(p) for p in path or []), "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "mirrorctl", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Non-zero exit, no traceback, one error line `mirrorctl: ...` last on stderr.

    Only `gc` prints progress lines (`gc: ...`) before it; nothing else may precede it.
    """
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("mirrorctl: "), result.stderr
    assert all(line.startswith("gc: ") for line in lines[:-1]), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


# ------------------------------------------------------------------- stack outputs


def outputs_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "registryUrl": "https://mirror.test:6000",
        "caCertPem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "clientKeyPem": "[secret]",
        "urls": {"registry": "https://mirror.test:6000", "prometheus": "http://localhost:9090"},
        "registryContainer": "registry-mirror-prod-registry",
        "stack": "prod",
    }
    document.update(overrides)
    return document


def test_outputs_come_from_one_pulumi_stack_output_json_in_the_project_directory(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.txt"
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(), calls)
    context = StackContext(
        stack="prod", root=tmp_path, environ={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env}
    )
    assert context.registry_url() == "https://mirror.test:6000"
    assert "BEGIN CERTIFICATE" in context.ca_pem()
    assert context.prometheus_url() == "http://localhost:9090"
    assert context.container("loki") == "registry-mirror-prod-loki"
    [call] = pulumi_calls(calls)  # read once, used four times
    assert call[0] == str(tmp_path)
    assert call[1] == "stack output --json --non-interactive --stack prod"


def test_without_stack_flag_the_selected_stack_names_the_containers(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(stack="staging"), calls)
    context = StackContext(
        root=tmp_path, environ={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env}
    )
    assert context.container("registry") == "registry-mirror-staging-registry"
    assert pulumi_calls(calls)[0][1] == "stack output --json --non-interactive"


def test_pulumi_gets_the_backend_and_passphrase_file_of_up_sh(tmp_path: Path) -> None:
    (tmp_path / ".pulumi-state").mkdir()
    (tmp_path / ".pulumi-passphrase").write_text("x\n")
    calls = tmp_path / "calls.txt"
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(), calls)
    read_pulumi_outputs(
        "dev", root=tmp_path, environ={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env}
    )
    [call] = pulumi_calls(calls)
    assert call[2] == f"file://{tmp_path / '.pulumi-state'}"
    assert call[3] == str(tmp_path / ".pulumi-passphrase")


def test_explicit_pulumi_settings_win_over_the_up_sh_defaults(tmp_path: Path) -> None:
    (tmp_path / ".pulumi-state").mkdir()
    (tmp_path / ".pulumi-passphrase").write_text("x\n")
    env = pulumi_env(
        {"PULUMI_BACKEND_URL": "s3://bucket", "PULUMI_CONFIG_PASSPHRASE": "p"}, tmp_path
    )
    assert env["PULUMI_BACKEND_URL"] == "s3://bucket"
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
    bare = pulumi_env({}, tmp_path / "elsewhere")  # no state dir, no passphrase file: untouched
    assert "PULUMI_BACKEND_URL" not in bare and "PULUMI_CONFIG_PASSPHRASE_FILE" not in bare


def test_a_failing_pulumi_is_one_line_with_its_error(tmp_path: Path) -> None:
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(), tmp_path / "calls.txt")
    result = run_cli(
        "--stack",
        "nope",
        "catalog",
        path=[tmp_path / "bin"],
        env={**env, "FAKE_PULUMI_FAIL": "no stack named 'nope' found"},
    )
    assert_one_line_error(result, "pulumi stack output", "no stack named 'nope' found")


def test_no_pulumi_cli_and_no_flags_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    for command in (
        ["catalog"],
        ["tags", "library/alpine"],
        ["manifest", "alpine", "latest"],
        ["verify-certs"],
        ["status"],
        ["metrics"],
        ["gc"],
        ["logs", "registry"],
    ):
        result = run_cli(*command, path=[tmp_path])  # tmp_path holds no pulumi
        assert result.returncode == 1, (command, result)
        assert_one_line_error(result, "no Pulumi CLI on PATH")


def test_flags_and_a_saved_outputs_file_need_no_pulumi_cli(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(), calls)
    ca = tmp_path / "ca.crt"
    ca.write_text(outputs_document()["caCertPem"])
    flags = StackContext(
        url="https://127.0.0.1:6000/",
        ca_file=ca,
        stack="dev",
        prometheus="http://p:9090",
        root=tmp_path,
        environ={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env},
    )
    assert flags.registry_url() == "https://127.0.0.1:6000"
    assert flags.ca_pem() == ca.read_text()
    assert flags.container("registry") == "registry-mirror-dev-registry"
    assert flags.service_urls() == {
        "registry": "https://127.0.0.1:6000",
        "prometheus": "http://p:9090",
    }
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs_document()))
    from_file = StackContext(
        outputs_file=saved,
        root=tmp_path,
        environ={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env},
    )
    assert from_file.registry_url() == "https://mirror.test:6000"
    assert from_file.stack_name() == "prod"
    assert pulumi_calls(calls) == []


def test_a_secret_or_missing_output_is_refused_with_the_flag_to_pass(tmp_path: Path) -> None:
    saved = tmp_path / "outputs.json"
    saved.write_text(
        json.dumps(outputs_document(caCertPem="[secret]", urls={"registry": "https://x:1"}))
    )
    context = StackContext(outputs_file=saved, root=tmp_path, environ={"PATH": ""})
    with pytest.raises(
        MirrorctlError, match=r"no output 'caCertPem' \(has `make up` run\?\): pass --ca FILE"
    ):
        context.ca_pem()
    with pytest.raises(MirrorctlError, match=r"no Prometheus \(monitoring=false\?\)"):
        context.prometheus_url()


def test_status_uses_only_the_url_flags_when_any_is_given(tmp_path: Path) -> None:
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs_document()))
    context = StackContext(
        outputs_file=saved,
        endpoints={"grafana": "http://127.0.0.1:3000"},
        root=tmp_path,
        environ={"PATH": ""},
    )
    assert context.service_urls() == {"grafana": "http://127.0.0.1:3000"}
    everything = StackContext(outputs_file=saved, root=tmp_path, environ={"PATH": ""})
    assert set(everything.service_urls()) == {"registry", "prometheus"}


def test_bad_flags_are_one_line() -> None:
    assert_one_line_error(run_cli("--endpoint", "grafana", "status"), "expected NAME=URL")
    assert_one_line_error(
        run_cli("--url", "http://plain:6000", "--ca", "/dev/null", "catalog"),
        "is not a URL (https://host:port)",
    )
    assert_one_line_error(
        run_cli("--url", "https://x:1", "--ca", str(ROOT / "Makefile"), "catalog"),
        "holds no PEM certificate",
    )
    assert_one_line_error(
        run_cli("--url", "https://x:1", "--ca", "/nonexistent/ca.crt", "catalog"),
        "cannot read CA file",
    )


def test_tls_trusts_the_stack_ca_and_nothing_else() -> None:
    """No system trust store: the context holds exactly the one CA it was given."""
    import ssl

    from rehearsal.fakes.tls import PRIVATE_KEY, SELF_SIGNED_CERT, fake_tls_resource

    _, key = fake_tls_resource(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    _, root = fake_tls_resource(
        SELF_SIGNED_CERT,
        {
            "privateKeyPem": key["privateKeyPem"],
            "subject": {"commonName": "Only Root"},
            "isCaCertificate": True,
            "allowedUses": ["cert_signing"],
            "validityPeriodHours": 24,
        },
    )
    context = tls_context(str(root["certPem"]))
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["Only Root"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# ----------------------------------------------------------------- names and references


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("alpine", "library/alpine"),
        ("library/alpine", "library/alpine"),
        ("grafana/loki", "grafana/loki"),
        ("a/b/c-d_e.f", "a/b/c-d_e.f"),
    ],
)
def test_repository_names_follow_docker_hub_rules(given: str, expected: str) -> None:
    assert normalize_repository(given) == expected


@pytest.mark.parametrize("bad", ["Alpine", "library//alpine", "-x", "x/", "a b", "../etc"])
def test_invalid_repository_names_are_refused_before_any_request(bad: str) -> None:
    with pytest.raises(MirrorctlError, match="invalid repository name"):
        normalize_repository(bad)


def test_references_are_tags_or_digests() -> None:
    assert check_reference("3.20") == "3.20"
    assert check_reference("sha256:" + "a" * 64) == "sha256:" + "a" * 64
    for bad in ("", "-x", "a:b:c", "x" * 129, "tag with space"):
        with pytest.raises(MirrorctlError, match="invalid reference"):
            check_reference(bad)


# ------------------------------------------------------------------------------- gc


GC_STDOUT = (
    "library/x\nlibrary/x: marking manifest sha256:aaa\n\n"
    "3 blobs marked, 1 blobs and 0 manifests eligible for deletion\n"
    "blob eligible for deletion: sha256:" + "c" * 64 + "\n"
)


def gc_cli(fake: FakeDocker, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--stack", "dev", "gc", *args, env=fake.env(), path=[fake.bin_dir])


def test_gc_dry_run_keeps_the_registry_running_and_mounts_its_volumes_read_only(
    fake_docker: FakeDocker,
) -> None:
    fake_docker.update(run_stdout=GC_STDOUT)
    result = gc_cli(fake_docker, "--json")
    assert result.returncode == 0, result.stderr
    assert fake_docker.commands() == ["inspect", "cp", "run"]
    inspect, cp, run = fake_docker.calls()
    assert inspect["argv"] == ["container", "inspect", REGISTRY]
    assert cp["argv"][1] == f"{REGISTRY}:/etc/distribution/config.yml"
    image = registry_container()["image"]
    assert run["argv"] == [
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--volumes-from",
        f"{REGISTRY}:ro",
        "--entrypoint",
        "/bin/registry",
        image,
        "garbage-collect",
        "--dry-run",
        "/dev/stdin",
    ]
    assert run["stdin"] == CONFIG_TEXT  # the container's own config, not the image default
    assert run["running_during_run"] is True
    report = json.loads(result.stdout)
    assert report == {
        "container": REGISTRY,
        "dry_run": True,
        "registry_stopped": False,
        "marked": 3,
        "eligible_blobs": 1,
        "eligible_manifests": 0,
        "eligible": ["sha256:" + "c" * 64],
    }


def test_gc_apply_stops_the_registry_collects_and_starts_it_again(fake_docker: FakeDocker) -> None:
    fake_docker.update(run_stdout=GC_STDOUT)
    result = gc_cli(fake_docker, "--apply")
    assert result.returncode == 0, result.stderr
    assert fake_docker.commands() == ["inspect", "cp", "stop", "run", "start"]
    run = fake_docker.calls()[3]
    assert run["running_during_run"] is False
    assert run["argv"][run["argv"].index("--volumes-from") + 1] == REGISTRY  # read-write
    assert "--dry-run" not in run["argv"]
    assert fake_docker.read()["containers"][REGISTRY]["running"] is True
    assert "deleted 1 blobs and 0 manifests" in result.stdout


def test_gc_apply_starts_the_registry_again_when_the_collector_fails(
    fake_docker: FakeDocker,
) -> None:
    fake_docker.update(
        fail={"run": {"stderr": json.dumps({"level": "fatal", "msg": "disk on fire"})}}
    )
    result = gc_cli(fake_docker, "--apply")
    assert_one_line_error(result, "garbage-collect failed", "disk on fire")
    assert fake_docker.commands() == ["inspect", "cp", "stop", "run", "start"]
    assert fake_docker.read()["containers"][REGISTRY]["running"] is True


def test_gc_apply_says_how_to_recover_when_the_registry_does_not_start(
    fake_docker: FakeDocker,
) -> None:
    fake_docker.update(
        run_stdout=GC_STDOUT, fail={"start": {"stderr": "Error: port is already allocated"}}
    )
    result = gc_cli(fake_docker, "--apply")
    assert_one_line_error(
        result, "did not start again", "port is already allocated", f"docker start {REGISTRY}"
    )


def test_gc_apply_leaves_a_stopped_registry_stopped(fake_docker: FakeDocker) -> None:
    fake_docker.update(
        run_stdout=GC_STDOUT, containers={REGISTRY: registry_container(running=False)}
    )
    result = gc_cli(fake_docker, "--apply")
    assert result.returncode == 0, result.stderr
    assert fake_docker.commands() == ["inspect", "cp", "run"]
    assert fake_docker.read()["containers"][REGISTRY]["running"] is False


def test_gc_stops_nothing_when_the_config_cannot_be_copied(fake_docker: FakeDocker) -> None:
    fake_docker.update(fail={"cp": {"stderr": "Error: No such container:path"}})
    result = gc_cli(fake_docker, "--apply")
    assert_one_line_error(result, "cannot copy /etc/distribution/config.yml")
    assert fake_docker.commands() == ["inspect", "cp"]


def test_gc_stops_nothing_when_stopping_fails(fake_docker: FakeDocker) -> None:
    fake_docker.update(fail={"stop": {"stderr": "Error response from daemon: permission denied"}})
    assert_one_line_error(gc_cli(fake_docker, "--apply"), "cannot stop", "permission denied")
    assert fake_docker.commands() == ["inspect", "cp", "stop"]


def test_gc_refuses_a_container_that_is_not_the_registry(fake_docker: FakeDocker) -> None:
    fake_docker.update(
        containers={REGISTRY: registry_container(labels={"registry-mirror.service": "loki"})}
    )
    assert_one_line_error(gc_cli(fake_docker, "--apply"), "is not the stack's registry")
    assert fake_docker.commands() == ["inspect"]


def test_gc_refuses_a_storage_root_that_is_not_on_a_volume(fake_docker: FakeDocker) -> None:
    fake_docker.update(containers={REGISTRY: registry_container(mounts=["/data"])})
    assert_one_line_error(
        gc_cli(fake_docker, "--apply"), "storage root /var/lib/registry is not on a volume"
    )
    assert "stop" not in fake_docker.commands()


def test_gc_of_a_missing_container_is_one_line(fake_docker: FakeDocker) -> None:
    fake_docker.update(containers={})
    assert_one_line_error(gc_cli(fake_docker), f"no container '{REGISTRY}'", "is the stack up?")


def test_gc_runs_as_the_registry_user_with_only_its_storage_env_in_a_private_file(
    fake_docker: FakeDocker,
) -> None:
    env = [
        "REGISTRY_HTTP_SECRET=hush",
        "REGISTRY_PROXY_PASSWORD=hunter2",
        "REGISTRY_STORAGE_DELETE_ENABLED=true",
        "PATH=/usr/bin",
    ]
    fake_docker.update(
        run_stdout=GC_STDOUT, containers={REGISTRY: registry_container(env=env, user="1000:1000")}
    )
    assert gc_cli(fake_docker).returncode == 0
    run = fake_docker.calls()[-1]
    assert run["argv"][run["argv"].index("--user") + 1] == "1000:1000"
    assert run["env_file"] == "REGISTRY_STORAGE_DELETE_ENABLED=true\n"
    assert run["env_file_mode"] == "0o600"
    assert not any("hush" in a or "hunter2" in a for a in run["argv"])


def test_gc_without_a_summary_line_is_an_error(fake_docker: FakeDocker) -> None:
    fake_docker.update(run_stdout="something else\n")
    assert_one_line_error(gc_cli(fake_docker), "printed no summary line")


def test_no_docker_cli_is_one_line(tmp_path: Path) -> None:
    # PATH holds only an empty folder: whether this machine has a docker CLI does not matter
    for command in (["gc"], ["logs", "registry"]):
        assert_one_line_error(
            run_cli("--stack", "dev", *command, env={"PATH": str(tmp_path)}), "docker CLI is not on PATH"
        )


# ----------------------------------------------------------------------------- logs


def test_logs_shows_docker_logs_of_project_stack_service(fake_docker: FakeDocker) -> None:
    state = fake_docker.read()
    state["containers"]["registry-mirror-dev-loki"] = {"logs": "level=info msg=ready\n"}
    fake_docker.write(state)
    result = run_cli(
        "--stack",
        "dev",
        "logs",
        "loki",
        "--tail",
        "50",
        "-f",
        "--since",
        "10m",
        "-t",
        env=fake_docker.env(),
        path=[fake_docker.bin_dir],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "level=info msg=ready\n"
    [call] = fake_docker.calls()
    assert call["argv"] == [
        "logs",
        "--follow",
        "--tail",
        "50",
        "--since",
        "10m",
        "--timestamps",
        "registry-mirror-dev-loki",
    ]


def test_logs_project_flag_changes_the_container_name(fake_docker: FakeDocker) -> None:
    run_cli(
        "--stack",
        "qa",
        "--project",
        "other",
        "logs",
        "registry",
        env=fake_docker.env(),
        path=[fake_docker.bin_dir],
    )
    assert fake_docker.calls()[0]["argv"] == ["logs", "other-qa-registry"]


def test_logs_of_a_missing_container_passes_dockers_one_line_and_exit_status(
    fake_docker: FakeDocker,
) -> None:
    result = run_cli(
        "--stack", "dev", "logs", "jaeger", env=fake_docker.env(), path=[fake_docker.bin_dir]
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "Error response from daemon: No such container: registry-mirror-dev-jaeger"
    )


def test_logs_refuses_an_unknown_service_without_calling_docker(fake_docker: FakeDocker) -> None:
    result = run_cli(
        "--stack", "dev", "logs", "mysql", env=fake_docker.env(), path=[fake_docker.bin_dir]
    )
    assert_one_line_error(result, "unknown service 'mysql'", "registry, registry-front, registry-cache, prometheus")
    assert fake_docker.calls() == []


# ------------------------------------------------------- status of services without binaries


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, str]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        code, body = self.answers.get(self.path, (404, "404 page not found"))
        payload = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@contextlib.contextmanager
def stand_in(answers: dict[str, tuple[int, str]]) -> Iterator[tuple[str, list[str]]]:
    handler = type("Handler", (_HealthHandler,), {"answers": answers, "seen": []})
    with serve_http(handler) as port:
        yield f"http://127.0.0.1:{port}", handler.seen


def test_status_asks_each_service_its_documented_health_path_and_reports_a_503() -> None:
    grafana = {"/api/health": (200, json.dumps({"database": "ok", "version": "12.2.1"}))}
    loki = {"/ready": (503, "Ingester not ready: waiting for 15s after being ready\n")}
    alloy = {"/-/ready": (200, "Alloy is ready.\n")}
    jaeger = {"/": (200, "<!doctype html><title>Jaeger UI</title>")}
    with (
        stand_in(grafana) as (g, g_seen),
        stand_in(loki) as (lo, l_seen),
        stand_in(alloy) as (a, a_seen),
        stand_in(jaeger) as (j, j_seen),
    ):
        result = run_cli(
            "--endpoint",
            f"grafana={g}",
            "--endpoint",
            f"loki={lo}",
            "--endpoint",
            f"alloy={a}",
            "--endpoint",
            f"jaeger={j}",
            "status",
            "--json",
        )
    assert (g_seen, l_seen, a_seen, j_seen) == (["/api/health"], ["/ready"], ["/-/ready"], ["/"])
    assert_one_line_error(result, "unhealthy: loki")
    services = {s["service"]: s for s in json.loads(result.stdout)["services"]}
    assert (
        services["grafana"]["healthy"]
        and services["grafana"]["detail"] == "database ok, version 12.2.1"
    )
    assert services["alloy"]["detail"] == "Alloy is ready."
    assert not services["loki"]["healthy"]
    assert services["loki"]["status"] == "503"
    assert services["loki"]["detail"].startswith("Ingester not ready")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_status_prints_values_verbatim_not_as_rich_markup() -> None:
    alloy = {"/-/ready": (503, "[bold]not ready[/bold] yet\n")}
    with stand_in(alloy) as (a, _):
        result = run_cli(
            "--endpoint",
            f"alloy={a}",
            "--endpoint",
            f"[red]odd=http://127.0.0.1:{closed_port()}",
            "status",
            env={"COLUMNS": "200"},
        )
    assert "[bold]not ready[/bold] yet" in result.stdout
    assert "[red]odd" in result.stdout
    assert_one_line_error(result, "unhealthy: alloy, [red]odd")


# ---------------------------------------------------------------------------- Makefile

TARGETS = (
    "up",
    "preview",
    "down",
    "status",
    "test",
    "catalog",
    "tags",
    "manifest",
    "metrics",
    "verify-certs",
    "gc",
    "logs",
    "help",
)


def make(*args: str, dry_run: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    command = ["make", "--no-print-directory", "-C", str(ROOT), *(["-n"] if dry_run else []), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture(scope="module")
def make_tool() -> str:
    return require_tool("make")


def test_make_help_lists_every_familiar_target(make_tool: str) -> None:
    result = make("help", dry_run=False)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(TARGETS) <= listed, set(TARGETS) - listed


def test_make_is_help_by_default(make_tool: str) -> None:
    assert make(dry_run=False).stdout == make("help", dry_run=False).stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["up", "ARGS=--yes"], "STACK=dev scripts/up.sh --yes"),
        (["up", "STACK=prod"], "STACK=prod scripts/up.sh"),
        (["test", "ARGS=-q tests/unit"], "scripts/test.sh -q tests/unit"),
        (["status"], "-m mirrorctl --stack dev status"),
        (["catalog", "STACK=prod"], "-m mirrorctl --stack prod catalog"),
        (["tags", "REPO=library/alpine"], "-m mirrorctl --stack dev tags library/alpine"),
        (["manifest", "REPO=alpine"], "-m mirrorctl --stack dev manifest alpine latest"),
        (["manifest", "REPO=alpine", "TAG=3.20"], "-m mirrorctl --stack dev manifest alpine 3.20"),
        (
            ["manifest", "REPO=alpine", "REF=sha256:abc"],
            "-m mirrorctl --stack dev manifest alpine sha256:abc",
        ),
        (["metrics"], "-m mirrorctl --stack dev metrics"),
        (["verify-certs"], "-m mirrorctl --stack dev verify-certs"),
        (["gc"], "-m mirrorctl --stack dev gc"),
        (["gc", "APPLY=1"], "-m mirrorctl --stack dev gc --apply"),
        (["logs"], "-m mirrorctl --stack dev logs registry"),
        (["logs", "SERVICE=loki", "FOLLOW=1"], "-m mirrorctl --stack dev logs loki --follow"),
        (["logs-grafana"], "-m mirrorctl --stack dev logs grafana"),
        (
            ["catalog", "MIRRORCTL_FLAGS=--url https://h:1 --ca ca.crt"],
            "-m mirrorctl --stack dev --url https://h:1 --ca ca.crt catalog",
        ),
        (["preview"], "PULUMI_COMMAND=preview STACK=dev scripts/up.sh"),
        (["down", "ARGS=--yes"], "PULUMI_COMMAND=destroy STACK=dev scripts/up.sh --yes"),
    ],
)
def test_make_targets_are_thin_wrappers(make_tool: str, args: list[str], expected: str) -> None:
    result = make(*args)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout, result.stdout


def test_make_gc_without_apply_is_a_dry_run(make_tool: str) -> None:
    assert "--apply" not in make("gc").stdout


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["tags"], "usage: make tags REPO=library/alpine"),
        (["manifest"], "usage: make manifest REPO=library/alpine [TAG=latest|REF=sha256:...]"),
    ],
)
def test_make_targets_with_a_required_variable_say_how_to_call_them(
    make_tool: str, args: list[str], usage: str
) -> None:
    result = make(*args, dry_run=False)
    assert result.returncode != 0
    assert usage in result.stdout + result.stderr


def test_make_preview_and_down_go_through_up_sh_for_its_backend_and_passphrase(
    make_tool: str,
) -> None:
    # scripts/up.sh owns the backend and passphrase set-up (tests/unit/test_up_script.py)
    for target, verb in (("preview", "preview"), ("down", "destroy")):
        assert f"PULUMI_COMMAND={verb} STACK=dev scripts/up.sh" in make(target).stdout
