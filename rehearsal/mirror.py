"""The program's registry container as a loopback process, with any upstream URL.

Like `rehearsal.registry_proc.RehearsalMirror.start`, but the caller chooses what
`proxy.remoteurl` points at (the throttle, or the nginx front in front of it), so the
benchmark and the front's rehearsal can put something between the mirror and its upstream.
The registry's files (`config.yml`, chain, key) and envs are taken from an `Evaluation` of
the program exactly as it registers them; `map_registry_config` re-roots container paths
and rewrites only the listen addresses and the upstream. The caller passes the registry
binary: `registry_proc.mirror_binary()` in a test (skip/fail policy), or
`registry3.registry_binary()` in the benchmark (which reports a missing binary itself); the
benchmark's `--mirror 2.8` runs Debian's docker-registry for comparison.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract import Registry
from rehearsal.registry_proc import (
    ca_context,
    free_port,
    map_registry_config,
    refuse_non_loopback_urls,
    registry_env,
    registry_process,
)

CONFIG_PATH = Registry.CONFIG_PATH


@dataclass(frozen=True)
class ProgramMirror:
    host_port: str  # 127.0.0.1:PORT (TLS)
    storage: Path  # storage.filesystem.rootdirectory, mapped
    log_path: Path

    def has_blobs(self, digests: tuple[str, ...]) -> bool:
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return all((blobs / d[7:9] / d[7:] / "data").exists() for d in digests)


@contextlib.contextmanager
def program_mirror(
    evaluation: Any,
    root: Path,
    upstream_url: str,
    ca_file: Path,
    *,
    binary: str,
    without: Sequence[tuple[str, ...]] = (),
    loopback_names: Collection[str] = (),
    notification_url: str | None = None,
    service: str = "registry",
    storage: Path | None = None,
) -> Iterator[ProgramMirror]:
    """Run the program's registry (`binary serve`) under `root` until the block exits;
    `service` names the container whose files and envs it runs with (another mirror's, the
    private registry's, whose config has no upstream).

    `without`: config keys to remove first, only for the benchmark's 2.8 comparison run
    (2.8.2 refuses to start with `storage.tag`). `loopback_names`: upstream host names the
    caller's `binary` resolves to loopback itself (see refuse_non_loopback_urls).
    `notification_url`: where the cache keeper's stand-in listens, when the config notifies one.
    `storage`: the cache directory to use instead of the one under `root` (a restart on the
    same cache with another config).
    """
    container = evaluation.container(service)
    uploads = {u["file"]: u["content"] for u in container.inputs.get("uploads", [])}
    # no tracing endpoint: the benchmark measures pulls, not the exporter
    env = registry_env(container.inputs.get("envs", []))
    port, debug_port = free_port(), free_port()
    mapped = map_registry_config(
        uploads[CONFIG_PATH],
        uploads,
        Path(root) / "container",
        addr=f"127.0.0.1:{port}",
        debug_addr=f"127.0.0.1:{debug_port}",
        upstream_url=upstream_url,
        notification_url=notification_url,
    )
    config = yaml.safe_load(mapped.read_text())
    if storage is not None:
        config["storage"]["filesystem"]["rootdirectory"] = str(storage)
    for key_path in without:
        parent = config
        for key in key_path[:-1]:
            parent = parent.get(key, {})
        parent.pop(key_path[-1], None)
    if without or storage is not None:
        mapped.write_text(yaml.safe_dump(config, sort_keys=True))
    refuse_non_loopback_urls(env, mapped, loopback_names)
    storage = Path(config["storage"]["filesystem"]["rootdirectory"])
    log_path = Path(root) / "registry.log"
    with registry_process(
        mapped,
        binary=binary,
        log_path=log_path,
        probe_url=f"https://127.0.0.1:{port}/v2/",
        env=env,
        ssl_context=ca_context(ca_file),
    ):
        yield ProgramMirror(f"127.0.0.1:{port}", storage, log_path)
