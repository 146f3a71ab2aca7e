"""Access control on distribution 3.1.1 with skopeo: the program's htpasswd file and client-CA
config, uploaded exactly as the program registers them, served by the real registry.

- `registryUsers`: anonymous and wrong-password pulls get 401; the right user pulls.
- `requireClientCert`: a client without the stack's client certificate fails the TLS
  handshake; with `client.cert` (leaf + intermediate) and `client.key` in its cert dir (the
  layout Docker reads in certs.d) it pulls.
The same checks with the real Docker client run on the real engine (tests/engine/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.oci import ImageInfo, make_oci_image, read_manifest
from rehearsal.registry_proc import RehearsalMirror, SkopeoError, _skopeo

USERS = {"alice": "correct-horse-battery", "bob": "staple-horse-battery-9"}
REPO, TAG = "library/guarded", "1.0"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageInfo]:
    directory = tmp_path_factory.mktemp("oci") / "image"
    return directory, make_oci_image(directory, [30_000, 5_000], seed=23, tag=TAG)


def _cert_dir(path: Path, evaluation: Evaluation, *, client: bool,
              client_cert_output: str = "clientCertChainPem") -> dict[str, str]:
    """A cert dir as Docker's certs.d entry: ca.crt, and with `client` client.cert (the stack
    output `client_cert_output`) and client.key."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "ca.crt").write_text(evaluation.outputs["caCertPem"])
    if client:
        (path / "client.cert").write_text(evaluation.outputs[client_cert_output])
        (path / "client.key").write_text(evaluation.outputs["clientKeyPem"])
        (path / "client.key").chmod(0o600)
    empty = path.parent / f"{path.name}-no-system-trust"
    empty.mkdir(exist_ok=True)
    (empty / "none.pem").write_text("")
    return {"SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}


def _pull(mirror: RehearsalMirror, tmp: Path, cert_dir: Path, env: dict[str, str], creds: list[str]) -> Path:
    dest = tmp / "pulled"
    _skopeo(["copy", "--quiet", "--src-tls-verify=true", f"--src-cert-dir={cert_dir}", *creds,
             f"docker://{mirror.host_port}/{REPO}:{TAG}", f"oci:{dest}:{TAG}"],
            tmp=tmp / "skopeo", extra_env=env)
    return dest


@pytest.fixture(scope="module")
def users_mirror(image, tmp_path_factory):
    evaluation = evaluate({"hostname": "mirror.test"}, secrets={"registryUsers": json.dumps(USERS)})
    with RehearsalMirror.start(evaluation, tmp_path_factory.mktemp("users"),
                               images=[(image[0], f"{REPO}:{TAG}")]) as mirror:
        yield evaluation, mirror


def test_an_anonymous_pull_is_refused_with_401(users_mirror, tmp_path):
    evaluation, mirror = users_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=False)
    with pytest.raises(SkopeoError) as err:
        _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-no-creds"])
    assert "unauthorized: authentication required" in err.value.stderr
    assert f'"GET /v2/{REPO}/manifests/{TAG} HTTP/1.1" 401' in mirror.registry.log()


def test_a_wrong_password_is_refused_with_401(users_mirror, tmp_path):
    evaluation, mirror = users_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=False)
    with pytest.raises(SkopeoError) as err:
        _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-creds", "alice:not-the-password"])
    assert "unauthorized: authentication required" in err.value.stderr
    assert f'"GET /v2/{REPO}/manifests/{TAG} HTTP/1.1" 401' in mirror.registry.log()
    assert "not-the-password" not in mirror.registry.log()


@pytest.mark.parametrize("user", sorted(USERS))
def test_each_configured_user_pulls_the_image(users_mirror, image, tmp_path, user):
    evaluation, mirror = users_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=False)
    pulled = _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-creds", f"{user}:{USERS[user]}"])
    manifest = read_manifest(pulled, TAG)
    assert [layer["digest"] for layer in manifest["layers"]] == list(image[1].layer_digests)


@pytest.fixture(scope="module")
def mtls_mirror(image, tmp_path_factory):
    evaluation = evaluate({"hostname": "mirror.test", "requireClientCert": "true"})
    with RehearsalMirror.start(evaluation, tmp_path_factory.mktemp("mtls"), probe_debug=True,
                               images=[(image[0], f"{REPO}:{TAG}")]) as mirror:
        yield evaluation, mirror


def test_without_the_client_certificate_the_tls_handshake_is_refused(mtls_mirror, tmp_path):
    evaluation, mirror = mtls_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=False)
    with pytest.raises(SkopeoError) as err:
        _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-no-creds"])
    assert "remote error: tls: certificate required" in err.value.stderr


def test_with_the_client_certificate_in_the_cert_dir_the_image_pulls(mtls_mirror, image, tmp_path):
    evaluation, mirror = mtls_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=True)
    pulled = _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-no-creds"])
    assert [layer["digest"] for layer in read_manifest(pulled, TAG)["layers"]] == list(image[1].layer_digests)


def test_the_client_certificate_output_alone_is_refused_and_the_chain_output_is_what_a_client_sends(
        mtls_mirror, tmp_path):
    """Issue 20 finding 7: `clientCertPem` is the leaf; the registry trusts only the root, so a
    client sending the leaf without the intermediate fails the handshake. `clientCertChainPem`,
    which the README points mTLS clients at, pulls (the test above)."""
    evaluation, mirror = mtls_mirror
    env = _cert_dir(tmp_path / "certs", evaluation, client=True, client_cert_output="clientCertPem")
    with pytest.raises(SkopeoError) as err:
        _pull(mirror, tmp_path, tmp_path / "certs", env, ["--src-no-creds"])
    # Go's TLS client (skopeo's, Docker's) sends a certificate only when its chain reaches a CA
    # the server names in its request (the root): with the leaf alone it sends none
    assert "remote error: tls: certificate required" in err.value.stderr, err.value.stderr
