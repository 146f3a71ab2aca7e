"""The router: one URL for every upstream (nginx `nginx.conf` + container spec).

containerd adds `?ns=<registry host as the image name writes it>` to the manifest and blob
requests it sends to a mirror (containerd docs/hosts.md; seen: `?ns=docker.io` from 1.6), so
every `hosts.toml` can name the same `https://<hostname>:<registryPort>` and this nginx picks
the mirror by the EXACT `ns` value. A request without `ns` (Docker, skopeo by host) goes to
Docker Hub's mirror; an `ns` no mirror serves gets the registry's own NAME_UNKNOWN error, so
containerd falls back to the upstream itself rather than receiving another registry's image.

The router terminates TLS with the stack's server certificate. With `requireClientCert` it
demands a client certificate signed by the stack's CA; it passes the client's
`Authorization` header through untouched (nginx's default), so the registries' htpasswd
(`registryUsers`) still decides, and their challenge reaches the client. It speaks TLS to the
registries, verifying them against the root CA, and presents the stack's client certificate
when they require one (their own published ports keep enforcing it).

Pure: plain values in, text out through `configs/nginxconf.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from configs.nginxconf import Block, Comment, Directive, Node, serialize
from configs.spec import Input, Port, ServiceSpec, Upload
from contract import ROUTER_ALIAS, Registry

ALIAS = ROUTER_ALIAS
PORT = Registry.API_PORT
CONFIG_PATH = "/etc/nginx/nginx.conf"
# Docker Hub's mirror answers requests without `ns`
DEFAULT_NS = "docker.io"
UNKNOWN = "no_mirror"
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS server on user-defined networks
# the registries' certificate names `registry` (components/pki.py SANs), whatever their alias
BACKEND_TLS_NAME = Registry.ALIAS
NAME_UNKNOWN = '{"errors":[{"code":"NAME_UNKNOWN","message":"this registry mirrors no such upstream"}]}'


@dataclass(frozen=True)
class RouterPaths:
    """Where the router finds its files; defaults are the official nginx image's and the
    spec's uploads. Rehearsals point them under a temp dir."""

    cert: str = "/etc/nginx/certs/server.crt"
    key: str = "/etc/nginx/certs/server.key"
    client_ca: str = "/etc/nginx/certs/client-ca.crt"
    backend_ca: str = "/etc/nginx/certs/ca.crt"
    backend_client_cert: str = "/etc/nginx/certs/client.crt"
    backend_client_key: str = "/etc/nginx/certs/client.key"
    pid: str = "/var/run/nginx.pid"
    temp_dir: str = "/var/cache/nginx"
    access_log: str = "/dev/stdout"
    error_log: str = "/dev/stderr"


@dataclass(frozen=True)
class Route:
    ns: str  # the registry host as containerd sends it in ?ns=
    backend: str  # host:port of that upstream's mirror (TLS)


def _ns_keys(ns: str) -> list[str]:
    # Go's url.Values.Encode escapes ':' in a host:port; nginx's $arg_ns is the raw text
    return list(dict.fromkeys([ns, quote(ns, safe="")]))


def router_nodes(
    routes: Sequence[Route],
    *,
    listen: str = str(PORT),
    require_client_cert: bool = False,
    backend_client_cert: bool = False,
    paths: RouterPaths = RouterPaths(),
    resolver: str = DOCKER_DNS,
) -> list[Node]:
    """The nginx configuration as a tree; `routes[0]` must be Docker Hub's mirror."""
    if not routes or routes[0].ns != DEFAULT_NS:
        raise ValueError("the first route must be Docker Hub's mirror (the route of requests without ns)")
    # `if` with `set` in server context (the rewrite module) compares the exact text: no
    # prefix, suffix or case folding can send one upstream's name to another's mirror
    # The variable holds the mirror's alias:port and proxy_pass resolves it through `resolver`
    # for each request (cached `valid`): a replaced mirror container's new address is found
    # without restarting nginx, which an `upstream` block resolves once, at start.
    choose: list[Node] = [
        Directive("set", "$mirror", UNKNOWN),
        Block("if", "($arg_ns", "=", "", ")", children=[Directive("set", "$mirror", routes[0].backend)]),
    ]
    for route in routes:
        pick = Directive("set", "$mirror", route.backend)
        choose += [Block("if", "($arg_ns", "=", f"{key})", children=[pick]) for key in _ns_keys(route.ns)]
    tls_client: list[Node | None] = [
        Directive("ssl_client_certificate", paths.client_ca),
        Directive("ssl_verify_client", "on"),
        Directive("ssl_verify_depth", 2),
    ] if require_client_cert else []
    proxy_client: list[Node] = [
        Directive("proxy_ssl_certificate", paths.backend_client_cert),
        Directive("proxy_ssl_certificate_key", paths.backend_client_key),
    ] if backend_client_cert else []
    location = Block("location", "/", children=[
        Block("if", "($mirror", "=", f"{UNKNOWN})", children=[Directive("return", 404, NAME_UNKNOWN)]),
        Directive("proxy_pass", "https://$mirror"),
        Directive("proxy_http_version", "1.1"),
        Directive("proxy_set_header", "Connection", ""),
        # the registries build URLs (upload locations, auth realm) from the client's Host
        Directive("proxy_set_header", "Host", "$http_host"),
        Directive("proxy_set_header", "X-Forwarded-Proto", "https"),
        # the connection's address, never the client's own header: the registry logs the
        # first address of X-Forwarded-For as the client's (distribution dcontext.RemoteAddr)
        Directive("proxy_set_header", "X-Forwarded-For", "$remote_addr"),
        Directive("proxy_ssl_verify", "on"),
        Directive("proxy_ssl_trusted_certificate", paths.backend_ca),
        Directive("proxy_ssl_verify_depth", 2),
        Directive("proxy_ssl_name", BACKEND_TLS_NAME),
        Directive("proxy_ssl_session_reuse", "on"),
        *proxy_client,
        # layers stream through as they arrive; a cold pull waits on the upstream
        Directive("proxy_buffering", "off"),
        Directive("proxy_request_buffering", "off"),
        Directive("proxy_read_timeout", "900s"),
        Directive("proxy_send_timeout", "900s"),
    ])
    return [
        Comment("registry-mirror router: ?ns=<upstream> picks the mirror (configs/router.py)"),
        Directive("worker_processes", "auto"),
        Directive("pid", paths.pid),
        Directive("error_log", paths.error_log, "warn"),
        Block("events", children=[Directive("worker_connections", 1024)]),
        Block("http", children=[
            Directive("access_log", paths.access_log),
            Directive("client_body_temp_path", f"{paths.temp_dir}/client_temp"),
            Directive("proxy_temp_path", f"{paths.temp_dir}/proxy_temp"),
            Directive("fastcgi_temp_path", f"{paths.temp_dir}/fastcgi_temp"),
            Directive("uwsgi_temp_path", f"{paths.temp_dir}/uwsgi_temp"),
            Directive("scgi_temp_path", f"{paths.temp_dir}/scgi_temp"),
            Directive("server_tokens", "off"),
            Directive("default_type", "application/json"),
            Directive("resolver", resolver, "valid=10s", "ipv6=off"),
            Directive("resolver_timeout", "5s"),
            Block("server", children=[
                Directive("listen", listen, "ssl"),
                Directive("ssl_certificate", paths.cert),
                Directive("ssl_certificate_key", paths.key),
                Directive("ssl_protocols", "TLSv1.2", "TLSv1.3"),
                *[n for n in tls_client if n is not None],
                *choose,
                # image layers: no size limit on a pushed or proxied body
                Directive("client_max_body_size", 0),
                location,
            ]),
        ]),
    ]


def render_router_config(routes: Sequence[Route], **options: object) -> str:
    return serialize(router_nodes(routes, **options))  # type: ignore[arg-type]


def container_spec(
    *,
    image: str,
    routes: Sequence[Route],
    port: int,
    bind_address: str,
    server_chain_pem: Input,
    server_key_pem: Input,
    root_ca_pem: Input,
    require_client_cert: bool,
    client_chain_pem: Input,
    client_key_pem: Input,
) -> ServiceSpec:
    """The router's container on Docker Hub's mirror port (`registryPort`)."""
    paths = RouterPaths()
    uploads = [
        Upload(CONFIG_PATH, render_router_config(routes, require_client_cert=require_client_cert,
                                                 backend_client_cert=require_client_cert)),
        Upload(paths.cert, server_chain_pem),
        Upload(paths.key, server_key_pem, permissions="0600", secret=True),
        Upload(paths.backend_ca, root_ca_pem),
    ]
    if require_client_cert:
        uploads += [
            Upload(paths.client_ca, root_ca_pem),
            Upload(paths.backend_client_cert, client_chain_pem),
            Upload(paths.backend_client_key, client_key_pem, permissions="0600", secret=True),
        ]
    return ServiceSpec(
        service=ALIAS,
        image=image,
        memory_mb=128,
        uploads=uploads,
        ports=[Port(PORT, port, bind_address)],
        # only that the running config is valid: the TLS port asks for a client certificate
        # and a user, which a health check holds neither of; the blackbox probe labelled
        # `router` is what watches it serve
        healthcheck=["CMD", "nginx", "-t", "-q"],
    )
