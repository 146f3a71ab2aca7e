"""The registry's `config.yml` (distribution `registry:3`).

Pure: plain values in, YAML text out. The file holds no secret on purpose, so that a
`pulumi preview` shows real diffs of it: Docker Hub credentials and `http.secret` reach the
registry as `REGISTRY_*` environment variables (distribution's env override), as secrets.
"""

from __future__ import annotations

import yaml

CONFIG_PATH = "/etc/distribution/config.yml"  # registry:3 (v2 used /etc/docker/registry)
STORAGE_ROOT = "/var/lib/registry"
CERT_PATH = "/etc/distribution/certs/registry.crt"
KEY_PATH = "/etc/distribution/certs/registry.key"
CLIENT_CA_PATH = "/etc/distribution/certs/client-ca.crt"
API_PORT = 5000
DEBUG_PORT = 5001
DOCKER_HUB = "https://registry-1.docker.io"


def render_registry_config(
    *,
    proxy_ttl: str = "168h",
    tag_concurrency_limit: int = 5,
    remote_url: str = DOCKER_HUB,
    storage_root: str = STORAGE_ROOT,
    cert_path: str = CERT_PATH,
    key_path: str = KEY_PATH,
    client_ca_path: str | None = None,
    addr: str = f":{API_PORT}",
    debug_addr: str = f":{DEBUG_PORT}",
    log_level: str = "info",
) -> str:
    """Render the registry configuration for a TLS Docker Hub pull-through cache."""
    tls: dict[str, object] = {
        # leaf + intermediate: clients trust only the root CA
        "certificate": cert_path,
        "key": key_path,
        "minimumtls": "tls1.2",
    }
    if client_ca_path:
        # distribution then requires and verifies a client certificate (mTLS)
        tls["clientcas"] = [client_ca_path]
    config = {
        "version": 0.1,
        "log": {
            "level": log_level,
            "formatter": "json",
            "fields": {"service": "registry"},
        },
        "storage": {
            "filesystem": {"rootdirectory": storage_root},
            # proxy TTL expiry deletes blobs and manifests: it needs delete enabled
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "tag": {"concurrencylimit": tag_concurrency_limit},
        },
        "http": {
            "addr": addr,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "tls": tls,
            # The debug server has no TLS (registry.go configureDebugServer): it stays on
            # the private network and is never published.
            "debug": {
                "addr": debug_addr,
                "prometheus": {"enabled": True, "path": "/metrics"},
            },
        },
        "proxy": {"remoteurl": remote_url, "ttl": proxy_ttl},
        "health": {
            "storagedriver": {"enabled": True, "interval": "10s", "threshold": 3},
        },
    }
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
