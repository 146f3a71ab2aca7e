"""Run the program's cache keeper (configs/cache.py, cachekeeper/) as a loopback process.

The code and config.json are the keeper container's uploads exactly as the program registers
them: the package files are laid out under `root` and run by this interpreter (so a module
missing from the uploads fails here), and only what names a place changes in the config: the
storage root (the rehearsal registry's), the state folder, the listen address, the registry's
URL and CA file. `timing` may shorten the check interval, the sweep's fence and the pin
retry, which a rehearsal cannot wait minutes for; every other key stays as rendered.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import Cache
from rehearsal.registry_proc import clean_env, http_get, stop_process

TIMING_KEYS = frozenset({"check_interval_seconds", "fence_seconds", "pin_retry_seconds", "pin_refresh_seconds",
                         "min_age_seconds"})
START_TIMEOUT = 15.0


@dataclass
class RunningKeeper:
    url: str  # http://127.0.0.1:PORT
    events_url: str  # the registry's notification endpoint stand-in
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def metrics(self) -> dict[str, float]:
        _, _, body = http_get(f"{self.url}{Cache.METRICS_PATH}")
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.decode().splitlines()
                if line and not line.startswith("#")}

    def metric_names(self) -> set[str]:
        return set(self.metrics())

    def decisions(self) -> list[dict[str, Any]]:
        """The keeper's log: one JSON object per line."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def wait_check(self, after: float, timeout: float = 20.0) -> None:
        """Until a check that started after `after` (time.time()) has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metrics()["registry_cache_last_check_timestamp_seconds"] > after:
                return
            time.sleep(0.05)
        raise TimeoutError(f"no keeper check after {after}:\n{self.log_path.read_text()[-3000:]}")


def keeper_config(evaluation: Any, service: str = Cache.ALIAS) -> dict[str, Any]:
    uploads = {u["file"]: u["content"] for u in evaluation.container(service).inputs.get("uploads", [])}
    config: dict[str, Any] = json.loads(uploads[Cache.CONFIG_PATH])
    return config


@contextlib.contextmanager
def cache_keeper(
    evaluation: Any,
    root: Path,
    *,
    port: int,
    storage: Path,
    registry_url: str,
    ca_file: Path,
    service: str = Cache.ALIAS,
    timing: Mapping[str, float] | None = None,
) -> Iterator[RunningKeeper]:
    timing = dict(timing or {})
    if set(timing) - TIMING_KEYS:
        raise ValueError(f"only timing keys may change: {sorted(set(timing) - TIMING_KEYS)}")
    root = Path(root)
    uploads = {u["file"]: u["content"] for u in evaluation.container(service).inputs.get("uploads", [])}
    code = root / "code"
    for path, text in uploads.items():
        if path.startswith(Cache.CODE_DIR + "/"):
            target = code / path.removeprefix(Cache.CODE_DIR + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    config = json.loads(uploads[Cache.CONFIG_PATH])
    config.update(storage_root=str(storage), state_dir=str(root / "state"), listen=f"127.0.0.1:{port}",
                  registry_url=registry_url, ca_file=str(ca_file), **timing)
    config_path = root / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = root / "keeper.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cachekeeper", "--config", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(root),
            env=clean_env({"PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}),
        )
    url = f"http://127.0.0.1:{port}"
    keeper = RunningKeeper(url, f"{url}{Cache.EVENTS_PATH}", config_path, log_path, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the keeper exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                http_get(f"{url}{Cache.HEALTH_PATH}", timeout=1)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the keeper did not answer at {url}")
            time.sleep(0.05)
        yield keeper
    finally:
        stop_process(process)
