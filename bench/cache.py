"""The bounded cache, measured: one eviction of a 1,000-image cache, and warm pull latency
while evictions run against the same pulls without one.

    bench/run.sh --cache              # about 2 minutes on 2 cores
    .venv/bin/python -m bench.cache --help

Everything runs on 127.0.0.1 and stops at exit:

    client (cachekeeper.seed.RegistryClient: TLS, manifest + every blob, digests checked)
        --> registry 3.1.1 running the program's config.yml for cacheMaxSize (no blob-descriptor
            cache, ttl 0), its storage shared with
        <-- the keeper's eviction (cachekeeper.service.Keeper.check, in this process, timed)
    upstream: Debian's docker-registry (the registry asks it for /v2/ at start; nothing is
    pulled from it: every image is in the cache)

The cache is written straight into the registry's storage as 3.1.1 lays it out
(rehearsal/registry_layout.py; tests/rehearsal/test_cache_rehearsal.py shows 3.1.1 serving
such a tree): 1,000 images in 100 repositories of 10 tags, each a config and two layers, the
first shared by the 10 images of its repository. The eviction must bring the cache from its
size to the low watermark: about half the images go. The hot images the client pulls are
pinned (never evicted). Each round rebuilds the cache, then measures the eviction with the
client pulling in a loop, then the same number of seconds of pulls with no eviction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cachekeeper.layout import Layout
from cachekeeper.policy import Pin
from cachekeeper.seed import RegistryClient, host_platform
from cachekeeper.service import Config, Keeper
from rehearsal import registry3
from rehearsal.registry_layout import random_bytes, store_image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
KB = 1000
HOT = [f"hot/app-{i}" for i in range(4)]


def say(message: str) -> None:
    print(message, flush=True)


def build_cache(storage: Path, images: int, unique_kb: int, base_kb: int) -> int:
    """`images` images (10 tags per repository, a base layer shared within each) cached an
    hour ago, plus the hot images cached now; returns the bytes written."""
    if storage.exists():
        shutil.rmtree(storage)
    start = time.time() - 3600
    total = 0
    for n in range(images):
        repo, tag = f"bulk/repo-{n // 10}", f"t{n % 10}"
        base = random_bytes(base_kb * KB, 10_000 + n // 10)
        stored = store_image(storage, repo, tag, [base, random_bytes(unique_kb * KB, 20_000 + n)], seed=n,
                             mtime=start + n)
        total += stored.size
    for i, repo in enumerate(HOT):
        total += store_image(storage, repo, "1", [random_bytes(200 * KB, 90_000 + i)], seed=90_000 + i).size
    return total


def pull_loop(client: RegistryClient, stop: threading.Event, samples: list[tuple[float, float]],
              errors: list[str]) -> None:
    while not stop.is_set():
        for repo in HOT:
            started = time.perf_counter()
            try:
                result = client.pull(Pin(repo, "1"), *host_platform())
            except Exception as error:  # noqa: BLE001 - every failure is a result here
                errors.append(f"{repo}: {error}")
                continue
            samples.append((started, time.perf_counter() - started))
            assert result


def puller_main(url: str, ca_file: str, out: str, stop_file: str) -> int:
    """`--puller`: pull the hot images in a loop until `stop_file` exists; write (start, seconds)
    samples and errors to `out` (its own process: the keeper's eviction shares no GIL with it)."""
    client = RegistryClient(url, ca_file=ca_file)
    samples: list[tuple[float, float]] = []
    errors: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not Path(stop_file).exists():
            time.sleep(0.02)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    pull_loop(client, stop, samples, errors)
    Path(out).write_text(json.dumps({"samples": samples, "errors": errors}))
    return 0


class Puller:
    def __init__(self, work: Path, url: str, ca_file: Path, name: str) -> None:
        self.out, self.stop_file = work / f"{name}.json", work / f"{name}.stop"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.cache", "--puller", url, str(ca_file), str(self.out), str(self.stop_file)],
            cwd=str(ROOT))

    def finish(self) -> tuple[list[tuple[float, float]], list[str]]:
        self.stop_file.write_text("")
        self.process.wait(timeout=120)
        data = json.loads(self.out.read_text())
        return [(float(a), float(b)) for a, b in data["samples"]], list(data["errors"])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images in the cache (default 1000)")
    parser.add_argument("--unique-kb", type=int, default=100, help="each image's own layer (default 100 kB)")
    parser.add_argument("--base-kb", type=int, default=50, help="the layer 10 images share (default 50 kB)")
    parser.add_argument("--rounds", type=int, default=3, help="evictions measured (median; default 3)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--puller", nargs=4, metavar=("URL", "CA", "OUT", "STOP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.puller:
        return puller_main(*args.puller)

    from rehearsal.fakes.program import evaluate
    from rehearsal.mirror import program_mirror
    from rehearsal.registry_proc import free_port, start_upstream, write_ca_dir

    binary = str(registry3.registry_binary())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.out / f"cache-work-{stamp}"
    work.mkdir(parents=True)
    evaluation = evaluate({"hostname": "mirror.test", "cacheMaxSize": "1TB",
                           "cachePin": json.dumps([f"{r}:1" for r in HOT])}, stack="bench")
    ca_dir = write_ca_dir(work / "trust", evaluation.outputs["caCertPem"])
    storage = work / "storage"
    rounds: list[dict[str, Any]] = []
    try:
        with start_upstream(work) as upstream, program_mirror(
                evaluation, work / "mirror", upstream.url, ca_dir / "ca.crt", binary=binary, storage=storage,
                notification_url=f"http://127.0.0.1:{free_port()}/events") as mirror:
            client = RegistryClient(f"https://{mirror.host_port}", ca_file=str(ca_dir / "ca.crt"))
            for round_no in range(args.rounds):
                say(f"round {round_no + 1}: writing {args.images} images into the cache")
                written = build_cache(storage, args.images, args.unique_kb, args.base_kb)
                layout = Layout(storage)
                usage = layout.usage()
                # a limit the cache is at 90 % of: evicting to the low watermark (45 %) halves it
                keeper = Keeper(Config(storage_root=str(storage), state_dir=str(work / "state"),
                                       max_bytes=int(usage / 0.9) - 1, high_watermark=75, low_watermark=45,
                                       min_age_seconds=60, pins=tuple(f"{r}:1" for r in HOT)))
                for repo in HOT:  # warm the client's path
                    client.pull(Pin(repo, "1"), *host_platform())
                url = f"https://{mirror.host_port}"
                puller = Puller(work, url, ca_dir / "ca.crt", f"during-{round_no}")
                time.sleep(1.0)
                started = time.perf_counter()
                started_wall = time.perf_counter()
                report = keeper.check()
                eviction_seconds = time.perf_counter() - started
                during, errors = puller.finish()
                # perf_counter is system-wide on Linux (CLOCK_MONOTONIC): the puller's clock too
                overlapping = [d for s, d in during if started_wall <= s <= started_wall + eviction_seconds]
                puller = Puller(work, url, ca_dir / "ca.crt", f"without-{round_no}")
                time.sleep(max(eviction_seconds, 3.0))
                idle, more_errors = puller.finish()
                errors += more_errors
                after = layout.usage()
                rounds.append({
                    "images": args.images, "written_bytes": written, "usage_before": usage, "usage_after": after,
                    "evicted_images": len(report["evicted"]), "eviction_seconds": eviction_seconds,
                    "pulls_during": overlapping, "pulls_without": [d for _, d in idle], "errors": errors,
                })
                say(f"  {len(report['evicted'])} images evicted in {eviction_seconds:.2f} s "
                    f"({usage / 1e6:.0f} -> {after / 1e6:.0f} MB); {len(overlapping)} pulls during it, "
                    f"{len(idle)} without; errors: {len(errors)}")
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    during_all = [d for r in rounds for d in r["pulls_during"]]
    without_all = [d for r in rounds for d in r["pulls_without"]]
    summary = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "registry": registry3.VERSION},
        "eviction_seconds_median": statistics.median(r["eviction_seconds"] for r in rounds),
        "evicted_images_median": statistics.median(r["evicted_images"] for r in rounds),
        "pull_ms_without": {"median": 1000 * statistics.median(without_all), "p90": 1000 * percentile(without_all, 0.9),
                            "max": 1000 * max(without_all), "n": len(without_all)},
        "pull_ms_during": {"median": 1000 * statistics.median(during_all) if during_all else None,
                           "p90": 1000 * percentile(during_all, 0.9), "max": 1000 * max(during_all, default=0),
                           "n": len(during_all)},
        "errors": sum(len(r["errors"]) for r in rounds),
        "rounds": rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"cache-results-{stamp}.json").write_text(json.dumps(summary, indent=1))
    say(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
