"""Run the real Pulumi program (`__main__.py`) under Pulumi's mocks and record everything.

`evaluate(config, stack=...)` sets the stack's config, runs the program exactly as the
Pulumi CLI would (as `__main__`, with the config in PULUMI_CONFIG and the defaults that
`Pulumi.yaml` declares), and returns every registered resource (type, name,
inputs with and without secret markers, state, parent and dependencies) and the resolved
stack outputs with which of them are secret.

The mocks are process-global in Pulumi's SDK; `evaluate` installs a fresh mock monitor and
a fresh root stack for each call, so tests in one process can evaluate several configs one
after another (never concurrently). The pulumi-tls resources are made for real by
`rehearsal.fakes.tls` (real keys and certificates), so the PKI the program asks for can be fed to
openssl, docker-registry and skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, set_root_resource
from pulumi.runtime.stack import run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from rehearsal.fakes.tls import fake_tls_resource

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "__main__.py"
PROJECT = "registry-mirror"

# pulumi-tls outputs that the provider declares secret (not secret under mocks by default)
_TLS_SECRET_OUTPUTS = {"privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"}


def unwrap(value: Any) -> Any:
    """Drop Pulumi's secret markers, recursively."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Struct carries every number as a double
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Where in a (raw) input tree Pulumi secret markers sit, as dotted paths."""
    if rpc.is_rpc_secret(value):
        return [path or "."]
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += secret_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_paths(v, f"{path}[{i}]")
    return found


@dataclass
class Registered:
    typ: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    custom: bool
    raw_inputs: dict[str, Any]
    inputs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def parent_type(self) -> str:
        """The type of the parent resource, read off the parent's URN ('' for the stack)."""
        if not self.parent:
            return ""
        return self.parent.split("::")[2].split("$")[-1]

    def secret_paths(self) -> list[str]:
        return secret_paths(self.raw_inputs)


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


# Like Pulumi's state: a resource evaluated again with the same inputs keeps its outputs
# (keys, certificates, random values), so re-evaluations can be compared byte for byte.
_STATE: dict[tuple[str, ...], tuple[str, dict[str, Any], frozenset[str]]] = {}


class RecordingMocks(pulumi.runtime.Mocks):
    """Provider stand-ins: deterministic ids and the computed outputs the program reads."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        plain = unwrap(args.inputs)
        key = (pulumi.get_project(), pulumi.get_stack(), args.typ, args.name,
               json.dumps(plain, sort_keys=True, default=str))
        if key not in _STATE:
            _STATE[key] = self._create(args.typ, args.name, plain)
        rid, stored, secret_keys = _STATE[key]
        state = dict(stored)
        self.pending[(args.typ, args.name)] = (args.inputs, state)
        # provider-declared secret outputs are not secret under mocks unless we say so
        wire = {k: pulumi.Output.secret(v) if k in secret_keys else v for k, v in state.items()}
        return rid, wire

    @staticmethod
    def _create(typ: str, name: str, plain: dict[str, Any]) -> tuple[str, dict[str, Any], frozenset[str]]:
        state: dict[str, Any] = dict(plain)
        secret: set[str] = set()
        rid = f"{name}-{_digest(typ, name)[:12]}"
        if typ.startswith("tls:index/"):
            rid, computed = fake_tls_resource(typ, plain)
            state.update(computed)
            secret |= _TLS_SECRET_OUTPUTS & state.keys()
        elif typ == "docker:index/remoteImage:RemoteImage":
            digest = _digest(plain["name"])
            state.update(imageId=f"sha256:{digest}", repoDigest=f"{plain['name']}@sha256:{digest}")
        elif typ == "docker:index/container:Container":
            rid = _digest("container", plain.get("name", name))
        elif typ == "random:index/randomPassword:RandomPassword":
            value = _digest("password", pulumi.get_stack(), name, str(plain))[: int(plain.get("length", 32))]
            state.update(result=value, bcryptHash=f"$2a$10${value}")
            secret |= {"result", "bcryptHash"}
        elif typ == "command:local:Command":
            state.update(stdout="", stderr="")
        return rid, state, frozenset(secret)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that also keeps each registration's parent and dependencies."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        _, state = self.recording.pending.pop((request.type, request.name), ({}, {}))
        # The inputs exactly as the SDK sent them: the SDK's own deserializer would lift a
        # nested secret up to the whole list, which hides where the secret really is.
        raw = json_format.MessageToDict(request.object)
        self.registered.append(
            Registered(
                typ=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                dependencies=list(request.dependencies),
                custom=request.custom,
                raw_inputs=raw,
                inputs=unwrap(raw),
                state=state,
                options={
                    "deleteBeforeReplace": request.deleteBeforeReplace,
                    "retainOnDelete": request.retainOnDelete,
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "additionalSecretOutputs": list(request.additionalSecretOutputs),
                },
            )
        )
        return response


@dataclass
class Evaluation:
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def find(self, typ: str, name: str) -> Registered:
        """The one resource of `typ` whose logical name is `name`."""
        found = [r for r in self.resources if r.typ == typ and r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.of_type(typ))
            raise LookupError(f"{len(found)} resources {typ} named {name!r}; have {names}")
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def container(self, service: str) -> Registered:
        return self.find("docker:index/container:Container", service)

    def uploads(self, service: str) -> dict[str, str]:
        """Container path -> content of what the program uploads into a service."""
        return {u["file"]: u["content"] for u in self.container(service).inputs.get("uploads", [])}

    def envs(self, service: str) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.container(service).inputs.get("envs", []))


def declared_defaults(project: str = PROJECT) -> dict[str, str]:
    """The config defaults of Pulumi.yaml as the CLI passes them: full key -> string (JSON
    for lists and objects, `true`/`false` for booleans)."""
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text()).get("config") or {}
    passed: dict[str, str] = {}
    for key, spec in declared.items():
        if isinstance(spec, dict) and "default" in spec:
            value = spec["default"]
            text = value if isinstance(value, str) else json.dumps(value)
            passed[key if ":" in key else f"{project}:{key}"] = text
    return passed


@contextmanager
def cli_config_env(config: dict[str, str], secret_keys: list[str]) -> Iterator[None]:
    """PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS as the CLI's language host sets them for
    the program (and as pulumi-language-python-exec reads them), restored afterwards."""
    names = ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(secret_keys)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def evaluate(
    config: dict[str, str] | None = None,
    *,
    stack: str = "dev",
    secrets: dict[str, str] | None = None,
    project: str = PROJECT,
    other_config: dict[str, str] | None = None,
    program: Callable[[], None] | None = None,
) -> Evaluation:
    """Run `__main__.py` (or `program`) for one stack config (keys without the project prefix).

    `other_config` holds keys of other namespaces as they are, e.g. {"docker:host": ...}.
    """
    config = dict(config or {})
    secrets = dict(secrets or {})
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    given = {f"{project}:{k}": str(v) for k, v in (config | secrets).items()} | dict(other_config or {})
    full = declared_defaults(project) | given
    secret_keys = [f"{project}:{k}" for k in secrets]
    pulumi.runtime.set_all_config(full, secret_keys=secret_keys)

    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    def main() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    with cli_config_env(full, secret_keys):
        _sync_await(run_pulumi_func(program or main))

    root = pulumi.runtime.settings.get_root_resource()
    exported: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    for name, value in exported.items():
        out = pulumi.Output.from_input(value)
        outputs[name] = _sync_await(out.future())
        if _sync_await(out.is_secret()):
            secret_outputs.add(name)
    _sync_await(wait_for_rpcs())
    return Evaluation(stack, list(monitor.registered), outputs, secret_outputs)
