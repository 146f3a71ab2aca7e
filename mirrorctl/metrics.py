"""`metrics`: the mirror's hit ratio and bytes, read from Prometheus's HTTP API.

The registry's debug port (metrics) is never published, so Prometheus, which scrapes it on
the private network (job `registry`), is the source. Two generations of names:

- distribution 3.x (`registry:3`), registry/proxy/proxymetrics.go:
  `registry_proxy_{requests,hits,misses,pulled_bytes,pushed_bytes}_total{type=blob|manifest}`:
  requests/hits count what the proxy served to clients (a hit came from the cache),
  `pulled_bytes` = bytes fetched from upstream, `pushed_bytes` = bytes served to clients.
  registry/storage/cache/cachedblobdescriptorstore.go:
  `registry_storage_cache_{requests,hits,errors}_total` (the blob descriptor cache).
- distribution 2.8 (Debian's docker-registry): no `registry_proxy_*` at all (expvar only),
  and one `registry_storage_cache_total{type="Request"|"Hit"|"Miss"|"Error"}`.

Every figure is a query of its own; a query that returns no series prints as "no data".
Without `--window` the values are the counters' current totals (since the registry last
started); with `--window 24h` they are `increase(...[24h])`, which survives restarts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from mirrorctl.errors import MirrorctlError
from mirrorctl.transport import get

PROXY_TYPES = ("blob", "manifest")
PROXY_COUNTERS = ("requests", "hits", "misses", "pulled_bytes", "pushed_bytes")
V3_CACHE = {
    "requests": "registry_storage_cache_requests_total",
    "hits": "registry_storage_cache_hits_total",
}
V2_CACHE = "registry_storage_cache_total"
V2_CACHE_TYPES = {"requests": "Request", "hits": "Hit"}
DURATION_RE = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
JOB_RE = re.compile(r'^[^"\\\n]+$')


def series(metric: str, job: str, window: str | None) -> str:
    selector = f'{metric}{{job="{job}"}}'
    return f"increase({selector}[{window}])" if window else selector


def proxy_query(counter: str, job: str, window: str | None) -> str:
    return f"sum by (type) ({series(f'registry_proxy_{counter}_total', job, window)})"


def v3_cache_query(metric: str, job: str, window: str | None) -> str:
    return f"sum({series(metric, job, window)})"


def v2_cache_query(job: str, window: str | None) -> str:
    return f"sum by (type) ({series(V2_CACHE, job, window)})"


Sample = tuple[dict[str, str], float]  # (labels, value) of one series


def instant_query(client: httpx.Client, prometheus_url: str, promql: str) -> list[Sample]:
    """The instant vector Prometheus answers to `promql`; anything else is one clear error.

    The answer's shape is Prometheus's HTTP API (docs/querying/api.md): `{"status":
    "success", "data": {"resultType": "vector", "result": [{"metric": {...}, "value":
    [<time>, "<number>"]}]}}`, or `{"status": "error", "errorType", "error"}`.
    """
    url = f"{prometheus_url.rstrip('/')}/api/v1/query"
    response = get(client, url, params={"query": promql})
    try:
        document = response.json()
    except ValueError as error:
        raise MirrorctlError(
            f"{url}: HTTP {response.status_code}, not a Prometheus answer (no JSON)"
        ) from error
    status = document.get("status") if isinstance(document, dict) else None
    if status == "error":
        kind = document.get("errorType") or f"HTTP {response.status_code}"
        raise MirrorctlError(f"Prometheus refused {promql!r}: {kind}: {document.get('error')}")
    if status != "success":
        raise MirrorctlError(
            f"{url}: HTTP {response.status_code}, not a Prometheus answer "
            f"(no \"status\": \"success\" or \"error\")"
        )
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise MirrorctlError(f"{url}: the answer to {promql!r} is not an instant vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise MirrorctlError(f"{url}: the answer to {promql!r} has no list of series")
    return [_sample(item, url, promql) for item in result]


def _sample(item: Any, url: str, promql: str) -> Sample:
    labels = item.get("metric") if isinstance(item, dict) else None
    value = item.get("value") if isinstance(item, dict) else None
    if not isinstance(labels, dict) or not isinstance(value, list) or len(value) != 2:
        raise MirrorctlError(f"{url}: a series in the answer to {promql!r} is not a sample")
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        raise MirrorctlError(
            f"{url}: the answer to {promql!r} holds {value[1]!r}, not a number"
        ) from None
    # Every query sums counters (or their increase), which are finite and never negative:
    # NaN, Inf or a negative sum means the series are not what this command reads.
    if not math.isfinite(number) or number < 0:
        raise MirrorctlError(
            f"Prometheus answered {value[1]!r} to {promql!r}: not a count "
            "(are these series counters?)"
        )
    return {str(k): str(v) for k, v in labels.items()}, number


def _by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in samples}


def ratio(hits: float | None, requests: float | None) -> float | None:
    if hits is None or requests is None or requests <= 0:
        return None
    return hits / requests


@dataclass(frozen=True)
class CacheStats:
    """The blob descriptor cache (storage layer): present in 2.8 and 3.x under two names."""

    series: str  # the metric name the figures came from
    requests: float | None
    hits: float | None

    @property
    def hit_ratio(self) -> float | None:
        return ratio(self.hits, self.requests)


@dataclass(frozen=True)
class RegistryMetrics:
    job: str
    window: str | None
    proxy: dict[str, dict[str, float | None]] | None  # type -> counter -> value; None = no data
    cache: CacheStats | None  # None = no data

    def proxy_ratio(self, kind: str) -> float | None:
        if self.proxy is None or kind not in self.proxy:
            return None
        return ratio(self.proxy[kind].get("hits"), self.proxy[kind].get("requests"))

    def as_dict(self) -> dict[str, Any]:
        proxy: dict[str, Any] | None = None
        if self.proxy is not None:
            proxy = {
                kind: {**values, "hit_ratio": self.proxy_ratio(kind)}
                for kind, values in self.proxy.items()
            }
        cache: dict[str, Any] | None = None
        if self.cache is not None:
            cache = {
                "series": self.cache.series,
                "requests": self.cache.requests,
                "hits": self.cache.hits,
                "hit_ratio": self.cache.hit_ratio,
            }
        return {"job": self.job, "window": self.window, "proxy": proxy, "storage_cache": cache}


def read_registry_metrics(
    client: httpx.Client, prometheus_url: str, *, job: str = "registry", window: str | None = None
) -> RegistryMetrics:
    if not JOB_RE.match(job):
        raise MirrorctlError(f"invalid job name {job!r}")
    if window is not None and not DURATION_RE.match(window):
        raise MirrorctlError(
            f"invalid window {window!r}: a Prometheus duration such as 1h, 24h or 7d"
        )

    proxy: dict[str, dict[str, float | None]] = {}
    for counter in PROXY_COUNTERS:
        values = _by_label(
            instant_query(client, prometheus_url, proxy_query(counter, job, window)), "type"
        )
        for kind, value in values.items():
            proxy.setdefault(kind, {c: None for c in PROXY_COUNTERS})[counter] = value

    cache: CacheStats | None = None
    v3 = {
        name: instant_query(client, prometheus_url, v3_cache_query(metric, job, window))
        for name, metric in V3_CACHE.items()
    }
    if any(v3.values()):
        cache = CacheStats(
            series="registry_storage_cache_{requests,hits}_total",
            requests=v3["requests"][0][1] if v3["requests"] else None,
            hits=v3["hits"][0][1] if v3["hits"] else None,
        )
    else:
        by_type = _by_label(
            instant_query(client, prometheus_url, v2_cache_query(job, window)), "type"
        )
        if by_type:
            cache = CacheStats(
                series=f"{V2_CACHE}{{type}}",
                requests=by_type.get(V2_CACHE_TYPES["requests"]),
                hits=by_type.get(V2_CACHE_TYPES["hits"]),
            )
    if not proxy and cache is None:
        # Both generations export the cache series once the registry has served anything,
        # so no series at all means a wrong job name or a registry Prometheus does not scrape:
        # printing "no data" for every figure would hide that.
        raise MirrorctlError(
            f"Prometheus has no registry series of job {job!r}"
            f"{f' in the last {window}' if window else ''}: is the job name right "
            "(--job), and does Prometheus scrape the registry (`mirrorctl status`)?"
        )
    ordered = {k: proxy[k] for k in sorted(proxy, key=lambda k: (k not in PROXY_TYPES, k))}
    return RegistryMetrics(job=job, window=window, proxy=ordered or None, cache=cache)
