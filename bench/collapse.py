"""`nginx.conf` of a blob-collapsing front between the mirror and its upstream (a prototype).

Pure: plain values in, nginx config text out. Not part of the stack: the benchmark (`bench/`)
and `tests/rehearsal/test_collapse_rehearsal.py` measure it (docs/benchmarks.md). It exists
because distribution fetches a blob from upstream once per concurrent cold request.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

CONFIG_PATH = "/etc/nginx/nginx.conf"
CACHE_DIR = "/var/cache/nginx/blobs"
TEMP_DIR = "/var/cache/nginx"
PID_PATH = "/var/run/nginx.pid"
PORT = 8080
DOCKER_HUB = "https://registry-1.docker.io"
DOCKER_HUB_REALM = "https://auth.docker.io/token"
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS server on user-defined networks
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TOKEN_PATH = "/_front/token"
# A blob by digest: content-addressed, so one cached copy is right for every request.
BLOB_LOCATION = r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$"

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d)$")
_SIZE = re.compile(r"^[0-9]+[kmg]?$")


def _url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host: {value!r}")
    if any(c in value for c in ' ";{}\n'):
        raise ValueError(f"{what} holds a character nginx would misread: {value!r}")
    return value


def _base_url(value: str, what: str) -> str:
    _url(value, what)
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{what} must be scheme://host[:port] only: {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"{what} is not an nginx value of the right kind: {value!r}")
    return value


def render_collapse_config(
    *,
    upstream_url: str = DOCKER_HUB,
    front_url: str = f"http://blobfront:{PORT}",
    auth_realm: str | None = DOCKER_HUB_REALM,
    follow_redirects: bool = True,
    resolver: str | None = DOCKER_DNS,
    port: int = PORT,
    listen_address: str | None = None,
    cache_dir: str = CACHE_DIR,
    temp_dir: str = TEMP_DIR,
    pid_path: str = PID_PATH,
    access_log: str = "/dev/stdout",
    error_log: str = "/dev/stderr",
    ca_bundle: str = CA_BUNDLE,
    cache_max_size: str = "10g",
    cache_inactive: str = "10m",
    cache_valid: str = "1h",
    lock_timeout: str = "10m",
    read_timeout: str = "120s",
    worker_processes: str = "auto",
    user: str | None = None,
) -> str:
    """Render the front's complete `nginx.conf`.

    The registry's `proxy.remoteurl` points at the front and the front at the real upstream;
    the registry keeps every behaviour of its own (auth, TTL, storage, metrics). The front:

    1. sends blob GETs by digest (content-addressed, immutable) through a small disk cache
       with `proxy_cache_lock`: one request per blob goes upstream, concurrent ones wait and
       are served from the front's cache; entries expire after `cache_inactive` without use
       (the registry's storage is the real cache). HEAD requests (how the registry stats a
       blob) are not cached; manifests, tags and `/v2/` pass through uncached;
    2. follows upstream redirects of blob GETs (Docker Hub answers 307 to its CDN) itself and
       stores the result under the original key, without the Authorization header;
    3. with `auth_realm` set, rewrites the bearer realm in `WWW-Authenticate` to the front and
       forwards token requests to the real realm: registry 3.1 drops challenges whose realm is
       outside the `remoteurl`'s host or registrable domain, so every pull would fail with 401.

    Container paths default to those of the official `nginx` image; the config has no
    `daemon` directive (the image's command passes `-g 'daemon off;'`).

    `front_url` is how the registry reaches the front (its `proxy.remoteurl`); it is only
    used to rewrite the realm. `lock_timeout` bounds how long a request waits for another
    one fetching the same blob (and, as `proxy_cache_lock_age`, how long before one more
    request may go upstream): it must exceed the longest blob download you expect, or the
    waiting requests go upstream themselves, uncached.
    """
    upstream = _base_url(upstream_url, "upstream_url")
    front = _base_url(front_url, "front_url")
    realm = _url(auth_realm, "auth_realm") if auth_realm is not None else None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    for value, what in ((cache_inactive, "cache_inactive"), (cache_valid, "cache_valid"),
                        (lock_timeout, "lock_timeout"), (read_timeout, "read_timeout")):  # fmt: skip
        _check(_DURATION, value, what)
    _check(_SIZE, cache_max_size, "cache_max_size")
    if resolver is None:
        named = [u for u in (upstream, realm) if u is not None and not _is_ip(urlsplit(u).hostname or "")]
        if named:
            raise ValueError(f"host names need a resolver (nginx resolves them per request): {named}")
    if worker_processes != "auto" and not worker_processes.isdigit():
        raise ValueError(f"worker_processes must be 'auto' or a number: {worker_processes!r}")

    listen = f"{listen_address}:{port}" if listen_address else str(port)
    lines: list[str] = []
    out = lines.append

    if user:
        out(f"user {user};")
    out(f"worker_processes {worker_processes};")
    out(f"pid {pid_path};")
    out(f"error_log {error_log} warn;")
    out("")
    out("events {")
    out("    worker_connections 1024;")
    out("}")
    out("")
    out("http {")
    out("    log_format front '$msec $request_method $uri $status $body_bytes_sent '")
    out("                     'cache=$upstream_cache_status upstream=$upstream_status';")
    out(f"    access_log {access_log} front;")
    out("    server_tokens off;")
    out(f"    client_body_temp_path {temp_dir}/client_temp;")
    out(f"    proxy_temp_path {temp_dir}/proxy_temp;")
    out(f"    fastcgi_temp_path {temp_dir}/fastcgi_temp;")
    out(f"    uwsgi_temp_path {temp_dir}/uwsgi_temp;")
    out(f"    scgi_temp_path {temp_dir}/scgi_temp;")
    out(f"    proxy_cache_path {cache_dir} levels=1:2 keys_zone=blobs:10m")
    out(f"                     max_size={cache_max_size} inactive={cache_inactive} use_temp_path=off;")
    out("    # HEAD (how the registry stats a blob) always goes upstream as HEAD, never cached")
    out("    map $request_method $front_is_head {")
    out('        default "";')
    out("        HEAD 1;")
    out("    }")
    if resolver is not None:
        out(f"    resolver {resolver} ipv6=off;")
    if realm is not None:
        # keep every other challenge parameter (service, scope) exactly as the upstream sent it
        pattern = '^(?<front_pre>.*realm=\\")' + re.escape(realm) + '(?<front_post>\\".*)$'
        out("    map $upstream_http_www_authenticate $front_www_authenticate {")
        out("        default $upstream_http_www_authenticate;")
        out(f'        "~{pattern}" "${{front_pre}}{front}{TOKEN_PATH}${{front_post}}";')
        out("    }")
    out("")
    out("    server {")
    out(f"        listen {listen};")
    out("        client_max_body_size 0;")
    out("        # variables: nginx resolves upstream names per request (CDN and Hub addresses move)")
    out(f"        set $front_upstream {upstream};")
    out("        proxy_http_version 1.1;")
    out('        proxy_set_header Connection "";')
    out(f"        proxy_read_timeout {read_timeout};")
    out("        proxy_ssl_server_name on;")
    out("        proxy_ssl_verify on;")
    out(f"        proxy_ssl_trusted_certificate {ca_bundle};")
    out("        proxy_ssl_verify_depth 4;")
    if realm is not None:
        out("        proxy_hide_header WWW-Authenticate;")
        out("        add_header WWW-Authenticate $front_www_authenticate always;")
        out("")
        out(f"        location = {TOKEN_PATH} {{")
        out(f"            set $front_realm {realm};")
        out("            proxy_pass $front_realm$is_args$args;")
        out("        }")
    out("")
    out(f'        location ~ "{BLOB_LOCATION}" {{')
    out("            proxy_pass $front_upstream;")
    _cache_directives(out, cache_valid, lock_timeout)
    if follow_redirects:
        out("            proxy_intercept_errors on;")
        out("            error_page 301 302 307 308 = @follow_redirect;")
    out("        }")
    if follow_redirects:
        out("")
        out("        location @follow_redirect {")
        out("            set $front_redirect $upstream_http_location;")
        out("            # the registry's token is for the registry, not for its CDN")
        out('            proxy_set_header Authorization "";')
        out("            proxy_pass $front_redirect;")
        _cache_directives(out, cache_valid, lock_timeout)
        out("        }")
    out("")
    out("        # manifests (tags move), tag lists, /v2/ and anything else: never cached")
    out("        location / {")
    out("            proxy_pass $front_upstream;")
    out("        }")
    out("    }")
    out("}")
    return "\n".join(lines) + "\n"


def _cache_directives(emit: Callable[[str], None], cache_valid: str, lock_timeout: str) -> None:
    emit("            proxy_cache blobs;")
    # nginx always treats HEAD as cacheable: without convert_head a HEAD answer (no body)
    # could be stored under a GET's key, so the key holds the method and HEAD bypasses
    emit("            proxy_cache_key $request_method$uri;")
    emit("            proxy_cache_convert_head off;")
    emit("            proxy_cache_bypass $front_is_head;")
    emit("            proxy_no_cache $front_is_head;")
    emit(f"            proxy_cache_valid 200 {cache_valid};")
    emit("            proxy_cache_lock on;")
    emit(f"            proxy_cache_lock_timeout {lock_timeout};")
    emit(f"            proxy_cache_lock_age {lock_timeout};")
    emit("            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;")
    emit("            proxy_ignore_client_abort on;")  # finish the fetch others wait for
