"""Where each mirror's front follows a redirect, from the `mirrors` setting to its nginx.conf.

A preset at its own API URL (docker.io, ghcr.io, quay.io, gcr.io) follows a redirect to any
public name: their CDNs move (docs/security.md, "Redirects"). Any other entry, or a preset
given `redirectHosts`, follows one only to its own host (when that is a public name) and the
hosts of its `redirectHosts`. A value the front could never follow is refused at preview, one
line each. What nginx does with the result is rehearsed in tests/rehearsal/test_front_redirects.py.
"""

from __future__ import annotations

import json

import pytest

import settings
from contract import Front
from rehearsal.fakes.program import evaluate

BASE = {"installTrust": "false", "hostname": "mirror.lan"}


def mirrors(*entries: dict[str, object]) -> dict[str, str]:
    return {"mirrors": json.dumps(list(entries))}


def problems(config: dict[str, str]) -> list[str]:
    with pytest.raises(settings.SettingsError) as err:
        settings.parse(BASE | config, stack="dev")
    return [line.strip() for line in str(err.value).splitlines()[1:]]


def redirect_hosts(config: dict[str, str]) -> dict[str, tuple[str, ...] | None]:
    return {m.upstream: m.redirect_hosts for m in settings.parse(BASE | config, stack="dev").mirrors}


def test_presets_at_their_own_url_follow_any_public_name_and_other_upstreams_only_their_hosts():
    got = redirect_hosts(mirrors(
        {"upstream": "ghcr.io", "port": 6001}, {"upstream": "quay.io", "port": 6002},
        {"upstream": "gcr.io", "port": 6003},
        {"upstream": "registry.example.com:5000", "port": 6004, "tokenRealm": "",
         "redirectHosts": ["S3.eu-west-1.amazonaws.com", "registry.example.com"]},
        {"upstream": "harbor.lan", "port": 6005, "tokenRealm": ""},
    ))  # fmt: skip
    assert got == {
        "docker.io": None, "ghcr.io": None, "quay.io": None, "gcr.io": None,
        # its own host first, then the list, lower-cased, each once
        "registry.example.com:5000": ("registry.example.com", "s3.eu-west-1.amazonaws.com"),
        # a private name is never followed, not even the upstream's own
        "harbor.lan": (),
    }


def test_a_preset_behind_another_url_or_given_redirect_hosts_is_held_to_its_hosts():
    got = redirect_hosts(mirrors(
        {"upstream": "docker.io", "remoteUrl": "https://hub-cache.example.org", "tokenRealm": ""},
        {"upstream": "ghcr.io", "port": 6001, "redirectHosts": ["pkg-containers.githubusercontent.com"]},
    ))  # fmt: skip
    assert got == {"docker.io": ("hub-cache.example.org",),
                   "ghcr.io": ("ghcr.io", "pkg-containers.githubusercontent.com")}


def test_a_redirect_host_the_front_could_never_follow_is_refused_one_line_each():
    lines = problems(mirrors({"upstream": "registry.example.com", "port": 6001, "tokenRealm": "", "redirectHosts": [
        "10.0.0.5", "minio", "minio.lan", "s3.example.com:9000", "https://s3.example.com", "cdn.registry-mirror-dev",
        "s3.example.com"]}))  # fmt: skip
    rule = ("the front follows redirects only to public host names (no scheme, no port), such as "
            "s3.eu-west-1.amazonaws.com")
    assert lines == [
        f"registry-mirror:mirrors[0].redirectHosts[0] = '10.0.0.5' is invalid: an IP address; {rule}",
        "registry-mirror:mirrors[0].redirectHosts[1] = 'minio' is invalid: a single-label name (the stack's own "
        f"services have such names); {rule}",
        "registry-mirror:mirrors[0].redirectHosts[2] = 'minio.lan' is invalid: a name under a reserved suffix "
        "(.localhost, .local, .internal, .arpa, .invalid, .onion, .alt, .intranet, .private, .corp, .home, .lan); "
        f"{rule}",
        f"registry-mirror:mirrors[0].redirectHosts[3] = 's3.example.com:9000' is invalid: not a host name; {rule}",
        f"registry-mirror:mirrors[0].redirectHosts[4] = 'https://s3.example.com' is invalid: not a host name; {rule}",
        f"registry-mirror:mirrors[0].redirectHosts[5] = 'cdn.registry-mirror-dev' is invalid: not a public DNS name; "
        f"{rule}",
    ]


@pytest.mark.parametrize("value", ["s3.example.com", [], [f"h{i}.example.com" for i in range(21)]])
def test_redirect_hosts_must_be_a_short_list(value: object):
    assert problems(mirrors({"upstream": "ghcr.io", "port": 6001, "redirectHosts": value})) == [
        f"registry-mirror:mirrors[0].redirectHosts = {settings._shown(value)} is invalid: must be a list of 1-20 "
        "host names its front may follow a redirect to, such as [s3.eu-west-1.amazonaws.com]"]


def test_redirect_hosts_without_the_front_are_refused_rather_than_ignored():
    assert problems(mirrors({"upstream": "ghcr.io", "port": 6001, "redirectHosts": ["s3.example.com"]})
                    | {"upstreamFront": "false"}) == [
        "registry-mirror:mirrors[0].redirectHosts needs upstreamFront true: without the front the registry "
        "follows every redirect itself, wherever it points"]  # fmt: skip


def test_each_front_is_rendered_with_its_mirrors_redirect_hosts():
    ev = evaluate(BASE | mirrors(
        {"upstream": "ghcr.io", "port": 6001},
        {"upstream": "registry.example.com", "port": 6002, "tokenRealm": "", "redirectHosts": ["s3.example.com"]},
    ), stack="dev")  # fmt: skip
    hub = ev.uploads(Front.ALIAS)[Front.CONFIG_PATH]
    ghcr = ev.uploads(f"{Front.ALIAS}-ghcr")[Front.CONFIG_PATH]
    custom = ev.uploads(f"{Front.ALIAS}-registry-example-com")[Front.CONFIG_PATH]
    # presets: no host list, so no redirect is refused for its host alone
    assert "not-allowed" not in hub and "not-allowed" not in ghcr
    assert "registry\\\\.example\\\\.com|s3\\\\.example\\\\.com" in custom and "not-allowed" in custom
