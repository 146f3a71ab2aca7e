"""The upstream front's nginx.conf (configs/front.py) and the serializer it is written with.

What nginx and registry 3.1.1 do with it is rehearsed in tests/rehearsal/test_front_rehearsal.py;
here: quoting that nginx itself reads back as one argument, the structure (which location
caches, answers locally, follows redirects), the inputs it refuses, and that the rehearsal
runs the stack's config with only places (addresses, paths, user) changed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from configs import front
from configs.nginxconf import Block, Directive, quote, serialize
from rehearsal.upstream_front import rehearsal_config
from tests.conftest import require_tool


def tokens(text: str) -> list[str]:
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    return re.findall(r'"(?:\\.|[^"\\])*"|[{};]|[^\s{};"]+', text)


def unquote(token: str) -> str:
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def flat(text: str) -> list[tuple[str, ...]]:
    """Every directive as (enclosing blocks..., name, args...) in order."""
    out: list[tuple[str, ...]] = []
    stack: list[str] = []
    current: list[str] = []
    for token in tokens(text):
        if token == ";":
            out.append((*stack, *current))
            current = []
        elif token == "{":
            stack.append(" ".join(current))
            current = []
        elif token == "}":
            stack.pop()
        else:
            current.append(unquote(token))
    assert not stack and not current
    return out


def location(text: str, header: str) -> list[tuple[str, ...]]:
    return [d[3:] for d in flat(text) if len(d) > 3 and d[:3] == ("http", "server", header)]


CONFIG = front.render_front_config()


# ---------------------------------------------------------------------------- serializer


@pytest.mark.parametrize("value", ['a"b', "semi;colon", "{brace}", "back\\slash", "two words", "", "#hash"])
def test_a_hostile_argument_is_read_back_by_nginx_as_that_one_argument(tmp_path: Path, value: str):
    nginx = require_tool("nginx")
    nodes = [
        Directive("pid", str(tmp_path / "pid")),
        Block("events"),
        Block("http", children=[Block("server", children=[
            Directive("listen", "127.0.0.1:1"),
            Block("location", "=", "/x", children=[Directive("return", 200, value)]),
        ])]),
    ]  # fmt: skip
    text = serialize(nodes)
    (tmp_path / "nginx.conf").write_text(text)
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert location(text, "location = /x") == [("return", "200", value)]


def test_a_line_break_in_an_argument_is_refused():
    with pytest.raises(ValueError, match="line break"):
        quote("a\nb")


def test_plain_words_and_variables_stay_bare():
    assert [quote(v) for v in ("$front_upstream/v2/", "max_size=4g", "127.0.0.11")] == [
        "$front_upstream/v2/",
        "max_size=4g",
        "127.0.0.11",
    ]


# ---------------------------------------------------------------------------- the front


def test_v2_is_answered_locally_with_a_realm_on_the_fronts_own_host_and_port():
    v2 = location(CONFIG, "location = /v2/")
    assert ("return", "401", '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}') in v2
    assert (
        "add_header",
        "WWW-Authenticate",
        'Bearer realm="http://registry-front:8080/token",service="registry.docker.io"',
        "always",
    ) in v2
    assert not [d for d in v2 if d[0] == "proxy_pass"]


def test_token_requests_go_to_docker_hubs_realm_with_their_query_and_bounded_waits():
    token = location(CONFIG, "location = /token")
    assert ("set", "$front_realm", "https://auth.docker.io/token") in token
    assert ("proxy_pass", "$front_realm$is_args$args") in token
    assert ("proxy_read_timeout", front.METADATA_TIMEOUT) in token


def test_an_upstream_without_token_auth_gets_a_200_ping_and_no_token_location():
    text = front.render_front_config(upstream_url="http://upstream:5000", upstream_realm=None)
    assert ("return", "200", "{}") in location(text, "location = /v2/")
    assert not location(text, "location = /token")


def test_only_blobs_by_digest_are_cached_with_a_lock_long_enough_for_large_layers():
    blob = location(CONFIG, f"location ~ {front.BLOB_LOCATION}")
    cdn = location(CONFIG, "location @cdn")
    for body in (blob, cdn):
        assert ("proxy_cache", "blobs") in body
        assert ("proxy_cache_lock", "on") in body
        assert ("proxy_cache_lock_timeout", "30m") in body and ("proxy_cache_lock_age", "30m") in body
        assert ("proxy_cache_key", "$request_method$uri") in body
        assert ("proxy_no_cache", "$front_is_head") in body
    assert ("error_page", "301", "302", "303", "307", "308", "=", "@cdn") in blob
    # HEAD (the registry's blob stat) leaves for a location with the short metadata timeout
    assert ("error_page", "418", "=", "@blob_head") in blob
    head = location(CONFIG, "location @blob_head")
    assert ("proxy_read_timeout", front.METADATA_TIMEOUT) in head
    assert not [d for d in head if d[0] == "proxy_cache"]
    assert ("proxy_set_header", "Authorization", "") in cdn
    for uncached in ("location /", "location = /token", "location = /_front/upstream"):
        assert not [d for d in location(CONFIG, uncached) if d[0] == "proxy_cache"], uncached


def test_every_redirect_is_checked_before_it_is_followed_or_handed_on():
    """Where each 3xx of the upstream goes, and that the check comes first there (what the
    check decides is rehearsed Location by Location in tests/rehearsal/test_front_redirects.py)."""
    blob = location(CONFIG, f"location ~ {front.BLOB_LOCATION}")
    # a blob's redirect, GET or (through @blob_head, which needs recursive error pages) HEAD
    assert ("recursive_error_pages", "on") in blob
    for body in (blob, location(CONFIG, "location @blob_head")):
        assert ("proxy_intercept_errors", "on") in body
        assert ("error_page", "301", "302", "303", "307", "308", "=", "@cdn") in body
    # anything else's redirect is handed on only through @redirect
    for header in ("location /", "location = /token", f"location = {front.UPSTREAM_PROBE_PATH}"):
        body = location(CONFIG, header)
        assert ("proxy_intercept_errors", "on") in body, header
        assert ("error_page", "301", "302", "303", "307", "308", "=", "@redirect") in body, header
    check = [("set", "$front_redirect", "$upstream_http_location"),
             ("if ($front_redirect_refused)", "return", "502", "upstream redirect refused: $front_redirect_refused")]
    for header, then in (("location @cdn", "proxy_set_header"), ("location @redirect", "return")):
        body = [d for d in flat(CONFIG) if len(d) > 3 and d[:3] == ("http", "server", header)]
        assert [d[3:] for d in body[:2]] == check, header
        assert body[2][3] == then, header
    assert ("return", "307", "$front_redirect") in location(CONFIG, "location @redirect")


@pytest.mark.parametrize("hosts", [("minio.lan",), ("10.0.0.5",), ("S3.example.com",), ("s3.example.com:9000",),
                                   ("minio",)])
def test_redirect_hosts_the_front_could_never_follow_are_refused(hosts: tuple[str, ...]):
    with pytest.raises(ValueError, match="redirect_hosts"):
        front.render_front_config(redirect_hosts=hosts)


def test_a_custom_upstreams_config_is_accepted_by_nginx(tmp_path: Path):
    nginx = require_tool("nginx")
    (tmp_path / "temp").mkdir()
    for hosts in (("registry.example.com", "s3.eu-west-1.amazonaws.com"), ()):
        text = rehearsal_config(tmp_path, port=18082, upstream_url="https://registry.example.com",
                                upstream_realm=None, resolver="127.0.0.1:53", redirect_hosts=hosts)  # fmt: skip
        (tmp_path / "nginx.conf").write_text(text)
        result = subprocess.run(
            [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_the_blob_cache_is_bounded_and_evicted_soon_after_use():
    (cache_path,) = [d for d in flat(CONFIG) if d[:2] == ("http", "proxy_cache_path")]
    assert "max_size=4g" in cache_path and "inactive=10m" in cache_path


def test_upstream_names_resolve_per_request_through_dockers_dns():
    directives = flat(CONFIG)
    assert ("http", "resolver", "127.0.0.11", "valid=10s", "ipv6=off") in directives
    # a literal host in proxy_pass would be resolved once, at start: nginx would not start offline
    passes = [d[-1] for d in directives if d[-2] == "proxy_pass"]
    assert passes and all(p.startswith("$") for p in passes), passes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"upstream_url": "https://registry-1.docker.io/v2"},
        {"upstream_url": "ftp://hub"},
        {"upstream_realm": "https://auth.docker.io/token?x=1"},
        {"front_url": "registry-front:8080"},
        {"cache_max_size": "4 GB"},
        {"lock_timeout": "30 minutes"},
        {"service": 'a";b'},
    ],
)
def test_values_nginx_would_misread_are_refused(kwargs: dict[str, str]):
    with pytest.raises(ValueError):
        front.render_front_config(**kwargs)  # type: ignore[arg-type]


# places a rehearsal must change: where it listens, what it resolves with, where its files
# live, which user its workers run as, and the addresses of the upstream and of itself
PLACES = {
    "user", "pid", "error_log", "access_log", "listen", "resolver", "proxy_cache_path",
    "proxy_ssl_trusted_certificate", "add_header",
    *(f"{kind}_temp_path" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
}  # fmt: skip
PLACE_VARIABLES = {"$front_upstream", "$front_realm"}


def test_the_rehearsal_runs_the_stacks_config_with_only_places_changed(tmp_path: Path):
    rehearsed = rehearsal_config(
        tmp_path, port=18080, upstream_url="http://registry.hub.localhost:1", upstream_realm="http://a:2/token",
        resolver="127.0.0.1:53",
    )  # fmt: skip

    def behaviour(text: str) -> list[tuple[str, ...]]:
        kept = []
        for d in flat(text):
            names = [p for p in d if not p.startswith(("http", "server", "location", "events"))]
            if d[-2:] == ("WWW-Authenticate", "always") or (len(d) > 2 and d[-3] == "WWW-Authenticate"):
                continue
            if names and (names[0] in PLACES or (names[0] == "set" and names[1] in PLACE_VARIABLES)):
                continue
            kept.append(d)
        return kept

    assert len(behaviour(CONFIG)) > 40  # the comparison covers the config's behaviour
    assert behaviour(rehearsed) == behaviour(CONFIG)
    # and the challenge names the rehearsal front's own address, as in the stack
    assert 'Bearer realm="http://127.0.0.1:18080/token"' in rehearsed.replace('\\"', '"')


def test_the_rehearsal_config_is_accepted_by_nginx(tmp_path: Path):
    nginx = require_tool("nginx")
    (tmp_path / "temp").mkdir()
    text = rehearsal_config(
        tmp_path, port=18081, upstream_url="https://registry-1.docker.io", upstream_realm=front.DOCKER_HUB_REALM,
        resolver="127.0.0.1:53",
    )  # fmt: skip
    (tmp_path / "nginx.conf").write_text(text)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
