"""mirrorctl against hostile or odd input (issue 11, item 5).

- Text from the network (registry names, tags, headers and error bodies; Prometheus labels
  and errors; Docker and Pulumi CLI output) is printed with its control characters (C0,
  DEL, C1) and bidi controls escaped, in plain lines, rich tables and error lines; JSON
  output escapes them itself.
- A password in a URL the operator gave never reaches stdout or stderr.
- A binary or non-PEM `--ca`, a malformed URL, and odd Prometheus or registry answers end in
  one line `mirrorctl: ...` and a non-zero exit.

The registry is a TLS stand-in on loopback (its own CA, trusted through `--ca`), Prometheus
and the other services plain HTTP stand-ins; every command is a real `python -m mirrorctl`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import ipaddress
import json
import os
import pty
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirrorctl.safe import escape, redact, redact_url
from tests.unit.test_mirrorctl import (
    ROOT,
    FakeDocker,
    assert_one_line_error,
    closed_port,
    install_fake_pulumi,
    outputs_document,
    run_cli,
    stand_in,
)

ESC = "\x1b"
SECRET = "s3cr3t-Pa55"

# --------------------------------------------------------------------- stand-in servers

Answer = tuple[int, list[tuple[str, str]], bytes]


def json_answer(document: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Answer:
    return status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(document).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET <path> (query ignored) from `answers`; 404 for anything else.

    `seen` records (path with query, Authorization header or "") of every request.
    """

    answers: dict[str, Answer] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        status, headers, body = self.answers.get(path, (404, [], b"404 page not found"))
        self.send_response(status)
        for name, value in headers:  # latin-1: a header can carry bytes 0x80-0x9f (C1)
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    context: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A root CA and a leaf for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in Root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = directory / "leaf.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return Tls(ca_file, context)


@contextlib.contextmanager
def serve(
    answers: dict[str, Answer], context: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A stand-in on 127.0.0.1 (HTTPS when `context` is given): its base URL, what was asked."""
    handler = type("Handler", (_Handler,), {"answers": answers, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scheme = "https" if context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def registry(tls: Tls, answers: dict[str, Answer]) -> Iterator[str]:
    with serve(answers, tls.context) as (url, _):
        yield url


def registry_cli(tls: Tls, url: str, *args: str) -> Any:
    return run_cli("--url", url, "--ca", str(tls.ca_file), *args)


def with_password(url: str, user: str = "admin") -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{SECRET}@{rest}"


def assert_no_raw_controls(result: Any) -> None:
    for stream in (result.stdout, result.stderr):
        assert ESC not in stream and "\x9b" not in stream and "\u202e" not in stream, stream


def assert_secret_hidden(result: Any) -> None:
    assert SECRET not in result.stdout and SECRET not in result.stderr, result


@pytest.fixture
def docker(tmp_path: Path) -> FakeDocker:
    return FakeDocker(tmp_path / "docker")


# ------------------------------------------------------------------- the two functions


ESCAPED = {
    **{chr(c): f"\\x{c:02x}" for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)},
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\x7f": "\\x7f",
    **{chr(c): f"\\x{c:02x}" for c in range(0x80, 0xA0)},
    **{chr(c): f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def test_every_control_del_c1_and_bidi_character_is_escaped_and_nothing_else() -> None:
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    changed = {ch: escape(ch) for ch in everything if escape(ch) != ch}
    assert changed == ESCAPED
    assert escape("a\nb\x1bc", keep_newlines=True) == "a\nb\\x1bc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"GET https://admin:{SECRET}@h:6000/v2/ failed", "GET https://admin:***@h:6000/v2/ failed"),
        (f"'https://{SECRET}@h:6000'", "'https://***@h:6000'"),  # a bare token
        (f"https://admin:p@{SECRET}@h/x@y", "https://admin:***@h/x@y"),  # "@" in the password
        (f"http://a:{SECRET}@p:9090 and https://b:{SECRET}@r:1", "http://a:***@p:9090 and https://b:***@r:1"),
        (
            "https://h:6000/v2/library/alpine/manifests/x@sha256:ab",
            "https://h:6000/v2/library/alpine/manifests/x@sha256:ab",
        ),
        ("alpine:3.20@sha256:ab", "alpine:3.20@sha256:ab"),  # not a URL: untouched
    ],
)
def test_redact_hides_the_password_of_every_url_in_a_text(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_url_without_a_scheme_still_has_its_password_hidden() -> None:
    assert redact_url(f"admin:{SECRET}@mirror:6000/x") == "admin:***@mirror:6000/x"
    assert redact_url(f"https://admin:{SECRET}@mirror:6000") == "https://admin:***@mirror:6000"
    assert redact_url("https://mirror:6000") == "https://mirror:6000"


# ---------------------------------------------------------------- escaping, end to end


def test_escape_sequences_in_a_repository_name_are_printed_escaped(tls: Tls) -> None:
    hostile = f"evil{ESC}]0;pwned\x07{ESC}[2J"
    answers = {"/v2/_catalog": json_answer({"repositories": ["library/ok", hostile]})}
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "catalog")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["library/ok", "evil\\x1b]0;pwned\\x07\\x1b[2J"]
    assert_no_raw_controls(result)


def test_an_emoji_code_in_a_repository_name_is_printed_as_named(tls: Tls) -> None:
    with registry(tls, {"/v2/_catalog": json_answer({"repositories": ["x:fire:y"]})}) as url:
        result = registry_cli(tls, url, "catalog")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x:fire:y\n"


def test_c1_controls_del_and_bidi_overrides_in_tags_are_printed_escaped(tls: Tls) -> None:
    tags = ["v1\x9b31m", "x\x7fy", "abc\u202edcba", "a\u2066b\u2069", "1.0\nlatest"]
    answers = {"/v2/library/alpine/tags/list": json_answer({"name": "library/alpine", "tags": tags})}
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "tags", "alpine")
    assert result.returncode == 0, result.stderr
    # one line per tag: a newline inside a tag does not forge a line of its own
    assert result.stdout.splitlines() == [
        "v1\\x9b31m",
        "x\\x7fy",
        "abc\\u202edcba",
        "a\\u2066b\\u2069",
        "1.0\\nlatest",
    ]
    assert_no_raw_controls(result)


def test_a_registry_error_message_is_escaped_in_the_one_error_line(tls: Tls) -> None:
    body = {"errors": [{"code": "UNKNOWN", "message": f"boom{ESC}[31m red\u202e"}]}
    with registry(tls, {"/v2/_catalog": json_answer(body, status=500)}) as url:
        result = registry_cli(tls, url, "catalog")
    line = assert_one_line_error(result)
    assert line == "mirrorctl: catalog: HTTP 500 (UNKNOWN: boom\\x1b[31m red\\u202e)"
    assert_no_raw_controls(result)


def test_a_c1_control_in_a_manifest_header_is_printed_escaped(tls: Tls) -> None:
    manifest = json.dumps({"schemaVersion": 2}).encode()
    answers = {
        "/v2/library/alpine/manifests/latest": (
            200,
            [("Content-Type", "application/vnd.evil\x9b2J+json")],
            manifest,
        )
    }
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "manifest", "alpine")
    assert result.returncode == 0, result.stderr
    assert "  media type  application/vnd.evil\\x9b2J+json" in result.stderr.splitlines()
    assert json.loads(result.stdout) == {"schemaVersion": 2}
    assert_no_raw_controls(result)


def test_a_c1_control_in_a_digest_header_is_escaped_in_the_error_line(tls: Tls) -> None:
    answers = {
        "/v2/library/alpine/manifests/latest": (
            200,
            [("Docker-Content-Digest", "sha256:\x9b2Jforged")],
            b"{}",
        )
    }
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "manifest", "alpine")
    assert_one_line_error(result, "Docker-Content-Digest sha256:\\x9b2Jforged does not match")
    assert_no_raw_controls(result)


def test_other_controls_in_an_error_stay_visible_while_line_breaks_become_spaces(tls: Tls) -> None:
    body = {"errors": [{"code": "UNKNOWN", "message": "line one\r\n\tline two\x1cx\x85y"}]}
    with registry(tls, {"/v2/_catalog": json_answer(body, status=500)}) as url:
        result = registry_cli(tls, url, "catalog")
    line = assert_one_line_error(result)
    assert line == "mirrorctl: catalog: HTTP 500 (UNKNOWN: line one line two\\x1cx\\x85y)"


def run_on_a_terminal(*args: str) -> str:
    """`python -m mirrorctl ARGS` with stdout on a pseudo-terminal; what the terminal got."""
    master, slave = pty.openpty()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mirrorctl", *args],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    os.close(slave)
    received = b""
    try:
        while chunk := os.read(master, 4096):
            received += chunk
    except OSError:  # EIO: the process closed the terminal
        pass
    finally:
        os.close(master)
    assert process.wait(timeout=60) == 0
    return received.decode()


def test_manifest_raw_is_exact_in_a_pipe_and_escaped_on_a_terminal(tls: Tls) -> None:
    body = f'{{"schemaVersion": 2, "x": "{ESC}]0;owned\x07"}}\n'.encode()
    answers = {"/v2/library/alpine/manifests/latest": (200, [("Content-Type", "application/json")], body)}
    with registry(tls, answers) as url:
        piped = registry_cli(tls, url, "manifest", "alpine", "--raw")
        terminal = run_on_a_terminal("--url", url, "--ca", str(tls.ca_file), "manifest", "alpine", "--raw")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.encode() == body
    # the terminal's line discipline turns "\n" into "\r\n"
    assert terminal == '{"schemaVersion": 2, "x": "\\x1b]0;owned\\x07"}\r\n'


def test_json_output_keeps_control_and_bidi_characters_escaped_by_json(tls: Tls) -> None:
    names = [f"a{ESC}[2J", "b\x7f", "c\x9b", "d\u202e"]
    with registry(tls, {"/v2/_catalog": json_answer({"repositories": names})}) as url:
        result = registry_cli(tls, url, "catalog", "--json")
    assert result.returncode == 0, result.stderr
    assert '"a\\u001b[2J"' in result.stdout and '"b\\u007f"' in result.stdout
    assert '"c\\u009b"' in result.stdout and '"d\\u202e"' in result.stdout
    assert json.loads(result.stdout)["repositories"] == names  # escaped, not altered
    assert_no_raw_controls(result)


def test_a_service_detail_is_printed_escaped_in_the_status_table() -> None:
    with stand_in({"/-/ready": (503, f"{ESC}[2Jnot ready\u202e\n")}) as (alloy, _):
        result = run_cli("--endpoint", f"alloy={alloy}", "status", env={"COLUMNS": "200"})
    assert "\\x1b[2Jnot ready\\u202e" in result.stdout
    assert_one_line_error(result, "unhealthy: alloy")
    assert_no_raw_controls(result)


def test_prometheus_target_labels_and_errors_are_printed_escaped() -> None:
    targets = {
        "status": "success",
        "data": {
            "activeTargets": [
                {
                    "labels": {"job": f"job{ESC}[1m", "instance": "i\u202e"},
                    "health": f"down{ESC}[0m",
                    "lastError": "refused\x9b31m",
                    "scrapeUrl": "http://x/metrics",
                }
            ]
        },
    }
    answers = {"/-/ready": (200, [], b"ready"), "/api/v1/targets": json_answer(targets)}
    with serve(answers) as (prometheus, _):
        result = run_cli("--prometheus", prometheus, "status", env={"COLUMNS": "200"})
    for shown in ("job\\x1b[1m", "i\\u202e", "down\\x1b[0m", "refused\\x9b31m"):
        assert shown in result.stdout, (shown, result.stdout)
    assert_no_raw_controls(result)


def test_a_prometheus_error_message_is_escaped_in_the_one_error_line() -> None:
    answer = json_answer({"status": "error", "errorType": "bad_data", "error": f"parse error{ESC}[2J"}, status=400)
    with serve({"/api/v1/query": answer}) as (prometheus, _):
        result = run_cli("--prometheus", prometheus, "metrics")
    line = assert_one_line_error(result, "Prometheus refused")
    assert line.endswith(": bad_data: parse error\\x1b[2J"), line
    assert_no_raw_controls(result)


def test_docker_output_is_printed_escaped_and_keeps_its_lines(docker: FakeDocker) -> None:
    stdout = (
        f"library/x{ESC}]0;title\x07\n"
        "3 blobs marked, 1 blobs and 0 manifests eligible for deletion\n"
        f"blob eligible for deletion: sha256:{ESC}[2Jcc\n"
    )
    docker.update(run_stdout=stdout)
    env, path = docker.env(), [docker.bin_dir]
    verbose = run_cli("--stack", "dev", "gc", "--verbose", env=env, path=path)
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout.splitlines()[:3] == [
        "library/x\\x1b]0;title\\x07",
        "3 blobs marked, 1 blobs and 0 manifests eligible for deletion",
        "blob eligible for deletion: sha256:\\x1b[2Jcc",
    ]
    short = run_cli("--stack", "dev", "gc", env=env, path=path)
    assert "eligible for deletion: sha256:\\x1b[2Jcc" in short.stdout.splitlines()
    for result in (verbose, short):
        assert_no_raw_controls(result)


def test_a_docker_error_is_escaped_in_the_one_error_line(docker: FakeDocker) -> None:
    docker.update(fail={"cp": {"stderr": f"Error: no such path{ESC}[2J\u202e"}})
    result = run_cli("--stack", "dev", "gc", env=docker.env(), path=[docker.bin_dir])
    line = assert_one_line_error(result, "cannot copy")
    assert line.endswith("Error: no such path\\x1b[2J\\u202e"), line
    assert_no_raw_controls(result)


def test_container_logs_are_printed_escaped_line_by_line(docker: FakeDocker) -> None:
    state = docker.read()
    logged = f'GET /v2/{ESC}]0;owned{ESC}\\ 404\nlevel=info msg="a\u202eb"\n'
    state["containers"]["registry-mirror-dev-registry"]["logs"] = logged
    docker.write(state)
    result = run_cli("--stack", "dev", "logs", "registry", env=docker.env(), path=[docker.bin_dir])
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'GET /v2/\\x1b]0;owned\\x1b\\ 404\nlevel=info msg="a\\u202eb"\n'
    assert_no_raw_controls(result)


def test_a_pulumi_cli_error_is_escaped_in_the_one_error_line(tmp_path: Path) -> None:
    env = install_fake_pulumi(tmp_path / "bin", outputs_document(), tmp_path / "calls.txt")
    result = run_cli(
        "catalog",
        path=[tmp_path / "bin"],
        env={**env, "FAKE_PULUMI_FAIL": f"stack {ESC}[31mgone\x9b"},
    )
    line = assert_one_line_error(result, "pulumi stack output")
    assert line.endswith("stack \\x1b[31mgone\\x9b"), line
    assert_no_raw_controls(result)


# ------------------------------------------------------------------------ redaction


def test_a_password_in_the_url_never_appears_in_the_status_table() -> None:
    port = closed_port()
    result = run_cli("--url", f"http://admin:{SECRET}@127.0.0.1:{port}", "status", env={"COLUMNS": "200"})
    assert_one_line_error(result, "unhealthy: registry")
    assert f"cannot connect to http://admin:***@127.0.0.1:{port}/v2/" in result.stdout
    assert_secret_hidden(result)


def test_a_password_in_the_url_never_appears_in_an_error_from_httpx(tls: Tls) -> None:
    port = closed_port()
    result = registry_cli(tls, with_password(f"https://127.0.0.1:{port}"), "catalog")
    assert_one_line_error(result, f"cannot connect to https://admin:***@127.0.0.1:{port}/v2/_catalog")
    assert_secret_hidden(result)


def test_a_password_in_the_url_is_redacted_in_output_and_json(tls: Tls) -> None:
    with serve({"/v2/_catalog": json_answer({"repositories": ["library/a"]})}, tls.context) as (
        url,
        _,
    ):
        people = registry_cli(tls, with_password(url), "catalog")
        machines = registry_cli(tls, with_password(url), "catalog", "--json")
    assert people.returncode == 0 and machines.returncode == 0, people.stderr + machines.stderr
    assert people.stderr.strip() == f"1 repositories in {with_password(url).replace(SECRET, '***')}"
    assert json.loads(machines.stdout)["registry"] == with_password(url).replace(SECRET, "***")
    assert_secret_hidden(people)
    assert_secret_hidden(machines)


def test_a_token_as_the_user_name_is_redacted_whole() -> None:
    port = closed_port()
    result = run_cli("--prometheus", f"http://{SECRET}@127.0.0.1:{port}", "metrics")
    assert_one_line_error(result, f"cannot connect to http://***@127.0.0.1:{port}/api/v1/query")
    assert_secret_hidden(result)


def test_a_password_in_an_endpoint_url_is_redacted_in_the_status_table() -> None:
    port = closed_port()
    result = run_cli("--endpoint", f"grafana=http://admin:{SECRET}@127.0.0.1:{port}", "status", env={"COLUMNS": "200"})
    assert_one_line_error(result, "unhealthy: grafana")
    assert f"http://admin:***@127.0.0.1:{port}" in result.stdout
    assert_secret_hidden(result)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"admin:{SECRET}@mirror.test:6000", "'admin:***@mirror.test:6000' is not a URL"),
        (f"https://admin:{SECRET}@mirror.test:99999", "'https://admin:***@mirror.test:99999' has an invalid port"),
        (f"https://admin:{SECRET}@:6000", "'https://admin:***@:6000' has no host"),
        (f"https://admin:{SECRET}@mirror test:6000", "'https://admin:***@mirror test:6000' holds a space"),
    ],
)
def test_a_password_in_a_malformed_url_is_redacted_in_the_error(url: str, shown: str) -> None:
    result = run_cli("--url", url, "--ca", "/dev/null", "catalog")
    assert_one_line_error(result, shown)
    assert_secret_hidden(result)


def test_a_password_in_a_malformed_endpoint_is_redacted_in_the_error() -> None:
    result = run_cli("--endpoint", f"admin:{SECRET}@grafana:3000", "status")
    assert_one_line_error(result, "--endpoint 'admin:***@grafana:3000': expected NAME=URL")
    assert_secret_hidden(result)


# -------------------------------------------------------------------- odd --ca files


def test_a_binary_ca_file_is_one_line(tmp_path: Path, tls: Tls) -> None:
    der = tmp_path / "ca.der"
    pem = tls.ca_file.read_text()
    der.write_bytes(x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER))
    result = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(der), "catalog")
    assert_one_line_error(result, f"CA file {der} is not a PEM file (binary data;", "openssl x509 -inform der")


def test_a_ca_file_with_a_broken_certificate_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "ca.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    result = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(broken), "catalog")
    assert_one_line_error(result, "the CA certificate cannot be loaded")


def test_a_ca_file_without_a_certificate_is_one_line(tmp_path: Path) -> None:
    key_only = tmp_path / "key.pem"
    key_only.write_text("-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n")
    result = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(key_only), "catalog")
    assert_one_line_error(result, f"CA file {key_only} holds no PEM certificate")


def test_a_missing_or_unreadable_ca_file_is_one_line(tmp_path: Path) -> None:
    missing = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(tmp_path / "no.crt"), "catalog")
    assert_one_line_error(missing, f"cannot read CA file {tmp_path / 'no.crt'}: No such file or directory")
    # a folder stands in for an unreadable file: these tests may run as root, who reads all
    folder = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(tmp_path), "catalog")
    assert_one_line_error(folder, f"cannot read CA file {tmp_path}: Is a directory")


# ------------------------------------------------------------------------ odd URLs


MALFORMED = [
    ("mirror.test:6000", "is not a URL (https://host:port)"),
    ("https://mirror.test:99999", "has an invalid port (a number from 1 to 65535)"),
    ("https://mirror.test:abc", "has an invalid port (a number from 1 to 65535)"),
    ("https://mirror.test:0", "has an invalid port (a number from 1 to 65535)"),
    ("https://mirror test:6000", "holds a space or a control character"),
    ("https://:6000", "has no host (https://host:port)"),
    ("https://[::1:6000", "is not a valid URL (Invalid IPv6 URL)"),
    (f"https://mirror.test{ESC}[2J:6000", "holds a space or a control character"),
]


@pytest.mark.parametrize(("url", "error"), MALFORMED)
def test_a_malformed_registry_url_is_one_line(url: str, error: str) -> None:
    result = run_cli("--url", url, "--ca", "/dev/null", "catalog")
    line = assert_one_line_error(result, f"registry URL {url!r} {error}".replace(ESC, "\\x1b"))
    assert "unexpected error" not in line
    assert_no_raw_controls(result)


@pytest.mark.parametrize(
    ("url", "error"),
    [(u.replace("https:", "http:"), e.replace("(https://", "(http:// or https://")) for u, e in MALFORMED],
)
def test_a_malformed_prometheus_url_is_one_line(url: str, error: str) -> None:
    result = run_cli("--prometheus", url, "metrics")
    assert_one_line_error(result, f"Prometheus URL {url!r} {error}".replace(ESC, "\\x1b"))
    assert_no_raw_controls(result)


# ---------------------------------------------------------------- odd Prometheus answers


def sample(value: Any, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, value]}


def vector(*samples: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(samples)}}


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, [], b"<html>proxy login</html>"), "HTTP 200, not a Prometheus answer (no JSON)"),
        (json_answer([1, 2]), 'HTTP 200, not a Prometheus answer (no "status": "success" or "error")'),
        (json_answer({"status": "weird"}), 'not a Prometheus answer (no "status": "success" or "error")'),
        (
            json_answer({"status": "error", "errorType": "timeout", "error": "query timed out"}, 503),
            "timeout: query timed out",
        ),
        (json_answer({"status": "success", "data": []}), "is not an instant vector"),
        (
            json_answer({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}),
            "is not an instant vector",
        ),
        (json_answer({"status": "success", "data": {"resultType": "vector", "result": {}}}), "has no list of series"),
        (json_answer(vector({"metric": {}, "value": "12"})), "is not a sample"),
        (json_answer(vector(sample("twelve", type="blob"))), "holds 'twelve', not a number"),
        (json_answer(vector(sample(None, type="blob"))), "holds None, not a number"),
        (json_answer(vector(sample("NaN", type="blob"))), "Prometheus answered 'NaN'"),
        (json_answer(vector(sample("+Inf", type="blob"))), "Prometheus answered '+Inf'"),
        (json_answer(vector(sample("-3", type="blob"))), "Prometheus answered '-3'"),
        (json_answer(vector()), "Prometheus has no registry series of job 'registry'"),
    ],
)
def test_an_odd_prometheus_answer_is_one_line(answer: Answer, error: str) -> None:
    with serve({"/api/v1/query": answer}) as (prometheus, _):
        for command in (["metrics"], ["metrics", "--json"]):
            result = run_cli("--prometheus", prometheus, *command)
            line = assert_one_line_error(result, error)
            assert "unexpected error" not in line
            assert result.stdout == ""


def test_an_empty_answer_for_one_generation_is_no_data_not_an_error() -> None:
    """2.8 has no registry_proxy_* series: only the answer with no series at all is an error."""
    v2 = vector(sample("10", type="Request"), sample("4", type="Hit"))

    class Handler(_Handler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(v2 if "registry_storage_cache_total" in self.path else vector()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        result = run_cli("--prometheus", f"http://127.0.0.1:{server.server_address[1]}", "metrics", "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["proxy"] is None
    assert document["storage_cache"]["hit_ratio"] == 0.4


@pytest.mark.parametrize(
    "targets",
    [
        {"status": "success", "data": {"activeTargets": "none"}},
        {"status": "success", "data": {"activeTargets": [1, 2]}},
        {"status": "success", "data": None},
    ],
)
def test_an_odd_prometheus_targets_answer_is_reported_not_a_traceback(targets: Any) -> None:
    answers = {"/-/ready": (200, [], b"ready"), "/api/v1/targets": json_answer(targets)}
    with serve(answers) as (prometheus, _):
        result = run_cli("--prometheus", prometheus, "status", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "Prometheus targets: unavailable (" in result.stdout
    assert "not a Prometheus targets answer" in result.stdout
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- odd registry answers


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, [], b"<html>captive portal</html>"), "catalog: the registry answered with no JSON"),
        (json_answer(["library/a"]), "catalog: the registry answered with no JSON object"),
        (json_answer({"repositories": "library/a"}), "catalog: the answer has no list of names 'repositories'"),
        (
            json_answer({"repositories": ["library/a", {"name": "b"}, 3]}),
            "catalog: the answer has no list of names 'repositories'",
        ),
    ],
)
def test_an_odd_catalog_answer_is_one_line(tls: Tls, answer: Answer, error: str) -> None:
    with registry(tls, {"/v2/_catalog": answer}) as url:
        result = registry_cli(tls, url, "catalog")
    line = assert_one_line_error(result, error)
    assert "unexpected error" not in line
    assert result.stdout == ""


def test_an_odd_tags_answer_is_one_line(tls: Tls) -> None:
    answers = {"/v2/library/alpine/tags/list": json_answer({"name": "library/alpine", "tags": [1.5]})}
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "tags", "alpine")
    assert_one_line_error(result, "tags of library/alpine: the answer has no list of names 'tags'")


def test_a_manifest_that_is_not_json_is_one_line(tls: Tls) -> None:
    answers = {"/v2/library/alpine/manifests/latest": (200, [], b"\x00\x01binary")}
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "manifest", "alpine")
    assert_one_line_error(result, "the manifest of library/alpine:latest is not JSON")


def test_a_next_page_on_another_server_is_refused(tls: Tls) -> None:
    with serve({}) as (elsewhere, asked_elsewhere):
        link = f'<{elsewhere}/v2/_catalog?n=1000&last=a>; rel="next"'
        answers = {"/v2/_catalog": json_answer({"repositories": ["a"]}, headers=[("Link", link)])}
        with registry(tls, answers) as url:
            result = registry_cli(tls, with_password(url), "catalog")
    assert_one_line_error(result, f"catalog: the next page is on another server: {elsewhere}/v2/_catalog")
    assert asked_elsewhere == []  # the credentials never left for the other host
    assert_secret_hidden(result)


def test_an_absolute_next_link_to_the_same_server_keeps_the_credentials(tls: Tls) -> None:
    answers: dict[str, Answer] = {"/v2/page2": json_answer({"repositories": ["b"]})}
    with serve(answers, tls.context) as (url, seen):
        link = f'<{url}/v2/page2?n=1000&last=a>; rel="next"'  # absolute, no user:password@
        answers["/v2/_catalog"] = json_answer({"repositories": ["a"]}, headers=[("Link", link)])
        result = registry_cli(tls, with_password(url), "catalog")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a", "b"]
    basic = "Basic " + base64.b64encode(f"admin:{SECRET}".encode()).decode()
    assert seen == [("/v2/_catalog?n=1000", basic), ("/v2/page2?n=1000&last=a", basic)]
    assert_secret_hidden(result)


def test_a_next_link_with_a_bad_port_is_one_line(tls: Tls) -> None:
    link = '<https://127.0.0.1:99999/v2/_catalog?last=a>; rel="next"'
    answers = {"/v2/_catalog": json_answer({"repositories": ["a"]}, headers=[("Link", link)])}
    with registry(tls, answers) as url:
        result = registry_cli(tls, url, "catalog")
    assert_one_line_error(result, "catalog: the Link header is not a URL: 'https://127.0.0.1:99999/v2/_catalog?last=a'")


def test_a_ca_bundle_with_utf8_comments_around_the_certificate_is_read(tmp_path: Path, tls: Tls) -> None:
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("# Issuer: CN=Stand-in Root CA, O=Prüfstelle für Zertifikate\n" + tls.ca_file.read_text())
    with registry(tls, {"/v2/_catalog": json_answer({"repositories": ["a"]})}) as url:
        result = run_cli("--url", url, "--ca", str(bundle), "catalog")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a"]


def test_a_certificate_with_non_ascii_characters_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "ca.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nMIIBé\n-----END CERTIFICATE-----\n")
    result = run_cli("--url", "https://127.0.0.1:6000", "--ca", str(broken), "catalog")
    assert_one_line_error(result, f"CA file {broken} holds a PEM certificate with non-ASCII characters")
