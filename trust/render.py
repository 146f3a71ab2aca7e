"""Render the host-trust scripts from the templates in this package.

`render_install_script` is the `create` command, `render_remove_script` the `delete` command
of the trust `Command`. Pure functions: they read only this package's own files.

The templates `install.sh` and `remove.sh` are POSIX sh that shellcheck reads as files. Lines
starting with `#@` are directives, never part of the rendered text:

* `#@ if <switch>` ... [`#@ else` ...] `#@ end`: kept or dropped by a stack switch
  (`system`, `mirror`, `sudo`, `client`), so a script holds only what its stack uses;
* `#@ values` ... `#@ end`: each `NAME=` line becomes `NAME='<value>'`, the only way a
  setting reaches the code (always quoted);
* `#@ include <file>`: another template of this package, rendered with the same switches;
* `#@ program`: the daemon.json merger (`daemon_json.py`) as the body of the heredoc it
  stands in;
* `#@ file-only` ... `#@ end`: for readers and shellcheck only.

`@NAME@` in a comment line is replaced by that value as is (the header names the host).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROGRAM_FILE = "daemon_json.py"

DEFAULT_DOCKER_CERTS_DIR = "/etc/docker/certs.d"
DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_SYSTEM_CA_DIR = "/usr/local/share/ca-certificates"
MACOS_SYSTEM_KEYCHAIN = "/Library/Keychains/System.keychain"


@dataclass(frozen=True)
class TrustParams:
    registry_host: str  # "<hostname>:<registryPort>", e.g. "localhost:6000"
    mirror_url: str  # "https://<hostname>:<registryPort>"
    docker_certs_dir: str  # absolute; /etc/docker/certs.d (Docker Desktop: ~/.docker/certs.d)
    install_system_trust: bool  # also add the root CA to the OS trust store
    configure_docker_mirror: bool  # merge "registry-mirrors" into daemon.json
    docker_daemon_json_path: str  # default /etc/docker/daemon.json
    use_sudo: bool  # use `sudo -n` when a target is not writable
    instance: str  # "<project>-<stack>": keys backup files and the system-trust file name
    system_ca_dir: str = DEFAULT_SYSTEM_CA_DIR  # Debian/Ubuntu
    client_cert: bool = False  # also install client.cert and client.key (requireClientCert)
    # installContainerdConfig: (upstream as image names write it, its server URL) per mirror
    containerd_upstreams: tuple[tuple[str, str], ...] = ()
    containerd_certs_dir: str = "/etc/containerd/certs.d"
    # every further "<hostname>:<port>" the stack publishes with TLS (each further mirror's
    # own port, the private registry's): Docker trusts each by its own certs.d directory
    other_hosts: tuple[str, ...] = ()


class TemplateError(Exception):
    """A template of this package is malformed (a defect of the package, not of a stack)."""


_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):\d{1,5}$"
)
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+/?$")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# they go into a TOML basic string and a space-separated sh list: no quote, backslash or space
_UPSTREAM_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?$")
_SERVER_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")


def _check(p: TrustParams) -> None:
    """Reject values that would make a wrong script. Nothing multi-line (such as a PEM) can
    pass, so certificate material can never end up in the command text."""
    for host in (p.registry_host, *p.other_hosts):
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"registry_host and other_hosts must be <dns-name>:<port>, got {host!r}")
    if not _URL_RE.fullmatch(p.mirror_url):
        raise ValueError(f"mirror_url must be http(s)://<host>:<port>, got {p.mirror_url!r}")
    if not _INSTANCE_RE.fullmatch(p.instance):
        raise ValueError(f"instance must match {_INSTANCE_RE.pattern}, got {p.instance!r}")
    for upstream, server in p.containerd_upstreams:
        if not _UPSTREAM_RE.fullmatch(upstream) or not _SERVER_RE.fullmatch(server):
            raise ValueError(f"containerd upstream must be host[:port] and its server an http(s) URL: "
                             f"{upstream!r} {server!r}")
    if p.containerd_upstreams and not re.fullmatch(r"/[A-Za-z0-9._/-]*", p.containerd_certs_dir):
        raise ValueError(f"containerd_certs_dir must be a plain absolute path, got {p.containerd_certs_dir!r}")
    paths = {
        "docker_certs_dir": p.docker_certs_dir,
        "docker_daemon_json_path": p.docker_daemon_json_path,
        "system_ca_dir": p.system_ca_dir,
    }
    for name, value in paths.items():
        if not value.startswith("/") or any(c in value for c in "\n\r\0"):
            raise ValueError(f"{name} must be an absolute single-line path, got {value!r}")
    if p.docker_daemon_json_path.endswith("/"):
        raise ValueError("docker_daemon_json_path must name a file")


def sh_quote(value: str) -> str:
    """`shlex.quote`, always inside single quotes: every assignment reads alike, and the text
    stays what it was before the scripts became files (any changed byte of the command makes
    Pulumi replace the trust command of every stack: remove, then install again)."""
    quoted = shlex.quote(value)
    return quoted if quoted.startswith("'") else f"'{quoted}'"


def _dir(path: str) -> str:
    return path.rstrip("/") or "/"


def _join(directory: str, name: str) -> str:
    d = _dir(directory)
    return f"{d}{name}" if d == "/" else f"{d}/{name}"


def _values(p: TrustParams) -> dict[str, str]:
    """Every value a template may ask for; each template's `#@ values` block picks its own."""
    ca_dir = _join(p.docker_certs_dir, p.registry_host)
    return {
        "T_HOST": p.registry_host,
        "T_CA_FILE": _join(ca_dir, "ca.crt"),
        "T_CERTS_DIR": _dir(p.docker_certs_dir),
        # a space-separated list for `for`: _HOST_RE allows no space inside a host
        "T_HOSTS": " ".join(dict.fromkeys((p.registry_host, *p.other_hosts))),
        # the suffix of a file the install moved aside (never .crt, .cert or .key: Docker
        # would read it), keyed by stack like the daemon.json backup
        "T_KEEP": f".{p.instance}.bak",
        # the files this stack wrote into a certs.d directory, with their checksums
        "T_RECORD": f".{p.instance}.installed",
        "T_SYS_CA_DIR": _dir(p.system_ca_dir),
        "T_SYS_CA_FILE": _join(p.system_ca_dir, f"{p.instance}.crt"),
        "T_KEYCHAIN": MACOS_SYSTEM_KEYCHAIN,
        "T_MIRROR_URL": p.mirror_url,
        "T_DAEMON_JSON": p.docker_daemon_json_path,
        "T_DAEMON_BAK": f"{p.docker_daemon_json_path}.{p.instance}.bak",
        "T_CTRD_DIR": _dir(p.containerd_certs_dir),
        "T_CTRD_HOSTS": " ".join(u for u, _ in p.containerd_upstreams),
        "T_CTRD_SERVERS": " ".join(s for _, s in p.containerd_upstreams),
        "T_CTRD_MIRROR": p.mirror_url,
        "T_CTRD_MARK": f"# registry-mirror:{p.instance} installed this file; pulumi destroy removes it",
    }


def _switches(p: TrustParams) -> dict[str, bool]:
    return {"system": p.install_system_trust, "mirror": p.configure_docker_mirror, "sudo": p.use_sudo,
            "client": p.client_cert, "containerd": bool(p.containerd_upstreams)}


@cache
def package_text(name: str) -> str:
    """A file of this package (templates and the merger), read once per process."""
    if "/" in name or name.startswith("."):
        raise TemplateError(f"not a file of the trust package: {name!r}")
    return (PACKAGE_DIR / name).read_text(encoding="utf-8")


_DIRECTIVE = re.compile(r"#@ ([a-z-]+)(?: ([A-Za-z0-9_.-]+))?\n?")
_ASSIGNMENT = re.compile(r"(T_[A-Z0-9_]+)=\n?")
_TOKEN = re.compile(r"@(T_[A-Z0-9_]+)@")
_HEREDOC = re.compile(r"<<'([A-Za-z_][A-Za-z0-9_]*)'\n")


@dataclass
class _Block:
    kind: str  # "if", "values" or "file-only"
    keep: bool
    line: str  # where it opened, for messages
    switch: str = ""
    seen_else: bool = False


def _expand(name: str, switches: dict[str, bool], values: dict[str, str]) -> list[str]:
    out: list[str] = []
    stack: list[_Block] = []
    for number, line in enumerate(package_text(name).splitlines(keepends=True), 1):
        where = f"trust/{name}:{number}"
        keep = all(block.keep for block in stack)
        if not line.startswith("#@"):
            if not keep:
                continue
            if any(block.kind == "values" for block in stack):
                assignment = _ASSIGNMENT.fullmatch(line)
                if assignment is None:
                    raise TemplateError(f"{where}: a #@ values block holds only NAME= lines")
                var = assignment.group(1)
                if var not in values:
                    raise TemplateError(f"{where}: no value is rendered for {var}")
                out.append(f"{var}={sh_quote(values[var])}\n")
                continue
            if _TOKEN.search(line):
                if not line.lstrip().startswith("#"):
                    raise TemplateError(f"{where}: @NAME@ only in comments; code reads quoted values")
                line = _substitute(line, values, where)
            out.append(line)
            continue
        directive = _DIRECTIVE.fullmatch(line)
        if directive is None:
            raise TemplateError(f"{where}: not a directive: {line.rstrip()!r}")
        word, arg = directive.groups()
        if word == "if":
            if arg not in switches:
                raise TemplateError(f"{where}: unknown switch {arg!r}")
            stack.append(_Block("if", switches[arg], where, switch=arg))
        elif word == "else":
            if not stack or stack[-1].kind != "if" or stack[-1].seen_else:
                raise TemplateError(f"{where}: #@ else without its #@ if")
            stack[-1].keep = not switches[stack[-1].switch]
            stack[-1].seen_else = True
        elif word in ("values", "file-only") and arg is None:
            stack.append(_Block(word, word == "values", where))
        elif word == "end" and arg is None:
            if not stack:
                raise TemplateError(f"{where}: #@ end without a block")
            stack.pop()
        elif word == "include" and arg is not None:
            if keep:
                out += _expand(arg, switches, values)
        elif word == "program" and arg is None:
            if keep:
                out.append(_program(out[-1] if out else "", where))
        else:
            raise TemplateError(f"{where}: unknown directive {line.rstrip()!r}")
    if stack:
        raise TemplateError(f"trust/{name}: #@ {stack[-1].kind} at {stack[-1].line} is never ended")
    return out


def _substitute(line: str, values: dict[str, str], where: str) -> str:
    for var in _TOKEN.findall(line):
        if var not in values:
            raise TemplateError(f"{where}: no value is rendered for @{var}@")
    return _TOKEN.sub(lambda m: values[m.group(1)], line)


def _program(opening: str, where: str) -> str:
    """The merger as a quoted heredoc body: it must follow a `<<'WORD'` line, and no line of
    the program may equal WORD (sh would end the heredoc there and run the rest as sh)."""
    heredoc = _HEREDOC.search(opening)
    if heredoc is None:
        raise TemplateError(f"{where}: #@ program must follow a line ending in <<'WORD'")
    program = package_text(PROGRAM_FILE)
    if heredoc.group(1) in program.splitlines() or not program.endswith("\n"):
        raise TemplateError(f"{where}: {PROGRAM_FILE} cannot be the body of <<'{heredoc.group(1)}'")
    return program


def render(template: str, p: TrustParams) -> str:
    """One template of this package, rendered for `p`."""
    _check(p)
    return "".join(_expand(template, _switches(p), _values(p)))


def render_install_script(p: TrustParams) -> str:
    """The `create` command. Reads the root CA PEM from stdin; with `client_cert`, stdin
    carries the root CA, then the client chain, then its private key (PEM blocks, in that
    order; the script refuses any other layout with one line that never quotes the input).

    Certificates and keys never appear in the command text, which Pulumi stores in its state
    and shows in previews. The script

    * writes the CA to Docker's fixed layout `<dockerCertsDir>/<host>:<port>/ca.crt` (mode
      0644) and, with `client_cert`, `client.cert` (0644) and `client.key` (0600) beside it;
    * optionally adds it to the OS trust store: Debian/Ubuntu `update-ca-certificates`, macOS
      `security add-trusted-cert` into the System keychain; any other OS fails with one line;
    * optionally merges `"registry-mirrors": [<mirror_url>]` into Docker's `daemon.json`,
      keeping every other key, backing the original up once, never adding a duplicate, and
      printing that Docker must be restarted (it never restarts Docker itself). dockerd
      rejects unknown keys, so no marker can be stored inside the file. The merger
      (`daemon_json.py`) writes the file itself, under a lock shared by every stack.

    Privileges: a target this user cannot write (for a path still to be created: its nearest
    existing parent directory) is written through `sudo -n` when `use_sudo` is true. `-n`
    never prompts (a password prompt would hang `pulumi up`); when it fails, or `use_sudo` is
    false, the script stops before changing anything, with ONE line on stderr that names the
    path and the command to run. The plan (what changes, which privileges) is made before the
    first change, so a refusal leaves the host untouched.
    """
    return render("install.sh", p)


def render_remove_script(p: TrustParams) -> str:
    """The `delete` command. Never reads stdin; undoes only what the install added, and
    deletes this stack's daemon.json backup once its URL is out.

    Privileges work as in `render_install_script`. On macOS a certificate is deleted by its
    SHA-1 (`-Z`), because a name can match more than one certificate.
    """
    return render("remove.sh", p)
