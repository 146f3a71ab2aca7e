"""Rehearsal of the upstream front (configs/front.py) between registry 3.1.1 and a Docker Hub
stand-in, every part a real binary or a real network conversation on loopback:

skopeo --TLS--> registry 3.1.1 (the program's config.yml, chain, key and credential envs)
        --proxy.remoteurl--> Debian's nginx running the front's rendered nginx.conf
        --> rehearsal/hub.py: registry host, token realm on another host, CDN on a third
            (names resolved by rehearsal/netsim.py's DNS stand-in, as Docker's DNS does)

Outages are made in the name service or on the wire (rehearsal/netsim.py): the upstream's
names do not resolve, resolve to an address where the connection is refused, or to one
where a listener accepts and never answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from configs.front import HEALTH_PATH, UPSTREAM_PROBE_PATH
from contract import Registry
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.hub import AUTH_HOST, CDN_HOST, REGISTRY_HOST, DockerHub, docker_hub, load_repo
from rehearsal.mirror import ProgramMirror, program_mirror
from rehearsal.netsim import DnsServer, dns_server, silent_listener
from rehearsal.oci import ImageInfo, Images, blob_path, make_oci_image
from rehearsal.registry_proc import SkopeoError, ca_context, http_get, mirror_binary, pull_through, write_ca_dir
from rehearsal.tls_ca import TestCa
from rehearsal.tools import unavailable
from rehearsal.upstream_front import RunningFront, upstream_front
from tests.conftest import require_tool

USER, PASSWORD = "alice", "hub-token-5e1f"
# loopback: the program refuses Docker Hub credentials on an open port without client auth
STACK_CONFIG = {"hostname": "mirror.test", "dockerHubUsername": USER, "registryBindAddress": "127.0.0.1"}
PRIVATE = "acme/secret"
ONLINE = {REGISTRY_HOST: "127.0.0.1", AUTH_HOST: "127.0.0.1", CDN_HOST: "127.0.0.1"}
REFUSING = "127.0.0.3"  # nothing listens there
SILENT = "127.0.0.4"  # rehearsal.netsim.silent_listener holds the hub's ports there
OUTAGES = ("does-not-resolve", "connection-refused", "never-answers")
# A cached pull while the upstream accepts and never answers waits for the registry's tag
# lookup, which the front cuts after its metadata timeout: 10 s as docs/operations.md promises
# (written here, not read from configs/front.py, so that a longer timeout fails), plus slack
# for the pull itself (measured: 10.1 s in all; with a 20 s timeout 15.1 s, where 3.1.1's own
# 15 s cap on token requests cuts first)
SILENT_PULL_BOUND = 10.0 + 3.0
RETURN_BOUND = 40.0  # the resolver's `valid` (10 s) plus slack


@pytest.fixture(scope="module")
def nginx() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate(STACK_CONFIG, stack="dev",
                    secrets={"dockerHubPassword": PASSWORD})  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    root = tmp_path_factory.mktemp("hub-images")
    repos = ["library/app", PRIVATE, "library/big", *(f"library/new-{o}" for o in OUTAGES),
             "library/new-ratelimited", "library/new-unavailable", "library/moving"]  # fmt: skip
    images = Images(root, {})
    for seed, repo in enumerate(repos, start=40):
        sizes = [2_000_000, 1_000_000] if repo == "library/big" else [150_000, 30_000]
        images.info[repo] = make_oci_image(images.path(repo), sizes, seed=seed, tag="1.0")
    return images


@contextlib.contextmanager
def hub_and_dns(images: Images) -> Iterator[tuple[DockerHub, DnsServer]]:
    with docker_hub({repo: images.path(repo) for repo in images.info}, private={PRIVATE},
                    users={USER: PASSWORD}) as hub, dns_server(dict(ONLINE)) as dns:  # fmt: skip
        yield hub, dns


@contextlib.contextmanager
def mirror_behind_front(
    tmp: Path, name: str, hub: DockerHub, dns: DnsServer, nginx: str, evaluation: Evaluation
) -> Iterator[tuple[RunningFront, ProgramMirror]]:
    """Front + the program's registry; the registry's storage survives restarts under `tmp`."""
    with upstream_front(tmp / f"front-{name}", nginx=nginx, upstream_url=hub.registry_url,
                        upstream_realm=hub.realm, resolver=dns.address, ca_bundle=hub.ca_file) as front, \
            program_mirror(evaluation, tmp / "mirror", front.url, tmp / "trust" / "ca.crt",
                           binary=mirror_binary()) as mirror:  # fmt: skip
        yield front, mirror


def ca_dir(tmp: Path, evaluation: Evaluation) -> Path:
    directory = tmp / "trust"
    if not (directory / "ca.crt").exists():
        write_ca_dir(directory, evaluation.outputs["caCertPem"])
    return directory


def pull(mirror: ProgramMirror, tmp: Path, repo: str, info: ImageInfo) -> None:
    """Pull repo:1.0 through the mirror and check every blob byte for byte."""
    dest = tmp / "pulls" / f"{repo.replace('/', '_')}-{time.monotonic_ns()}"
    pull_through(mirror.host_port, f"{repo}:1.0", tmp / "trust", dest)
    for digest in info.blob_digests:
        assert f"sha256:{hashlib.sha256(blob_path(dest, digest).read_bytes()).hexdigest()}" == digest


def mirror_answer(mirror: ProgramMirror, tmp: Path, repo: str) -> tuple[int, list[str]]:
    """What the mirror answers a manifest GET by tag: status and the registry error codes."""
    context = ca_context(tmp / "trust" / "ca.crt")
    try:
        status, _, body = http_get(f"https://{mirror.host_port}/v2/{repo}/manifests/1.0", context=context, timeout=60)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    codes = [e.get("code") for e in json.loads(body).get("errors", [])] if body.startswith(b"{") else []
    return status, codes


def skopeo_failure(mirror: ProgramMirror, tmp: Path, repo: str) -> str:
    with pytest.raises(SkopeoError) as failure:
        pull_through(mirror.host_port, f"{repo}:1.0", tmp / "trust", tmp / "pulls" / f"fail-{time.monotonic_ns()}")
    return failure.value.stderr


def wait_until_pulls(mirror: ProgramMirror, tmp: Path, repo: str, info: ImageInfo, bound: float) -> float:
    started = time.monotonic()
    while True:
        try:
            pull(mirror, tmp, repo, info)
            return time.monotonic() - started
        except SkopeoError:
            if time.monotonic() - started > bound:
                raise
            time.sleep(0.5)


# ---------------------------------------------------------------------------- credentials


def test_private_image_pulls_with_the_stacks_credentials_which_never_reach_the_cdn(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    ca_dir(tmp_path, evaluation)
    with (
        hub_and_dns(images) as (hub, dns),
        mirror_behind_front(tmp_path, "a", hub, dns, nginx, evaluation) as (front, mirror),
    ):
        pull(mirror, tmp_path, PRIVATE, images.info[PRIVATE])
        pull(mirror, tmp_path, "library/app", images.info["library/app"])

    token_requests = hub.requests("auth")
    assert token_requests and all(r.headers.get("authorization", "").startswith("Basic ") for r in token_requests)
    assert any(f"repository%3A{PRIVATE.replace('/', '%2F')}%3Apull" in r.path for r in token_requests)
    # Docker Hub's CDN URL is signed: no header of the registry's, no credential, goes there
    cdn = hub.requests("cdn")
    assert cdn and all("authorization" not in r.headers for r in cdn)
    assert all(PASSWORD not in json.dumps(dict(r.headers)) + r.path for r in cdn)
    # every blob body came from the CDN after a 307 the front followed itself
    assert {r.path.split("?")[0].removeprefix("/blobs/") for r in cdn} == {
        *images.info[PRIVATE].blob_digests,
        *images.info["library/app"].blob_digests,
    }
    # the front answered /v2/ itself: the hub's own /v2/ was never asked
    assert not [r for r in hub.requests("registry") if r.path == "/v2/"]


def test_wrong_credentials_fail_private_pulls_with_unauthorized_and_public_ones_still_pull(
    tmp_path: Path, nginx: str, images: Images
):
    wrong = evaluate(STACK_CONFIG, stack="dev",
                     secrets={"dockerHubPassword": "not-the-password"})  # fmt: skip
    ca_dir(tmp_path, wrong)
    with (
        hub_and_dns(images) as (hub, dns),
        mirror_behind_front(tmp_path, "w", hub, dns, nginx, wrong) as (front, mirror),
    ):
        status, codes = mirror_answer(mirror, tmp_path, PRIVATE)
        stderr = skopeo_failure(mirror, tmp_path, PRIVATE)
        public_status, _ = mirror_answer(mirror, tmp_path, "library/app")
    rejected = [r for r in hub.requests("auth") if "acme%2Fsecret" in r.path]
    assert rejected, "the registry never asked the realm for a token"
    # the realm refused the Basic credentials; the mirror has no copy to fall back on
    assert (status, codes) == (404, ["MANIFEST_UNKNOWN"]), (status, codes)
    assert "manifest unknown" in stderr
    # with wrong credentials every token request fails, public repositories included
    assert public_status == 404
    # 3.1.1 logs nothing about the refused token (it falls back to its cache silently): the
    # front's access log is where the cause shows, the realm's 401 on /token
    refused = [e for e in front.entries() if e["uri"] == "/token"]
    assert refused and {e["status"] for e in refused} == {401}


def test_no_credential_is_written_into_a_file_uploaded_to_any_container(evaluation: Evaluation):
    for container in evaluation.of_type("docker:index/container:Container"):
        for upload in container.inputs.get("uploads", []):
            assert PASSWORD not in str(upload.get("content")), (container.name, upload["file"])


def registry_resolving(tmp: Path, names: list[str], ca_file: Path) -> str:
    """A `registry` that sees `names` at 127.0.0.1: run in a mount namespace of its own with a
    hosts file bound over /etc/hosts (the static 3.1.1 build resolves with Go's own resolver,
    which reads /etc/hosts and has no special case for *.localhost). The host's file is untouched.
    It trusts `ca_file` for TLS (Go reads SSL_CERT_FILE): the stand-in's CDN speaks TLS."""
    if os.geteuid() != 0:
        unavailable("the front-off rehearsal binds a hosts file in a mount namespace: it needs root")
    unshare = require_tool("unshare")
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {name}\n" for name in names))
    wrapper = tmp / "registry-with-hosts"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"SSL_CERT_FILE={shlex.quote(str(ca_file))} "
        f"exec {shlex.quote(unshare)} --mount --propagation private /bin/sh -c "
        f'\'mount --bind "$0" /etc/hosts && binary="$1" && shift && exec "$binary" "$@"\' '
        f'{shlex.quote(str(hosts))} {shlex.quote(mirror_binary())} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_without_the_front_the_stand_ins_realm_on_a_sibling_host_is_accepted_and_credentials_stay_off_the_cdn(
    tmp_path: Path, images: Images
):
    off = evaluate(STACK_CONFIG | {"upstreamFront": "false"}, stack="dev", secrets={"dockerHubPassword": PASSWORD})
    ca_dir(tmp_path, off)
    ca = TestCa.create(tmp_path / "hub-ca")
    binary = registry_resolving(tmp_path, list(ONLINE), ca.cert_file)
    with docker_hub({repo: images.path(repo) for repo in images.info}, private={PRIVATE},
                    users={USER: PASSWORD}, ca=ca) as hub, \
            program_mirror(off, tmp_path / "mirror", hub.registry_url, tmp_path / "trust" / "ca.crt",
                           binary=binary, loopback_names=list(ONLINE)) as mirror:  # fmt: skip
        pull(mirror, tmp_path, PRIVATE, images.info[PRIVATE])
        pull(mirror, tmp_path, "library/app", images.info["library/app"])
    # the registry asked the stand-in itself for its challenge and took the realm on
    # auth.hub.localhost: it shares the registrable domain hub.localhost with registry.hub.localhost
    assert "/v2/" in [r.path for r in hub.requests("registry")]
    assert any("acme%2Fsecret" in r.path for r in hub.requests("auth"))
    assert all(r.headers.get("authorization", "").startswith("Basic ") for r in hub.requests("auth"))
    cdn = hub.requests("cdn")
    assert cdn and all("authorization" not in r.headers for r in cdn)  # Go drops it on the cross-host redirect


# ---------------------------------------------------------------------------- outages


@contextlib.contextmanager
def outage(kind: str, hub: DockerHub, dns: DnsServer) -> Iterator[None]:
    """The upstream's registry and auth hosts unreachable in the given way (CDN too)."""
    with contextlib.ExitStack() as stack:
        dns.table.clear()
        if kind == "connection-refused":
            dns.table.update(dict.fromkeys(ONLINE, REFUSING))
        elif kind == "never-answers":
            dns.table.update(dict.fromkeys(ONLINE, SILENT))
            stack.enter_context(silent_listener(SILENT, [hub.ports["registry"], hub.ports["auth"], hub.ports["cdn"]]))
        yield
        dns.table.clear()
        dns.table.update(ONLINE)


@pytest.mark.parametrize("kind", OUTAGES)
def test_mirror_started_offline_serves_its_cache_and_picks_the_upstream_up_without_restart(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images, kind: str
):
    ca_dir(tmp_path, evaluation)
    uncached = f"library/new-{kind}"
    with hub_and_dns(images) as (hub, dns):
        with mirror_behind_front(tmp_path, "online", hub, dns, nginx, evaluation) as (_, mirror):
            pull(mirror, tmp_path, "library/app", images.info["library/app"])

        with outage(kind, hub, dns):
            # a new front and registry, started while the upstream is unreachable
            with mirror_behind_front(tmp_path, "offline", hub, dns, nginx, evaluation) as (front, mirror):
                started = time.monotonic()
                pull(mirror, tmp_path, "library/app", images.info["library/app"])
                cached_seconds = time.monotonic() - started
                status, codes = mirror_answer(mirror, tmp_path, uncached)
                stderr = skopeo_failure(mirror, tmp_path, uncached)
                _, _, probe = http_get(f"{front.url}{HEALTH_PATH}")
                try:
                    probe_status = http_get(f"{front.url}{UPSTREAM_PROBE_PATH}", timeout=30)[0]
                except urllib.error.HTTPError as error:
                    probe_status = error.code

                # the upstream returns: nothing restarts
                dns.table.clear()
                dns.table.update(ONLINE)
                back_after = wait_until_pulls(mirror, tmp_path, uncached, images.info[uncached], RETURN_BOUND)
                pull(mirror, tmp_path, PRIVATE, images.info[PRIVATE])
                process_alive = front.process.poll() is None
            log = (tmp_path / "mirror" / "registry.log").read_text()

    assert "panic" not in log
    assert cached_seconds < (SILENT_PULL_BOUND if kind == "never-answers" else 5.0), cached_seconds
    # the registry's tag lookup failed upstream and it had no copy: 404 MANIFEST_UNKNOWN
    assert (status, codes) == (404, ["MANIFEST_UNKNOWN"]), (status, codes)
    assert "manifest unknown" in stderr, stderr
    assert probe == b"ok"
    assert probe_status == (504 if kind == "never-answers" else 502)
    assert back_after < RETURN_BOUND and process_alive


def test_without_the_front_registry_3_1_1_does_not_start_while_the_upstream_refuses(
    tmp_path: Path, evaluation: Evaluation
):
    ca_dir(tmp_path, evaluation)
    with (
        pytest.raises(RuntimeError, match="exited") as failure,
        program_mirror(
            evaluation,
            tmp_path / "mirror",
            f"http://{REFUSING}:9",
            tmp_path / "trust" / "ca.crt",
            binary=mirror_binary(),
        ),
    ):
        pass
    assert "panic" in str(failure.value) and "connection refused" in str(failure.value)


def test_without_the_front_registry_3_1_1_hangs_at_start_while_the_upstream_never_answers(
    tmp_path: Path, evaluation: Evaluation
):
    ca_dir(tmp_path, evaluation)
    with silent_listener(SILENT, [9]), pytest.raises(TimeoutError, match="not ready"):
        # its start-up ping is a plain http.Get with no timeout: it neither serves nor exits
        with program_mirror(evaluation, tmp_path / "mirror", f"http://{SILENT}:9", tmp_path / "trust" / "ca.crt",
                            binary=mirror_binary()):  # fmt: skip
            pass
    assert "panic" not in (tmp_path / "mirror" / "registry.log").read_text()


# ---------------------------------------------------------------------------- 429 and 5xx


@pytest.mark.parametrize("mode", ["ratelimited", "unavailable"])
def test_cached_tags_pull_while_the_upstream_rate_limits_or_fails_and_uncached_ones_fail(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images, mode: str
):
    ca_dir(tmp_path, evaluation)
    uncached = f"library/new-{mode}"
    with hub_and_dns(images) as (hub, dns), \
            mirror_behind_front(tmp_path, "m", hub, dns, nginx, evaluation) as (front, mirror):  # fmt: skip
        pull(mirror, tmp_path, "library/app", images.info["library/app"])
        hub.mode = mode
        asked_before = len(hub.seen)
        pull(mirror, tmp_path, "library/app", images.info["library/app"])
        status, codes = mirror_answer(mirror, tmp_path, uncached)
        stderr = skopeo_failure(mirror, tmp_path, uncached)
        asked = len(hub.seen) - asked_before
        hub.mode = "ok"
        pull(mirror, tmp_path, uncached, images.info[uncached])
    assert asked > 0, "the upstream was never asked while it failed"
    manifest_gets = [e for e in front.entries() if e["method"] == "GET" and e["uri"] == f"/v2/{uncached}/manifests/1.0"]
    if mode == "ratelimited":
        # the tag resolves (HEAD is not rate limited), the manifest GET gets Docker Hub's
        # 429 through the front; the registry turns TOOMANYREQUESTS into its own 500 UNKNOWN
        assert [e["status"] for e in manifest_gets][:2] == [429, 429], manifest_gets
        assert (status, codes) == (500, ["UNKNOWN"]), (status, codes)
        assert "500 Internal Server Error" in stderr
    else:
        # the token request already fails (503): no tag upstream, no copy here
        assert (status, codes) == (404, ["MANIFEST_UNKNOWN"]), (status, codes)
        assert "manifest unknown" in stderr


def test_a_tag_moved_upstream_is_served_new_while_the_upstream_answers(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    ca_dir(tmp_path, evaluation)
    moved_dir = tmp_path / "moved"
    moved = make_oci_image(moved_dir, [90_000], seed=99, tag="1.0")
    with hub_and_dns(images) as (hub, dns), \
            mirror_behind_front(tmp_path, "t", hub, dns, nginx, evaluation) as (front, mirror):  # fmt: skip
        pull(mirror, tmp_path, "library/moving", images.info["library/moving"])
        hub.repos["library/moving"] = load_repo(moved_dir)
        pull(mirror, tmp_path, "library/moving", moved)
    manifest_requests = [e for e in front.entries() if "/manifests/" in e["uri"]]
    assert manifest_requests and all(e["cache"] == "" for e in manifest_requests)


# ---------------------------------------------------------------------------- one fetch per blob


def test_eight_concurrent_cold_pulls_fetch_each_blob_once_from_the_upstream(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    ca_dir(tmp_path, evaluation)
    info = images.info["library/big"]
    errors: list[BaseException] = []
    with hub_and_dns(images) as (hub, dns), \
            mirror_behind_front(tmp_path, "c", hub, dns, nginx, evaluation) as (front, mirror):  # fmt: skip
        hub.blob_delay = 1.5  # each blob takes 1.5 s: the 8 pulls overlap

        def one() -> None:
            try:
                pull(mirror, tmp_path, "library/big", info)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    fetches = {digest: hub.blob_fetches(digest) for digest in info.blob_digests}
    assert fetches == dict.fromkeys(info.blob_digests, 1), fetches
    layer = info.layer_digests[0]
    gets = [e for e in front.entries() if e["method"] == "GET" and e["uri"].endswith(layer)]
    # 3.1.1 sent the front one GET per pull in flight; the front went upstream once
    assert len(gets) >= 2 and [e["cache"] for e in gets].count("MISS") == 1, gets
    assert hub.cdn_bytes == sum(blob_path(images.path("library/big"), d).stat().st_size for d in info.blob_digests)


# ---------------------------------------------------------------------------- the upstream's TLS


def hub_certificate(tmp: Path, stack: str) -> tuple[str, tuple[Path, Path]]:
    """A certificate for the stand-in's three hosts, made by the program's own PKI for a stack
    of its own (so under a root CA of its own): (that root CA, (chain file, key file))."""
    ev = evaluate({"hostname": REGISTRY_HOST, "altNames": json.dumps([AUTH_HOST, CDN_HOST]),
                   "installTrust": "false", "monitoring": "false"}, stack=stack)  # fmt: skip
    uploads = ev.uploads("registry")
    tmp.mkdir(parents=True, exist_ok=True)
    chain, key = tmp / "hub.crt", tmp / "hub.key"
    chain.write_text(uploads[Registry.CERT_PATH])
    key.write_text(uploads[Registry.KEY_PATH])
    return ev.outputs["caCertPem"], (chain, key)


def test_the_front_verifies_its_upstreams_certificate_and_refuses_one_signed_by_another_ca(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    ca_dir(tmp_path, evaluation)
    trusted_root, trusted = hub_certificate(tmp_path / "trusted", "hub-trusted")
    _, forged = hub_certificate(tmp_path / "forged", "hub-forged")
    bundle = tmp_path / "bundle.pem"  # the image's CA bundle, in the stack
    bundle.write_text(trusted_root)
    seen: dict[str, list[str]] = {}
    for name, files in (("trusted", trusted), ("forged", forged)):
        with docker_hub({repo: images.path(repo) for repo in images.info}, private={PRIVATE},
                        users={USER: PASSWORD}, tls=files) as hub, dns_server(dict(ONLINE)) as dns, \
                upstream_front(tmp_path / f"front-{name}", nginx=nginx, upstream_url=hub.registry_url,
                               upstream_realm=hub.realm, resolver=dns.address, ca_bundle=str(bundle)) as front, \
                program_mirror(evaluation, tmp_path / f"mirror-{name}", front.url, tmp_path / "trust" / "ca.crt",
                               binary=mirror_binary()) as mirror:  # fmt: skip
            if name == "trusted":
                # token, manifest and the CDN's blobs, each over TLS verified against the bundle
                pull(mirror, tmp_path, PRIVATE, images.info[PRIVATE])
            else:
                answer = mirror_answer(mirror, tmp_path, "library/app")
                stderr = skopeo_failure(mirror, tmp_path, "library/app")
            seen[name] = sorted({s.host for s in hub.seen})
            errors = front.error_log()
    assert seen["trusted"] == ["auth", "cdn", "registry"]
    # another CA's certificate: no request got past the handshake, the mirror has nothing
    assert seen["forged"] == []
    assert answer == (404, ["MANIFEST_UNKNOWN"]), answer
    assert "manifest unknown" in stderr
    assert "upstream SSL certificate verify error" in errors, errors[-2000:]


# ---------------------------------------------------------------------------- the challenge's service


def test_the_registry_asks_the_realm_for_a_token_naming_the_service_of_the_fronts_challenge(
    tmp_path: Path, nginx: str, evaluation: Evaluation, images: Images
):
    """3.1.1 takes the token request's `service` from the front's /v2/ challenge only; the
    realm issues tokens for its own service. Here an upstream whose service is not Docker
    Hub's: a challenge naming another service, or none, gets no token, and nothing pulls."""
    service = "registry.example.test"
    ca_dir(tmp_path, evaluation)
    with docker_hub({repo: images.path(repo) for repo in images.info}, private={PRIVATE},
                    users={USER: PASSWORD}, service=service) as hub, dns_server(dict(ONLINE)) as dns, \
            upstream_front(tmp_path / "front", nginx=nginx, upstream_url=hub.registry_url, upstream_realm=hub.realm,
                           resolver=dns.address, service=service, ca_bundle=hub.ca_file) as front, \
            program_mirror(evaluation, tmp_path / "mirror", front.url, tmp_path / "trust" / "ca.crt",
                           binary=mirror_binary()) as mirror:  # fmt: skip
        pull(mirror, tmp_path, PRIVATE, images.info[PRIVATE])
        pull(mirror, tmp_path, "library/app", images.info["library/app"])
    tokens = [parse_qs(urlsplit(r.path).query) for r in hub.requests("auth")]
    assert tokens and all(t["service"] == [service] for t in tokens), tokens
    assert all(e["status"] == 200 for e in front.entries() if e["uri"] == "/token")
