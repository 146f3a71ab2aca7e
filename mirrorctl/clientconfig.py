"""`mirrorctl client-config`: write one client kind's files from the `clientConfigs` output.

The output holds no secret (so no `--show-secrets` is needed); the client key and a k3s
password are placeholders filled here from a file and an environment variable, never from a
flag value (which `ps` would show).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import CLIENT_KEY_PLACEHOLDER, CLIENT_KINDS, PASSWORD_PLACEHOLDER, USER_PLACEHOLDER
from mirrorctl.errors import MirrorctlError

PASSWORD_ENV = "REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Plan:
    files: dict[str, str]  # absolute path on the target -> content, placeholders filled
    fragments: dict[str, str]  # name (not a path) -> text to merge by hand


def plan(configs: Any, kind: str, *, client_key: str | None, user: str | None,
         environ: dict[str, str] | os._Environ[str]) -> Plan:
    if kind not in CLIENT_KINDS:
        raise MirrorctlError(f"unknown client kind {kind!r}: use {', '.join(CLIENT_KINDS)}")
    if not isinstance(configs, dict) or not isinstance(configs.get(kind), dict):
        raise MirrorctlError("the stack output clientConfigs is missing or not a map (run `pulumi up` with "
                             "this version)")
    entries: dict[str, str] = configs[kind]
    if not entries and kind == "kind":
        raise MirrorctlError("kind nodes cannot use a mirror at localhost (inside a node it is the node "
                             "itself): set hostname to a name the nodes reach (pulumi config set hostname "
                             "registry.lan), run pulumi up, then run this again")
    files: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for path, content in entries.items():
        if not isinstance(path, str) or not isinstance(content, str):
            raise MirrorctlError("the stack output clientConfigs holds a non-text entry")
        if not path.startswith("/"):
            fragments[path] = content
            continue
        if content == CLIENT_KEY_PLACEHOLDER:
            if client_key is None:
                raise MirrorctlError("this stack requires client certificates: pass --client-key FILE "
                                     "(pulumi stack output --show-secrets clientKeyPem > client.key)")
            content = client_key
        if USER_PLACEHOLDER in content:
            password = environ.get(PASSWORD_ENV)
            if user is None or not password:
                raise MirrorctlError(f"this stack asks for a user (registryUsers): pass --user NAME and set "
                                     f"{PASSWORD_ENV} to that user's password")
            content = content.replace(USER_PLACEHOLDER, user).replace(PASSWORD_PLACEHOLDER, password)
        files[path] = content
    return Plan(files, fragments)


def write(p: Plan, root: Path) -> list[Path]:
    """Write every file under `root` (`/` on the client host itself); keys and files holding a
    password are readable by their owner only."""
    written = []
    for path, content in sorted(p.files.items()):
        target = root / path.lstrip("/")
        if ".." in Path(path).parts:
            raise MirrorctlError(f"refusing a client file path with '..': {path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        private = path.endswith(".key") or "password" in content
        target.write_text(content)
        target.chmod(0o600 if private else 0o644)
        written.append(target)
    return written
