"""The upstream front: an nginx between each mirror and its upstream (`nginx.conf` + container).

Pure: plain values in, nginx config text out through `configs/nginxconf.py`. The registry's
`proxy.remoteurl` is the front (`http://registry-front:8080`); the front is on the private
network only. Why it exists (docs/operations.md, docs/benchmarks.md):

1. Offline start. registry 3.1.1 asks `<remoteurl>/v2/` for its token realm once, at
   start, and panics when that request fails. The front answers `/v2/` itself with a fixed
   bearer challenge whose realm is the front (`http://<front>/token`: the same host and port
   as the remoteurl, the only private realm 3.1.1 accepts), and forwards `/token` to the
   upstream's real realm whenever it is reachable. A mirror started offline serves its cache
   and picks the upstream up when it returns, credentials included, with no restart.
2. Bounded waits. Every upstream request has a connect and read timeout here; the registry's
   own client has none, so an upstream that accepts and never answers would hang every pull,
   cached ones included (the registry asks the upstream for the tag first).
3. One upstream fetch per blob. Blob GETs by digest (immutable) go through a small disk cache
   with `proxy_cache_lock`: N concurrent cold pulls cost one upstream fetch per blob. The
   first request streams as it arrives; the others wait for it. Entries leave the front's
   cache `cache_inactive` after their last use (the registry's storage is the real cache).
4. Docker Hub's redirect of blob GETs to its CDN is followed here, without the registry's
   Authorization header (credentials never reach the CDN), and cached under the blob's key;
   a redirected HEAD is followed with HEAD (a storage URL is signed for one method).
   Only to `https` and a public name (`contract.Redirects`; for a custom upstream only to its
   own host and its `redirect_hosts`): anything else is answered 502, logged with the host
   and the reason (`redirect`, `redirect_refused` in the access log), and never fetched. A
   redirect of anything else (a manifest, a token, the probe's `/v2/`) is checked the same
   way and, when allowed, handed on for the registry to follow as it would without the front.

Manifests and tags are never cached here: a tag always resolves at the upstream while it
answers (the registry falls back to its own copy only when the upstream fails).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from configs.nginxconf import Block, Comment, Directive, MapEntry, Node, serialize
from configs.spec import ServiceSpec, Upload
from contract import Front, Redirects, redirect_host_patterns, redirect_refusal

if TYPE_CHECKING:
    from settings import RegistrySettings

PORT = Front.PORT
ALIAS = Front.ALIAS
CONFIG_PATH = Front.CONFIG_PATH
MEMORY_MB = 128
DOCKER_HUB = "https://registry-1.docker.io"
DOCKER_HUB_REALM = "https://auth.docker.io/token"
DOCKER_HUB_SERVICE = "registry.docker.io"
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS server on user-defined networks
TOKEN_PATH = "/token"
HEALTH_PATH = Front.HEALTH_PATH
# the blackbox exporter probes it: the only reachability figure nginx can give Prometheus
UPSTREAM_PROBE_PATH = Front.UPSTREAM_PROBE_PATH
# a blob by digest: content-addressed, so one cached copy is right for every request
BLOB_LOCATION = r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$"
ACCESS_LOG_FORMAT = "front"

# Timeouts. A blob waiter gives up on the lock after LOCK_TIMEOUT and fetches on its own,
# uncached; after LOCK_AGE one more request may go upstream. Both must exceed the longest
# layer download (1 GB at 10 Mbit/s is about 14 minutes). The registry's own cache write
# (`proxy.cachewritetimeout`, 5 min by default in 3.1.1) must be at least as long, or the
# first request's copy is cut before the waiters get theirs.
LOCK_TIMEOUT = "30m"
CONNECT_TIMEOUT = "5s"
# manifests, tags, tokens: answers of a few hundred bytes; past this the registry falls back
# to its cached tag, so this is also how long a cached pull waits on a silent upstream
METADATA_TIMEOUT = "10s"
BLOB_READ_TIMEOUT = "60s"  # between two reads of a blob body, not for the whole body
RESOLVER_VALID = "10s"  # how soon a returning upstream (or a moved CDN address) is seen


@dataclass(frozen=True)
class FrontPaths:
    """Where the front keeps its files; defaults are the official nginx image's."""

    cache_dir: str = "/var/cache/nginx/blobs"
    temp_dir: str = "/var/cache/nginx"
    pid: str = "/var/run/nginx.pid"
    access_log: str = "/dev/stdout"
    error_log: str = "/dev/stderr"
    ca_bundle: str = "/etc/ssl/certs/ca-certificates.crt"  # Alpine's ca-certificates-bundle


_DURATION = re.compile(r"[0-9]+(ms|s|m|h|d)")
_SIZE = re.compile(r"[0-9]+[kmg]?")


def _base_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host: {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{what} must be scheme://host[:port] only: {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.username:
        raise ValueError(f"{what} must be an http(s) URL with a host and no query: {value!r}")
    return value


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} is not an nginx value of the right kind: {value!r}")
    return value


def challenge(front_url: str, service: str = DOCKER_HUB_SERVICE) -> str:
    """The bearer challenge the front answers `/v2/` with: its own token endpoint, and the
    upstream's service. registry 3.1.1 takes the service only from this challenge and sends
    it to the realm as `service=` (distribution's internal/client/auth/session.go, left out when the
    challenge has none); a realm issues a token for that service, its audience, which the
    upstream checks. Without it the token request names no service (rehearsed in
    tests/rehearsal/test_front_rehearsal.py: the realm refuses and nothing pulls)."""
    return f'Bearer realm="{_base_url(front_url, "front_url")}{TOKEN_PATH}",service="{service}"'


def render_front_config(
    *,
    upstream_url: str = DOCKER_HUB,
    upstream_realm: str | None = DOCKER_HUB_REALM,
    service: str = DOCKER_HUB_SERVICE,
    front_url: str = f"http://{ALIAS}:{PORT}",
    listen: str = str(PORT),
    resolver: str = DOCKER_DNS,
    user: str | None = "nginx",
    paths: FrontPaths = FrontPaths(),
    cache_max_size: str = "4g",
    cache_inactive: str = "10m",
    lock_timeout: str = LOCK_TIMEOUT,
    redirect_hosts: tuple[str, ...] | None = None,
) -> str:
    """Render the front's complete `nginx.conf` (the image's command adds `daemon off`).

    `front_url` is the registry's `proxy.remoteurl`; the realm of the front's challenge is
    built from it. `upstream_realm=None` is an upstream without token auth: `/v2/` then
    answers 200 and nothing is forwarded to a realm. Every upstream host name is resolved
    per request through `resolver`, so nginx starts with no upstream reachable.
    `redirect_hosts=None` follows a blob redirect to any public name (the presets, whose CDNs
    move); a tuple follows it only to those hosts (a custom upstream: its own host and its
    `redirectHosts`; `()`: to none).
    """
    return serialize(front_nodes(
        upstream_url=upstream_url, upstream_realm=upstream_realm, service=service,
        front_url=front_url, listen=listen, resolver=resolver, user=user, paths=paths,
        cache_max_size=cache_max_size, cache_inactive=cache_inactive, lock_timeout=lock_timeout,
        redirect_hosts=redirect_hosts,
    ))  # fmt: skip


def front_nodes(
    *,
    upstream_url: str,
    upstream_realm: str | None,
    service: str,
    front_url: str,
    listen: str,
    resolver: str,
    user: str | None,
    paths: FrontPaths,
    cache_max_size: str,
    cache_inactive: str,
    lock_timeout: str,
    redirect_hosts: tuple[str, ...] | None = None,
) -> list[Node]:
    upstream = _base_url(upstream_url, "upstream_url")
    realm = _url(upstream_realm, "upstream_realm") if upstream_realm is not None else None
    _checked(_SIZE, cache_max_size, "cache_max_size")
    _checked(_DURATION, cache_inactive, "cache_inactive")
    _checked(_DURATION, lock_timeout, "lock_timeout")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", service):
        raise ValueError(f"service must be a host-like name: {service!r}")

    if realm is not None:
        ping: list[Node] = [
            Comment("the registry learns its token realm here, at start: answered locally so\n"
                    "that it starts, and finds the same realm, with the upstream unreachable"),
            Directive("default_type", "application/json"),
            Directive("add_header", "WWW-Authenticate", challenge(front_url, service), "always"),
            Directive("add_header", "Docker-Distribution-Api-Version", "registry/2.0", "always"),
            Directive("return", 401, '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'),
        ]  # fmt: skip
    else:
        ping = [
            Directive("default_type", "application/json"),
            Directive("add_header", "Docker-Distribution-Api-Version", "registry/2.0", "always"),
            Directive("return", 200, "{}"),
        ]

    locations: list[Node | None] = [
        Block("location", "=", "/v2/", children=ping),
        Block("location", "=", TOKEN_PATH, children=[
            Directive("set", "$front_realm", realm),
            Directive("proxy_pass", "$front_realm$is_args$args"),
            *_metadata_timeouts(),
            *_passed_redirects(),
        ]) if realm is not None else None,
        Block("location", "=", HEALTH_PATH, children=[
            Directive("access_log", "off"),
            Directive("return", 200, "ok"),
        ]),
        Block("location", "=", UPSTREAM_PROBE_PATH, children=[
            Directive("proxy_pass", "$front_upstream/v2/"),
            *_metadata_timeouts(),
            *_passed_redirects(),
        ]),
        Block("location", "~", BLOB_LOCATION, children=[
            Comment("a HEAD is the registry's blob stat, a few hundred bytes: the metadata timeout,\n"
                    "not the blob's (return inside if is one of the safe uses of if)"),
            Block("if", "($request_method", "=", "HEAD)", children=[Directive("return", 418)]),
            Directive("error_page", 418, "=", "@blob_head"),
            Comment("so that @blob_head's own error_page (a redirected HEAD) runs: nginx follows one\n"
                    "error_page per request unless told otherwise"),
            Directive("recursive_error_pages", "on"),
            Directive("proxy_pass", "$front_upstream"),
            *_blob_cache(lock_timeout),
            Comment("Docker Hub answers blob GETs with a 307 to its CDN: followed here"),
            Directive("proxy_intercept_errors", "on"),
            Directive("error_page", 301, 302, 303, 307, 308, "=", "@cdn"),
        ]),
        Block("location", "@blob_head", children=[
            Directive("proxy_pass", "$front_upstream"),
            *_metadata_timeouts(),
            Directive("proxy_intercept_errors", "on"),
            Directive("error_page", 301, 302, 303, 307, 308, "=", "@cdn"),
        ]),
        Block("location", "@cdn", children=[
            *_refused_redirects(),
            Comment("the upstream's token is for the upstream: never sent to its CDN; a HEAD stays a HEAD"),
            Directive("proxy_set_header", "Authorization", ""),
            Directive("proxy_pass", "$front_redirect"),
            *_blob_cache(lock_timeout),
        ]),
        Comment("manifests (a tag moves), tag lists and the rest: passed through, never cached"),
        Block("location", "/", children=[
            Directive("proxy_pass", "$front_upstream"),
            *_metadata_timeouts(),
            *_passed_redirects(),
        ]),
        Comment("a redirect of anything but a blob: checked as a blob's is, then handed to the\n"
                "registry (or the probe), which follows it itself, as without the front"),
        Block("location", "@redirect", children=[
            *_refused_redirects(),
            Directive("return", 307, "$front_redirect"),
        ]),
    ]  # fmt: skip

    http: list[Node] = [
        Directive("log_format", ACCESS_LOG_FORMAT, "escape=json",
                  '{"time":"$time_iso8601","method":"$request_method","uri":"$uri",'
                  '"status":$status,"bytes_sent":$bytes_sent,"cache":"$upstream_cache_status",'
                  '"upstream_status":"$upstream_status","upstream_bytes":"$upstream_bytes_received",'
                  '"upstream_addr":"$upstream_addr","request_time":$request_time,'
                  '"redirect":"$front_redirect_host","redirect_refused":"$front_redirect_refused"}'),
        Directive("access_log", paths.access_log, ACCESS_LOG_FORMAT),
        Directive("server_tokens", "off"),
        *(Directive(f"{kind}_temp_path", f"{paths.temp_dir}/{kind}_temp")
          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        Directive("proxy_cache_path", paths.cache_dir, "levels=1:2", "keys_zone=blobs:10m",
                  f"max_size={cache_max_size}", f"inactive={cache_inactive}", "use_temp_path=off"),
        Comment("HEAD (the registry's blob stat) always goes upstream as HEAD and is never cached"),
        Block("map", "$request_method", "$front_is_head", children=[
            Directive("default", ""),
            Directive("HEAD", "1"),
        ]),
        *_redirect_maps(redirect_hosts),
        Comment("names resolve per request (proxy_pass with variables): nginx starts offline"),
        Directive("resolver", resolver, f"valid={RESOLVER_VALID}", "ipv6=off"),
        Directive("resolver_timeout", CONNECT_TIMEOUT),
        Block("server", children=[
            Directive("listen", listen),
            Directive("set", "$front_upstream", upstream),
            Comment("set in @cdn; empty (and no warning in the error log) for every other request"),
            Directive("set", "$front_redirect", ""),
            Directive("proxy_http_version", "1.1"),
            Directive("proxy_set_header", "Connection", ""),
            Directive("proxy_connect_timeout", CONNECT_TIMEOUT),
            Directive("proxy_ssl_server_name", "on"),
            Directive("proxy_ssl_verify", "on"),
            Directive("proxy_ssl_verify_depth", 4),
            Directive("proxy_ssl_trusted_certificate", paths.ca_bundle),
            *locations,
        ]),
    ]  # fmt: skip

    top: list[Node] = []
    if user:
        top.append(Directive("user", user))
    top += [
        Directive("worker_processes", "auto"),
        Directive("pid", paths.pid),
        Directive("error_log", paths.error_log, "warn"),
        Block("events", children=[Directive("worker_connections", 1024)]),
        Block("http", children=http),
    ]
    return top


# what ends a URL's host: a port, then the path, query or fragment (or nothing)
_HOST_END = r"(?::[0-9]{1,5})?(?:[/?#]|$)"


def _redirect_maps(redirect_hosts: tuple[str, ...] | None) -> list[Node]:
    """`$front_redirect_refused`: why the Location in `$front_redirect` is not followed ("" when
    it is, or when there is none); `$front_redirect_host`: its host, for the access log."""
    https = f"~*^{Redirects.SCHEME}://"
    rules: list[Node] = [
        Directive("default", Redirects.MALFORMED),
        Comment("evaluated where used (in @cdn, then in the access log), never from a stale copy"),
        Directive("volatile"),
        MapEntry("", ""),  # no redirect
        MapEntry(f"~*^(?!{Redirects.SCHEME}://)", Redirects.SCHEME_REFUSED),
    ]
    for pattern, reason in redirect_host_patterns():
        if reason:
            rules.append(MapEntry(f"{https}{pattern}{_HOST_END}", reason))
        elif redirect_hosts is None:
            rules.append(MapEntry(f"{https}{pattern}{_HOST_END}", ""))
        else:
            if _checked_hosts(redirect_hosts):
                allowed = "|".join(re.escape(h) for h in redirect_hosts)
                rules.append(MapEntry(f"{https}(?:{allowed})\\.?{_HOST_END}", ""))
            rules.append(MapEntry(f"{https}{pattern}{_HOST_END}", Redirects.NOT_ALLOWED))
    return [
        Comment("where a redirect may go (contract.Redirects): the first matching regex wins"),
        Block("map", "$front_redirect", "$front_redirect_refused", children=rules),
        Block("map", "$front_redirect", "$front_redirect_host", children=[
            Directive("default", ""),
            Directive("volatile"),
            Comment("the host alone: a signed URL's query and any user info stay out of the log"),
            MapEntry("~^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#]*)", "$1"),
        ]),
    ]


def _checked_hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """() follows no redirect at all (a custom upstream on a private name, with no redirectHosts)."""
    for host in hosts:
        if redirect_refusal(host) is not None or host != host.lower():
            raise ValueError(f"redirect_hosts must hold lower-case public host names: {host!r}")
    return hosts


def _refused_redirects() -> list[Node]:
    """The check every followed or passed redirect goes through first (contract.Redirects)."""
    return [
        Directive("set", "$front_redirect", "$upstream_http_location"),
        Comment("only https to a public name (and a custom upstream's own hosts): the rest is an\n"
                "upstream error, logged with its host and reason, never fetched, never cached"),
        Block("if", "($front_redirect_refused)", children=[
            Directive("return", 502, "upstream redirect refused: $front_redirect_refused"),
        ]),
    ]  # fmt: skip


def _passed_redirects() -> list[Node]:
    return [
        Directive("proxy_intercept_errors", "on"),
        Directive("error_page", 301, 302, 303, 307, 308, "=", "@redirect"),
    ]


def _metadata_timeouts() -> list[Node]:
    return [
        Directive("proxy_send_timeout", METADATA_TIMEOUT),
        Directive("proxy_read_timeout", METADATA_TIMEOUT),
    ]


def _blob_cache(lock_timeout: str) -> list[Node]:
    return [
        Directive("proxy_read_timeout", BLOB_READ_TIMEOUT),
        Directive("proxy_cache", "blobs"),
        # the method is in the key: a HEAD answer (no body) must never answer a GET
        Directive("proxy_cache_key", "$request_method$uri"),
        Directive("proxy_cache_convert_head", "off"),
        Directive("proxy_cache_bypass", "$front_is_head"),
        Directive("proxy_no_cache", "$front_is_head"),
        Directive("proxy_cache_valid", 200, "10m"),
        Directive("proxy_cache_lock", "on"),
        Directive("proxy_cache_lock_timeout", lock_timeout),
        Directive("proxy_cache_lock_age", lock_timeout),
        Directive("proxy_ignore_headers", "Cache-Control", "Expires", "Set-Cookie", "Vary", "X-Accel-Expires"),
        # finish a fetch that other requests wait for even when its own client went away
        Directive("proxy_ignore_client_abort", "on"),
    ]


# the token realm and service each upstream's /v2/ challenge names, for the ones we know
KNOWN_TOKEN_AUTH = {DOCKER_HUB: (DOCKER_HUB_REALM, DOCKER_HUB_SERVICE)}


def token_auth(upstream_url: str, realm: str | None, service: str | None) -> tuple[str | None, str]:
    """(realm, service) the front forwards token requests to: given, or known for the
    upstream; realm "" means an upstream without token auth (the front answers /v2/ 200)."""
    if realm is None:
        if upstream_url not in KNOWN_TOKEN_AUTH:
            raise ValueError(
                f"the upstream front needs {upstream_url}'s token realm and service (its /v2/ "
                'challenge): pass upstream_realm and upstream_service, or upstream_realm="" without token auth'
            )
        return KNOWN_TOKEN_AUTH[upstream_url]
    if realm == "":
        return None, service or DOCKER_HUB_SERVICE
    if not service:
        raise ValueError(f"upstream_service is required with upstream_realm {realm!r}")
    return realm, service


def front_url(alias: str) -> str:
    """The registry's `proxy.remoteurl` when this front stands before its upstream."""
    return f"http://{alias}:{PORT}"


def container_spec(
    settings: RegistrySettings,
    *,
    alias: str,
    upstream_url: str,
    upstream_realm: str | None,
    service: str = DOCKER_HUB_SERVICE,
    redirect_hosts: tuple[str, ...] | None = None,
) -> ServiceSpec:
    """The front's container: its nginx.conf uploaded, nothing published, no volume (its
    cache is transient: a few minutes of blobs, bounded by `max_size`)."""
    config_text = render_front_config(
        upstream_url=upstream_url, upstream_realm=upstream_realm, service=service, front_url=front_url(alias),
        redirect_hosts=redirect_hosts,
    )  # fmt: skip
    return ServiceSpec(
        service=alias,
        image=settings.front_image,
        memory_mb=MEMORY_MB,
        uploads=[Upload(CONFIG_PATH, config_text)],
        # the alpine image has busybox wget; /v2/ answers 401 by design, the health path 200
        healthcheck=["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}{HEALTH_PATH}"],
    )
