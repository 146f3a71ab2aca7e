"""The OCI Distribution Specification's conformance suite against the stack's registries, every
part a real binary on loopback with the files the program renders:

- pull, through a mirror: the suite first pushes its content to an upstream stand-in (registry
  3.1.1 running a private registry's config of another stack, so over TLS under another
  root CA), then reads all of it through the program's front (Debian's nginx, the rendered
  nginx.conf, verifying the stand-in against that CA) and the program's mirror (registry
  3.1.1, the rendered config, TLS verified against the stack's root CA only); once
  anonymous, once with `registryUsers` on;
- pull, through the router (the rendered nginx.conf) with containerd's `?ns=ghcr.io` added
  to every request, so the ghcr.io mirror answers;
- push, content discovery and content management against the private registry.

The suite's verdict per API and every failing test are compared with what
docs/verification.md says and explains ("OCI conformance").
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rehearsal.conformance import (
    Conformance,
    ReadOnlyData,
    ns_adding_proxy,
    read_only_data,
    require_conformance,
    run_conformance,
)
from rehearsal.fakes.program import Evaluation, evaluate
from rehearsal.mirror import ProgramMirror, program_mirror
from rehearsal.netsim import dns_server
from rehearsal.registry_proc import ca_context, free_port, http_get, mirror_binary, write_ca_dir
from rehearsal.router import router_process
from rehearsal.upstream_front import upstream_front
from tests.conftest import require_tool

USER, PASSWORD = "alice", "correct-horse-battery"
# the upstream stand-in's name, in its certificate; the front resolves it (a DNS stand-in) to
# loopback. nginx checks an upstream certificate against DNS names only: an address would fail
UPSTREAM_HOST = "upstream.test"
PULLED = "conformance/pulled"  # the repository the suite fills upstream and reads through the mirrors
# the suite's push run upstream keeps what it pushed: nothing is deleted
KEEP = {"OCI_API_TAGS_DELETE": "false", "OCI_API_MANIFESTS_DELETE": "false", "OCI_API_BLOBS_DELETE": "false"}
# a mirror takes no push: the suite reads what the upstream holds (its README, read-only registries)
READ_ONLY = {"OCI_API_PUSH": "false", **KEEP}


def stack_config(router_port: int, ghcr_port: int, private_port: int) -> dict[str, str]:
    return {
        "hostname": "127.0.0.1", "registryBindAddress": "127.0.0.1", "installTrust": "false", "monitoring": "false",
        "registryPort": str(router_port), "privateRegistry": "true", "privateRegistryPort": str(private_port),
        "mirrors": json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": ghcr_port}]),
    }  # fmt: skip


@dataclass
class Runs:
    root: Path
    data: ReadOnlyData
    results: dict[str, Conformance] = field(default_factory=dict)
    mirror_storage: dict[str, Path] = field(default_factory=dict)
    anonymous_status_with_users: int = 0  # what the mirror with registryUsers answers no user


@contextlib.contextmanager
def fronted_mirror(ev: Evaluation, root: Path, service: str, upstream: ProgramMirror, bundle: Path,
                   ca_file: Path, nginx: str) -> Iterator[ProgramMirror]:
    """The program's front and mirror `service` before the upstream stand-in."""
    port = upstream.host_port.rsplit(":", 1)[1]
    with dns_server({UPSTREAM_HOST: "127.0.0.1"}) as dns, \
            upstream_front(root / f"front-{service}", nginx=nginx, upstream_url=f"https://{UPSTREAM_HOST}:{port}",
                           upstream_realm=None, resolver=dns.address, ca_bundle=str(bundle)) as front, \
            program_mirror(ev, root / service, front.url, ca_file, binary=mirror_binary(),
                           service=service) as mirror:  # fmt: skip
        yield mirror


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    suite = require_conformance()
    nginx = require_tool("nginx")
    root = tmp_path_factory.mktemp("conformance")
    router_port, ghcr_port, private_port = free_port(), free_port(), free_port()
    config = stack_config(router_port, ghcr_port, private_port)
    ev = evaluate(config, stack="oci")
    with_users = evaluate(config, stack="oci", secrets={"registryUsers": json.dumps({USER: PASSWORD})})
    ca_file = write_ca_dir(root / "trust", ev.outputs["caCertPem"]) / "ca.crt"
    # the upstream stand-in: another stack's private registry, under that stack's root CA
    upstream_ev = evaluate(config | {"hostname": UPSTREAM_HOST}, stack="oci-upstream")
    bundle = write_ca_dir(root / "upstream-trust", upstream_ev.outputs["caCertPem"]) / "ca.crt"
    with program_mirror(upstream_ev, root / "upstream", "", bundle, binary=mirror_binary(),
                        service="registry-private") as upstream:  # fmt: skip
        pushed = run_conformance(suite, root / "push-upstream", registry=upstream.host_port, ca_file=bundle,
                                 repo1=PULLED, repo2=f"{PULLED}-2", settings=KEEP)
        data = read_only_data(upstream.storage, PULLED)
        assert data.tags and data.manifests and data.blobs, pushed.stdout[-3000:]
        runs = Runs(root, data)
        pull = {**READ_ONLY, **data.settings()}

        with fronted_mirror(ev, root / "anonymous", "registry", upstream, bundle, ca_file, nginx) as mirror:
            runs.results["mirror"] = run_conformance(suite, root / "pull-mirror", registry=mirror.host_port,
                                                     ca_file=ca_file, repo1=PULLED, settings=pull)
        with fronted_mirror(with_users, root / "users", "registry", upstream, bundle, ca_file, nginx) as mirror:
            try:
                http_get(f"https://{mirror.host_port}/v2/{PULLED}/tags/list", context=ca_context(ca_file))
            except urllib.error.HTTPError as error:
                runs.anonymous_status_with_users = error.code
            runs.results["mirror-users"] = run_conformance(
                suite, root / "pull-mirror-users", registry=mirror.host_port, ca_file=ca_file, repo1=PULLED,
                username=USER, password=PASSWORD, settings=pull)

        with contextlib.ExitStack() as stack:
            backends = {}
            for service in ("registry", "registry-ghcr"):
                mirror = stack.enter_context(
                    fronted_mirror(ev, root / "routed", service, upstream, bundle, ca_file, nginx))
                backends[service] = mirror.host_port
                runs.mirror_storage[service] = mirror.storage
            stack.enter_context(router_process(ev.container("registry-router"), root / "router", router_port,
                                               backends, nginx))
            shim = stack.enter_context(ns_adding_proxy(f"127.0.0.1:{router_port}", "ghcr.io", ca_file))
            runs.results["router-ns"] = run_conformance(suite, root / "pull-router", registry=shim, ca_file=None,
                                                        repo1=PULLED, settings=pull)

    with program_mirror(ev, root / "private", "", ca_file, binary=mirror_binary(),
                        service="registry-private") as private:  # fmt: skip
        runs.results["private"] = run_conformance(suite, root / "private-suite", registry=private.host_port,
                                                  ca_file=ca_file)
    return runs


# --------------------------------------------------------------------------- what fails, and why

# Each failing test of a run matches one of these; each reason is explained in
# docs/verification.md ("Why the failures are upstream's") under its key.
THROUGH_A_MIRROR = {
    r"OCI Conformance Test/(empty|read-only)/referrers": "referrers",
    r"OCI Conformance Test/read-only/tag-list": "tags-last",
    r"OCI Conformance Test/read-only/(head/blob-head|pull/blob-get)": "sha512",
    r"OCI Conformance Test/missing-manifest/by-digest": "missing-by-digest",
    r"OCI Conformance Test/invalid-digest-format/manifest-get": "invalid-digest",
}
PRIVATE = {
    r"OCI Conformance Test/[^/]+/referrers": "referrers",
    r"OCI Conformance Test/(artifacts|index|missing)-(with-)?subject/push/manifest-by-(digest|tag)": "oci-subject",
    r"OCI Conformance Test/sha512( blobs)?/.+": "sha512",
    r"OCI Conformance Test/sha256 blobs/chunked out-of-order and put chunk/blob-patch-chunked": "out-of-order-chunk",
    r"OCI Conformance Test/non-distributable-layers/.+": "non-distributable",
    r"OCI Conformance Test/invalid-digest-format/manifest-(put|get)": "invalid-digest",
}
EXPECTED = {"mirror": THROUGH_A_MIRROR, "mirror-users": THROUGH_A_MIRROR, "router-ns": THROUGH_A_MIRROR,
            "private": PRIVATE}
VERIFICATION = Path(__file__).resolve().parents[2] / "docs" / "verification.md"


def unexplained(result: Conformance, patterns: dict[str, str]) -> tuple[list[str], list[str]]:
    """(failing tests no pattern explains, patterns no failing test matches any more)."""
    failed = sorted(result.failed)
    loose = [name for name in failed if not any(re.fullmatch(p, name) for p in patterns)]
    stale = [p for p in patterns if not any(re.fullmatch(p, name) for name in failed)]
    return loose, stale


@pytest.mark.parametrize("run", sorted(EXPECTED))
def test_every_failing_conformance_test_is_one_the_docs_explain(runs: Runs, run: str) -> None:
    result = runs.results[run]
    loose, stale = unexplained(result, EXPECTED[run])
    assert loose == [], {name: result.cases[name].error[:300] for name in loose}
    assert stale == [], f"fixed? update docs/verification.md and this list: {stale}"
    assert result.count("OCI Conformance Test/ping", "Pass") == 1


@pytest.mark.parametrize("run", ["mirror", "mirror-users", "router-ns"])
def test_everything_the_upstream_holds_pulls_through_but_sha512_content(runs: Runs, run: str) -> None:
    result, data = runs.results[run], runs.data
    sha256_blobs = [b for b in data.blobs if b.startswith("sha256:")]
    sha512 = [d for d in (*data.blobs, *data.manifests) if d.startswith("sha512:")]
    assert len(data.tags) >= 10 and len(data.manifests) >= 20 and len(sha256_blobs) >= 50 and sha512
    pulled = "OCI Conformance Test/read-only/pull/"
    assert result.count(pulled + "manifest-by-tag", "Pass") == len(data.tags)
    assert result.count(pulled + "manifest-by-digest", "Pass") == len(data.manifests)
    assert result.count("OCI Conformance Test/read-only/head/manifest-head-by-tag", "Pass") == len(data.tags)
    # every sha256 blob, byte for byte and with its digest; no sha512 one (a sha256 digest
    # header, or the upstream's own 500 for the one the suite mounted there)
    sha512_blobs = [b for b in data.blobs if b.startswith("sha512:")]
    assert result.count(pulled + "blob-get", "Pass") == len(sha256_blobs)
    assert result.count(pulled + "blob-get", "FAIL") == len(sha512_blobs)
    errors = result.cases[pulled + "blob-get"].error.splitlines()
    assert all('header value expected "sha512:' in e or e.endswith("received 500") for e in errors), errors
    assert result.count("OCI Conformance Test/read-only/head/blob-head", "Pass") >= len(sha256_blobs)


def test_with_registry_users_the_suite_pulls_with_its_password_and_not_without(runs: Runs) -> None:
    with_users = runs.results["mirror-users"]
    assert with_users.apis == runs.results["mirror"].apis
    assert runs.anonymous_status_with_users == 401


def test_through_the_router_the_ns_parameter_picks_the_ghcr_mirror(runs: Runs) -> None:
    def holds(service: str) -> bool:
        return (runs.mirror_storage[service] / "docker/registry/v2/repositories" / PULLED).exists()
    assert holds("registry-ghcr") and not holds("registry")
    assert runs.results["router-ns"].apis == runs.results["mirror"].apis


def test_the_private_registry_passes_push_discovery_and_management_but_the_explained_gaps(runs: Runs) -> None:
    apis = runs.results["private"].apis
    for api in ("Blob push", "Tag delete", "Tag delete atomic", "Manifest delete", "Manifest delete atomic",
                "Blob delete", "Blob delete atomic", "Ping"):
        assert apis[api] == "Pass", api
    data = runs.results["private"].data
    for kind in ("Image", "Index", "Nested Index", "Artifact", "Image with Large Manifest", "Custom Fields"):
        assert data[kind] == "Pass", kind


def docs_table() -> dict[str, dict[str, str]]:
    """API -> run -> verdict, from the table in docs/verification.md."""
    text = VERIFICATION.read_text()
    section = text.split("### The suite's verdict per API", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()]
    header, _, *body = rows
    columns = {i: RUN_COLUMNS[h] for i, h in enumerate(header) if h in RUN_COLUMNS}
    assert sorted(columns.values()) == sorted(RUN_COLUMNS.values()), header
    return {row[0]: {run: row[i] for i, run in columns.items()} for row in body}


RUN_COLUMNS = {"through a mirror": "mirror", "mirror + registryUsers": "mirror-users",
               "router, ?ns=ghcr.io": "router-ns", "private registry": "private"}


def test_the_docs_table_is_the_suites_verdict_and_every_reason_is_explained(runs: Runs) -> None:
    table = docs_table()
    for run, result in runs.results.items():
        assert {api: row[run] for api, row in table.items()} == result.apis, run
    text = VERIFICATION.read_text()
    for reason in {r for patterns in EXPECTED.values() for r in patterns.values()}:
        assert f"<a id=\"oci-{reason}\"></a>" in text, reason

