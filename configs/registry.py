"""The registry's `config.yml` (distribution `registry:3`).

Pure: plain values in, YAML text out. The file holds no secret on purpose, so that a
`pulumi preview` shows real diffs of it: Docker Hub credentials and `http.secret` reach the
registry as `REGISTRY_*` environment variables (distribution's env override), as secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import bcrypt
import yaml

from configs.spec import Input, Mount, Port, Secret, ServiceSpec, Upload
from contract import STOP_GRACE_SECONDS, Registry

if TYPE_CHECKING:
    from settings import RegistrySettings

CONFIG_PATH = Registry.CONFIG_PATH
STORAGE_ROOT = Registry.STORAGE_ROOT
CERT_PATH = Registry.CERT_PATH
KEY_PATH = Registry.KEY_PATH
API_PORT = Registry.API_PORT
DEBUG_PORT = Registry.DEBUG_PORT
DOCKER_HUB = Registry.DOCKER_HUB


def render_registry_config(
    *,
    proxy_ttl: str,
    tag_concurrency_limit: int,
    remote_url: str | None = DOCKER_HUB,
    storage_root: str = STORAGE_ROOT,
    cert_path: str = CERT_PATH,
    key_path: str = KEY_PATH,
    client_ca_path: str | None = None,
    htpasswd_path: str | None = None,
    addr: str = f":{API_PORT}",
    debug_addr: str = f":{DEBUG_PORT}",
    log_level: str = "info",
    cache_write_timeout: str | None = None,
    notifications: dict[str, object] | None = None,
) -> str:
    """Render the registry configuration: a TLS pull-through cache of `remote_url`, or with
    `remote_url=None` a private registry (no proxy section: pushes and deletes allowed).

    `cache_write_timeout` is 3.1.1's `proxy.cachewritetimeout` (default 5m): how long the
    first request for a cold blob may take to copy it into the cache. Behind the upstream
    front it must be at least the front's lock timeout, or the copy other requests wait for
    is cut first.

    `notifications` (configs/cache.py `render_notifications`): the cache keeper's endpoint, for
    a mirror whose cache is bounded or pinned. Such a mirror runs without a blob-descriptor
    cache: the keeper deletes blobs under the running registry, and a cached descriptor would
    make it serve a deleted blob as present (cachekeeper/sweep.py)."""
    tls: dict[str, object] = {
        # leaf + intermediate: clients trust only the root CA
        "certificate": cert_path,
        "key": key_path,
        "minimumtls": "tls1.2",
    }
    if client_ca_path:
        # distribution then requires and verifies a client certificate (mTLS)
        tls["clientcas"] = [client_ca_path]
    storage: dict[str, object] = {
        "filesystem": {"rootdirectory": storage_root},
        # proxy TTL expiry deletes blobs and manifests: it needs delete enabled
        "delete": {"enabled": True},
        "tag": {"concurrencylimit": tag_concurrency_limit},
    }
    if notifications is None:
        storage["cache"] = {"blobdescriptor": "inmemory"}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {
            "level": log_level,
            "formatter": "json",
            "fields": {"service": "registry"},
        },
        "storage": storage,
        "http": {
            "addr": addr,
            # without it registry 3 does not handle SIGTERM at all (exit 143, pulls cut): with
            # it, it stops accepting and lets requests in flight finish, inside the stop grace
            "draintimeout": f"{STOP_GRACE_SECONDS - 5}s",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "tls": tls,
            # The debug server has no TLS (registry.go configureDebugServer): it stays on
            # the private network and is never published.
            "debug": {
                "addr": debug_addr,
                "prometheus": {"enabled": True, "path": Registry.METRICS_PATH},
            },
        },
        "health": {
            "storagedriver": {"enabled": True, "interval": "10s", "threshold": 3},
        },
    }
    if notifications is not None:
        config["notifications"] = notifications
    if remote_url is not None:
        config["proxy"] = {
            "remoteurl": remote_url,
            "ttl": proxy_ttl,
            **({"cachewritetimeout": cache_write_timeout} if cache_write_timeout else {}),
        }
    if htpasswd_path:
        # Basic auth on every request; the debug server (health, metrics) is not affected
        config["auth"] = {"htpasswd": {"realm": Registry.HTPASSWD_REALM, "path": htpasswd_path}}
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


# bcrypt's base64 alphabet, in the order of the standard one it replaces
_BCRYPT64 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)
BCRYPT_COST = 10  # the registry checks the hash on every request: ~50 ms each at this cost


def render_htpasswd(users_json: str, seed: str) -> str:
    """The htpasswd file: one `user:bcrypt-hash` line per user, sorted.

    The salt of each hash is derived from `seed` (a random value kept in the stack's state)
    and the user name, so the file is byte-stable between evaluations, and a changed
    password or seed changes it.
    """
    users: dict[str, str] = json.loads(users_json)
    lines = []
    for user, password in sorted(users.items()):
        digest = hmac.new(seed.encode(), user.encode(), hashlib.sha256).digest()[:16]
        salt = b"$2b$%02d$" % BCRYPT_COST + base64.b64encode(digest).rstrip(b"=").translate(_BCRYPT64)
        lines.append(f"{user}:{bcrypt.hashpw(password.encode(), salt).decode()}")
    return "\n".join(lines) + "\n"


def container_spec(
    settings: RegistrySettings,
    *,
    alias: str,
    envs: Sequence[Input | Secret],
    remote_url: str | None,
    server_chain_pem: Input,
    server_key_pem: Input,
    volume_name: Input,
    client_ca_pem: Input = None,
    htpasswd: Input = None,
    publish: bool = True,
    cache_write_timeout: str | None = None,
    notifications: dict[str, object] | None = None,
) -> ServiceSpec:
    """The mirror's container: config, chain and key uploaded, its cache on `volume_name`;
    with `client_ca_pem` clients need a certificate it signed, with `htpasswd` a user."""
    config_text = render_registry_config(
        proxy_ttl=settings.proxy_ttl,
        tag_concurrency_limit=settings.tag_concurrency_limit,
        remote_url=remote_url,
        client_ca_path=Registry.CLIENT_CA_PATH if client_ca_pem is not None else None,
        htpasswd_path=Registry.HTPASSWD_PATH if htpasswd is not None else None,
        cache_write_timeout=cache_write_timeout,
        notifications=notifications,
    )
    uploads = [
        Upload(CONFIG_PATH, config_text),
        Upload(CERT_PATH, server_chain_pem),
        Upload(KEY_PATH, server_key_pem, permissions="0600", secret=True),
    ]
    if client_ca_pem is not None:
        uploads.append(Upload(Registry.CLIENT_CA_PATH, client_ca_pem))
    if htpasswd is not None:
        uploads.append(Upload(Registry.HTPASSWD_PATH, htpasswd, permissions="0600", secret=True))
    return ServiceSpec(
        service=alias,
        image=settings.image,
        memory_mb=settings.memory_limit_mb,
        uploads=uploads,
        envs=envs,
        # behind the router, Docker Hub's mirror is reached on the private network only
        ports=[Port(API_PORT, settings.port, settings.bind_address)] if publish else [],
        mounts=[Mount(STORAGE_ROOT, volume_name=volume_name)],
        # registry:3 is Alpine-based: busybox wget asks the debug server's health check
        healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                     f"http://127.0.0.1:{DEBUG_PORT}{Registry.HEALTH_PATH}"],
    )
