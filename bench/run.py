"""What the mirror is for, measured: cold vs warm pulls, upstream bytes, concurrent pulls.

    bench/run.sh                # installs what it needs, then runs this (about 4 minutes)
    bench/run.sh --quick        # 2 MB and 20 MB images, same measurements (about 2 minutes)
    bench/run.sh --mirror 2.8   # the same with Debian's docker-registry 2.8.2 as the mirror
    .venv/bin/python -m bench.run --help

Everything runs on 127.0.0.1 and stops at exit:

    skopeo --> mirror (the program's registry files, TLS, registry 3.1.1: the pinned
                 |       image's binary, built once by rehearsal/toolchain.py)
                 |  proxy.remoteurl
                 v
           [nginx front, configs/front.py]   (only in the "+front" rows)
                 v
           throttle (rehearsal/throttle.py: --rate-mbit, --rtt-ms; counts bytes) --> upstream
                                                                 (a local docker-registry)

Measured, each `--repeats` times (median reported): a direct pull from the upstream through
the throttle; a cold pull through the mirror (a fresh, empty cache every time); a warm pull
through the same mirror right after; the local floor (skopeo copying the image between two
OCI layouts on disk); and `--concurrency` simultaneous cold pulls of one image. For each:
bytes the throttle delivered from the upstream, and blob GETs in the upstream's access log.
Then the program's own cost: evaluating `__main__.py` under Pulumi's mocks.

`--mirror 2.8` runs Debian's docker-registry 2.8.2 as the mirror instead, for comparison
with the earlier figures (it refuses the program's `storage.tag`, which that run drops; it
fetches every cold blob twice, 3.1.1 once): see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rehearsal import registry3
from rehearsal.mirror import program_mirror
from rehearsal.netsim import DnsServer, dns_server
from rehearsal.throttle import ThrottleProxy
from rehearsal.tools import find_tool
from rehearsal.upstream_front import RunningFront, upstream_front

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
MB = 1_000_000
REPO_SMALL = "library/bench-small"
REPO_LARGE = "library/bench-large"
TAG = "1.0"
HOSTNAME = "mirror.test"
TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo"}


# ---------------------------------------------------------------------------- small helpers


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Image:
    label: str  # "small" / "large"
    repo: str
    oci_dir: Path
    total_bytes: int  # manifest + config + layers
    layer_sizes: tuple[int, ...]
    blob_digests: tuple[str, ...]

    @property
    def repo_tag(self) -> str:
        return f"{self.repo}:{TAG}"

    def describe(self) -> str:
        layers = len(self.layer_sizes)
        return f"{self.label} ({self.total_bytes / MB:.1f} MB, {layers} layer{'s' if layers > 1 else ''})"


@dataclass
class Sample:
    seconds: float
    upstream_bytes: int  # delivered by the throttle, upstream -> mirror/client
    blob_gets: int  # blob GETs answered 200 by the upstream
    blob_bytes: int  # bytes of those answers
    connections: int  # new TCP connections to the upstream (each costs a handshake)


@dataclass
class Measurement:
    image: str
    path: str  # "direct", "cold", "warm", "floor", "cold+front", "warm+front", "warm pairs", ...
    samples: list[Sample] = field(default_factory=list)

    def median_seconds(self) -> float:
        return median([s.seconds for s in self.samples])

    def median_upstream(self) -> float:
        return median([s.upstream_bytes for s in self.samples])

    def median_blob_gets(self) -> float:
        return median([s.blob_gets for s in self.samples])

    def median_blob_bytes(self) -> float:
        return median([s.blob_bytes for s in self.samples])

    def median_connections(self) -> float:
        return median([s.connections for s in self.samples])


# ---------------------------------------------------------------------------- skopeo


class Skopeo:
    def __init__(self, binary: str, scratch: Path, timeout: float) -> None:
        self.binary = binary
        self.scratch = scratch
        self.timeout = timeout
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "auth.json").write_text('{"auths": {}}')
        empty = scratch / "empty-trust"
        empty.mkdir(exist_ok=True)
        (empty / "none.pem").write_text("")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "REGISTRY_AUTH_FILE": str(scratch / "auth.json"),
            # the mirror is verified against the stack's root CA only (--src-cert-dir)
            "SSL_CERT_FILE": str(empty / "none.pem"),
            "SSL_CERT_DIR": str(empty),
        }

    def args(self, source: str, dest: str, *extra: str) -> list[str]:
        return [self.binary, "--insecure-policy", "copy", "--quiet", "--preserve-digests", *extra, source, dest]

    def run(self, args: list[str]) -> float:
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=self.timeout)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return elapsed

    def start(self, args: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    def from_registry(self, host_port: str, image: Image, dest: Path, *, ca_dir: Path | None) -> list[str]:
        tls = [f"--src-cert-dir={ca_dir}", "--src-tls-verify=true"] if ca_dir else ["--src-tls-verify=false"]
        return self.args(f"docker://{host_port}/{image.repo_tag}", f"oci:{dest}:{TAG}", "--src-no-creds", *tls)

    def push(self, image: Image, host_port: str) -> None:
        self.run(self.args(f"oci:{image.oci_dir}:{TAG}", f"docker://{host_port}/{image.repo_tag}",
                           "--dest-tls-verify=false", "--dest-no-creds"))  # fmt: skip


def verify_pull(dest: Path, image: Image) -> None:
    """Every blob of the image arrived, byte for byte."""
    for digest in image.blob_digests:
        path = dest / "blobs" / "sha256" / digest.split(":", 1)[1]
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
        if f"sha256:{sha.hexdigest()}" != digest:
            raise RuntimeError(f"{path} does not hash to {digest}")


# ---------------------------------------------------------------------------- upstream log


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+)')


class UpstreamLog:
    """Blob GETs the upstream registry answered (its combined-format access log)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def blob_gets_since_mark(self) -> tuple[int, int]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        count = size = 0
        for line in text.splitlines():
            match = _ACCESS.search(line)
            if match and match["method"] == "GET" and "/blobs/sha256:" in match["uri"] and match["status"] == "200":
                count += 1
                size += int(match["size"])
        return count, size


# ---------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    work: Path
    evaluation: Any
    skopeo: Skopeo
    throttle: ThrottleProxy
    upstream_log: UpstreamLog
    nginx: str | None
    ca_dir: Path
    dns: DnsServer  # the front's resolver (the upstream is an address: nothing to resolve)
    mirror_binary: str
    mirror_without: tuple[tuple[str, ...], ...]  # config keys the 2.8 comparison run drops

    @contextlib.contextmanager
    def mirror(self, name: str, upstream_url: str) -> Iterator[tuple[str, Path]]:
        """A fresh mirror (empty cache) from the program's files; yields (host:port, storage)."""
        root = self.work / "mirrors" / name
        try:
            with program_mirror(self.evaluation, root, upstream_url, self.ca_dir / "ca.crt",
                                binary=self.mirror_binary, without=self.mirror_without) as mirror:  # fmt: skip
                yield mirror.host_port, mirror.storage
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @contextlib.contextmanager
    def front(self, name: str) -> Iterator[RunningFront]:
        """The stack's front, rendered as the stack renders it; the local upstream has no token
        auth, so the front answers /v2/ with 200 instead of Docker Hub's challenge."""
        assert self.nginx is not None
        root = self.work / "fronts" / name
        try:
            with upstream_front(root, nginx=self.nginx, upstream_url=f"http://{self.throttle.address}",
                                upstream_realm=None, resolver=self.dns.address) as front:  # fmt: skip
                yield front
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @contextlib.contextmanager
    def upstream_for(self, with_front: bool, name: str) -> Iterator[str]:
        if with_front:
            with self.front(name) as front:
                yield front.url
        else:
            yield f"http://{self.throttle.address}"

    def dest(self, name: str) -> Path:
        path = self.work / "pulls" / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def measure(self, run: Any) -> Sample:
        """Run `run() -> seconds`; count what crossed the throttle and the upstream's blob GETs."""
        self.throttle.wait_quiet(quiet_for=0.3, timeout=120)
        before = self.throttle.counters()
        self.upstream_log.mark()
        seconds = run()
        after = self.throttle.wait_quiet(quiet_for=0.5, timeout=600)
        gets, size = self.upstream_log.blob_gets_since_mark()
        return Sample(seconds, after.down - before.down, gets, size, after.connections - before.connections)


def wait_cached(storage: Path, image: Image, timeout: float = 60.0) -> None:
    """The mirror has every blob of the image on disk (the write may trail the client's pull)."""
    blobs = storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((blobs / d[7:9] / d[7:] / "data").exists() for d in image.blob_digests):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the mirror did not store {image.label} within {timeout}s")


# ---------------------------------------------------------------------------- measurements


def measure_image(rig: Rig, image: Image, repeats: int, with_front: bool) -> list[Measurement]:
    direct = Measurement(image.label, "direct")
    floor = Measurement(image.label, "floor")
    cold = Measurement(image.label, "cold")
    warm = Measurement(image.label, "warm")
    cold_f = Measurement(image.label, "cold+front")
    warm_f = Measurement(image.label, "warm+front")
    for rep in range(repeats):
        say(f"  {image.label}: repetition {rep + 1}/{repeats}")
        dest = rig.dest(f"{image.label}-direct")
        direct.samples.append(rig.measure(lambda d=dest: rig.skopeo.run(
            rig.skopeo.from_registry(rig.throttle.address, image, d, ca_dir=None))))  # fmt: skip
        verify_pull(dest, image)

        dest = rig.dest(f"{image.label}-floor")
        floor.samples.append(rig.measure(lambda d=dest: rig.skopeo.run(
            rig.skopeo.args(f"oci:{image.oci_dir}:{TAG}", f"oci:{d}:{TAG}"))))  # fmt: skip
        verify_pull(dest, image)

        variants = [(False, cold, warm)] + ([(True, cold_f, warm_f)] if with_front else [])
        for front, cold_m, warm_m in variants:
            name = f"{image.label}-{rep}-{'front' if front else 'plain'}"
            with rig.upstream_for(front, name) as upstream_url, rig.mirror(name, upstream_url) as (host, storage):
                dest = rig.dest(f"{name}-cold")
                cold_m.samples.append(rig.measure(lambda d=dest, h=host: rig.skopeo.run(
                    rig.skopeo.from_registry(h, image, d, ca_dir=rig.ca_dir))))  # fmt: skip
                verify_pull(dest, image)
                wait_cached(storage, image)
                dest = rig.dest(f"{name}-warm")
                warm_m.samples.append(rig.measure(lambda d=dest, h=host: rig.skopeo.run(
                    rig.skopeo.from_registry(h, image, d, ca_dir=rig.ca_dir))))  # fmt: skip
                verify_pull(dest, image)
    return [m for m in (direct, cold, warm, floor, cold_f, warm_f) if m.samples]


def warm_pairs(rig: Rig, image: Image, pairs: int) -> list[Measurement]:
    """Warm pulls alternating between a plain mirror and a mirror behind the front, both warm
    and running side by side: `pairs` pulls of each, interleaved, so that a slow moment of a
    shared machine falls on both sides alike."""
    plain = Measurement(image.label, "warm pairs")
    fronted = Measurement(image.label, "warm pairs+front")
    with contextlib.ExitStack() as stack:
        hosts: dict[bool, str] = {}
        for front in (False, True):
            name = f"{image.label}-pairs-{'front' if front else 'plain'}"
            upstream_url = stack.enter_context(rig.upstream_for(front, name))
            host, storage = stack.enter_context(rig.mirror(name, upstream_url))
            dest = rig.dest(f"{name}-cold")
            rig.skopeo.run(rig.skopeo.from_registry(host, image, dest, ca_dir=rig.ca_dir))
            wait_cached(storage, image)
            hosts[front] = host
        for i in range(pairs):
            for front, measurement in ((False, plain), (True, fronted)):
                dest = rig.dest(f"{image.label}-pair-{i}-{front}")
                measurement.samples.append(rig.measure(lambda d=dest, h=hosts[front]: rig.skopeo.run(
                    rig.skopeo.from_registry(h, image, d, ca_dir=rig.ca_dir))))  # fmt: skip
                verify_pull(dest, image)
    return [plain, fronted]


@dataclass
class Concurrent:
    image: str
    n: int
    front: bool
    samples: list[Sample] = field(default_factory=list)


def concurrent_pulls(rig: Rig, image: Image, n: int, front: bool, rep: int) -> Sample:
    name = f"conc-{image.label}-{n}-{rep}-{'front' if front else 'plain'}"
    with rig.upstream_for(front, name) as upstream_url, rig.mirror(name, upstream_url) as (host, storage):
        dests = [rig.dest(f"{name}-{i}") for i in range(n)]

        def run() -> float:
            started = time.perf_counter()
            procs = [rig.skopeo.start(rig.skopeo.from_registry(host, image, d, ca_dir=rig.ca_dir)) for d in dests]
            for proc in procs:
                _, err = proc.communicate(timeout=rig.skopeo.timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"concurrent pull failed: {err}")
            return time.perf_counter() - started

        sample = rig.measure(run)
        for dest in dests:
            verify_pull(dest, image)
        wait_cached(storage, image)
        return sample


# ---------------------------------------------------------------------------- program cost


def program_cost(runs: int = 5) -> dict[str, Any]:
    from rehearsal.fakes.program import evaluate

    fresh: list[float] = []
    for i in range(runs):  # a new stack name: the TLS fake makes new keys, like a first `up`
        started = time.perf_counter()
        evaluate({"hostname": HOSTNAME}, stack=f"bench{i}")
        fresh.append(time.perf_counter() - started)
    again: list[float] = []
    evaluation = None
    for _ in range(runs):  # the same stack again: keys kept, like Pulumi's state
        started = time.perf_counter()
        evaluation = evaluate({"hostname": HOSTNAME}, stack="dev")
        again.append(time.perf_counter() - started)
    assert evaluation is not None
    types: dict[str, int] = {}
    for resource in evaluation.resources:
        types[resource.typ] = types.get(resource.typ, 0) + 1
    return {
        "fresh_seconds": fresh,
        "again_seconds": again,
        "resources": len(evaluation.resources),
        "custom_resources": sum(1 for r in evaluation.resources if r.custom),
        "types": dict(sorted(types.items())),
        "evaluation": evaluation,
    }


# ---------------------------------------------------------------------------- report


def machine(mirror_binary: str) -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"

    def version(cmd: list[str]) -> str:
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "absent"
        return (result.stdout + result.stderr).strip().splitlines()[0]

    nginx = find_tool("nginx")
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mirror": version([mirror_binary, "--version"]),
        "upstream": version([which("docker-registry") or "docker-registry", "--version"]),
        "skopeo": version([which("skopeo") or "skopeo", "--version"]),
        "nginx": version([nginx, "-v"]) if nginx else "absent",
    }


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def fmt_mb(value: float) -> str:
    return f"{value / MB:8.1f}"


def render_report(
    args: argparse.Namespace,
    info: dict[str, str],
    images: dict[str, Image],
    measurements: list[Measurement],
    concurrency: list[Concurrent],
    cost: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    out = lines.append
    out(f"link: {args.rate_mbit:g} Mbit/s, +{args.rtt_ms:g} ms RTT (rehearsal/throttle.py); repeats: {args.repeats}; "
        f"median of the repeats")  # fmt: skip
    out("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    out("upstream MB / blob GETs / blob MB / conns: what reached the upstream during the pull (bytes through")
    out("the throttle; blob GETs answered 200 and their bytes in the upstream's log; new TCP connections)")
    out("")
    header = f"{'image':<30} {'path':<16} {'median s':>9}  {'runs s':<24} {'upstream MB':>11} {'x image':>8} " \
             f"{'blob GETs':>9} {'blob MB':>8} {'conns':>5}"  # fmt: skip
    out(header)
    out("-" * len(header))
    by_key = {(m.image, m.path): m for m in measurements}
    for label, image in images.items():
        for path in ("direct", "cold", "warm", "floor", "cold+front", "warm+front", "warm pairs", "warm pairs+front"):
            m = by_key.get((label, path))
            if m is None:
                continue
            runs = " ".join(f"{s.seconds:.2f}" for s in m.samples)
            up = m.median_upstream()
            out(f"{image.describe():<30} {path:<16} {m.median_seconds():9.2f}  {runs:<24} "
                f"{fmt_mb(up):>11} {up / image.total_bytes:8.2f} {m.median_blob_gets():9.0f} "
                f"{fmt_mb(m.median_blob_bytes()):>8} {m.median_connections():5.0f}")  # fmt: skip
    out("")
    if concurrency:
        image = images[concurrency[0].image]
        out(f"concurrent cold pulls of {image.describe()}, each on a fresh mirror:")
        header = f"{'N':>3} {'path':<14} {'median s':>9}  {'runs s':<24} {'upstream MB':>11} {'x image':>8} " \
                 f"{'blob GETs':>9}"  # fmt: skip
        out(header)
        out("-" * len(header))
        for c in concurrency:
            seconds = median([s.seconds for s in c.samples])
            up = median([s.upstream_bytes for s in c.samples])
            gets = median([s.blob_gets for s in c.samples])
            runs = " ".join(f"{s.seconds:.2f}" for s in c.samples)
            out(f"{c.n:>3} {'mirror+front' if c.front else 'mirror':<14} {seconds:9.2f}  {runs:<24} "
                f"{fmt_mb(up):>11} {up / image.total_bytes:8.2f} {gets:9.0f}")  # fmt: skip
        out("")

    summary: dict[str, Any] = {}
    out("ratios and targets (docs/benchmarks.md item 3 and 5):")
    default_run = (args.large_mb, args.large_layers, args.rate_mbit, args.rtt_ms) == (100.0, 5, 100.0, 20.0)
    if not default_run:
        out("  (the targets are set for the default run: 100 MB in 5 layers, 100 Mbit/s, 20 ms; this run differs)")
    large = args.target_image
    image = images[large]
    direct, cold, warm, floor = (by_key.get((large, p)) for p in ("direct", "cold", "warm", "floor"))
    cold_f, warm_f = by_key.get((large, "cold+front")), by_key.get((large, "warm+front"))
    if cold and warm and floor:
        speedup = cold.median_seconds() / warm.median_seconds()
        vs_floor = warm.median_seconds() / floor.median_seconds()
        warm_blob = warm.median_blob_bytes()
        warm_up = warm.median_upstream()
        summary.update(warm_speedup=speedup, warm_vs_floor=vs_floor, warm_blob_bytes=warm_blob,
                       warm_upstream_bytes=warm_up)  # fmt: skip
        out(f"  {large}: warm is {speedup:.1f}x faster than cold (warm/cold = {1 / speedup:.3f}); "
            f"target >= 20x: {'MET' if speedup >= 20 else 'NOT MET'}")  # fmt: skip
        if direct:
            vs_direct = direct.median_seconds() / warm.median_seconds()
            summary.update(warm_speedup_vs_direct=vs_direct)
            out(f"  {large}: warm is {vs_direct:.1f}x faster than a direct pull")
        out(f"  {large}: warm/floor = {vs_floor:.2f}x; target <= 1.5x: {'MET' if vs_floor <= 1.5 else 'NOT MET'}")
        out(f"  {large}: upstream per warm pull: {warm_blob:.0f} blob bytes ({warm.median_blob_gets():.0f} "
            f"blob GETs), {warm_up:.0f} bytes in all (manifest checks); target 0 blob bytes: "
            f"{'MET' if warm_blob == 0 else 'NOT MET'}")  # fmt: skip
        if direct:
            out(f"  {large}: cold/direct = {cold.median_seconds() / direct.median_seconds():.2f}x time, "
                f"{cold.median_upstream() / image.total_bytes:.2f}x image bytes upstream (3.1.1: one fetch per "
                f"cold blob, ~1.0x; 2.8.2: every cold blob fetched twice, ~2x)")  # fmt: skip
        if cold_f and warm_f:
            summary.update(front_cold_seconds=cold_f.median_seconds())
            out(f"  {large}: with the front: cold {cold_f.median_seconds():.2f} s, "
                f"{cold_f.median_upstream() / image.total_bytes:.2f}x image bytes upstream")  # fmt: skip
    # the front's targets (issue 12), from interleaved runs: each front run is paired with the
    # plain run of the same repetition, and the spread of those pairs is shown beside the median
    for label in images:
        pairs = {p: by_key.get((label, p)) for p in ("direct", "cold", "warm", "cold+front", "warm+front")}
        d, c0, w, cf, wf = pairs.values()
        if not (d and c0 and w and cf and wf):
            continue
        cold_vs_direct = [f.seconds / x.seconds for f, x in zip(cf.samples, d.samples, strict=True)]
        plain_vs_direct = [f.seconds / x.seconds for f, x in zip(c0.samples, d.samples, strict=True)]
        warm_ratio = [f.seconds / x.seconds for f, x in zip(wf.samples, w.samples, strict=True)]
        summary[f"{label}_front_cold_vs_direct"] = median(cold_vs_direct)
        summary[f"{label}_plain_cold_vs_direct"] = median(plain_vs_direct)
        summary[f"{label}_front_warm_vs_plain"] = median(warm_ratio)
        out(f"  {label}: cold+front/direct = {median(cold_vs_direct):.2f}x (pairs {spread(cold_vs_direct)}); "
            f"cold/direct without the front {median(plain_vs_direct):.2f}x (pairs {spread(plain_vs_direct)}); "
            f"target <= 1.05x: {verdict(median(cold_vs_direct) <= 1.05)}")  # fmt: skip
        out(f"  {label}: warm+front/warm = {median(warm_ratio):.2f}x (pairs {spread(warm_ratio)}; "
            f"{wf.median_seconds():.3f} s vs {w.median_seconds():.3f} s); "
            f"target <= 1.10x: {verdict(median(warm_ratio) <= 1.10)}")  # fmt: skip
    for label in images:
        wp, wpf = by_key.get((label, "warm pairs")), by_key.get((label, "warm pairs+front"))
        if not (wp and wpf):
            continue
        ratios = sorted(f.seconds / x.seconds for f, x in zip(wpf.samples, wp.samples, strict=True))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        summary[f"{label}_warm_pairs_front_vs_plain"] = median(ratios)
        out(f"  {label}: {len(ratios)} alternating warm pulls: front/plain median of pairs {median(ratios):.2f}x "
            f"(quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}, range {spread(ratios)}); medians "
            f"{wpf.median_seconds():.3f} s vs {wp.median_seconds():.3f} s = "
            f"{wpf.median_seconds() / wp.median_seconds():.2f}x; target <= 1.10x: "
            f"{verdict(median(ratios) <= 1.10)}")  # fmt: skip
    for c in concurrency:
        if c.n == max(x.n for x in concurrency):
            multiple = median([s.upstream_bytes for s in c.samples]) / images[c.image].total_bytes
            walls = [s.seconds for s in c.samples]
            key = "front" if c.front else "plain"
            summary[f"concurrent_{c.n}_{key}_multiple"] = multiple
            summary[f"concurrent_{c.n}_{key}_seconds"] = median(walls)
            target = f"target <= 1.1x: {verdict(multiple <= 1.1)}" if c.front else \
                f"(3.1.1: one fetch per in-flight request, ~{c.n}x)"  # fmt: skip
            out(f"  {c.n} concurrent cold pulls, {'mirror+front' if c.front else 'mirror'}: "
                f"{multiple:.2f}x image bytes upstream, wall {median(walls):.2f} s ({spread(walls)}) "
                f"{target}")  # fmt: skip
    out("")
    fresh, again = cost["fresh_seconds"], cost["again_seconds"]
    out(f"program: evaluating __main__.py under mocks: median {median(fresh):.3f} s with new keys "
        f"(runs {' '.join(f'{x:.3f}' for x in fresh)}), median {median(again):.3f} s with kept state "
        f"(runs {' '.join(f'{x:.3f}' for x in again)}); {cost['resources']} resources "
        f"({cost['custom_resources']} custom, {cost['resources'] - cost['custom_resources']} components)")  # fmt: skip
    summary.update(program_fresh_median=median(fresh), program_again_median=median(again),
                   resources=cost["resources"])  # fmt: skip
    return "\n".join(lines), summary


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mirror", choices=("3.1.1", "2.8"), default="3.1.1",
                        help="the mirror's binary: registry 3.1.1 (the shipped one) or Debian's 2.8.2")  # fmt: skip
    parser.add_argument("--rate-mbit", type=float, default=100.0, help="upstream bandwidth (default 100)")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="upstream added round-trip time (default 20)")
    parser.add_argument("--small-mb", type=float, default=10.0, help="small image: one layer of this size")
    parser.add_argument("--large-mb", type=float, default=100.0, help="large image: this size in all ...")
    parser.add_argument("--large-layers", type=int, default=5, help="... split into this many layers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median; >= 3)")
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent cold pulls to measure")
    parser.add_argument("--concurrency-image", choices=("small", "large"), default="small")
    parser.add_argument("--no-front", action="store_true", help="skip the upstream front (configs/front.py)")
    parser.add_argument("--warm-pairs", type=int, default=0,
                        help="also N warm pulls each on a warm plain mirror and a warm mirror behind the front, "
                        "alternating (the front's warm-path cost with its spread)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 MB and 20 MB images (about 2 minutes)")
    parser.add_argument("--out", type=Path, default=OUT, help="where results and work files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (images, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.small_mb, args.large_mb = 2.0, 20.0
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the report is a median)")
    args.concurrency_levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    if not args.concurrency_levels or min(args.concurrency_levels) < 1 or max(args.concurrency_levels) > 16:
        parser.error("--concurrency takes numbers from 1 to 16")
    args.target_image = "large"
    return args


def build_images(work: Path, args: argparse.Namespace) -> dict[str, Image]:
    from rehearsal.oci import make_oci_image

    layers = max(1, args.large_layers)
    plan = {
        "small": (REPO_SMALL, [int(args.small_mb * MB)], 101),
        "large": (REPO_LARGE, [int(args.large_mb * MB / layers)] * layers, 202),
    }
    images = {}
    for label, (repo, sizes, seed) in plan.items():
        directory = work / "images" / label
        made = make_oci_image(directory, sizes, seed=seed, tag=TAG)
        images[label] = Image(label, repo, directory, made.total_bytes, made.layer_sizes, made.blob_digests)
    return images


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [f"{tool} (apt-get install -y {package})" for tool, package in TOOLS.items() if not which(tool)]
    if missing:
        say("missing tools: " + ", ".join(missing) + "; bench/run.sh installs them")
        return 2
    if args.mirror == "3.1.1":
        say("registry 3.1.1: from the toolchain cache, or built once from its Go module (about 1.5 minutes)")
        try:
            mirror_binary = str(registry3.registry_binary())
        except registry3.Registry3Unavailable as error:
            say(f"registry 3.1.1 is unavailable: {error}")
            return 2
        mirror_without: tuple[tuple[str, ...], ...] = ()
    else:
        mirror_binary = which("docker-registry") or "docker-registry"
        mirror_without = (("storage", "tag"),)  # 2.8.2: "must provide exactly one storage type"
    nginx = None if args.no_front else find_tool("nginx")
    if not args.no_front and nginx is None:
        say("nginx is missing (apt-get install -y nginx): the front rows are skipped")

    from rehearsal.registry_proc import start_upstream, write_ca_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / f"work-{stamp}"
    work.mkdir(parents=True)
    started = time.perf_counter()
    info = machine(mirror_binary)
    try:
        say("program: evaluating __main__.py under mocks (5 + 5 runs)")
        cost = program_cost()
        evaluation = cost.pop("evaluation")
        ca_dir = write_ca_dir(work / "trust", evaluation.outputs["caCertPem"])

        say(f"images: small {args.small_mb:g} MB in 1 layer, large {args.large_mb:g} MB in "
            f"{args.large_layers} layers (random bytes)")  # fmt: skip
        images = build_images(work, args)
        slowest = (2 + max(args.concurrency_levels)) * images["large"].total_bytes * 8 / max(args.rate_mbit * 1e6, 1e6)
        skopeo = Skopeo(which("skopeo") or "skopeo", work / "skopeo", timeout=max(120.0, 3 * slowest))

        with start_upstream(work) as upstream:
            for image in images.values():
                skopeo.push(image, upstream.host_port)
            upstream_port = int(upstream.host_port.rsplit(":", 1)[1])
            link = ThrottleProxy(("127.0.0.1", upstream_port), rate_mbit=args.rate_mbit, rtt_ms=args.rtt_ms)
            with link as throttle, dns_server({}) as dns:
                rig = Rig(work, evaluation, skopeo, throttle, UpstreamLog(upstream.log_path), nginx, ca_dir,
                          dns, mirror_binary, mirror_without)  # fmt: skip
                measurements: list[Measurement] = []
                for label in ("small", "large"):
                    say(f"pulls of {images[label].describe()}")
                    measurements += measure_image(rig, images[label], args.repeats, with_front=nginx is not None)
                    if nginx is not None and args.warm_pairs:
                        say(f"  {label}: {args.warm_pairs} warm pulls with and without the front, alternating")
                        measurements += warm_pairs(rig, images[label], args.warm_pairs)
                concurrency: list[Concurrent] = []
                image = images[args.concurrency_image]
                variants = [False] + ([True] if nginx else [])
                for n in args.concurrency_levels:
                    say(f"{n} concurrent cold pulls of {image.label}, interleaved with and without the front")
                    entries = {front: Concurrent(image.label, n, front) for front in variants}
                    for rep in range(args.repeats):  # interleaved: no front, front, no front, ...
                        for front in variants:
                            entries[front].samples.append(concurrent_pulls(rig, image, n, front, rep))
                    concurrency += [entries[front] for front in variants]
        report, summary = render_report(args, info, images, measurements, concurrency, cost)
        elapsed = time.perf_counter() - started
        entry_point = os.environ.get("BENCH_ENTRY", "python -m bench.run")
        command = entry_point + " " + " ".join(sys.argv[1:] if argv is None else argv)
        say("")
        say(f"$ {command.strip()}")
        say(report)
        say(f"benchmark wall time: {elapsed:.0f} s")
        result = {
            "command": command.strip(),
            "when": stamp,
            "machine": info,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "images": {k: {"total_bytes": v.total_bytes, "layer_sizes": v.layer_sizes} for k, v in images.items()},
            "measurements": [asdict(m) for m in measurements],
            "concurrency": [asdict(c) for c in concurrency],
            "program": cost,
            "summary": summary,
            "wall_seconds": elapsed,
        }
        (args.out / f"results-{stamp}.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        (args.out / f"report-{stamp}.txt").write_text(f"$ {command.strip()}\n{report}\n")
        say(f"results: {args.out / f'results-{stamp}.json'}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
