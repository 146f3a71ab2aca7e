"""The keeper's process: pull notifications in, metrics out, the check loop and the seeder.

    python -m cachekeeper --config /etc/registry-cache/config.json

- `POST /events`: the registry's notification endpoint (distribution `notifications`, the
  envelope of notifications/event.go, media type application/vnd.docker.distribution.events.v2+json).
  Every manifest `pull` records when that image was last pulled.
- `GET /metrics`: Prometheus text format (`registry_cache_*`); `GET /health`.
- Every `check_interval_seconds`: measure the cache; above the high watermark, evict (policy.plan,
  sweep.remove_image) and sweep (sweep.sweep). Each decision is one JSON line on stdout.
- The seeder pulls every pinned image through the registry at start and every
  `pin_refresh_seconds`, or `pin_retry_seconds` after a failure (the upstream down).

The last-pull times live in `<state_dir>/state.json` (the keeper's volume), written after
changes, so a restart keeps them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cachekeeper.layout import MANIFEST_TYPES, Layout, is_digest
from cachekeeper.policy import Limits, Pin, pin_cached, plan, scan
from cachekeeper.seed import RegistryClient, SeedError, host_platform
from cachekeeper.sweep import FENCE_SECONDS, remove_image, sweep

PASSWORD_ENV = "REGISTRY_CACHE_PASSWORD"
MAX_EVENT_BODY = 16 << 20


@dataclass(frozen=True)
class Config:
    storage_root: str
    state_dir: str
    listen: str = "0.0.0.0:5080"
    upstream: str = ""
    registry_url: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    username: str | None = None
    max_bytes: int | None = None
    high_watermark: int = 90
    low_watermark: int = 80
    min_age_seconds: float = 900
    pins: tuple[str, ...] = ()
    check_interval_seconds: float = 15
    pin_refresh_seconds: float = 21600
    pin_retry_seconds: float = 300
    fence_seconds: float = FENCE_SECONDS

    @classmethod
    def load(cls, path: str | Path) -> Config:
        data = json.loads(Path(path).read_text())
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        if "pins" in data:
            data["pins"] = tuple(data["pins"])
        return cls(**data)

    @property
    def limits(self) -> Limits | None:
        if self.max_bytes is None:
            return None
        return Limits(self.max_bytes, self.high_watermark, self.low_watermark, self.min_age_seconds)


def log(msg: str, level: str = "info", **fields: Any) -> None:
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level,
              "service": "registry-cache", "msg": msg, **fields}
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


@dataclass
class Metrics:
    bytes_used: int = 0
    images: int = 0
    evicted_images: int = 0
    evicted_bytes: int = 0
    evictions: int = 0
    eviction_errors: int = 0
    last_eviction: float = 0.0
    last_eviction_duration: float = 0.0
    last_check: float = 0.0
    pull_events: int = 0
    pinned_missing: int = 0
    seed_failures: int = 0
    last_seed: float = 0.0


@dataclass
class Keeper:
    config: Config
    layout: Layout = field(init=False)
    pins: list[Pin] = field(init=False)
    pulled: dict[str, float] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    lock: threading.Lock = field(default_factory=threading.Lock)
    check_lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False
    platform: tuple[str, str] = field(default_factory=host_platform)

    def __post_init__(self) -> None:
        self.layout = Layout(self.config.storage_root)
        self.pins = [Pin.parse(p) for p in self.config.pins]
        self.load_state()

    # --- state ---------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return Path(self.config.state_dir) / "state.json"

    def load_state(self) -> None:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except ValueError as error:
            log("state unreadable, starting without last-pull times", "warning", error=str(error))
            return
        pulled = data.get("pulled", {}) if isinstance(data, dict) else {}
        self.pulled = {k: float(v) for k, v in pulled.items() if isinstance(v, (int, float))}

    def save_state(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            document = {"version": 1, "pulled": dict(sorted(self.pulled.items()))}
            self.dirty = False
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1))
        os.replace(temporary, self.state_path)

    # --- notifications -------------------------------------------------------------------

    def record_events(self, envelope: Mapping[str, Any], now: float | None = None) -> int:
        """Record the manifest pulls of one notification envelope; returns how many."""
        now = time.time() if now is None else now
        recorded = 0
        events = envelope.get("events") if isinstance(envelope, Mapping) else None
        for event in events if isinstance(events, list) else []:
            if not isinstance(event, dict) or event.get("action") != "pull":
                continue
            target: dict[str, Any] = event["target"] if isinstance(event.get("target"), dict) else {}
            repository, digest = target.get("repository"), target.get("digest")
            if target.get("mediaType") not in MANIFEST_TYPES or not isinstance(repository, str) \
                    or not isinstance(digest, str) or not is_digest(digest):
                continue
            with self.lock:
                key = f"{repository}@{digest}"
                self.pulled[key] = max(self.pulled.get(key, 0.0), now)
                self.dirty = True
                self.metrics.pull_events += 1
            recorded += 1
        return recorded

    # --- the check -----------------------------------------------------------------------

    def check(self, now: float | None = None) -> dict[str, Any]:
        """Measure; evict and sweep above the high watermark. Returns what it did."""
        with self.check_lock:
            return self._check(time.time() if now is None else now)

    def _check(self, now: float) -> dict[str, Any]:
        with self.lock:
            pulled = dict(self.pulled)
        found = scan(self.layout, pulled, self.pins)
        self.metrics.bytes_used = found.usage
        self.metrics.images = len(found.images)
        self.metrics.last_check = now
        self.metrics.pinned_missing = sum(not pin_cached(self.layout, p, *self.platform) for p in self.pins)
        limits = self.config.limits
        report: dict[str, Any] = {"usage": found.usage, "evicted": []}
        if limits is None:
            return report
        the_plan = plan(found, limits, now, fence=now - self.config.fence_seconds)
        if not the_plan.needed:
            return report
        started = time.monotonic()
        log("eviction started", usage=found.usage, high=limits.high_bytes, low=limits.low_bytes,
            needed=the_plan.needed, planned=len(the_plan.evict), freed_estimate=the_plan.freed_estimate)
        evicted = []
        try:
            chosen = {image.key for image in the_plan.evict}
            for image in the_plan.evict:
                if self._used_since_scan(image, pulled):
                    chosen.discard(image.key)
                    log("image kept: pulled during the eviction", repository=image.repository,
                        digest=image.digest, tags=list(image.tags))
                    continue
                kept_members = {m for other in found.images if other.repository == image.repository
                                and other.key not in chosen for m in other.members}
                removed_tags = remove_image(self.layout, image, kept_members)
                evicted.append(image)
                log("image evicted", repository=image.repository, digest=image.digest, tags=removed_tags,
                    last_used=_iso(image.last_used), bytes=sum(found.sizes.get(b, 0) for b in image.blobs))
            swept = sweep(self.layout, now=now, fence_seconds=self.config.fence_seconds)
        except OSError as error:
            self.metrics.eviction_errors += 1
            log("eviction failed", "error", error=str(error))
            return report
        duration = time.monotonic() - started
        usage = self.layout.usage()
        with self.lock:
            for image in evicted:
                for member in image.members:
                    if self.pulled.pop(f"{image.repository}@{member}", None) is not None:
                        self.dirty = True
        self.metrics.evicted_images += len(evicted)
        self.metrics.evicted_bytes += swept.bytes_removed
        self.metrics.evictions += 1
        self.metrics.last_eviction = time.time()
        self.metrics.last_eviction_duration = duration
        self.metrics.bytes_used = usage
        self.metrics.images = len(found.images) - len(evicted)
        fields: dict[str, Any] = {"images": len(evicted), "blobs_removed": swept.blobs_removed,
                                  "bytes_removed": swept.bytes_removed, "blobs_fenced": swept.blobs_fenced,
                                  "usage": usage, "seconds": round(duration, 3)}
        if the_plan.short:
            log("eviction finished short of the low watermark: pinned or recently pulled images hold the rest",
                "warning", short=the_plan.short, skipped_pinned=the_plan.skipped_pinned,
                skipped_recent=the_plan.skipped_recent, **fields)
        else:
            log("eviction finished", **fields)
        report.update(evicted=[i.key for i in evicted], usage=usage, swept=swept)
        return report

    def _used_since_scan(self, image: Any, pulled: Mapping[str, float]) -> bool:
        with self.lock:
            for member in image.members:
                key = f"{image.repository}@{member}"
                if self.pulled.get(key, 0.0) > pulled.get(key, 0.0):
                    return True
        tags = self.layout.tags(image.repository)
        return any(tags[t].mtime > image.tag_written_at for t in image.tags if t in tags)

    # --- seeding -------------------------------------------------------------------------

    def client(self) -> RegistryClient | None:
        c = self.config
        if c.registry_url is None:
            return None
        password = os.environ.get(PASSWORD_ENV) if c.username else None
        return RegistryClient(c.registry_url, ca_file=c.ca_file, client_cert=c.client_cert, client_key=c.client_key,
                              username=c.username, password=password)

    def seed(self) -> bool:
        """Pull every pinned image through the registry; True when all succeeded."""
        client = self.client()
        if client is None or not self.pins:
            return True
        ok = True
        for pin in self.pins:
            try:
                result = client.pull(pin, *self.platform)
            except (SeedError, OSError) as error:
                ok = False
                self.metrics.seed_failures += 1
                log("pinned image not fetched", "warning", pin=str(pin), error=str(error)[:500])
                continue
            log("pinned image fetched", pin=str(pin), digest=result.digest, manifests=result.manifests,
                blobs=result.blobs, bytes=result.bytes)
        self.metrics.last_seed = time.time()
        self.metrics.pinned_missing = sum(not pin_cached(self.layout, p, *self.platform) for p in self.pins)
        return ok

    # --- metrics -------------------------------------------------------------------------

    def render_metrics(self) -> str:
        m, c = self.metrics, self.config
        rows: list[tuple[str, str, str, float]] = [
            ("registry_cache_bytes_used", "gauge", "Bytes of every file under the registry's storage root.",
             m.bytes_used),
            ("registry_cache_images", "gauge", "Images (root manifests) stored in the cache.", m.images),
            ("registry_cache_evicted_images_total", "counter", "Images evicted since the keeper started.",
             m.evicted_images),
            ("registry_cache_evicted_bytes_total", "counter", "Bytes of blobs removed by the sweeps since the start.",
             m.evicted_bytes),
            ("registry_cache_evictions_total", "counter", "Evictions run since the keeper started.", m.evictions),
            ("registry_cache_eviction_errors_total", "counter", "Evictions that failed.", m.eviction_errors),
            ("registry_cache_last_eviction_timestamp_seconds", "gauge", "When the last eviction finished.",
             m.last_eviction),
            ("registry_cache_last_eviction_duration_seconds", "gauge", "How long the last eviction took.",
             m.last_eviction_duration),
            ("registry_cache_last_check_timestamp_seconds", "gauge", "When the cache was last measured.",
             m.last_check),
            ("registry_cache_pull_events_total", "counter", "Manifest pull notifications received.", m.pull_events),
            ("registry_cache_pinned_images", "gauge", "Pinned image references.", len(self.pins)),
            ("registry_cache_pinned_images_missing", "gauge",
             "Pinned images not complete in the cache (they would not pull with the upstream down).",
             m.pinned_missing),
            ("registry_cache_seed_failures_total", "counter", "Pinned images that failed to be fetched.",
             m.seed_failures),
        ]
        if c.max_bytes is not None:
            limits = c.limits
            assert limits is not None
            rows += [
                ("registry_cache_bytes_limit", "gauge", "cacheMaxSize in bytes.", c.max_bytes),
                ("registry_cache_high_watermark_bytes", "gauge", "Usage where eviction starts.", limits.high_bytes),
                ("registry_cache_low_watermark_bytes", "gauge", "Usage eviction brings the cache down to.",
                 limits.low_bytes),
            ]
        lines = []
        for name, kind, text, value in rows:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def make_handler(keeper: Keeper) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "registry-cache"

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                self._send(200, keeper.render_metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/health":
                self._send(200, b"ok\n")
            else:
                self._send(404, b"not found\n")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/events":
                self._send(404, b"not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_EVENT_BODY:
                self._send(413, b"bad length\n")
                return
            try:
                envelope = json.loads(self.rfile.read(length))
            except ValueError:
                self._send(400, b"not JSON\n")
                return
            keeper.record_events(envelope)
            self._send(200, b"ok\n")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


def serve(keeper: Keeper) -> ThreadingHTTPServer:
    host, _, port = keeper.config.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(keeper))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def run(config: Config, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    keeper = Keeper(config)
    server = serve(keeper)
    log("started", upstream=config.upstream, max_bytes=config.max_bytes, high_watermark=config.high_watermark,
        low_watermark=config.low_watermark, min_age_seconds=config.min_age_seconds, pins=list(config.pins),
        listen=config.listen, platform="/".join(keeper.platform))

    def seeder() -> None:
        while not stop.is_set():
            ok = keeper.seed()
            stop.wait(config.pin_refresh_seconds if ok else config.pin_retry_seconds)

    if keeper.pins and config.registry_url:
        threading.Thread(target=seeder, name="seeder", daemon=True).start()
    try:
        while not stop.is_set():
            try:
                keeper.check()
            except Exception as error:  # noqa: BLE001 - one bad pass must not stop the keeper
                keeper.metrics.eviction_errors += 1
                log("check failed", "error", error=repr(error))
            with contextlib.suppress(OSError):
                keeper.save_state()
            stop.wait(config.check_interval_seconds)
    finally:
        server.shutdown()
        with contextlib.suppress(OSError):
            keeper.save_state()
        log("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cachekeeper")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = Config.load(args.config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(config, stop)
    return 0
