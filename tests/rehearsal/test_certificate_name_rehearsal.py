"""Rehearsal: a client that trusts only the root CA is refused by a name the certificate lacks.

The program (under Pulumi's mocks, its PKI made for real by the TLS fake) is evaluated with
hostname `mirror.test`; its registry container runs in registry 3.1.1 with the
server certificate and key the program uploads (`RehearsalMirror`). Three real clients, each
trusting ONLY the stack output `caCertPem`, reach that same listener by two names:

- `mirror.test`, a name in the certificate: the handshake verifies (positive control);
- `wrong.test`, a name NOT in the certificate: the client refuses the server for the name.

Clients: OpenSSL's `s_client -verify_hostname`, curl (libcurl + OpenSSL, name given by
`--resolve`) and skopeo (Go's crypto/x509, as Docker and containerd verify a mirror; the
name reaches the loopback listener through a local CONNECT proxy, since nothing resolves
`wrong.test`). Only the name differs between each refused and accepted attempt.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from rehearsal.fakes.program import evaluate
from rehearsal.http_stub import serve_http
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import RehearsalMirror, clean_env
from tests.conftest import require_tool

RIGHT_NAME = "mirror.test"  # the configured hostname: the certificate's CN and first DNS SAN
WRONG_NAME = "wrong.test"
REPO_TAG = "library/names:1.0"
CLIENT_TIMEOUT = 60
RELAY_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RehearsalMirror]:
    evaluation = evaluate({"hostname": RIGHT_NAME}, stack="dev")
    image = tmp_path_factory.mktemp("oci") / "image"
    make_oci_image(image, [10_000], seed=3, tag="1.0")
    with RehearsalMirror.start(evaluation, tmp_path_factory.mktemp("names"), images=[(image, REPO_TAG)]) as running:
        yield running


def test_the_wrong_name_is_not_in_the_certificate_and_the_right_one_is(mirror: RehearsalMirror, tmp_path: Path):
    """Precondition of the refusals below, read by openssl from the certificate the registry serves."""
    openssl = require_tool("openssl")
    served = subprocess.run(
        [openssl, "s_client", "-connect", mirror.host_port, "-servername", RIGHT_NAME, "-showcerts"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip
    leaf = served.stdout[served.stdout.index("-----BEGIN CERTIFICATE-----") :]
    leaf = leaf[: leaf.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    (tmp_path / "leaf.pem").write_text(leaf)
    sans = subprocess.run(
        [openssl, "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=True,
    ).stdout  # fmt: skip
    assert f"DNS:{RIGHT_NAME}" in sans, sans
    assert WRONG_NAME not in sans, sans


# ---------------------------------------------------------------------------- openssl s_client


def s_client(mirror: RehearsalMirror, name: str) -> subprocess.CompletedProcess[str]:
    openssl = require_tool("openssl")
    return subprocess.run(
        [openssl, "s_client", "-connect", mirror.host_port, "-servername", name, "-verify_hostname", name,
         "-CAfile", str(mirror.ca_file), "-no-CApath", "-no-CAstore", "-verify_return_error", "-brief"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip


def test_openssl_refuses_the_mirror_by_a_name_not_in_its_certificate(mirror: RehearsalMirror):
    right = s_client(mirror, RIGHT_NAME)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "Verification: OK" in right.stdout + right.stderr

    wrong = s_client(mirror, WRONG_NAME)
    output = wrong.stdout + wrong.stderr
    assert wrong.returncode != 0, output
    assert "hostname mismatch" in output, output  # X509_V_ERR_HOSTNAME_MISMATCH, not a chain error


# ---------------------------------------------------------------------------- curl


def curl(mirror: RehearsalMirror, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("curl")
    no_ca_dir = tmp_path / "no-ca-dir"
    no_ca_dir.mkdir(exist_ok=True)
    return subprocess.run(
        [binary, "--silent", "--show-error", "--noproxy", "*", "--output", "/dev/null",
         "--write-out", "%{http_code}", "--cacert", str(mirror.ca_file), "--capath", str(no_ca_dir),
         "--resolve", f"{name}:{mirror.port}:127.0.0.1", f"https://{name}:{mirror.port}/v2/"],
        capture_output=True, text=True, env=clean_env({"HOME": str(tmp_path)}), timeout=CLIENT_TIMEOUT,
    )  # fmt: skip


def test_curl_refuses_the_mirror_by_a_name_not_in_its_certificate(mirror: RehearsalMirror, tmp_path: Path):
    right = curl(mirror, RIGHT_NAME, tmp_path)
    assert right.returncode == 0, right.stderr
    assert right.stdout == "200"

    wrong = curl(mirror, WRONG_NAME, tmp_path)
    assert wrong.returncode == 60, wrong.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert f"no alternative certificate subject name matches target host name '{WRONG_NAME}'" in wrong.stderr


# ---------------------------------------------------------------------------- skopeo (Go)


def connect_proxy(port: int, asked: list[str]) -> type[BaseHTTPRequestHandler]:
    """A CONNECT proxy that tunnels every name to the mirror's loopback port; records the names."""

    class Tunnel(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:  # noqa: N802 (the HTTP method name)
            asked.append(self.path)
            with socket.create_connection(("127.0.0.1", port), timeout=RELAY_TIMEOUT) as upstream:
                self.send_response(200, "Connection established")
                self.end_headers()
                self._relay(self.connection, upstream)

        @staticmethod
        def _relay(client: socket.socket, upstream: socket.socket) -> None:
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], RELAY_TIMEOUT)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
            pass

    return Tunnel


def skopeo_inspect(mirror: RehearsalMirror, name: str, proxy_port: int, tmp: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("skopeo")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "auth.json").write_text('{"auths": {}}')
    empty = tmp / "empty-trust"
    empty.mkdir(exist_ok=True)
    (empty / "none.pem").write_text("")
    env = clean_env(
        {
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "REGISTRY_AUTH_FILE": str(tmp / "auth.json"),
            # Go's system pool reads these: empty, so the only anchor is --cert-dir's ca.crt
            "SSL_CERT_FILE": str(empty / "none.pem"),
            "SSL_CERT_DIR": str(empty),
            "HTTPS_PROXY": f"http://127.0.0.1:{proxy_port}",
        }
    )
    return subprocess.run(
        [binary, "--insecure-policy", "inspect", "--raw", "--no-creds", "--tls-verify=true",
         f"--cert-dir={mirror.ca_dir}", f"docker://{name}:{mirror.port}/{REPO_TAG}"],
        capture_output=True, text=True, env=env, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip


def test_skopeo_refuses_the_mirror_by_a_name_not_in_its_certificate(mirror: RehearsalMirror, tmp_path: Path):
    assert sorted(p.name for p in mirror.ca_dir.iterdir()) == ["ca.crt"]
    asked: list[str] = []
    with serve_http(connect_proxy(mirror.port, asked)) as proxy_port:
        right = skopeo_inspect(mirror, RIGHT_NAME, proxy_port, tmp_path / "right")
        wrong = skopeo_inspect(mirror, WRONG_NAME, proxy_port, tmp_path / "wrong")
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["schemaVersion"] == 2  # the manifest, through the mirror

    assert wrong.returncode != 0, wrong.stdout
    assert "x509: certificate is valid for" in wrong.stderr, wrong.stderr
    assert f"not {WRONG_NAME}" in wrong.stderr, wrong.stderr
    # both attempts reached the same listener through the tunnel, by their own names
    assert f"{RIGHT_NAME}:{mirror.port}" in asked and f"{WRONG_NAME}:{mirror.port}" in asked
