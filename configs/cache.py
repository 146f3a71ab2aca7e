"""The cache keeper beside a mirror whose cache is bounded (`cacheMaxSize`) or pinned
(`cachePin`): its config, the registry's notification endpoint for it, and its container.

Pure: plain values in, text out (JSON through `json`, the registry's YAML through
configs/registry.py). The keeper's code is the `cachekeeper` package of this repository,
uploaded file by file into a stock Python image (`contract.IMAGES["cache"]`) and run with
the standard library only. It shares the registry's volume (it removes evicted images from it)
and keeps its last-pull times on a volume of its own.

Upstream sources: docs/upstream-references.md ("Cache keeper").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configs.spec import Input, Mount, Secret, ServiceSpec, Upload
from contract import Cache, Registry

if TYPE_CHECKING:
    from settings import CacheSettings, RegistrySettings

PORT = Cache.PORT
CONFIG_PATH = Cache.CONFIG_PATH
CODE_DIR = Cache.CODE_DIR
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "cachekeeper"
MEMORY_MB = 256
# how often the keeper measures the cache; between two checks usage may pass the high
# watermark by what is pulled meanwhile (docs/operations.md, "A bounded cache")
CHECK_INTERVAL_SECONDS = 15
PIN_REFRESH_SECONDS = 6 * 3600
PIN_RETRY_SECONDS = 300
PASSWORD_ENV = "REGISTRY_CACHE_PASSWORD"  # cachekeeper/service.py reads it
# distribution's notification endpoint (configuration.md "notifications"; notifications/
# endpoint.go): events queue in the registry's memory and are retried with this backoff while
# the keeper is away; a pull never waits on them
NOTIFY_TIMEOUT = "2s"
NOTIFY_THRESHOLD = 5
NOTIFY_BACKOFF = "5s"
# blob pulls carry application/octet-stream (notifications/bridge.go createBlobEvent): the
# keeper needs manifest pulls only
NOTIFY_IGNORE_MEDIATYPES = ["application/octet-stream"]
NOTIFY_IGNORE_ACTIONS = ["push", "delete", "mount"]


def events_url(alias: str) -> str:
    return f"http://{alias}:{PORT}{Cache.EVENTS_PATH}"


def render_notifications(url: str) -> dict[str, Any]:
    """The registry's `notifications` section: one endpoint, the keeper's."""
    return {"endpoints": [{
        "name": Cache.ALIAS,
        "url": url,
        "timeout": NOTIFY_TIMEOUT,
        "threshold": NOTIFY_THRESHOLD,
        "backoff": NOTIFY_BACKOFF,
        "ignore": {"mediatypes": NOTIFY_IGNORE_MEDIATYPES, "actions": NOTIFY_IGNORE_ACTIONS},
    }]}


def render_cache_config(
    cache: CacheSettings,
    *,
    upstream: str,
    registry_url: str,
    storage_root: str = Registry.STORAGE_ROOT,
    state_dir: str = Cache.STATE_PATH,
    listen: str = f"0.0.0.0:{PORT}",
    ca_file: str | None = Cache.CA_PATH,
    client_cert: str | None = None,
    client_key: str | None = None,
    username: str | None = None,
    check_interval_seconds: float = CHECK_INTERVAL_SECONDS,
    pin_refresh_seconds: float = PIN_REFRESH_SECONDS,
    pin_retry_seconds: float = PIN_RETRY_SECONDS,
) -> str:
    """The keeper's config.json (cachekeeper/service.py `Config`)."""
    document = {
        "upstream": upstream,
        "storage_root": storage_root,
        "state_dir": state_dir,
        "listen": listen,
        "registry_url": registry_url,
        "ca_file": ca_file,
        "client_cert": client_cert,
        "client_key": client_key,
        "username": username,
        "max_bytes": cache.max_bytes,
        "high_watermark": cache.high_watermark,
        "low_watermark": cache.low_watermark,
        "min_age_seconds": cache.min_age_seconds,
        "pins": list(cache.pins),
        "check_interval_seconds": check_interval_seconds,
        "pin_refresh_seconds": pin_refresh_seconds,
        "pin_retry_seconds": pin_retry_seconds,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def package_files() -> dict[str, str]:
    """The keeper's code: container path -> content, every module of the package."""
    return {f"{CODE_DIR}/cachekeeper/{path.name}": path.read_text()
            for path in sorted(PACKAGE_DIR.glob("*.py"))}


def container_spec(
    settings: RegistrySettings,
    *,
    alias: str,
    registry_alias: str,
    upstream: str,
    registry_volume: Input,
    state_volume: Input,
    root_ca_pem: Input,
    client_cert: tuple[Input, Input] | None = None,
    password_env: Input = None,
) -> ServiceSpec:
    """The keeper's container: its config and code uploaded, the registry's volume and its own
    mounted; with `client_cert` (chain, key) it presents the stack's client certificate, with
    `password_env` (`REGISTRY_CACHE_PASSWORD=<password>`) it pulls pinned images as `Cache.USER`."""
    config_text = render_cache_config(
        settings.cache, upstream=upstream, registry_url=f"https://{registry_alias}:{Registry.API_PORT}",
        client_cert=Cache.CLIENT_CERT_PATH if client_cert else None,
        client_key=Cache.CLIENT_KEY_PATH if client_cert else None,
        username=Cache.USER if password_env is not None else None,
    )
    uploads = [Upload(CONFIG_PATH, config_text), Upload(Cache.CA_PATH, root_ca_pem)]
    uploads += [Upload(path, text) for path, text in package_files().items()]
    if client_cert is not None:
        uploads += [Upload(Cache.CLIENT_CERT_PATH, client_cert[0]),
                    Upload(Cache.CLIENT_KEY_PATH, client_cert[1], permissions="0600", secret=True)]
    envs: list[Input | Secret] = [f"PYTHONPATH={CODE_DIR}", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"]
    if password_env is not None:
        envs.append(Secret(password_env))
    return ServiceSpec(
        service=alias,
        image=settings.cache_image,
        memory_mb=MEMORY_MB,
        uploads=uploads,
        envs=envs,
        mounts=[Mount(Registry.STORAGE_ROOT, volume_name=registry_volume),
                Mount(Cache.STATE_PATH, volume_name=state_volume)],
        command=["python", "-m", "cachekeeper", "--config", CONFIG_PATH],
        healthcheck=["CMD", "python", "-c",
                     f"import urllib.request as u; u.urlopen('http://127.0.0.1:{PORT}{Cache.HEALTH_PATH}', timeout=4)"],
    )
