"""How Prometheus learns whether the mirror reaches its upstream, with real binaries.

1. Debian's blackbox exporter runs the rendered `upstream_http` module against the front
   (Debian's nginx, the rendered config) standing before the Docker Hub stand-in:
   probe_success is 1 while the stand-in answers (its /v2/ 401 counts), 0 when its name
   does not resolve, when the connection is refused, and when it never answers.
2. `promtool test rules` on the MirrorUpstreamUnreachable alert, as configs/prometheus.py
   renders it: it fires after 15 minutes of probe_success 0, and stays silent for a
   reachable upstream and for a short outage.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from configs.blackbox import render_blackbox_config
from configs.prometheus import UPSTREAM_ALERT, render_alert_rules
from contract import Blackbox, Front
from rehearsal.hub import AUTH_HOST, CDN_HOST, REGISTRY_HOST, docker_hub
from rehearsal.netsim import dns_server, silent_listener
from rehearsal.oci import make_oci_image
from rehearsal.registry_proc import free_port, http_get, stop_process
from rehearsal.upstream_front import upstream_front
from tests.conftest import require_tool

INSTANCE = f"http://{Front.ALIAS}:{Front.PORT}{Front.UPSTREAM_PROBE_PATH}"
SERIES = f'probe_success{{job="{Blackbox.UPSTREAM_JOB}",instance="{INSTANCE}"}}'


def rule(rules_text: str) -> dict[str, Any]:
    (found,) = [r for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"] if r.get("alert") == UPSTREAM_ALERT]
    return dict(found)


def promtool_test(tmp_path: Path, values: str, expectations: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    (tmp_path / "rules.yml").write_text(render_alert_rules())
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": SERIES, "values": values}],
            "alert_rule_test": expectations,
        }],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def firing() -> list[dict[str, Any]]:
    found = rule(render_alert_rules())
    annotations = {k: v.replace("{{ $labels.instance }}", INSTANCE) for k, v in found["annotations"].items()}
    labels = {"severity": "warning", "job": Blackbox.UPSTREAM_JOB, "instance": INSTANCE}
    return [{"exp_labels": labels, "exp_annotations": annotations}]


def test_the_alert_fires_after_15_minutes_without_the_upstream(tmp_path: Path):
    result = promtool_test(tmp_path, "0x40", [
        {"eval_time": "14m", "alertname": UPSTREAM_ALERT, "exp_alerts": []},
        {"eval_time": "20m", "alertname": UPSTREAM_ALERT, "exp_alerts": firing()},
    ])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_stays_silent_while_the_upstream_answers_and_after_a_short_outage(tmp_path: Path):
    result = promtool_test(tmp_path, "1x10 0x10 1x20", [
        {"eval_time": "5m", "alertname": UPSTREAM_ALERT, "exp_alerts": []},
        {"eval_time": "20m", "alertname": UPSTREAM_ALERT, "exp_alerts": []},
        {"eval_time": "40m", "alertname": UPSTREAM_ALERT, "exp_alerts": []},
    ])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_promtool(tmp_path: Path):
    # control: the harness can fail (a silent expectation where the alert fires)
    result = promtool_test(tmp_path, "0x40", [{"eval_time": "20m", "alertname": UPSTREAM_ALERT, "exp_alerts": []}])
    assert result.returncode != 0


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
    assert seen == {"online": 1.0, "does-not-resolve": 0.0, "connection-refused": 0.0, "never-answers": 0.0}
    assert [r.path for r in hub.requests("registry")] == ["/v2/"]  # the probe asked the upstream itself
