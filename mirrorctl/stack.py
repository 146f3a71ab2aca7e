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
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import PROJECT
from mirrorctl.errors import MirrorctlError

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
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise MirrorctlError(f"{what} {value!r} is not a URL ({allowed}host:port)")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as error:
        raise MirrorctlError(f"{what} {value!r} has an invalid port") from error
    return value.strip().rstrip("/")


def read_ca_file(path: Path) -> str:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise MirrorctlError(f"cannot read CA file {path}: {error.strerror or error}") from error
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise MirrorctlError(f"CA file {path} holds no PEM certificate")
    return text


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
        pem = str(self.output("caCertPem", "--ca FILE"))
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise MirrorctlError("the stack output caCertPem holds no PEM certificate")
        return pem

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
                f"--endpoint {value!r}: expected NAME=URL, e.g. grafana=http://localhost:3000"
            )
        endpoints[name.strip()] = url.strip()
    return endpoints
