"""Issue 9 item 3: the host as a user lives it, on a real dockerd and containerd.

The scripts are the RENDERED `create` and `delete` of the program's `command:local:Command`
(what `pulumi up` and `pulumi destroy` run), run with the recorded interpreter, the root CA
from the recorded `stdin`, as root, inside the engine's mount namespace: there
`/etc/docker` (so `/etc/docker/certs.d` and `/etc/docker/daemon.json`, the defaults the
program renders) is a private temp dir that dockerd really uses.

Docker Hub's names do not resolve in the namespace, so whatever a `docker pull busybox` or a
`ctr image pull docker.io/...` gets can only have come through the mirror; the mirror's
own access log shows the request.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from rehearsal.engine import Engine
from rehearsal.fakes.program import Evaluation
from rehearsal.provider import wait_healthy
from tests.engine.conftest import HEALTHY_TIMEOUT, IMAGE_REPO, IMAGE_TAG, Stack

HUB_IMAGE = "busybox"  # docker.io/library/busybox:latest: the name a user types
PULL_TIMEOUT = 90.0


def trust_command(program: Evaluation) -> dict[str, Any]:
    commands = program.of_type("command:local:Command")
    assert len(commands) == 1, [c.name for c in commands]
    return commands[0].inputs


def run_script(engine: Engine, program: Evaluation, which: str) -> subprocess.CompletedProcess[str]:
    """Run the rendered `create` (with the CA on stdin) or `delete`, as pulumi-command does."""
    command = trust_command(program)
    interpreter = command.get("interpreter") or ["/bin/sh", "-c"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
           "TMPDIR": str(engine.root)} | dict(command.get("environment") or {})
    return engine.run([*interpreter, command[which]], input=command.get("stdin") if which == "create" else None,
                      env=env, timeout=60)


def pull(engine: Engine, reference: str) -> subprocess.CompletedProcess[str]:
    return engine.docker("pull", reference, timeout=PULL_TIMEOUT, check=False)


def repo_digests(engine: Engine, reference: str) -> list[str]:
    answer = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", reference)
    digests: list[str] = json.loads(answer.stdout)
    return digests


def registry_requests(stack: Stack) -> list[dict[str, Any]]:
    """The registry container's access log: one JSON object per request it answered."""
    logs = stack.engine.docker("logs", stack.containers["registry"].id)
    entries = []
    for line in (logs.stdout + logs.stderr).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "http.request.uri" in entry and entry.get("http.response.status"):
            entries.append(entry)
    return entries


def forget_image(engine: Engine, *references: str) -> None:
    for reference in references:
        engine.docker("rmi", "--force", reference, check=False)


@pytest.fixture
def clean_trust(stack: Stack, program: Evaluation, program_with_docker_mirror: Evaluation) -> Iterator[None]:
    """Every test starts and ends with no trust installed (the remove scripts are
    idempotent: what is not there is fine)."""
    ca_dir = stack.engine.certs_d / stack.mirror_host
    assert not ca_dir.exists(), f"a test left {ca_dir} behind"
    yield
    for evaluation in (program_with_docker_mirror, program):
        run_script(stack.engine, evaluation, "delete")
    assert not ca_dir.exists()


def test_pull_is_refused_as_unknown_authority_until_the_install_script_trusts_the_root(
    stack: Stack, program: Evaluation, clean_trust: None
) -> None:
    engine = stack.engine
    reference = f"{stack.mirror_host}/{IMAGE_REPO}:{IMAGE_TAG}"
    forget_image(engine, reference)
    before = pull(engine, reference)
    assert before.returncode != 0
    assert "x509" in before.stderr and "unknown authority" in before.stderr, before.stderr
    print(f"before the install: {before.stderr.strip()}")

    installed = run_script(engine, program, "create")
    ca_file = engine.certs_d / stack.mirror_host / "ca.crt"
    assert ca_file.read_text() == program.outputs["caCertPem"], installed.stdout + installed.stderr
    try:
        after = pull(engine, reference)
        assert after.returncode == 0, after.stderr
        # the digest Docker recorded is the manifest the upstream holds, byte for byte
        expected = f"{stack.mirror_host}/{IMAGE_REPO}@{stack.upstream.image.manifest_digest}"
        assert repo_digests(engine, reference) == [expected]
        print(f"pulled through the mirror: {expected}")
    finally:
        forget_image(engine, reference)
        removed = run_script(engine, program, "delete")
    assert not (engine.certs_d / stack.mirror_host).exists(), removed.stdout + removed.stderr


def test_docker_hub_pull_is_served_by_the_mirror_after_install_and_reload_and_remove_restores_daemon_json(
    stack: Stack, program: Evaluation, program_with_docker_mirror: Evaluation, clean_trust: None
) -> None:
    engine, evaluation = stack.engine, program_with_docker_mirror
    # the same PKI and registry container as the running stack
    assert evaluation.outputs["caCertPem"] == program.outputs["caCertPem"]
    assert evaluation.uploads("registry") == program.uploads("registry")
    original = engine.daemon_json.read_bytes()
    forget_image(engine, HUB_IMAGE)

    # positive control: without the mirror, Docker Hub's name is unreachable from here
    unreachable = pull(engine, HUB_IMAGE)
    assert unreachable.returncode != 0, unreachable.stdout

    run_script(engine, evaluation, "create")
    assert json.loads(engine.daemon_json.read_text())["registry-mirrors"] == [f"https://{stack.mirror_host}"]
    # keys the user had stay as they were
    assert {k: v for k, v in json.loads(engine.daemon_json.read_text()).items() if k != "registry-mirrors"} == \
        json.loads(original)
    engine.reload_dockerd()
    assert engine.info()["RegistryConfig"]["Mirrors"] == [f"https://{stack.mirror_host}/"]

    seen_before = len([e for e in registry_requests(stack) if e["http.request.uri"].startswith(f"/v2/{IMAGE_REPO}/")])
    try:
        served = pull(engine, HUB_IMAGE)
        assert served.returncode == 0, served.stderr
        assert repo_digests(engine, HUB_IMAGE) == [f"busybox@{stack.upstream.image.manifest_digest}"]
        requests = [e for e in registry_requests(stack) if e["http.request.uri"].startswith(f"/v2/{IMAGE_REPO}/")]
        new = requests[seen_before:]
        assert any(e["http.request.uri"] == f"/v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}"
                   and e["http.request.useragent"].startswith("docker/") for e in new), new
    finally:
        forget_image(engine, HUB_IMAGE)
        run_script(engine, evaluation, "delete")
    assert engine.daemon_json.read_bytes() == original
    assert not (engine.certs_d / stack.mirror_host).exists()
    # no backup left behind; what may stay: the (empty) certs.d, and the merger's lock file,
    # kept on purpose (trust/daemon_json.py: deleting a lock another stack waits on is unsafe)
    left = {p.name for p in engine.etc_docker.iterdir()}
    assert left <= {"daemon.json", "certs.d", "daemon.json.registry-mirror.lock"}, left
    print(f"left in /etc/docker after the remove script: {sorted(left)}")

    # dropping a mirror needs a restart (a HUP keeps it); the stack comes back by itself
    engine.reload_dockerd()
    assert engine.info()["RegistryConfig"]["Mirrors"] == [f"https://{stack.mirror_host}/"]
    engine.restart_dockerd()
    assert engine.info()["RegistryConfig"]["Mirrors"] == []
    for created in stack.containers.values():
        wait_healthy(engine, created.id, HEALTHY_TIMEOUT)


def test_ctr_pulls_through_the_mirror_with_the_programs_containerd_hosts_toml(
    stack: Stack, program: Evaluation, clean_trust: None
) -> None:
    engine = stack.engine
    hosts_dir = engine.root / "containerd-certs.d"
    (hosts_dir / "docker.io").mkdir(parents=True, exist_ok=True)
    (hosts_dir / "docker.io" / "hosts.toml").write_text(program.outputs["containerdHostsToml"])
    reference = f"docker.io/{IMAGE_REPO}:{IMAGE_TAG}"

    # positive control: without the hosts dir, containerd goes to Docker Hub and fails
    direct = engine.ctr("image", "pull", reference, timeout=PULL_TIMEOUT, check=False)
    assert direct.returncode != 0, direct.stdout

    # the output's `ca` is the file the install script writes (<certs.d>/<host>/ca.crt)
    run_script(engine, program, "create")
    try:
        seen_before = len(registry_requests(stack))
        pulled = engine.ctr("image", "pull", "--hosts-dir", str(hosts_dir), reference,
                            timeout=PULL_TIMEOUT, check=False)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        listed = engine.ctr("image", "ls").stdout
        line = next(row for row in listed.splitlines() if row.startswith(reference))
        assert stack.upstream.image.manifest_digest in line.split(), listed
        new = registry_requests(stack)[seen_before:]
        # containerd tells a mirror which upstream it stands for (containerd docs/hosts.md)
        assert any(e["http.request.uri"].startswith(f"/v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}?ns=docker.io")
                   and e["http.request.useragent"].startswith("containerd/") for e in new), new
    finally:
        engine.ctr("image", "rm", reference, check=False)
        run_script(engine, program, "delete")
