"""How Prometheus learns whether the mirror reaches its upstream, with real binaries.

Debian's blackbox exporter runs the rendered `upstream_http` module against the front
(Debian's nginx, the rendered config) standing before the Docker Hub stand-in: probe_success
is 1 while the stand-in answers (its /v2/ 401 counts, also while it rate-limits pulls), 0
when it answers 503, when its name does not resolve, when the connection is refused, and
when it never answers.

The alert on that series (MirrorUpstreamUnreachable) is tested with promtool among all the
alerts, in test_alert_rules_by_effect.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from configs.blackbox import render_blackbox_config
from contract import Blackbox, Front
from rehearsal.hub import AUTH_HOST, CDN_HOST, REGISTRY_HOST, docker_hub
from rehearsal.netsim import dns_server, silent_listener
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import free_port, http_get, stop_process
from rehearsal.upstream_front import upstream_front
from tests.conftest import require_tool

# ---------------------------------------------------------------------------- the probe


@contextlib.contextmanager
def blackbox(directory: Path) -> Iterator[str]:
    binary = require_tool("prometheus-blackbox-exporter")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_text("")  # the TLS module's CA: unused by the upstream module
    config = directory / "config.yml"
    config.write_text(render_blackbox_config(ca_file=str(directory / "ca.crt")))
    address = f"127.0.0.1:{free_port()}"
    with (directory / "blackbox.log").open("ab") as log:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address={address}"],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                http_get(f"http://{address}/-/healthy", timeout=1.0)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError((directory / "blackbox.log").read_text()) from None
                time.sleep(0.1)
        yield f"http://{address}"
    finally:
        stop_process(process)


def probe_success(exporter: str, target: str) -> float:
    query = urllib.parse.urlencode({"module": Blackbox.UPSTREAM_MODULE, "target": target})
    _, _, body = http_get(f"{exporter}/probe?{query}", timeout=30.0)
    (line,) = [x for x in body.decode().splitlines() if x.startswith("probe_success ")]
    return float(line.split()[1])


def test_the_probe_through_the_front_says_whether_the_upstream_answers(tmp_path: Path):
    nginx = require_tool("nginx")
    make_oci_image(tmp_path / "image", [1000], seed=1, tag="1.0")
    online = {REGISTRY_HOST: "127.0.0.1", AUTH_HOST: "127.0.0.1", CDN_HOST: "127.0.0.1"}
    seen: dict[str, float] = {}
    with docker_hub({"library/x": tmp_path / "image"}) as hub, dns_server(dict(online)) as dns, \
            upstream_front(tmp_path / "front", nginx=nginx, upstream_url=hub.registry_url, upstream_realm=hub.realm,
                           resolver=dns.address) as front, blackbox(tmp_path / "blackbox") as exporter:  # fmt: skip
        target = f"{front.url}{Front.UPSTREAM_PROBE_PATH}"
        seen["online"] = probe_success(exporter, target)
        hub.mode = "ratelimited"  # Docker Hub's /v2/ still answers 401 while it rate-limits pulls
        seen["ratelimited"] = probe_success(exporter, target)
        hub.mode = "unavailable"  # its /v2/ answers 503
        seen["unavailable"] = probe_success(exporter, target)
        hub.mode = "ok"
        for outage, address in (("does-not-resolve", None), ("connection-refused", "127.0.0.3"),
                                ("never-answers", "127.0.0.4")):  # fmt: skip
            # a new front per outage: the old one's resolver would keep the address for 10 s
            dns.table.clear()
            if address:
                dns.table.update(dict.fromkeys(online, address))
            with contextlib.ExitStack() as stack:
                if outage == "never-answers":
                    stack.enter_context(silent_listener("127.0.0.4", [hub.ports["registry"]]))
                fresh = stack.enter_context(upstream_front(
                    tmp_path / f"front-{outage}", nginx=nginx, upstream_url=hub.registry_url,
                    upstream_realm=hub.realm, resolver=dns.address))  # fmt: skip
                seen[outage] = probe_success(exporter, f"{fresh.url}{Front.UPSTREAM_PROBE_PATH}")
    assert seen == {"online": 1.0, "ratelimited": 1.0, "unavailable": 0.0,
                    "does-not-resolve": 0.0, "connection-refused": 0.0, "never-answers": 0.0}  # fmt: skip
    assert [r.path for r in hub.requests("registry")] == ["/v2/"] * 3  # the probe asked the upstream itself
