"""Metric names the alert rules and the dashboard use that only the pinned images export.

Every other name they use was seen in a real scrape in the rehearsal. These exist only in
distribution 3.x (`registry:3`), which cannot run here, so each is tied to the upstream file
that defines it; go-metrics names counters `<namespace>_<subsystem>_<name>_total`.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

from dataclasses import dataclass

DISTRIBUTION = "distribution/distribution"
# Stored versions read for this list (v3 module path github.com/distribution/distribution/v3).
PROXY_METRICS_SOURCE = (
    "registry/proxy/proxymetrics.go",
    "1ba51c3572999ef52331f5c0ea790474348d44f5",
)
CACHE_METRICS_SOURCE = (
    "registry/storage/cache/cachedblobdescriptorstore.go",
    "0e850894d651bbd4e47e612c387baae82c7d1e9f",
)


@dataclass(frozen=True)
class UpstreamMetric:
    """A metric name, where upstream defines it, and what Debian's 2.8.2 exports instead."""

    name: str
    repo: str
    path: str
    commit: str
    definition: str
    in_2_8: str


def _proxy(name: str, counter: str) -> UpstreamMetric:
    return UpstreamMetric(
        name=f"registry_proxy_{name}_total",
        repo=DISTRIBUTION,
        path=PROXY_METRICS_SOURCE[0],
        commit=PROXY_METRICS_SOURCE[1],
        definition=(f'{counter} = prometheus.ProxyNamespace.NewLabeledCounter("{name}", ..., "type")'),
        in_2_8="nothing (seen): 2.8.2 keeps proxy statistics in expvar only (/debug/vars)",
    )


def _cache(name: str, counter: str) -> UpstreamMetric:
    return UpstreamMetric(
        name=f"registry_storage_cache_{name}_total",
        repo=DISTRIBUTION,
        path=CACHE_METRICS_SOURCE[0],
        commit=CACHE_METRICS_SOURCE[1],
        definition=f'{counter} = prometheus.StorageNamespace.NewCounter("cache_{name}", ...)',
        # seen: 2.8.2 exports one counter with a label; 3.x splits it into one counter per type
        in_2_8='registry_storage_cache_total{type="Request"|"Hit"|"Miss"}',
    )


V3_ONLY_METRICS: tuple[UpstreamMetric, ...] = (
    _proxy("requests", "requests"),
    _proxy("hits", "hits"),
    _proxy("misses", "misses"),
    _proxy("pulled_bytes", "pulledBytes"),
    _proxy("pushed_bytes", "pushedBytes"),
    _cache("requests", "cacheRequestCount"),
    _cache("hits", "cacheHitCount"),
)

V3_ONLY_METRIC_NAMES: frozenset[str] = frozenset(m.name for m in V3_ONLY_METRICS)
