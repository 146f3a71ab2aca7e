"""The OCI Distribution Specification's conformance suite, run against a registry on loopback.

    binary = conformance_binary()       # in a test: skip locally, fail under CI=true
    result = run_conformance(binary, work, registry="127.0.0.1:PORT", ca_file=root_ca,
                             settings={"OCI_API_PUSH": "false", ...})
    result.cases      # every test the suite ran: full name -> Case(status, error)
    result.apis       # the suite's verdict per API ("Manifest get by tag": "Pass", ...)
    result.data       # and per kind of content ("Image", "Index with Subject", ...)

The suite is the toolchain's `conformance` (tools/go/toolchain.toml): the module
`github.com/opencontainers/distribution-spec/conformance`, a `main` package since its `go
build` runner, installed from the Go module proxy and cached like registry 3.1.1. It is
configured by `OCI_*` variables only (its README); TLS is verified against `ca_file` alone
(Go's SSL_CERT_FILE, with SSL_CERT_DIR pointing at an empty directory).

A read-only registry (a pull-through mirror) is tested with `OCI_API_PUSH=false` and the
content it can serve named in `OCI_RO_DATA_*`: `read_only_data` lists what a registry's
storage holds for one repository (tags, every manifest, every blob, the subjects of the
manifests that have one), so content pushed to an upstream stand-in can be named exactly.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from rehearsal import toolchain
from rehearsal.http_stub import serve_http

NAME = "conformance"
RUN_TIMEOUT = 600.0
SUITE = "OCI Conformance Test"


class ConformanceUnavailable(RuntimeError):
    """The toolchain could not give the suite's binary; the message says why."""


def conformance_binary() -> Path:
    """The suite's binary, built from its Go module on first use (about 20 s)."""
    try:
        return toolchain.ensure(NAME)
    except toolchain.ToolchainError as error:
        raise ConformanceUnavailable(str(error)) from error


def require_conformance() -> Path:
    """conformance_binary() for a test: skip with the reason locally, fail under CI=true."""
    from rehearsal.tools import unavailable

    try:
        return conformance_binary()
    except ConformanceUnavailable as error:
        unavailable(f"the OCI conformance suite is unavailable: {error}")


@dataclass(frozen=True)
class Case:
    status: str  # junit's word: passed, skipped, failure, error
    error: str = ""


@dataclass
class Conformance:
    """What one run of the suite reported."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0
    cases: dict[str, Case] = field(default_factory=dict)  # "<SUITE>/<group>/.../<test>" -> Case (leaves)
    # every line of the report: a test that runs once per tag, digest or blob has one each
    lines: list[tuple[str, str]] = field(default_factory=list)
    apis: dict[str, str] = field(default_factory=dict)  # API -> Pass, FAIL, Skip, Disabled, Error
    data: dict[str, str] = field(default_factory=dict)  # data kind -> the same words

    def count(self, name: str, status: str) -> int:
        """How many times the test `name` (a leaf) reported `status` (Pass, FAIL...)."""
        return sum(1 for line in self.lines if line == (name, status))

    def with_status(self, *statuses: str) -> dict[str, Case]:
        return {name: case for name, case in self.cases.items() if case.status in statuses}

    @property
    def failed(self) -> dict[str, Case]:
        return self.with_status("failure", "error")


def run_conformance(
    binary: Path,
    work: Path,
    *,
    registry: str,
    ca_file: Path | None,
    repo1: str = "conformance/repo1",
    repo2: str = "conformance/repo2",
    username: str | None = None,
    password: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> Conformance:
    """Run the suite against `registry` (host:port) over TLS verified against `ca_file` only
    (`ca_file=None`: plain HTTP); `settings` are further OCI_* variables."""
    work.mkdir(parents=True, exist_ok=True)
    empty = work / "no-system-roots"
    empty.mkdir(exist_ok=True)
    results = work / "results"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "OCI_REGISTRY": registry,
        "OCI_TLS": "enabled" if ca_file is not None else "disabled",
        "OCI_REPO1": repo1,
        "OCI_REPO2": repo2,
        "OCI_RESULTS_DIR": str(results),
        "OCI_LOG": "warn",
        # no configuration file of the working directory's
        "OCI_CONFIGURATION": str(work / "oci-conformance.yaml"),
        **({"SSL_CERT_FILE": str(ca_file), "SSL_CERT_DIR": str(empty)} if ca_file is not None else {}),
        **({"OCI_USERNAME": username, "OCI_PASSWORD": password} if username and password else {}),
        **dict(settings or {}),
    }
    (work / "oci-conformance.yaml").write_text('version: "1.1"\n')
    started = time.monotonic()
    run = subprocess.run([str(binary)], cwd=work, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if "OCI Conformance Result:" not in run.stdout:
        raise RuntimeError(f"the conformance suite reported nothing ({run.returncode}):\n{run.stderr[-3000:]}")
    result = parse_report(run.returncode, run.stdout, run.stderr)
    result.seconds = time.monotonic() - started
    return result


_STATUSES = ("Pass", "FAIL", "Skip", "Disabled", "Error", "Unknown")
_LEAF = {"Pass": "passed", "FAIL": "failure", "Skip": "skipped", "Disabled": "skipped", "Error": "error"}


def parse_report(returncode: int, stdout: str, stderr: str) -> Conformance:
    """The suite's report on stdout (`Report` in its run.go): the tree of tests, each line
    `<indent><full name>: <status>` with a leaf's errors below it as `<indent> - <error>`, then
    the per-API and per-data verdicts. Read from stdout because the files it writes after it
    (results.yaml, junit.xml) are not written when the read-only mode's report panics."""
    result = Conformance(returncode, stdout, stderr)
    head, _, tail = stdout.partition("\nConfiguration:\n")
    names: list[str] = []
    statuses: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for line in head.splitlines():
        text = line.strip()
        if text.startswith(SUITE) and text.rsplit(": ", 1)[-1] in _STATUSES:
            name, status = text.rsplit(": ", 1)
            names.append(name)
            result.lines.append((name, status))
            # a name repeats when one test runs per tag, digest or blob: the worst one counts
            statuses[name] = max(statuses.get(name, status), status, key=_severity)
        elif text.startswith("- ") and names:
            errors.setdefault(names[-1], []).append(text[2:])
        elif text and names and names[-1] in errors:
            errors[names[-1]][-1] += "\n" + text  # an error of several lines
    parents = {name.rsplit("/", 1)[0] for name in names}
    for name in dict.fromkeys(names):
        if name not in parents:
            result.cases[name] = Case(_LEAF.get(statuses[name], "error"), "\n".join(errors.get(name, [])))
    section = ""
    for line in tail.splitlines():
        if line.startswith(("API conformance:", "Data conformance:")):
            section = line.split()[0]
        elif section and ": " in line and line.startswith("  "):
            key, _, value = line.strip().partition(": ")
            target = result.apis if section == "API" else result.data
            target[key.rstrip(".")] = value.strip()
    return result


def _severity(status: str) -> int:
    return ("Unknown", "Disabled", "Skip", "Pass", "FAIL", "Error").index(status) if status in _STATUSES else 0


# ---------------------------------------------------------------------------- read-only data


@dataclass(frozen=True)
class ReadOnlyData:
    tags: tuple[str, ...]
    manifests: tuple[str, ...]
    blobs: tuple[str, ...]
    referrers: tuple[str, ...]  # subjects: digests some manifest names in its `subject`

    def settings(self) -> dict[str, str]:
        """The suite's OCI_RO_DATA_* variables (space-separated lists)."""
        return {
            "OCI_RO_DATA_TAGS": " ".join(self.tags),
            "OCI_RO_DATA_MANIFESTS": " ".join(self.manifests),
            "OCI_RO_DATA_BLOBS": " ".join(self.blobs),
            "OCI_RO_DATA_REFERRERS": " ".join(self.referrers),
        }


def read_only_data(storage: Path, repository: str) -> ReadOnlyData:
    """What a registry's filesystem storage (distribution's layout under `storage`) holds for
    `repository`: its tags, every manifest revision, every blob linked to it (config and
    layers), and the subjects its manifests refer to."""
    repo = storage / "docker" / "registry" / "v2" / "repositories" / repository
    blobs_root = storage / "docker" / "registry" / "v2" / "blobs"
    tags = sorted(p.name for p in (repo / "_manifests" / "tags").iterdir()) if (repo / "_manifests" / "tags").exists() \
        else []
    manifests: list[str] = []
    subjects: set[str] = set()
    revisions = repo / "_manifests" / "revisions"
    for algorithm in sorted(p.name for p in revisions.iterdir()) if revisions.exists() else []:
        for entry in sorted((revisions / algorithm).iterdir()):
            digest = f"{algorithm}:{entry.name}"
            manifests.append(digest)
            body = (blobs_root / algorithm / entry.name[:2] / entry.name / "data").read_bytes()
            try:
                document = json.loads(body)
            except ValueError:
                continue
            subject = document.get("subject") if isinstance(document, dict) else None
            if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                subjects.add(subject["digest"])
    layers = repo / "_layers"
    blobs = [f"{algorithm}:{entry.name}" for algorithm in sorted(os.listdir(layers)) if layers.exists()
             for entry in sorted((layers / algorithm).iterdir())] if layers.exists() else []
    return ReadOnlyData(tuple(tags), tuple(manifests), tuple(b for b in blobs if b not in manifests),
                        tuple(sorted(subjects)))


# ---------------------------------------------------------------------------- containerd's ?ns=


@contextlib.contextmanager
def ns_adding_proxy(target: str, ns: str, ca_file: Path) -> Iterator[str]:
    """A plain-HTTP stand-in for what containerd does to a mirror host (containerd
    docs/hosts.md): every request goes on to `target` (host:port, TLS verified against
    `ca_file` alone) with `ns=<ns>` added to its query. Yields its own host:port."""
    context = ssl.create_default_context(cafile=str(ca_file))
    host, port = target.rsplit(":", 1)
    hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                  "proxy-authorization", "proxy-authenticate"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            path = self.path + ("&" if "?" in self.path else "?") + urlencode({"ns": ns})
            connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
                connection.request(self.command, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in hop_by_hop and key.lower() != "content-length":
                    self.send_header(key, value)
            # a HEAD answer names the length of the body a GET would get
            if self.command == "HEAD":
                self.send_header("Content-Length", response.getheader("Content-Length") or "0")
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    with serve_http(Handler) as listen_port:
        yield f"127.0.0.1:{listen_port}"
