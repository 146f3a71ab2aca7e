"""The blob-collapsing front's nginx.conf (bench/collapse.py), parsed block by block.

What nginx does with it is rehearsed in tests/rehearsal/test_collapse_rehearsal.py; here:
the structure (which location caches, with which key and lock), the inputs it refuses, and
`nginx -t` accepting the rendered file with Docker Hub's host names (resolved per request).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.collapse import BLOB_LOCATION, TOKEN_PATH, render_collapse_config
from tests.conftest import require_tool

Block = dict[str, Any]  # {"directives": [[name, args...], ...], "blocks": [(header, Block), ...]}


def tokens(text: str) -> list[str]:
    found = re.findall(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    return found


def parse(text: str) -> Block:
    stack: list[Block] = [{"directives": [], "blocks": []}]
    current: list[str] = []
    for token in tokens(text):
        if token == ";":
            stack[-1]["directives"].append(current)
            current = []
        elif token == "{":
            block: Block = {"directives": [], "blocks": []}
            stack[-1]["blocks"].append((" ".join(current), block))
            stack.append(block)
            current = []
        elif token == "}":
            stack.pop()
        else:
            current.append(token)
    assert len(stack) == 1 and not current, "unbalanced config"
    return stack[0]


def block(parent: Block, header: str) -> Block:
    found = [b for h, b in parent["blocks"] if h == header]
    assert len(found) == 1, (header, [h for h, _ in parent["blocks"]])
    return found[0]


def directives(b: Block, name: str) -> list[list[str]]:
    return [d[1:] for d in b["directives"] if d[0] == name]


def one(b: Block, name: str) -> str:
    values = directives(b, name)
    assert len(values) == 1, (name, values)
    return " ".join(values[0])


def server(**kw: Any) -> Block:
    return block(block(parse(render_collapse_config(**kw)), "http"), "server")


BLOB = f'location ~ "{BLOB_LOCATION}"'


def test_blob_gets_by_digest_are_cached_with_a_lock_keyed_by_method_and_uri():
    blobs = block(server(lock_timeout="7m"), BLOB)
    assert one(blobs, "proxy_cache") == "blobs"
    assert one(blobs, "proxy_cache_key") == "$request_method$uri"
    assert one(blobs, "proxy_cache_lock") == "on"
    assert one(blobs, "proxy_cache_lock_timeout") == "7m"
    assert one(blobs, "proxy_cache_lock_age") == "7m"  # no second fetch while one is running
    assert one(blobs, "proxy_cache_valid") == "200 1h"  # errors are never stored
    assert one(blobs, "proxy_ignore_client_abort") == "on"
    # HEAD (the registry's stat) is never cached, so it can never answer a GET
    assert one(blobs, "proxy_cache_convert_head") == "off"
    assert one(blobs, "proxy_cache_bypass") == one(blobs, "proxy_no_cache") == "$front_is_head"
    head_map = block(block(parse(render_collapse_config()), "http"), "map $request_method $front_is_head")
    assert ["HEAD", "1"] in head_map["directives"] and ["default", '""'] in head_map["directives"]


def test_the_blob_pattern_matches_blobs_by_sha256_digest_and_nothing_else():
    pattern = re.compile(BLOB_LOCATION)
    digest = "sha256:" + "0123456789abcdef" * 4
    assert pattern.match(f"/v2/library/ubuntu/blobs/{digest}")
    assert pattern.match(f"/v2/org/team/app/blobs/{digest}")
    for uri in (f"/v2/library/ubuntu/manifests/{digest}", "/v2/library/ubuntu/manifests/latest",
                "/v2/library/ubuntu/blobs/uploads/", f"/v2/library/ubuntu/blobs/{digest[:-1]}",
                f"/v2/library/ubuntu/blobs/{digest}/extra", f"/v2/library/ubuntu/blobs/{digest.upper()}"):  # fmt: skip
        assert not pattern.match(uri), uri


def test_everything_else_passes_through_uncached():
    rest = block(server(), "location /")
    assert one(rest, "proxy_pass") == "$front_upstream"
    assert not directives(rest, "proxy_cache")


def test_upstream_is_set_once_and_resolved_per_request():
    s = server(upstream_url="https://registry-1.docker.io")
    assert one(s, "set") == "$front_upstream https://registry-1.docker.io"
    http = block(parse(render_collapse_config(resolver="10.0.0.2")), "http")
    assert one(http, "resolver") == "10.0.0.2 ipv6=off"
    assert one(s, "proxy_ssl_verify") == "on"
    assert one(s, "proxy_ssl_trusted_certificate") == "/etc/ssl/certs/ca-certificates.crt"


def test_redirects_are_followed_without_the_registry_token_and_cached_under_the_original_key():
    s = server()
    assert one(block(s, BLOB), "error_page") == "301 302 307 308 = @follow_redirect"
    follow = block(s, "location @follow_redirect")
    assert one(follow, "proxy_set_header") == 'Authorization ""'
    assert one(follow, "proxy_pass") == "$front_redirect"
    assert one(follow, "proxy_cache_key") == "$request_method$uri"  # $uri: the blob's, not the CDN's
    assert one(follow, "proxy_cache_lock") == "on"
    without = server(follow_redirects=False)
    assert not directives(block(without, BLOB), "error_page")
    assert "location @follow_redirect" not in [h for h, _ in without["blocks"]]


def test_bearer_realm_is_rewritten_to_the_front_and_token_requests_forwarded():
    config = render_collapse_config(front_url="http://blobfront:8080", auth_realm="https://auth.docker.io/token")
    http = block(parse(config), "http")
    realm_map = block(http, "map $upstream_http_www_authenticate $front_www_authenticate")
    (regex, replacement) = [d for d in realm_map["directives"] if d[0] != "default"][0]
    assert replacement == f'"${{front_pre}}http://blobfront:8080{TOKEN_PATH}${{front_post}}"'
    # the regex, as PCRE reads it, finds the realm in Docker Hub's challenge and keeps the rest
    pcre = regex.strip('"').removeprefix("~").replace('\\"', '"').replace("(?<", "(?P<")
    challenge = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
    match = re.match(pcre, challenge)
    assert match and match["front_pre"] == 'Bearer realm="' and match["front_post"] == '",service="registry.docker.io"'
    assert re.match(pcre, 'Bearer realm="https://evil.test/token",service="x"') is None
    s = block(http, "server")
    assert one(s, "proxy_hide_header") == "WWW-Authenticate"
    assert one(s, "add_header") == "WWW-Authenticate $front_www_authenticate always"
    token = block(s, f"location = {TOKEN_PATH}")
    assert one(token, "set") == "$front_realm https://auth.docker.io/token"
    assert one(token, "proxy_pass") == "$front_realm$is_args$args"


def test_no_realm_no_rewrite():
    config = render_collapse_config(auth_realm=None)
    assert "WWW-Authenticate" not in config and TOKEN_PATH not in config


def test_defaults_are_the_official_nginx_image_paths_without_a_daemon_directive():
    root = parse(render_collapse_config())
    assert one(root, "pid") == "/var/run/nginx.pid"
    assert not directives(root, "daemon")  # the image's command passes -g 'daemon off;'
    assert not directives(root, "user")
    http = block(root, "http")
    assert one(http, "proxy_cache_path").startswith("/var/cache/nginx/blobs levels=1:2 keys_zone=blobs:10m")
    assert one(http, "proxy_temp_path") == "/var/cache/nginx/proxy_temp"
    assert one(block(http, "server"), "listen") == "8080"


def test_rendering_is_deterministic():
    assert render_collapse_config() == render_collapse_config()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upstream_url": "registry-1.docker.io"}, "upstream_url"),
        ({"upstream_url": "https://registry-1.docker.io/v2"}, "scheme://host"),
        ({"auth_realm": 'https://auth.docker.io/token";'}, "misread"),
        ({"front_url": "ftp://front"}, "front_url"),
        ({"lock_timeout": "10 minutes"}, "lock_timeout"),
        ({"cache_max_size": "lots"}, "cache_max_size"),
        ({"port": 0}, "port"),
        ({"resolver": None}, "resolver"),
        ({"worker_processes": "all"}, "worker_processes"),
    ],
)
def test_refuses_values_nginx_would_misread(kwargs: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        render_collapse_config(**kwargs)


def test_ip_upstreams_need_no_resolver():
    config = render_collapse_config(upstream_url="http://127.0.0.1:5000", auth_realm=None, resolver=None)
    assert "resolver" not in config


def test_nginx_accepts_the_rendered_config(tmp_path: Path):
    nginx = require_tool("nginx")
    config = render_collapse_config(
        cache_dir=str(tmp_path / "cache"), temp_dir=str(tmp_path), pid_path=str(tmp_path / "nginx.pid"),
        access_log=str(tmp_path / "access.log"), error_log=str(tmp_path / "error.log"),
    )  # fmt: skip
    (tmp_path / "nginx.conf").write_text(config)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
