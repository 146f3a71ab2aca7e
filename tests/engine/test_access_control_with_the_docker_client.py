"""Issue 10: the program's access control with the real Docker client and dockerd.

The registries are the program's own, made from the inputs it records for two more stacks
(tests/engine/conftest.py `users_stack`: `registryUsers` set as a secret, registry on
mirror.test:6100; `client_cert_stack`: `requireClientCert: true`, on mirror.test:6200), with
only `proxy.remoteurl` pointed at the local upstream. Trust is installed by each program's own
rendered install script (the recorded `create` with the recorded `stdin`) and removed by its
remove script. The docker CLI runs with a private `DOCKER_CONFIG` (its own config.json: the
credentials `docker login` stores), and passwords reach it on stdin only.

1. `registryUsers`: an anonymous pull is refused, a login with a wrong password fails, a
   login as a configured user pulls the upstream's image.
2. `requireClientCert`: with only `ca.crt` in certs.d the TLS handshake is refused; after the
   install script wrote `ca.crt`, `client.cert` and `client.key` the pull succeeds; the
   remove script takes all three away.
3. Why preview refuses `configureDockerMirror` with `registryUsers` (moby/moby#30880): set up
   by hand, dockerd sends its mirror no credentials (even with `docker login` done for it),
   gets 401 and silently goes to Docker Hub instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehearsal.engine import Engine, docker_cli
from rehearsal.fakes.program import Evaluation
from rehearsal.tools import require_tool
from tests.engine.conftest import IMAGE_REPO, IMAGE_TAG, USERS, Stack
from tests.engine.test_the_host_as_a_user_lives_it import (
    HUB_IMAGE,
    PULL_TIMEOUT,
    forget_image,
    pull,
    repo_digests,
    run_script,
)

USER = "alice"
WRONG_PASSWORD = "not-alices-password"


def client(engine: Engine, config: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The docker CLI with its own DOCKER_CONFIG (the credentials `docker login` stores)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin", "LANG": "C.UTF-8",
           "DOCKER_CONFIG": str(config), "HOME": str(config)}
    return engine.run([docker_cli(), "-H", f"unix://{engine.docker_socket}", *args], input=input, env=env,
                      timeout=PULL_TIMEOUT, check=False)


def login(engine: Engine, config: Path, host: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    """`docker login --password-stdin`: the password is never in argv."""
    return client(engine, config, "login", "--username", user, "--password-stdin", host, input=password + "\n")


def registry_log(stack: Stack, since: float | None = None) -> list[str]:
    """The registry's log lines (JSON from the app, combined log format from the access
    log), those written at or after `since` (a time.time()) when given."""
    args = ["logs", *(["--since", f"{since:.6f}"] if since is not None else []), stack.containers["registry"].id]
    logs = stack.engine.docker(*args)
    return (logs.stdout + logs.stderr).splitlines()


def access_lines(lines: list[str], request: str) -> list[str]:
    """The registry's access-log lines (combined log format) for `request` ("GET /v2/...")."""
    return [line for line in lines if f'"{request} HTTP/1.1"' in line]


def assert_refused_without_credentials(lines: list[str]) -> None:
    """The registry answered GET /v2/ with 401 to a request that carried no Authorization
    header (distribution's htpasswd says "invalid authorization credential" for a missing
    one, "user failed to authenticate" and "authentication failure" for a wrong one) and
    knew no user."""
    assert any(" 401 " in line for line in access_lines(lines, "GET /v2/")), lines
    assert any("invalid authorization credential" in line for line in lines), lines
    assert not any(word in line for line in lines for word in (
        "auth.user.name", '"username"', "user failed to authenticate", "authentication failure")), lines


def stored_auths(config: Path) -> dict[str, object]:
    """The registries `docker login` stored credentials for in this DOCKER_CONFIG."""
    path = config / "config.json"
    auths: dict[str, object] = json.loads(path.read_text()).get("auths", {}) if path.exists() else {}
    return auths


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    return config


@pytest.fixture
def no_trust_left(users_stack: Stack, client_cert_stack: Stack, program_with_users: Evaluation,
                  program_with_client_cert: Evaluation) -> Iterator[None]:
    """Each test starts and ends without these stacks' certs.d entries (the remove scripts
    are idempotent)."""
    dirs = [stack.engine.certs_d / stack.mirror_host for stack in (users_stack, client_cert_stack)]
    assert not any(d.exists() for d in dirs), dirs
    yield
    for evaluation in (program_with_users, program_with_client_cert):
        run_script(users_stack.engine, evaluation, "delete")
    assert not any(d.exists() for d in dirs), dirs


def test_with_registry_users_docker_pulls_only_after_logging_in_as_a_configured_user(
    users_stack: Stack, program_with_users: Evaluation, docker_config: Path, no_trust_left: None
) -> None:
    stack, engine = users_stack, users_stack.engine
    host = stack.mirror_host
    reference = f"{host}/{IMAGE_REPO}:{IMAGE_TAG}"
    forget_image(engine, reference)
    installed = run_script(engine, program_with_users, "create")
    ca_dir = engine.certs_d / host
    assert sorted(p.name for p in ca_dir.iterdir()) == [".registry-mirror-users.installed", "ca.crt"], \
        installed.stdout + installed.stderr
    assert (ca_dir / "ca.crt").read_text() == program_with_users.outputs["caCertPem"]
    try:
        began = time.time()
        anonymous = client(engine, docker_config, "pull", reference)
        print(f"anonymous pull: {anonymous.stderr.strip()}")
        assert anonymous.returncode != 0
        # dockerd's own refusal: the registry answered GET /v2/ with a Basic challenge and
        # dockerd, with no credentials for it, did not send the manifest request at all
        assert anonymous.stderr.strip() == (
            f'Error response from daemon: Head "https://{host}/v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}": '
            "no basic auth credentials")
        seen = registry_log(stack, since=began)
        assert_refused_without_credentials(seen)
        assert not access_lines(seen, f"HEAD /v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}"), seen

        began = time.time()
        wrong = login(engine, docker_config, host, USER, WRONG_PASSWORD)
        print(f"wrong password: {wrong.stderr.strip()}")
        assert wrong.returncode != 0
        assert wrong.stderr.strip() == (
            f"Error response from daemon: login attempt to https://{host}/v2/ failed with status: 401 Unauthorized")
        seen = registry_log(stack, since=began)
        # the registry checked alice's password against her hash and refused it
        assert any('"msg":"user failed to authenticate"' in line and f'"username":"{USER}"' in line
                   and "hashedPassword is not the hash of the given password" in line for line in seen), seen
        assert any("authentication failure" in line for line in seen), seen
        assert any(" 401 " in line for line in access_lines(seen, "GET /v2/")), seen
        assert stored_auths(docker_config) == {}

        right = login(engine, docker_config, host, USER, USERS[USER])
        assert right.returncode == 0, right.stderr
        assert "Login Succeeded" in right.stdout
        assert list(stored_auths(docker_config)) == [host]

        began = time.time()
        pulled = client(engine, docker_config, "pull", reference)
        assert pulled.returncode == 0, pulled.stderr
        expected = f"{host}/{IMAGE_REPO}@{stack.upstream.image.manifest_digest}"
        assert repo_digests(engine, reference) == [expected]
        print(f"pulled as {USER}: {expected}")
        seen = registry_log(stack, since=began)
        # the registry served the manifest to alice
        assert any(f'"auth.user.name":"{USER}"' in line and f"/v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}" in line
                   and '"http.response.status":200' in line for line in seen), seen
        assert not any(USERS[USER] in line or WRONG_PASSWORD in line for line in registry_log(stack))
    finally:
        forget_image(engine, reference)
        client(engine, docker_config, "logout", host)
        run_script(engine, program_with_users, "delete")
    assert not ca_dir.exists()


def test_with_require_client_cert_docker_pulls_only_with_the_client_certificate_the_install_script_writes(
    client_cert_stack: Stack, program_with_client_cert: Evaluation, no_trust_left: None
) -> None:
    stack, engine, evaluation = client_cert_stack, client_cert_stack.engine, program_with_client_cert
    host = stack.mirror_host
    reference = f"{host}/{IMAGE_REPO}:{IMAGE_TAG}"
    ca_dir = engine.certs_d / host
    forget_image(engine, reference)

    # the root CA alone: the server is trusted, but Docker has no certificate to present
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_text(evaluation.outputs["caCertPem"])
    try:
        refused = pull(engine, reference)
    finally:
        shutil.rmtree(ca_dir)
    print(f"with ca.crt only: {refused.stderr.strip()}")
    assert refused.returncode != 0
    # the registry's handshake alert (TLS 1.3: alert 116, certificate_required), as dockerd
    # reports it; Go's HTTP client sometimes names the read loop that saw it in between
    stderr = refused.stderr.strip()
    assert stderr.startswith(f'Error response from daemon: Get "https://{host}/v2/": '), stderr
    assert stderr.endswith("remote error: tls: certificate required"), stderr

    installed = run_script(engine, evaluation, "create")
    try:
        assert sorted(p.name for p in ca_dir.iterdir()) == [
            ".registry-mirror-mtls.installed", "ca.crt", "client.cert", "client.key"], \
            installed.stdout + installed.stderr
        assert (ca_dir / "ca.crt").read_text() == evaluation.outputs["caCertPem"]
        chain = (ca_dir / "client.cert").read_text()
        assert re.findall(r"-----BEGIN CERTIFICATE-----", chain) == ["-----BEGIN CERTIFICATE-----"] * 2
        assert evaluation.outputs["clientCertPem"].strip() in chain
        assert (ca_dir / "client.key").read_text().strip() == evaluation.outputs["clientKeyPem"].strip()
        assert stat.S_IMODE((ca_dir / "client.key").stat().st_mode) == 0o600

        pulled = pull(engine, reference)
        assert pulled.returncode == 0, pulled.stderr
        expected = f"{host}/{IMAGE_REPO}@{stack.upstream.image.manifest_digest}"
        assert repo_digests(engine, reference) == [expected]
        print(f"pulled with the client certificate: {expected}")
    finally:
        forget_image(engine, reference)
        removed = run_script(engine, evaluation, "delete")
    for name in ("ca.crt", "client.cert", "client.key"):
        assert not (ca_dir / name).exists(), removed.stdout + removed.stderr
    assert not ca_dir.exists()


def _users_own_pki(directory: Path) -> dict[str, bytes]:
    """What a user may already keep in certs.d/<host>:<port>/: a corporate CA and a client
    pair it signed (openssl, P-256), as the bytes of ca.crt, client.cert and client.key."""
    openssl = require_tool("openssl")
    d = directory
    for argv in (
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         f"{d}/corp.key", "-out", f"{d}/corp.crt", "-days", "2", "-subj", "/CN=Corporate Root CA"],
        ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         f"{d}/client.key", "-out", f"{d}/client.csr", "-subj", "/CN=corporate client"],
        ["x509", "-req", "-in", f"{d}/client.csr", "-CA", f"{d}/corp.crt", "-CAkey", f"{d}/corp.key",
         "-CAcreateserial", "-days", "2", "-out", f"{d}/client.cert"],
    ):
        subprocess.run([openssl, *argv], check=True, capture_output=True, timeout=30)
    return {"ca.crt": (d / "corp.crt").read_bytes(), "client.cert": (d / "client.cert").read_bytes(),
            "client.key": (d / "client.key").read_bytes()}


def test_a_users_own_ca_and_client_pair_in_certs_d_are_set_aside_for_the_stack_and_come_back_on_remove(
    client_cert_stack: Stack, program_with_client_cert: Evaluation, no_trust_left: None, tmp_path: Path
) -> None:
    """Finding 3 of issue 20 with the real Docker client: the user's corporate CA and client
    pair sit in the very directory the stack trusts. The install keeps them aside and Docker
    pulls with the stack's files (the kept copies, a lone `client.key.*.bak` among them, do
    not upset its certs.d reader); the remove puts the user's bytes and modes back, and
    Docker is where it was before (the stack's registry untrusted again)."""
    stack, engine, evaluation = client_cert_stack, client_cert_stack.engine, program_with_client_cert
    host = stack.mirror_host
    reference = f"{host}/{IMAGE_REPO}:{IMAGE_TAG}"
    ca_dir = engine.certs_d / host
    forget_image(engine, reference)
    own = _users_own_pki(tmp_path)
    ca_dir.mkdir(parents=True)
    for name, data in own.items():
        (ca_dir / name).write_bytes(data)
    (ca_dir / "client.key").chmod(0o600)
    (ca_dir / "ca.crt").chmod(0o640)
    before = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in ca_dir.iterdir()}
    try:
        untrusted = pull(engine, reference)
        assert untrusted.returncode != 0 and "x509" in untrusted.stderr, untrusted.stderr

        installed = run_script(engine, evaluation, "create")
        assert installed.returncode == 0, installed.stderr
        kept = {p.name: p.read_bytes() for p in ca_dir.iterdir() if p.name.endswith(".bak")}
        assert kept == {f"{name}.registry-mirror-mtls.bak": data for name, data in own.items()}
        assert (ca_dir / "ca.crt").read_text() == evaluation.outputs["caCertPem"]
        pulled = pull(engine, reference)
        assert pulled.returncode == 0, pulled.stderr
        assert repo_digests(engine, reference) == [f"{host}/{IMAGE_REPO}@{stack.upstream.image.manifest_digest}"]
        forget_image(engine, reference)

        removed = run_script(engine, evaluation, "delete")
        assert removed.returncode == 0, removed.stderr
        assert {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in ca_dir.iterdir()} == before
        again = pull(engine, reference)
        assert again.returncode != 0 and "x509" in again.stderr, again.stderr
    finally:
        forget_image(engine, reference)
        shutil.rmtree(ca_dir, ignore_errors=True)


def test_a_registry_mirror_with_users_gets_no_credentials_and_dockerd_falls_back_to_docker_hub(
    users_stack: Stack, program_with_users: Evaluation, docker_config: Path, no_trust_left: None
) -> None:
    """moby/moby#30880 on the real engine: the combination preview refuses, set up by hand."""
    stack, engine = users_stack, users_stack.engine
    host = stack.mirror_host
    original = engine.daemon_json.read_bytes()
    forget_image(engine, HUB_IMAGE)
    run_script(engine, program_with_users, "create")
    try:
        logged_in = login(engine, docker_config, host, USER, USERS[USER])
        assert logged_in.returncode == 0, logged_in.stderr
        engine.daemon_json.write_text(json.dumps(
            json.loads(original) | {"registry-mirrors": [f"https://{host}"]}, indent=2) + "\n")
        engine.reload_dockerd()
        assert engine.info()["RegistryConfig"]["Mirrors"] == [f"https://{host}/"]

        began = time.time()
        fell_back = client(engine, docker_config, "pull", HUB_IMAGE)
        print(f"docker pull {HUB_IMAGE} with the mirror: {fell_back.stderr.strip()}")
        new = registry_log(stack, since=began)
        # dockerd did ask the mirror, sent no credentials although `docker login` stored
        # some for it, was refused, and never asked for the manifest
        assert list(stored_auths(docker_config)) == [host]
        assert_refused_without_credentials(new)
        assert not [line for line in new if f"/v2/{IMAGE_REPO}/" in line], new
        # ... then went to Docker Hub, whose name does not resolve here
        assert fell_back.returncode != 0
        assert fell_back.stderr.startswith(
            'Error response from daemon: Get "https://registry-1.docker.io/v2/": '
            "dial tcp: lookup registry-1.docker.io on 127.0.0.1:53"), fell_back.stderr
    finally:
        forget_image(engine, HUB_IMAGE)
        client(engine, docker_config, "logout", host)
        # a HUP only replaces the mirrors when the key is present: an empty list drops ours
        engine.daemon_json.write_text(json.dumps(json.loads(original) | {"registry-mirrors": []}) + "\n")
        engine.reload_dockerd()
        engine.daemon_json.write_bytes(original)
        run_script(engine, program_with_users, "delete")
    assert engine.info()["RegistryConfig"]["Mirrors"] == []
    assert engine.daemon_json.read_bytes() == original
