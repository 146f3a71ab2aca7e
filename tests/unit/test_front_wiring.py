"""The upstream front in the program, under Pulumi's mocks: on by default, off by `upstreamFront`.

How the front behaves is rehearsed with real binaries (tests/rehearsal/test_front_rehearsal.py);
here: which containers exist, what the registry's remoteurl and write timeout become, that the
front is never published, and that Prometheus and the dashboard follow the switch.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from configs import front
from configs.registry import CONFIG_PATH
from contract import IMAGES, Blackbox, Front, Prometheus
from rehearsal.fakes.program import Evaluation, evaluate

CONTAINER = "docker:index/container:Container"


def minutes(duration: str) -> float:
    value, unit = re.fullmatch(r"([0-9]+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(value) * {"s": 1 / 60, "m": 1, "h": 60}[unit]


def registry_config(ev: Evaluation) -> dict:
    return yaml.safe_load(ev.uploads("registry")[CONFIG_PATH])


def test_the_front_is_on_by_default_and_the_registry_goes_through_it():
    ev = evaluate({"hostname": "mirror.test"}, stack="dev")
    container = ev.container(Front.ALIAS)
    assert ev.find("docker:index/remoteImage:RemoteImage", f"{Front.ALIAS}-image").inputs["name"] == IMAGES["front"]
    assert not container.inputs.get("ports"), "the front is on the private network only"
    assert [a for n in container.inputs["networksAdvanced"] for a in n["aliases"]] == [Front.ALIAS]
    config = registry_config(ev)
    assert config["proxy"]["remoteurl"] == f"http://{Front.ALIAS}:{Front.PORT}"
    # the registry's cold-blob copy must outlive the front's lock, or the waiters lose it
    assert minutes(config["proxy"]["cachewritetimeout"]) >= minutes(front.LOCK_TIMEOUT)
    uploaded = ev.uploads(Front.ALIAS)[Front.CONFIG_PATH]
    assert uploaded == front.render_front_config()
    assert "set $front_upstream https://registry-1.docker.io;" in uploaded


def test_the_registry_starts_after_its_front():
    ev = evaluate({"hostname": "mirror.test"}, stack="dev")
    assert ev.container(Front.ALIAS).urn in ev.container("registry").dependencies


def test_turning_the_front_off_restores_the_direct_path_unchanged():
    ev = evaluate({"hostname": "mirror.test", "upstreamFront": "false"}, stack="dev")
    assert Front.ALIAS not in {c.name for c in ev.of_type(CONTAINER)}
    config = registry_config(ev)
    assert config["proxy"] == {"remoteurl": "https://registry-1.docker.io", "ttl": "168h"}
    prometheus = yaml.safe_load(ev.uploads(Prometheus.ALIAS)[Prometheus.CONFIG_PATH])
    assert Blackbox.UPSTREAM_JOB not in [j["job_name"] for j in prometheus["scrape_configs"]]


def test_prometheus_probes_the_upstream_through_the_front_with_the_upstream_module():
    ev = evaluate({"hostname": "mirror.test"}, stack="dev")
    prometheus = yaml.safe_load(ev.uploads(Prometheus.ALIAS)[Prometheus.CONFIG_PATH])
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == Blackbox.UPSTREAM_JOB]
    assert job["params"] == {"module": [Blackbox.UPSTREAM_MODULE]}
    assert job["static_configs"] == [{"targets": [f"http://{Front.ALIAS}:{Front.PORT}{Front.UPSTREAM_PROBE_PATH}"],
                                      "labels": {"upstream": "docker.io"}}]
    modules = yaml.safe_load(ev.uploads(Blackbox.ALIAS)[Blackbox.CONFIG_PATH])["modules"]
    assert modules[Blackbox.UPSTREAM_MODULE]["http"]["valid_status_codes"] == [200, 401]


def test_the_upstream_panels_read_prometheus_only_and_stay_with_logging_off():
    ev = evaluate({"hostname": "mirror.test", "logging": "false"}, stack="dev")
    dashboards = [c for p, c in ev.uploads("grafana").items() if p.endswith(".json")]
    (dashboard,) = [json.loads(d) for d in dashboards]
    upstream = [p for p in dashboard["panels"] if any('job="upstream"' in t["expr"] for t in p.get("targets", []))]
    assert {p["title"] for p in upstream} == {
        "Upstream reachable",
        "Requests served while the upstream was down",
        "Served while the upstream is down",
    }
    assert all(p["datasource"]["type"] == "prometheus" for p in upstream)


def test_no_front_setting_leaks_a_credential_into_the_fronts_config():
    config = {"hostname": "mirror.test", "dockerHubUsername": "alice", "registryBindAddress": "127.0.0.1"}
    ev = evaluate(config, stack="dev", secrets={"dockerHubPassword": "pa55-word-here"})
    assert "pa55-word-here" not in ev.uploads(Front.ALIAS)[Front.CONFIG_PATH]
    assert not ev.container(Front.ALIAS).inputs.get("envs")


def test_an_upstream_whose_token_realm_is_unknown_is_refused_rather_than_sent_to_docker_hubs():
    with pytest.raises(ValueError, match="token realm and service"):
        front.token_auth("https://ghcr.io", None, None)
    assert front.token_auth("https://ghcr.io", "https://ghcr.io/token", "ghcr.io") == (
        "https://ghcr.io/token",
        "ghcr.io",
    )
    assert front.token_auth("http://upstream:5000", "", None)[0] is None


def test_each_mirrors_front_names_its_upstreams_token_service_in_its_challenge():
    mirrors = [{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": 6001},
               {"upstream": "registry.example.test", "port": 6002, "tokenRealm": "https://auth.example.test/token",
                "tokenService": "example-registry"}]
    ev = evaluate({"hostname": "mirror.test", "mirrors": json.dumps(mirrors), "monitoring": "false"}, stack="dev")
    expected = {Front.ALIAS: "registry.docker.io", f"{Front.ALIAS}-ghcr": "ghcr.io",
                f"{Front.ALIAS}-registry-example-test": "example-registry"}
    for alias, service in expected.items():
        challenges = re.findall(r'WWW-Authenticate "(.*)" always', ev.uploads(alias)[Front.CONFIG_PATH])
        assert [c.replace('\\"', '"') for c in challenges] == [
            f'Bearer realm="http://{alias}:{Front.PORT}/token",service="{service}"'], alias
