"""Stand-ins for the official images the program pins, built locally with `docker import`.

No image can be pulled here, so each stand-in copies what its official image's Dockerfile
gives a container (layout, user, entrypoint, command, volumes, ports, env and the tools the
program's health checks run) around a binary we do have, and is tagged with the program's
exact pin so the recorded container specs run unchanged. Sources of each fact:

registry:3.1.1 — distribution/distribution-library-image (the repository the Docker
Official Image `registry` is built from) `Dockerfile` and `entrypoint.sh` at a829ed8cbcd8
(3.0.0; 3.1.x changes only the version and checksums): FROM alpine (busybox `sh`/`wget`),
`apk add ca-certificates`, the release's static binary at `/bin/registry`,
`/etc/distribution/config.yml`, `ENV OTEL_TRACES_EXPORTER=none`, `VOLUME /var/lib/registry`,
`EXPOSE 5000`, `ENTRYPOINT ["/entrypoint.sh"]`, `CMD ["/etc/distribution/config.yml"]`; the
entrypoint turns a `*.yml`/`*.yaml` first argument into `registry serve <file>` and
`serve`/`garbage-collect`/`help`/`-*` into `registry <args>`, so the container runs
`registry serve /etc/distribution/config.yml` — what distribution's own Dockerfile (v3.1.1
tag, last stage) says directly with `ENTRYPOINT ["registry"]`, `CMD ["serve", ...]`.
The binary: distribution v3.1.1 from its Go module (the toolchain's `registry`), static.

prom/prometheus:v3.7.3 — prometheus/prometheus `Dockerfile` at tag v3.7.3 (0a41f0000705):
FROM quay.io/prometheus/busybox (glibc busybox), `/bin/prometheus`, `/bin/promtool`,
`/etc/prometheus/prometheus.yml`, `WORKDIR /prometheus`, `chown -R nobody:nobody
/etc/prometheus /prometheus && chmod g+w /prometheus`, `USER nobody`, `EXPOSE 9090`,
`VOLUME ["/prometheus"]`, `ENTRYPOINT ["/bin/prometheus"]`, `CMD ["--config.file=
/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]`. The binaries:
Prometheus and promtool 3.7.3 from the Go module `github.com/prometheus/prometheus@v0.307.3`
(the toolchain's `prometheus` and `promtool`), static.

prom/blackbox-exporter:v0.27.0 — prometheus/blackbox_exporter `Dockerfile` at tag v0.27.0
(46ea0224f57b): FROM quay.io/prometheus/busybox, `/bin/blackbox_exporter`,
`/etc/blackbox_exporter/config.yml`, `EXPOSE 9115`, no `USER` (root),
`ENTRYPOINT ["/bin/blackbox_exporter"]`, `CMD ["--config.file=/etc/blackbox_exporter/config.yml"]`.
The binary: blackbox_exporter 0.27.0 from its Go module (the toolchain's `blackbox_exporter`), static.

Every stand-in holds the binary of its tag's version: `binary_version` asks the binary, and
`require_version` refuses a binary whose version is not the reference's tag (an image never
carries another version's tag). The version the binary reported is recorded in the image's
`rehearsal.binary-version` label.

python:<version>-slim — docker-library/python `3.13/slim-trixie/Dockerfile` (00bfe6f24794):
FROM debian:trixie-slim, Python built into /usr/local (`python3`, with `/usr/local/bin/python`
linked to it), `ENV PATH /usr/local/bin:$PATH`, `ENV PYTHON_VERSION`, no `USER` (root), no
`ENTRYPOINT`, `CMD ["python3"]`. The stand-in: Debian 12's own python3.11 (package
python3.11-minimal and libpython3.11-stdlib) with its standard library and the libraries its
extension modules load, linked as `/usr/local/bin/python` and `python3`. It is tagged only with
the version it carries (`python:3.11.2-slim`): the cache keeper's tests set `cacheImage` to it,
and the program's own pin (`contract.IMAGES["cache"]`) has no stand-in.

The busybox of every stand-in is Debian's busybox-static (Alpine's and quay.io/prometheus/busybox's
`sh` and `wget` are busybox too). The default config files are short ones of our own (the
program uploads its own over them); the users are those of busybox's /etc/passwd
(root 0, nobody 65534).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rehearsal.engine import Engine
from rehearsal.toolchain import binary_version

BUSYBOX = "/bin/busybox"  # Debian busybox-static: statically linked
# applets the health checks and the tests use inside the containers
APPLETS = ("sh", "wget", "cat", "ls", "stat", "id", "env", "sleep", "test", "true", "ps")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"

# Our own wording of the library image's entrypoint.sh (see the module docstring).
REGISTRY_ENTRYPOINT = """\
#!/bin/sh
set -e
# A config file as the first argument means "serve it"; a registry subcommand or a flag
# goes to registry; anything else (sh, ...) runs as it is.
case "$1" in
  *.yml | *.yaml) set -- registry serve "$@" ;;
  serve | garbage-collect | help | -*) set -- registry "$@" ;;
esac
exec "$@"
"""
REGISTRY_DEFAULT_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
"""
PROMETHEUS_DEFAULT_CONFIG = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
"""
BLACKBOX_DEFAULT_CONFIG = """\
modules:
  http_2xx:
    prober: http
"""


@dataclass(frozen=True)
class Entry:
    path: str  # absolute path in the image
    mode: int
    uid: int = 0
    gid: int = 0
    source: Path | None = None  # a host file to copy (its bytes)
    content: bytes | None = None  # or these bytes
    link: str | None = None  # or a symlink to this
    directory: bool = False


@dataclass(frozen=True)
class StandIn:
    """One stand-in image: its pinned reference, files and image config."""

    reference: str  # e.g. "registry:3.1.1": the program's RemoteImage name
    entries: tuple[Entry, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    volumes: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def changes(self) -> list[str]:
        """`docker import --change` instructions (Dockerfile syntax, JSON exec form)."""
        def exec_form(words: Sequence[str]) -> str:
            return "[" + ", ".join('"' + w.replace('"', '\\"') + '"' for w in words) + "]"

        out = [f"ENTRYPOINT {exec_form(self.entrypoint)}"] if self.entrypoint else []
        if self.cmd:
            out.append(f"CMD {exec_form(self.cmd)}")
        if self.user:
            out.append(f"USER {self.user}")
        if self.workdir:
            out.append(f"WORKDIR {self.workdir}")
        out += [f"VOLUME {exec_form([v])}" for v in self.volumes]
        out += [f"EXPOSE {port}" for port in self.expose]
        out += [f"ENV {item}" for item in self.env]
        out += [f'LABEL {k}="{v}"' for k, v in self.labels.items()]
        return out


def _base(tools: Sequence[str] = APPLETS) -> list[Entry]:
    """What every stand-in has: busybox with its applets, passwd/group, /tmp."""
    if not Path(BUSYBOX).is_file() or shared_libraries(Path(BUSYBOX)):
        # Debian's plain `busybox` package is dynamically linked: it would not run in an
        # image without its libraries
        raise RuntimeError(f"{BUSYBOX} must be a static busybox (apt-get install busybox-static)")
    entries = [
        Entry("/bin", 0o755, directory=True),
        Entry("/etc", 0o755, directory=True),
        Entry("/tmp", 0o1777, directory=True),
        Entry(BUSYBOX, 0o755, source=Path(BUSYBOX)),
        Entry("/etc/passwd", 0o644, content=PASSWD.encode()),
        Entry("/etc/group", 0o644, content=GROUP.encode()),
    ]
    entries += [Entry(f"/bin/{tool}", 0o777, link="busybox") for tool in tools]
    return entries


_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries (and loader) `ldd` says a binary needs; [] when static."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0 or "not a dynamic executable" in result.stdout + result.stderr:
        return []
    found = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise RuntimeError(f"{binary} needs a library this host lacks: {line.strip()}")
        match = _LDD_LINE.search(line)
        if match:
            found.append(Path(match.group(1)))
    return found


def _binary_with_libraries(image_path: str, host_path: Path) -> list[Entry]:
    entries = [Entry(image_path, 0o755, source=host_path)]
    for library in shared_libraries(host_path):
        # the path the loader looks in; the bytes of the file it resolves to
        entries.append(Entry(str(library), 0o755, source=library.resolve()))
    return entries


def tag_version(reference: str) -> str:
    """The version of an image reference's tag: "prom/prometheus:v3.7.3" -> "3.7.3"."""
    tag = reference.rpartition(":")[2]
    return re.sub(r"^v", "", tag.split("-")[0])


def require_version(binary: Path, reference: str) -> str:
    """The binary's version line, when it names the reference's version; else ValueError."""
    line = binary_version(binary)
    wanted = tag_version(reference)
    if not re.search(rf"(?<![0-9.])v?{re.escape(wanted)}(?![0-9])", line):
        raise ValueError(f"{binary} says {line!r}: not the {wanted} of {reference}")
    return line


def registry_stand_in(registry_binary: Path, reference: str = "registry:3.1.1") -> StandIn:
    version = require_version(registry_binary, reference)
    if shared_libraries(registry_binary):
        raise ValueError(f"{registry_binary} is not static, unlike the release binary")
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    entries = _base() + [
        Entry("/bin/registry", 0o755, source=registry_binary),
        Entry("/entrypoint.sh", 0o755, content=REGISTRY_ENTRYPOINT.encode()),
        Entry("/etc/distribution", 0o755, directory=True),
        Entry("/etc/distribution/config.yml", 0o644, content=REGISTRY_DEFAULT_CONFIG.encode()),
        Entry("/var/lib/registry", 0o755, directory=True),
    ]
    if ca_bundle.is_file():  # apk add ca-certificates
        entries.append(Entry("/etc/ssl/certs/ca-certificates.crt", 0o644, source=ca_bundle))
    return StandIn(
        reference=reference,
        entries=tuple(entries),
        entrypoint=("/entrypoint.sh",),
        cmd=("/etc/distribution/config.yml",),
        volumes=("/var/lib/registry",),
        expose=("5000",),
        env=("OTEL_TRACES_EXPORTER=none",),
        labels={"rehearsal.stand-in": "registry", "rehearsal.binary-version": version},
    )


def prometheus_stand_in(reference: str, prometheus: Path, promtool: Path) -> StandIn:
    version = require_version(prometheus, reference)
    require_version(promtool, reference)
    nobody = 65534
    entries = _base() + _binary_with_libraries("/bin/prometheus", prometheus) + [
        Entry("/bin/promtool", 0o755, source=promtool),
        Entry("/etc/prometheus", 0o755, nobody, nobody, directory=True),
        Entry("/etc/prometheus/prometheus.yml", 0o644, nobody, nobody,
              content=PROMETHEUS_DEFAULT_CONFIG.encode()),
        Entry("/prometheus", 0o775, nobody, nobody, directory=True),  # chmod g+w
    ]
    return StandIn(
        reference=reference,
        entries=tuple(entries),
        entrypoint=("/bin/prometheus",),
        cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
        user="nobody",
        workdir="/prometheus",
        volumes=("/prometheus",),
        expose=("9090",),
        labels={"rehearsal.stand-in": "prometheus", "rehearsal.binary-version": version},
    )


def blackbox_stand_in(reference: str, exporter: Path) -> StandIn:
    version = require_version(exporter, reference)
    entries = _base() + _binary_with_libraries("/bin/blackbox_exporter", exporter) + [
        Entry("/etc/blackbox_exporter", 0o755, directory=True),
        Entry("/etc/blackbox_exporter/config.yml", 0o644, content=BLACKBOX_DEFAULT_CONFIG.encode()),
    ]
    return StandIn(
        reference=reference,
        entries=tuple(entries),
        entrypoint=("/bin/blackbox_exporter",),
        cmd=("--config.file=/etc/blackbox_exporter/config.yml",),
        expose=("9115",),
        labels={"rehearsal.stand-in": "blackbox", "rehearsal.binary-version": version},
    )


PYTHON = Path("/usr/bin/python3.11")  # Debian 12's, package python3.11-minimal
# what the official slim image deletes too (tests) and what no keeper or health check imports
PYTHON_STDLIB_SKIPPED = frozenset({"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                                   "lib2to3", "pydoc_data", "__pycache__", "site-packages", "dist-packages",
                                   "sitecustomize.py", "EXTERNALLY-MANAGED"})


def _python_skipped(name: str) -> bool:
    """Also the build's own folder (config-3.11-<triplet>) and Tk's module (X11 libraries)."""
    return name in PYTHON_STDLIB_SKIPPED or name.startswith(("config-", "_tkinter"))


def python_stand_in(reference: str, python: Path = PYTHON) -> StandIn:
    version = require_version(python, reference)
    python = python.resolve()  # /usr/bin/python3 -> python3.11: the stdlib folder's name
    stdlib = Path(f"/usr/lib/{python.name}")
    entries = _base() + _binary_with_libraries(f"/usr/bin/{python.name}", python) + [
        Entry("/usr/local/bin/python3", 0o777, link=f"/usr/bin/{python.name}"),
        Entry("/usr/local/bin/python", 0o777, link="python3"),
    ]
    libraries: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if not _python_skipped(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if _python_skipped(name) or path.is_symlink():
                continue
            entries.append(Entry(str(path), 0o644, source=path))
            if name.endswith(".so"):
                libraries.update(shared_libraries(path))
    have = {e.path for e in entries}
    for library in sorted(libraries):
        if str(library) not in have:
            entries.append(Entry(str(library), 0o755, source=library.resolve()))
            have.add(str(library))
    return StandIn(
        reference=reference,
        entries=tuple(entries),
        entrypoint=(),
        cmd=("python3",),
        env=("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
             f"PYTHON_VERSION={tag_version(reference)}"),
        labels={"rehearsal.stand-in": "python", "rehearsal.binary-version": version},
    )


def rootfs_tar(stand_in: StandIn, out: Path) -> Path:
    """The image's root filesystem as a tar (owners and modes as the entries say; parent
    directories not listed are root 0755)."""
    listed = {e.path for e in stand_in.entries}
    now = int(time.time())
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()

        def parents(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/" + "/".join(parts[:i])
                if directory not in made and directory not in listed:
                    add(Entry(directory, 0o755, directory=True))

        def add(entry: Entry) -> None:
            parents(entry.path)
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, now
            data: bytes | None = None
            if entry.directory:
                info.type = tarfile.DIRTYPE
            elif entry.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
            else:
                data = entry.content if entry.content is not None else Path(str(entry.source)).read_bytes()
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
            made.add(entry.path)

        for entry in sorted(stand_in.entries, key=lambda e: e.path):
            if entry.path not in made:
                add(entry)
    return out


def build(engine: Engine, stand_in: StandIn, work: Path) -> str:
    """`docker import` the stand-in under its pinned reference; returns the image id."""
    work.mkdir(parents=True, exist_ok=True)
    tar = rootfs_tar(stand_in, work / (re.sub(r"[^A-Za-z0-9]+", "-", stand_in.reference) + ".tar"))
    args = ["import"]
    for change in stand_in.changes():
        args += ["--change", change]
    result = engine.docker(*args, str(tar), stand_in.reference, timeout=300)
    tar.unlink()
    return result.stdout.strip()
