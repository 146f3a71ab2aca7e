"""The program's registry container as a loopback process, with any upstream URL.

Like `tests.rehearsal.registry_proc.RehearsalMirror.start`, but the caller chooses what
`proxy.remoteurl` points at (the throttle, or the nginx front in front of it), so the
benchmark and the front's rehearsal can put something between the mirror and its upstream.
The registry's files (`config.yml`, chain, key) and envs are taken from an `Evaluation` of
the program exactly as it registers them; `map_registry_config` re-roots container paths
and rewrites only the listen addresses and the upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract import Registry
from tests.rehearsal.registry_proc import (
    ca_context,
    free_port,
    map_registry_config,
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
def program_mirror(evaluation: Any, root: Path, upstream_url: str, ca_file: Path) -> Iterator[ProgramMirror]:
    """Run the program's registry (Debian docker-registry) under `root` until the block exits."""
    container = evaluation.container("registry")
    uploads = {u["file"]: u["content"] for u in container.inputs.get("uploads", [])}
    env = registry_env(container.inputs.get("envs", []))
    port, debug_port = free_port(), free_port()
    mapped = map_registry_config(
        uploads[CONFIG_PATH],
        uploads,
        Path(root) / "container",
        addr=f"127.0.0.1:{port}",
        debug_addr=f"127.0.0.1:{debug_port}",
        upstream_url=upstream_url,
    )
    storage = Path(yaml.safe_load(mapped.read_text())["storage"]["filesystem"]["rootdirectory"])
    log_path = Path(root) / "registry.log"
    with registry_process(
        mapped,
        log_path=log_path,
        probe_url=f"https://127.0.0.1:{port}/v2/",
        env=env,
        ssl_context=ca_context(ca_file),
    ):
        yield ProgramMirror(f"127.0.0.1:{port}", storage, log_path)
