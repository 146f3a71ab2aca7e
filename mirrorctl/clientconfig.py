"""`mirrorctl client-config`: write one client kind's files from the `clientConfigs` output.

The output holds no secret (so no `--show-secrets` is needed); the client key and a k3s
password are placeholders filled here from a file and an environment variable, never from a
flag value (which `ps` would show). A password goes into its YAML file through the YAML
serializer, so any text stays one value.

Every path must lie under the directories its client kind uses (`contract.CLIENT_ROOTS`): an
outputs file is data, and a hostile one must not make root write elsewhere. Files are created
with their final mode (a key is never readable by others, not even for an instant), never
through a symbolic link (a link at the file or at any directory below `--root` is refused),
and replace the old file in one rename.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract import CLIENT_KEY_PLACEHOLDER, CLIENT_KINDS, CLIENT_ROOTS, PASSWORD_PLACEHOLDER, USER_PLACEHOLDER
from mirrorctl.errors import MirrorctlError

PASSWORD_ENV = "REGISTRY_PASSWORD"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Plan:
    files: dict[str, str]  # absolute path on the target -> content, placeholders filled
    fragments: dict[str, str]  # name (not a path) -> text to merge by hand


def _check_path(path: str, kind: str) -> None:
    """`path` is a plain absolute path (no `..`, `.` or empty part) under one of the kind's roots."""
    roots = CLIENT_ROOTS[kind]
    if posixpath.normpath(path) != path or not path.startswith(roots) or "\\" in path or "\0" in path:
        raise MirrorctlError(f"refusing the client file {path!r}: outside the directories a {kind} client "
                             f"uses ({', '.join(roots)})")


def _filled(value: Any, user: str, password: str) -> Any:
    """The document with every placeholder value replaced (values only; keys stay)."""
    if isinstance(value, dict):
        return {k: _filled(v, user, password) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, user, password) for v in value]
    return {USER_PLACEHOLDER: user, PASSWORD_PLACEHOLDER: password}.get(value, value) if isinstance(value, str) \
        else value


def _with_credentials(path: str, content: str, user: str, password: str) -> str:
    if not path.endswith((".yaml", ".yml")):
        raise MirrorctlError(f"the stack output clientConfigs asks for a user in {path!r}, which is not YAML "
                             "(run `pulumi up` with this version)")
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError:
        raise MirrorctlError(f"the stack output clientConfigs holds {path!r} that is not YAML") from None
    return yaml.safe_dump(_filled(document, user, password), sort_keys=False)


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
        _check_path(path, kind)
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
            content = _with_credentials(path, content, user, password)
        files[path] = content
    return Plan(files, fragments)


def _mode(path: str, content: str) -> int:
    """Keys and files holding a password are readable by their owner only."""
    return 0o600 if path.endswith(".key") or "password" in content else 0o644


def _refuse_link(shown: Path) -> MirrorctlError:
    return MirrorctlError(f"refusing to write through the symbolic link {shown}: remove it (or write the "
                          "files by hand)")


def _links_below(root: Path, path: str) -> Iterator[Path]:
    """Every existing part of root/path below root that is a symbolic link."""
    current = root
    for part in Path(path.lstrip("/")).parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                yield current
        except FileNotFoundError:
            return


def _directory(root_fd: int, parts: tuple[str, ...], root: Path) -> int:
    """An fd of root/<parts>, made 0755 where missing, never following a link."""
    fd = os.dup(root_fd)
    shown = root
    for part in parts:
        shown = shown / part
        try:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _refuse_link(shown) from None
            raise
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def _write_one(root_fd: int, root: Path, path: str, content: str) -> Path:
    *parents, name = Path(path.lstrip("/")).parts
    dir_fd = _directory(root_fd, tuple(parents), root)
    target = root.joinpath(*parents, name)
    try:
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise _refuse_link(target)
        except FileNotFoundError:
            pass
        mode = _mode(path, content)
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        # created with the final mode (umask can only narrow it; fchmod sets it exactly)
        fd = os.open(temporary, _NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
            data = content.encode()
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temporary, dir_fd=dir_fd)
            raise
        os.close(fd)
        # a rename replaces whatever is at `name` (a link included) and never follows it
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return target


def write(p: Plan, root: Path) -> list[Path]:
    """Write every file under `root` (`/` on the client host itself). Every target is checked
    for links first, so a refusal writes nothing."""
    for path in p.files:
        if ".." in Path(path).parts:
            raise MirrorctlError(f"refusing a client file path with '..': {path!r}")
        for link in _links_below(root, path):
            raise _refuse_link(link)
    root.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return [_write_one(root_fd, root, path, content) for path, content in sorted(p.files.items())]
    finally:
        os.close(root_fd)
