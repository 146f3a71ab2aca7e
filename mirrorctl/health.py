"""`status`: every service URL and its health, and Prometheus's view of its targets.

Health endpoints (upstream docs): the registry's API base `GET /v2/` (200 = the v2 API is
served; over TLS, verified against the stack CA); Grafana `GET /api/health` (200 with
`{"database": "ok", "version": ...}`); Prometheus `GET /-/ready`; Loki `GET /ready`; Alloy
`GET /-/ready` ("Alloy is ready."); Jaeger's UI `GET /` (its health port 13133 is not
published). The registry's debug port (`/debug/health`) is never published either, so the
registry is judged by its API. Targets come from Prometheus `GET /api/v1/targets`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from contract import READY_PATHS, SERVICES
from mirrorctl.errors import MirrorctlError
from mirrorctl.transport import describe, get

HEALTH_PATHS = READY_PATHS
ORDER = tuple(s for s in SERVICES if s in READY_PATHS)


@dataclass(frozen=True)
class Check:
    service: str
    url: str  # the service URL (a stack output)
    check_url: str  # what was asked
    healthy: bool
    status: str  # HTTP status code, or "error"
    detail: str
    elapsed_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "url": self.url,
            "check": self.check_url,
            "healthy": self.healthy,
            "status": self.status,
            "detail": self.detail,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    health: str  # up | down | unknown
    last_error: str
    scrape_url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "instance": self.instance,
            "health": self.health,
            "last_error": self.last_error,
            "scrape_url": self.scrape_url,
        }


def check_url_for(service: str, url: str) -> str:
    return f"{url.rstrip('/')}{HEALTH_PATHS.get(service, '/')}"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:160]
    return ""


def check_service(
    client: httpx.Client, service: str, url: str, ca_source: str | None = None
) -> Check:
    target = check_url_for(service, url)
    started = time.monotonic()
    try:
        response = client.get(target)
    except httpx.HTTPError as error:
        elapsed = int((time.monotonic() - started) * 1000)
        trust = ca_source if target.startswith("https://") else None
        return Check(service, url, target, False, "error", describe(error, target, trust), elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    healthy = response.status_code == 200
    detail = (
        _detail(service, response)
        if healthy
        else _first_line(response.text) or response.reason_phrase
    )
    return Check(service, url, target, healthy, str(response.status_code), detail, elapsed)


def _detail(service: str, response: httpx.Response) -> str:
    if service == "grafana":
        try:
            document = response.json()
        except ValueError:
            return "no JSON"
        if isinstance(document, dict):
            return (
                f"database {document.get('database', '?')}, version {document.get('version', '?')}"
            )
    if service == "registry":
        version = response.headers.get("Docker-Distribution-Api-Version", "")
        return f"API {version}" if version else "v2 API"
    if service == "jaeger":
        return "UI"
    return _first_line(response.text)


def check_all(
    client: httpx.Client, urls: dict[str, str], ca_source: str | None = None
) -> list[Check]:
    """Every service at once (bounded by the client's timeout), in a stable order."""
    names = sorted(urls, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = [pool.submit(check_service, client, n, urls[n], ca_source) for n in names]
        return [f.result() for f in futures]


def prometheus_targets(client: httpx.Client, prometheus_url: str) -> list[Target]:
    url = f"{prometheus_url.rstrip('/')}/api/v1/targets"
    response = get(client, url, params={"state": "active"})
    if response.status_code != 200:
        raise MirrorctlError(f"{url}: HTTP {response.status_code}")
    try:
        document = response.json()
        active = document["data"]["activeTargets"]
    except (ValueError, KeyError, TypeError) as error:
        raise MirrorctlError(f"{url}: not a Prometheus targets answer") from error
    if not isinstance(active, list) or not all(isinstance(t, dict) for t in active):
        raise MirrorctlError(f"{url}: not a Prometheus targets answer (no list of targets)")
    targets = []
    for t in active:
        labels = t.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        targets.append(
            Target(
                job=str(labels.get("job", t.get("scrapePool", ""))),
                instance=str(labels.get("instance", "")),
                health=str(t.get("health", "unknown")),
                last_error=str(t.get("lastError", "")),
                scrape_url=str(t.get("scrapeUrl", "")),
            )
        )
    return sorted(targets, key=lambda t: (t.job, t.instance))
