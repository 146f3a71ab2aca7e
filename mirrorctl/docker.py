"""`gc` and `logs`: the Docker CLI calls, one subprocess each.

Garbage collection of `registry:3` — why it is done this way:

- The registry's storage is the named volume at `/var/lib/registry`, but its config file
  (`/etc/distribution/config.yml`, with the TLS files) is *uploaded into the container's
  own filesystem* by the Pulumi program. `docker run --volumes-from <registry>` carries the
  volume, not that file, and a fresh container from the same image would read the image's
  *default* config instead. So the exact config is copied out (`docker cp`, which also works
  on a stopped container and through a remote daemon) and handed to the collector on its
  stdin: `registry garbage-collect /dev/stdin` (distribution's resolveConfiguration just
  opens the path). No host file is bind-mounted, so nothing depends on which host paths the
  Docker daemon can see (Docker Desktop, colima, remote engines).
- The collector must not race the registry: mark-and-sweep deletes every blob no manifest
  references *at the time it marked*. Read-only maintenance mode
  (`storage.maintenance.readonly`) is NOT enough for a pull-through cache: it only refuses
  client pushes and deletes, while a pull still makes the proxy write the fetched manifest
  and blobs into storage (seen with distribution 2.8.2: tests/rehearsal/
  test_mirrorctl_rehearsal.py). It could also only be switched on by recreating the
  container with another env (`docker start` cannot change env), which Pulumi would then
  see as drift. So `gc --apply` STOPS the registry container, collects, and starts it again
  (always, also when the collector fails) — only if it was running before.
- `gc` without `--apply` is a dry run (`--dry-run`): it deletes nothing, so the registry keeps
  running and the volumes are mounted read-only (`--volumes-from <registry>:ro`).
- The collector runs the same image as the registry (`docker inspect` `.Image`, the image
  ID), as the same user, with `--network none` (it needs nothing but the volume), with the
  registry's own `REGISTRY_STORAGE*` environment overrides (passed by an env file, mode
  0600, never on the command line) and `--entrypoint /bin/registry` (where the official
  image installs the binary; the image's entrypoint script is not needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, TextIO

import yaml

from contract import LABEL_SERVICE as SERVICE_LABEL
from contract import Registry
from mirrorctl.errors import MirrorctlError
from mirrorctl.safe import clean

CONFIG_PATH = Registry.CONFIG_PATH
REGISTRY_BINARY = Registry.BINARY
DOCKER_TIMEOUT = 120.0
GC_TIMEOUT = 3600.0
SUMMARY_RE = re.compile(
    r"(?P<marked>\d+) blobs marked, (?P<blobs>\d+) blobs and (?P<manifests>\d+) manifests "
    r"eligible for deletion"
)
ELIGIBLE_RE = re.compile(r"^(?:blob|manifest) eligible for deletion: (?P<digest>\S+)")


def docker_executable() -> str:
    exe = shutil.which("docker")
    if exe is None:
        raise MirrorctlError("the docker CLI is not on PATH")
    return exe


def _run(
    args: Sequence[str], *, input_bytes: bytes | None = None, timeout: float = DOCKER_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            list(args),
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise MirrorctlError(f"`docker {args[1]}` did not finish within {timeout:g}s") from error


def _stderr_line(result: subprocess.CompletedProcess[bytes]) -> str:
    text = (result.stderr or result.stdout or b"").decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"exit status {result.returncode}"
    line = lines[-1]
    try:  # the registry logs JSON (log.formatter: json)
        document = json.loads(line)
        if isinstance(document, dict) and "msg" in document:
            return str(document["msg"])
    except ValueError:
        pass
    return line


# ---------------------------------------------------------------------------------- gc


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image_id: str
    running: bool
    user: str
    env: tuple[str, ...]
    labels: dict[str, str]
    mount_destinations: tuple[str, ...]


def inspect_container(docker: str, name: str) -> ContainerInfo:
    result = _run([docker, "container", "inspect", name])
    if result.returncode != 0:
        raise MirrorctlError(f"no container {name!r} ({_stderr_line(result)}): is the stack up?")
    try:
        document = json.loads(result.stdout)
        info: dict[str, Any] = document[0]
        config = info.get("Config") or {}
        return ContainerInfo(
            name=name,
            image_id=str(info["Image"]),
            running=bool((info.get("State") or {}).get("Running")),
            user=str(config.get("User") or ""),
            env=tuple(str(e) for e in config.get("Env") or []),
            labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
            mount_destinations=tuple(
                str(m.get("Destination", "")) for m in info.get("Mounts") or []
            ),
        )
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise MirrorctlError(
            f"`docker container inspect {name}` gave an unexpected answer"
        ) from error


def storage_root(config_text: str) -> str:
    try:
        config = yaml.safe_load(config_text)
        root = config["storage"]["filesystem"]["rootdirectory"]
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise MirrorctlError(
            f"the registry's {CONFIG_PATH} has no storage.filesystem.rootdirectory"
        ) from error
    return str(root)


def on_a_volume(path: str, destinations: Sequence[str]) -> bool:
    target = PurePosixPath(path)
    return any(
        d and (target == PurePosixPath(d) or PurePosixPath(d) in target.parents)
        for d in destinations
    )


def gc_run_args(
    docker: str,
    info: ContainerInfo,
    *,
    dry_run: bool,
    env_file: Path | None,
) -> list[str]:
    """The `docker run` of the collector (see the module docstring for every flag)."""
    args = [
        docker,
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--volumes-from",
        f"{info.name}:ro" if dry_run else info.name,
    ]
    if info.user:
        args += ["--user", info.user]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    args += ["--entrypoint", REGISTRY_BINARY, info.image_id, "garbage-collect"]
    if dry_run:
        args.append("--dry-run")
    args.append("/dev/stdin")
    return args


@dataclass
class GcResult:
    container: str
    dry_run: bool
    stopped: bool  # the registry was stopped (and started again) for the collection
    marked: int
    eligible_blobs: int
    eligible_manifests: int
    eligible: list[str] = field(default_factory=list)
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "dry_run": self.dry_run,
            "registry_stopped": self.stopped,
            "marked": self.marked,
            "eligible_blobs": self.eligible_blobs,
            "eligible_manifests": self.eligible_manifests,
            "eligible": self.eligible,
        }


def parse_gc_output(text: str) -> tuple[int, int, int, list[str]]:
    summary = SUMMARY_RE.search(text)
    if summary is None:
        raise MirrorctlError("garbage-collect printed no summary line")
    eligible = [
        m.group("digest") for line in text.splitlines() if (m := ELIGIBLE_RE.match(line.strip()))
    ]
    return int(summary["marked"]), int(summary["blobs"]), int(summary["manifests"]), eligible


def garbage_collect(
    container: str,
    *,
    apply: bool,
    progress: Callable[[str], None] = lambda _message: None,
) -> GcResult:
    docker = docker_executable()
    info = inspect_container(docker, container)
    if info.labels.get(SERVICE_LABEL) != "registry":
        raise MirrorctlError(
            f"container {container!r} is not the stack's registry "
            f"(label {SERVICE_LABEL}={info.labels.get(SERVICE_LABEL, '')!r})"
        )
    dry_run = not apply
    with tempfile.TemporaryDirectory(prefix="mirrorctl-gc-") as tmp:
        config_copy = Path(tmp) / "config.yml"
        copied = _run([docker, "cp", f"{container}:{CONFIG_PATH}", str(config_copy)])
        if copied.returncode != 0 or not config_copy.is_file():
            raise MirrorctlError(
                f"cannot copy {CONFIG_PATH} out of {container}: {_stderr_line(copied)}"
            )
        config = config_copy.read_bytes()
        root = storage_root(config.decode(errors="replace"))
        if not on_a_volume(root, info.mount_destinations):
            raise MirrorctlError(
                f"the storage root {root} is not on a volume of {container}: "
                "--volumes-from cannot carry it to the collector"
            )
        env_file: Path | None = None
        storage_env = [e for e in info.env if e.startswith("REGISTRY_STORAGE")]
        if storage_env:
            env_file = Path(tmp) / "storage.env"
            fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write("".join(f"{e}\n" for e in storage_env))

        stopped = False
        if apply and info.running:
            progress(f"stopping {container} (a collection must not race the pull-through cache)")
            stop = _run([docker, "stop", container])
            if stop.returncode != 0:
                raise MirrorctlError(f"cannot stop {container}: {_stderr_line(stop)}")
            stopped = True
        try:
            progress(f"collecting{' (dry run)' if dry_run else ''} with the image of {container}")
            result = _run(
                gc_run_args(docker, info, dry_run=dry_run, env_file=env_file),
                input_bytes=config,
                timeout=GC_TIMEOUT,
            )
        finally:
            if stopped:
                progress(f"starting {container} again")
                start = _run([docker, "start", container])
                if start.returncode != 0:
                    raise MirrorctlError(
                        f"{container} was stopped for gc and did not start again "
                        f"({_stderr_line(start)}): run `docker start {container}`"
                    )
    if result.returncode != 0:
        raise MirrorctlError(
            f"garbage-collect failed in {container}'s image: {_stderr_line(result)}"
        )
    output = result.stdout.decode(errors="replace")
    marked, blobs, manifests, eligible = parse_gc_output(output)
    return GcResult(container, dry_run, stopped, marked, blobs, manifests, eligible, output)


# ---------------------------------------------------------------------------------- logs


def logs_args(
    docker: str,
    container: str,
    *,
    follow: bool,
    tail: str | None,
    since: str | None,
    timestamps: bool,
) -> list[str]:
    args = [docker, "logs"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args += ["--tail", tail]
    if since is not None:
        args += ["--since", since]
    if timestamps:
        args.append("--timestamps")
    args.append(container)
    return args


def _relay(source: IO[bytes], sink: TextIO) -> None:
    for raw in iter(source.readline, b""):
        sink.write(clean(raw.decode(errors="replace"), keep_newlines=True))
        sink.flush()


def show_logs(
    container: str,
    *,
    follow: bool = False,
    tail: str | None = None,
    since: str | None = None,
    timestamps: bool = False,
) -> int:
    """`docker logs` of one container, line by line, escaped; its exit status.

    The lines are the container's and Docker's, so they pass through `clean` like any
    other text from outside: a logged request path cannot drive the operator's terminal.
    stdout and stderr stay apart, each relayed as it arrives (`--follow` keeps streaming).
    """
    args = logs_args(
        docker_executable(), container, follow=follow, tail=tail, since=since, timestamps=timestamps
    )
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    relays = [
        threading.Thread(target=_relay, args=(process.stdout, sys.stdout), daemon=True),
        threading.Thread(target=_relay, args=(process.stderr, sys.stderr), daemon=True),
    ]
    for relay in relays:
        relay.start()
    try:
        for relay in relays:
            relay.join()
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C ends --follow (docker got the same SIGINT)
        process.terminate()
        process.wait()
        return 130
