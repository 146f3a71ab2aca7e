"""Where the commands find the stack: its outputs, or explicit flags when there is no CLI.

Values come from, in this order: an explicit flag (`--url`, `--ca`, `--prometheus`,
`--endpoint NAME=URL`, `--stack`, `--project`); a saved `pulumi stack output --json` document
(`--outputs FILE`); the Pulumi CLI (`pulumi stack output --json`, run once, only when a
command needs a value no flag gave). The CLI is run in the project directory with the same
state backend and passphrase file `scripts/up.sh` uses, non-interactively (it never waits
for a passphrase prompt). Secret outputs are not needed: nothing here reads `--show-secrets`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import PROJECT
from mirrorctl.errors import MirrorctlError
from mirrorctl.safe import redact_url

ROOT = Path(__file__).resolve().parents[1]  # the project directory (Pulumi.yaml)
PULUMI_TIMEOUT = 60.0
SECRET_PLACEHOLDER = "[secret]"  # what `pulumi stack output --json` prints for a secret


def pulumi_env(environ: Mapping[str, str], root: Path) -> dict[str, str]:
    """The environment for the Pulumi CLI: scripts/up.sh's backend and passphrase file.

    up.sh keeps the state in `file://$PULUMI_STATE_DIR` (default `<project>/.pulumi-state`)
    and the passphrase in `.pulumi-passphrase`; explicit PULUMI_* settings always win.
    """
    env = dict(environ)
    if not env.get("PULUMI_BACKEND_URL"):
        state_dir = Path(env.get("PULUMI_STATE_DIR") or root / ".pulumi-state")
        if state_dir.is_dir():
            env["PULUMI_BACKEND_URL"] = f"file://{state_dir}"
    if not env.get("PULUMI_CONFIG_PASSPHRASE") and not env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        passphrase_file = root / ".pulumi-passphrase"
        if passphrase_file.is_file():
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase_file)
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error:"):
            return line[len("error:") :].strip()
    return lines[-1] if lines else "no output"


def read_pulumi_outputs(
    stack: str | None,
    *,
    root: Path = ROOT,
    environ: Mapping[str, str] | None = None,
    timeout: float = PULUMI_TIMEOUT,
) -> dict[str, Any]:
    """`pulumi stack output --json [--stack S]`, as a dict; one-line errors."""
    environ = os.environ if environ is None else environ
    exe = shutil.which("pulumi", path=environ.get("PATH"))
    if exe is None:
        raise MirrorctlError("the Pulumi CLI is not on PATH")
    args = [exe, "stack", "output", "--json", "--non-interactive"]
    if stack:
        args += ["--stack", stack]
    try:
        result = subprocess.run(
            args,
            cwd=root,
            env=pulumi_env(environ, root),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise MirrorctlError(f"`pulumi stack output` did not answer within {timeout:g}s") from error
    if result.returncode != 0:
        raise MirrorctlError(
            f"`pulumi stack output` failed: {_first_error_line(result.stderr or result.stdout)}"
        )
    return _parse_outputs(result.stdout, "`pulumi stack output --json`")


def load_outputs_file(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise MirrorctlError(
            f"cannot read outputs file {path}: {error.strerror or error}"
        ) from error
    return _parse_outputs(text, str(path))


def _parse_outputs(text: str, source: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise MirrorctlError(
            f"{source} is not JSON ({error.msg} at line {error.lineno})"
        ) from error
    if not isinstance(document, dict):
        raise MirrorctlError(f"{source} is not a JSON object of stack outputs")
    return document


def normalize_url(value: str, what: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """`value` without a trailing slash; refuses anything but scheme://host[:port][/path]."""
    shown = repr(redact_url(value))
    allowed = " or ".join(f"{s}://" for s in schemes)
    stripped = value.strip()
    # urlsplit keeps spaces and controls inside a host name; httpx would then fail later
    # with a message about DNS, far from the flag that caused it.
    if any(ch.isspace() or not ch.isprintable() for ch in stripped):
        raise MirrorctlError(f"{what} {shown} holds a space or a control character")
    try:
        parts = urllib.parse.urlsplit(stripped)
    except ValueError as error:  # e.g. an unclosed "[" of an IPv6 address
        raise MirrorctlError(f"{what} {shown} is not a valid URL ({error})") from error
    if parts.scheme not in schemes:
        raise MirrorctlError(f"{what} {shown} is not a URL ({allowed}host:port)")
    if not parts.hostname:
        raise MirrorctlError(f"{what} {shown} has no host ({allowed}host:port)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # port 0 would mean "any port" to connect(): never a service's port
        raise MirrorctlError(f"{what} {shown} has an invalid port (a number from 1 to 65535)")
    return stripped.rstrip("/")


def read_ca_file(path: Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise MirrorctlError(f"cannot read CA file {path}: {error.strerror or error}") from error
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), len(data), "NUL byte")
        text = data.decode()
    except UnicodeDecodeError:
        raise MirrorctlError(
            f"CA file {path} is not a PEM file (binary data; a DER certificate converts with "
            "`openssl x509 -inform der -in FILE -out ca.crt`)"
        ) from None
    return pem_certificates(text, f"CA file {path}")


PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def pem_certificates(text: str, source: str) -> str:
    """Only the PEM certificate blocks of `text`, one per line group.

    Comments around them (a bundle's "# Issuer: ..." lines) may be any UTF-8, but the ssl
    module takes only ASCII PEM (it raises TypeError otherwise), so only the blocks are kept.
    """
    blocks = PEM_CERT_RE.findall(text)
    if not blocks:
        raise MirrorctlError(f"{source} holds no PEM certificate")
    if not all(block.isascii() for block in blocks):
        raise MirrorctlError(f"{source} holds a PEM certificate with non-ASCII characters")
    return "\n".join(blocks) + "\n"


@dataclass
class StackContext:
    """The global options of one invocation; stack outputs fetched lazily, at most once."""

    stack: str | None = None
    project: str = PROJECT
    url: str | None = None
    ca_file: Path | None = None
    prometheus: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    outputs_file: Path | None = None
    timeout: float = 10.0
    root: Path = ROOT
    environ: Mapping[str, str] | None = None
    _outputs: dict[str, Any] | None = field(default=None, repr=False)

    # -- outputs ------------------------------------------------------------------------

    def outputs(self, needed_for: str) -> dict[str, Any]:
        """The stack outputs; `needed_for` names the flag that would have avoided them."""
        if self._outputs is None:
            if self.outputs_file is not None:
                self._outputs = load_outputs_file(self.outputs_file)
            else:
                environ = os.environ if self.environ is None else self.environ
                if shutil.which("pulumi", path=environ.get("PATH")) is None:
                    raise MirrorctlError(
                        f"no Pulumi CLI on PATH to read the stack outputs: pass {needed_for}, "
                        "or --outputs FILE (saved from `pulumi stack output --json`)"
                    )
                self._outputs = read_pulumi_outputs(self.stack, root=self.root, environ=environ)
        return self._outputs

    def output(self, key: str, needed_for: str) -> Any:
        value = self.outputs(needed_for).get(key)
        if value is None or value == "" or value == SECRET_PLACEHOLDER:
            raise MirrorctlError(
                f"the stack has no output {key!r} (has `make up` run?): pass {needed_for}"
            )
        return value

    # -- values -------------------------------------------------------------------------

    def registry_url(self) -> str:
        hint = "--url URL" if self.ca_file is not None else "--url URL and --ca FILE"
        value = self.url if self.url is not None else str(self.output("registryUrl", hint))
        return normalize_url(value, "registry URL", schemes=("https",))

    def ca_source(self) -> str:
        return f"--ca {self.ca_file}" if self.ca_file is not None else "the stack output caCertPem"

    def ca_pem(self) -> str:
        if self.ca_file is not None:
            return read_ca_file(self.ca_file)
        return pem_certificates(
            str(self.output("caCertPem", "--ca FILE")), "the stack output caCertPem"
        )

    def prometheus_url(self) -> str:
        if self.prometheus is not None:
            return normalize_url(self.prometheus, "Prometheus URL")
        urls = self.output("urls", "--prometheus URL")
        if not isinstance(urls, dict) or not urls.get("prometheus"):
            raise MirrorctlError(
                "the stack runs no Prometheus (monitoring=false?): pass --prometheus URL"
            )
        return normalize_url(str(urls["prometheus"]), "Prometheus URL")

    def service_urls(self) -> dict[str, str]:
        """Service -> URL for `status`: from flags only if any URL flag was given, else outputs."""
        explicit: dict[str, str] = {}
        if self.url is not None:
            explicit["registry"] = self.url
        if self.prometheus is not None:
            explicit["prometheus"] = self.prometheus
        explicit.update(self.endpoints)
        if explicit:
            urls = explicit
        else:
            raw = self.output("urls", "--url/--prometheus/--endpoint NAME=URL")
            if not isinstance(raw, dict):
                raise MirrorctlError("the stack output 'urls' is not a map of service URLs")
            urls = {str(k): str(v) for k, v in raw.items()}
        return {name: normalize_url(url, f"URL of {name}") for name, url in urls.items()}

    def stack_name(self) -> str:
        if self.stack:
            return self.stack
        return str(self.output("stack", "--stack NAME"))

    def container(self, service: str) -> str:
        """`<project>-<stack>-<service>`: the name every container of the stack gets."""
        return f"{self.project}-{self.stack_name()}-{service}"


def parse_endpoints(values: list[str]) -> dict[str, str]:
    """`--endpoint NAME=URL` options as a dict."""
    endpoints: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise MirrorctlError(
                f"--endpoint {redact_url(value)!r}: expected NAME=URL, e.g. grafana=http://localhost:3000"
            )
        endpoints[name.strip()] = url.strip()
    return endpoints
