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
import copy
import json
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cachekeeper.layout import Layout
from contract import Cache
from rehearsal.registry_proc import answers_http, clean_env, http_get, stop_process, wait_started

TIMING_KEYS = frozenset({"check_interval_seconds", "fence_seconds", "pin_retry_seconds", "pin_refresh_seconds",
                         "min_age_seconds"})
START_TIMEOUT = 15.0


class KeeperReadings:
    """What a test reads of a running keeper, wherever it runs: its scrape and its log."""

    def metrics_text(self) -> str:
        raise NotImplementedError

    def log_text(self) -> str:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in self.metrics_text().splitlines()
                if line and not line.startswith("#")}

    def metric_names(self) -> set[str]:
        return set(self.metrics())

    def decisions(self) -> list[dict[str, Any]]:
        """The keeper's log: one JSON object per line."""
        found = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def evictions(self) -> list[tuple[float, str]]:
        """(when, repository) of every eviction the keeper logged, in order."""
        return [(datetime.fromisoformat(d["time"]).timestamp(), d["repository"]) for d in self.decisions()
                if d.get("msg") == "image evicted"]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30.0,
                 interval: float = 0.1) -> None:
        """Until `condition()`; AssertionError saying `what`, with the log's tail, at the timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}:\n{self.log_text()[-3000:]}")
            time.sleep(interval)

    def wait_check(self, after: float, timeout: float = 20.0) -> None:
        """Until a check that started after `after` (time.time()) has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError, subprocess.CalledProcessError, KeyError):
                if self.metrics()["registry_cache_last_check_timestamp_seconds"] > after:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"no keeper check after {after}:\n{self.log_text()[-3000:]}")


@dataclass
class RunningKeeper(KeeperReadings):
    url: str  # http://127.0.0.1:PORT
    events_url: str  # the registry's notification endpoint stand-in
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def metrics_text(self) -> str:
        _, _, body = http_get(f"{self.url}{Cache.METRICS_PATH}")
        return body.decode()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class UsageSampler:
    """Measures a cache folder every 20 ms in a thread; `peak` is the largest it saw."""

    def __init__(self, layout: Layout) -> None:
        self.layout, self.peak, self.samples = layout, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.layout.usage())
            self.samples += 1
            self.stop.wait(0.02)

    def __enter__(self) -> UsageSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def refuse_other_keys(timing: Mapping[str, float]) -> None:
    if set(timing) - TIMING_KEYS:
        raise ValueError(f"only timing keys may change: {sorted(set(timing) - TIMING_KEYS)}")


def retimed_config(text: str, timing: Mapping[str, float]) -> str:
    """The keeper's rendered config.json with only `timing` keys changed (configs/cache.py
    renders it with `json.dumps(indent=2, sort_keys=True)`, so every other byte stays)."""
    refuse_other_keys(timing)
    config = json.loads(text)
    if json.dumps(config, indent=2, sort_keys=True) + "\n" != text:
        raise ValueError("the keeper's config is not rendered as configs/cache.py renders it")
    return json.dumps(config | dict(timing), indent=2, sort_keys=True) + "\n"


def retimed_inputs(inputs: Mapping[str, Any], timing: Mapping[str, float]) -> dict[str, Any]:
    """A keeper container's recorded inputs with its config.json upload retimed."""
    changed = copy.deepcopy(dict(inputs))
    [upload] = [u for u in changed["uploads"] if u["file"] == Cache.CONFIG_PATH]
    upload["content"] = retimed_config(upload["content"], timing)
    return changed


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
    refuse_other_keys(timing)
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
        wait_started(process, lambda: answers_http(f"{url}{Cache.HEALTH_PATH}", timeout=1, any_status=False),
                     what=f"the keeper at {url}", log=keeper.log_text, timeout=START_TIMEOUT, interval=0.05)
        yield keeper
    finally:
        stop_process(process)
