"""Names shared by the program, `mirrorctl`, the benchmark and the tests.

Written once here and imported everywhere: project name, label keys, image pins, network
aliases, container ports and in-container paths. No Pulumi import, so the operator CLI and
the rehearsals can use it without the SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROJECT = "registry-mirror"

# Time a container gets between SIGTERM and SIGKILL, on `docker stop` and when the provider
# replaces or destroys it (the provider's default is 0: a SIGKILL that leaves Prometheus's
# TSDB, Loki's index and Grafana's SQLite unclean). The registry drains within it.
STOP_GRACE_SECONDS = 30

LABEL_PROJECT = f"{PROJECT}.project"
LABEL_STACK = f"{PROJECT}.stack"
LABEL_SERVICE = f"{PROJECT}.service"

# The image pins: one line each so that Renovate's custom manager (renovate.json) finds and
# bumps them. The settings take their image defaults from here.
IMAGES: dict[str, str] = {
    "registry": "registry:3.1.1",
    "prometheus": "prom/prometheus:v3.7.3",
    "blackbox": "prom/blackbox-exporter:v0.27.0",
    "jaeger": "jaegertracing/jaeger:2.11.0",
    "loki": "grafana/loki:3.5.7",
    "alloy": "grafana/alloy:v1.11.3",
    "grafana": "grafana/grafana:12.2.1",
    "front": "nginx:1.31.5-alpine",
    # the cache keeper (cachekeeper/, uploaded as files): a stock Python, standard library only
    "cache": "python:3.13.9-slim",
}


@dataclass(frozen=True)
class Naming:
    """Names of Docker objects and labels: project + stack, so stacks never collide."""

    project: str
    stack: str

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stack}"

    def docker_name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def labels(self, service: str) -> dict[str, str]:
        return {LABEL_PROJECT: self.project, LABEL_STACK: self.stack, LABEL_SERVICE: service}


# --- services: network alias (also the label value and Docker name suffix), the container
# ports and in-container paths that more than one module needs -----------------------------


class Registry:
    ALIAS = "registry"
    API_PORT = 5000  # TLS, published
    DEBUG_PORT = 5001  # plain HTTP only (health, metrics): never published
    HEALTH_PATH = "/debug/health"
    API_PATH = "/v2/"  # answers 200 on the published TLS port when the registry serves
    METRICS_PATH = "/metrics"
    CONFIG_PATH = "/etc/distribution/config.yml"  # registry:3 (v2 used /etc/docker/registry)
    CERT_PATH = "/etc/distribution/certs/registry.crt"
    KEY_PATH = "/etc/distribution/certs/registry.key"
    CLIENT_CA_PATH = "/etc/distribution/certs/client-ca.crt"
    HTPASSWD_PATH = "/etc/distribution/htpasswd"
    HTPASSWD_REALM = "registry-mirror"
    STORAGE_ROOT = "/var/lib/registry"
    BINARY = "/bin/registry"
    DOCKER_HUB = "https://registry-1.docker.io"


class Front:
    """The upstream front between a mirror and its upstream (configs/front.py): plain HTTP on
    the private network only, never published."""

    ALIAS = "registry-front"
    PORT = 8080
    CONFIG_PATH = "/etc/nginx/nginx.conf"
    HEALTH_PATH = "/_front/health"
    # answers with the upstream's own status for /v2/ (Docker Hub: 401 = reachable)
    UPSTREAM_PROBE_PATH = "/_front/upstream"


class Redirects:
    """Where the upstream front follows an upstream's blob redirect (docs/security.md, "Redirects").

    Only to `https` URLs whose host is a public name: never an IP literal, never a single
    label (the stack's own aliases and container names are single labels), never a name under
    a suffix that cannot be a public host. A custom `mirrors` entry is further held to its own
    host and its `redirectHosts`. The reasons are what the front's access log writes in
    `redirect_refused` and what the refusal counter is labelled with.
    """

    SCHEME = "https"
    # Suffixes no public CDN can live under: special-use names (localhost, invalid), mDNS
    # (local), the top-level names private networks use (intranet, internal, private, corp,
    # home, lan), infrastructure (arpa, home.arpa among it), onion and alt; sources in
    # docs/upstream-references.md ("Upstream redirects"). `test` and `example` are left out:
    # the standard asks applications not to treat them specially, and the rehearsals'
    # stand-in CDNs live under `test`.
    RESERVED_SUFFIXES = ("localhost", "local", "internal", "arpa", "invalid", "onion", "alt",
                         "intranet", "private", "corp", "home", "lan")
    # the refusal reasons, in the order the front checks them
    SCHEME_REFUSED = "scheme"  # not https:// (an http:// redirect or a relative Location)
    IP_LITERAL = "ip-literal"  # [v6], a dotted quad, or any name whose last label is a number
    SINGLE_LABEL = "single-label"
    RESERVED_NAME = "reserved-name"
    NOT_PUBLIC = "not-public"  # a last label no public TLD has (Docker's `<alias>.<network>`)
    NOT_ALLOWED = "not-allowed"  # a custom entry's redirect to a host it does not list
    MALFORMED = "malformed"  # user info, characters no host name has


_LABEL = r"[a-z0-9-]+"
_PUBLIC_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_PUBLIC_TLD = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
_NUMERIC_LABEL = r"(?:[0-9]+|0x[0-9a-f]*)"


def redirect_host_patterns() -> list[tuple[str, str]]:
    """(regex over a lower-case host with at most one trailing dot, reason) in the order the
    front checks them; a host no pattern matches is malformed. The front's nginx map and
    `redirect_refusal` are both built from this list."""
    suffixes = "|".join(Redirects.RESERVED_SUFFIXES)
    return [
        (r"\[.*", Redirects.IP_LITERAL),
        (rf"(?:{_LABEL}\.)*{_NUMERIC_LABEL}\.?", Redirects.IP_LITERAL),
        (rf"{_LABEL}\.?", Redirects.SINGLE_LABEL),
        (rf"(?:{_LABEL}\.)+(?:{suffixes})\.?", Redirects.RESERVED_NAME),
        (rf"(?:{_PUBLIC_LABEL}\.)+{_PUBLIC_TLD}\.?", ""),
        (r"[a-z0-9.-]+", Redirects.NOT_PUBLIC),
    ]


def redirect_refusal(host: str) -> str | None:
    """Why the front never follows a redirect to `host` (no port), or None for a public name."""
    for pattern, reason in redirect_host_patterns():
        if re.fullmatch(pattern, host.lower()):
            return reason or None
    return Redirects.MALFORMED


def front_alias(instance: str = "") -> str:
    """The front of the mirror `instance`: `registry-front` for Docker Hub, else suffixed."""
    return f"{Front.ALIAS}-{instance}" if instance else Front.ALIAS


def registry_alias(instance: str = "") -> str:
    """The network alias (and service name) of a mirror: the Docker Hub mirror keeps the plain
    alias so existing stacks keep their names; further instances get a suffix."""
    return f"{Registry.ALIAS}-{instance}" if instance else Registry.ALIAS


class Cache:
    """The cache keeper beside a mirror whose cache is bounded or pinned (configs/cache.py,
    cachekeeper/): plain HTTP on the private network only, never published."""

    ALIAS = "registry-cache"
    PORT = 5080
    EVENTS_PATH = "/events"  # the registry's notification endpoint
    METRICS_PATH = "/metrics"
    HEALTH_PATH = "/health"
    CONFIG_PATH = "/etc/registry-cache/config.json"
    CA_PATH = "/etc/registry-cache/ca.crt"
    CLIENT_CERT_PATH = "/etc/registry-cache/client.crt"
    CLIENT_KEY_PATH = "/etc/registry-cache/client.key"
    CODE_DIR = "/opt/registry-cache"  # holds the cachekeeper package
    STATE_PATH = "/var/lib/registry-cache"  # its own volume: the last-pull times
    # the registry user it pulls pinned images as when the registry asks for one (registryUsers)
    USER = "registry-cache"


def cache_alias(instance: str = "") -> str:
    """The cache keeper of the mirror `instance`: `registry-cache` for Docker Hub."""
    return f"{Cache.ALIAS}-{instance}" if instance else Cache.ALIAS


# The router (configs/router.py): one URL for every upstream when there is more than one mirror
ROUTER_ALIAS = "registry-router"
# the instance of the private push registry (privateRegistry): `registry-private`
PRIVATE_INSTANCE = "private"


class Prometheus:
    ALIAS = "prometheus"
    PORT = 9090
    READY_PATH = "/-/ready"
    CONFIG_PATH = "/etc/prometheus/prometheus.yml"  # the image's default --config.file
    RULES_PATH = "/etc/prometheus/rules/registry-mirror.rules.yml"
    DATA_PATH = "/prometheus"


class Blackbox:
    ALIAS = "blackbox"
    PORT = 9115
    READY_PATH = "/-/healthy"
    CONFIG_PATH = "/etc/blackbox_exporter/config.yml"
    CA_PATH = "/etc/blackbox/ca.crt"
    CLIENT_CERT_PATH = "/etc/blackbox/client.crt"
    CLIENT_KEY_PATH = "/etc/blackbox/client.key"
    MODULE = "registry_tls"
    # the upstream as seen through the front: any HTTP answer of the upstream's /v2/ (Docker
    # Hub: 401) is "reachable"; the front's own 502/504 is not
    UPSTREAM_MODULE = "upstream_http"
    UPSTREAM_JOB = "upstream"


class Jaeger:
    ALIAS = "jaeger"
    UI_PORT = 16686
    OTLP_GRPC_PORT = 4317
    OTLP_HTTP_PORT = 4318
    HEALTH_PORT = 13133
    METRICS_PORT = 8888  # Jaeger v2's own metrics (v1 used 14269)
    READY_PATH = "/"
    CONFIG_PATH = "/etc/jaeger/config.yaml"


class Loki:
    ALIAS = "loki"
    PORT = 3100
    READY_PATH = "/ready"
    PUSH_PATH = "/loki/api/v1/push"
    CONFIG_PATH = "/etc/loki/config.yaml"
    DATA_PATH = "/loki"


class Alloy:
    ALIAS = "alloy"
    PORT = 12345
    READY_PATH = "/-/ready"
    CONFIG_PATH = "/etc/alloy/config.alloy"
    DATA_PATH = "/var/lib/alloy/data"
    DOCKER_SOCKET = "/var/run/docker.sock"


class Grafana:
    ALIAS = "grafana"
    PORT = 3000
    READY_PATH = "/api/health"
    DASHBOARDS_PATH = "/etc/grafana/dashboards"
    DATA_PATH = "/var/lib/grafana"


# Placeholders in the `clientConfigs` output for values that are secrets (the output itself
# is not, so that `mirrorctl client-config` reads it without --show-secrets): it fills them.
CLIENT_KEY_PLACEHOLDER = "<clientKeyPem>"
USER_PLACEHOLDER = "<user>"
PASSWORD_PLACEHOLDER = "<password>"
CLIENT_KINDS = ("docker", "containerd", "kind", "k3s")
# The only directories each client kind's files may be written under (configs/clients.py
# writes there; `mirrorctl client-config` refuses any other path an outputs file names).
CLIENT_ROOTS: dict[str, tuple[str, ...]] = {
    "docker": ("/etc/docker/",),
    "containerd": ("/etc/containerd/certs.d/",),
    "kind": ("/etc/registry-mirror/kind/",),
    "k3s": ("/etc/rancher/k3s/",),
}


def http_url(alias: str, port: int) -> str:
    """A service's base URL on the stack's private network."""
    return f"http://{alias}:{port}"


# Every service the stack can run, in the order operators read them (mirrorctl status).
SERVICES: tuple[str, ...] = (
    Registry.ALIAS, Front.ALIAS, Cache.ALIAS, Prometheus.ALIAS, Grafana.ALIAS, Jaeger.ALIAS, Loki.ALIAS, Alloy.ALIAS,
    Blackbox.ALIAS,
)

# What answers 200 on each published URL once the service is ready (mirrorctl status).
READY_PATHS: dict[str, str] = {
    Registry.ALIAS: Registry.API_PATH,
    Prometheus.ALIAS: Prometheus.READY_PATH,
    Grafana.ALIAS: Grafana.READY_PATH,
    Jaeger.ALIAS: Jaeger.READY_PATH,
    Loki.ALIAS: Loki.READY_PATH,
    Alloy.ALIAS: Alloy.READY_PATH,
}
