"""A second upstream is a second `Mirror` instance with its own alias (not a shipped feature
yet: this proves the layout allows it). Built under mocks beside the Docker Hub mirror."""

from __future__ import annotations

import json

import yaml

import settings
from components.container import private_network
from components.mirror import Mirror
from components.monitoring import Monitoring, registry_telemetry_env
from components.pki import Pki
from rehearsal.fakes.program import evaluate
from tests import snapshot

CONTAINER = "docker:index/container:Container"
CONFIG = {"installTrust": "false", "hostname": "mirror.test"}


def two_mirrors() -> None:
    config = settings.load()
    pki = Pki("pki", config.pki, common_name=config.registry.hostname,
              dns_names=config.registry.san_dns_names,
              ip_addresses=config.registry.san_ip_addresses)
    network = private_network(config.naming)
    telemetry = registry_telemetry_env(config.monitoring)
    hub = Mirror("mirror", config.registry, config.naming, network, pki, telemetry)
    ghcr_settings = settings.parse(CONFIG | {"registryPort": "6001"}, stack="dev").registry
    ghcr = Mirror("mirror-ghcr", ghcr_settings, config.naming, network, pki, telemetry,
                  instance="ghcr", remote_url="https://ghcr.io",
                  upstream_realm="https://ghcr.io/token", upstream_service="ghcr.io")
    Monitoring("monitoring", config.monitoring, config.naming, network, pki, [hub, ghcr],
               keep_data=True)


def test_two_mirrors_have_their_own_alias_container_volume_port_and_upstream():
    ev = evaluate(CONFIG, program=two_mirrors)
    hub, ghcr = ev.container("registry").inputs, ev.container("registry-ghcr").inputs
    assert hub["name"] == "registry-mirror-dev-registry"
    assert ghcr["name"] == "registry-mirror-dev-registry-ghcr"
    assert ghcr["networksAdvanced"][0]["aliases"] == ["registry-ghcr"]
    assert hub["networksAdvanced"][0]["aliases"] == ["registry"]
    assert [v["volumeName"] for v in ghcr["volumes"]] == ["registry-mirror-dev-registry-ghcr-data"]
    assert [p["external"] for p in ghcr["ports"]] == [6001]
    upstreams = {
        name: yaml.safe_load(ev.uploads(name)["/etc/distribution/config.yml"])["proxy"]["remoteurl"]
        for name in ("registry", "registry-ghcr")
    }
    # each mirror goes through its own upstream front, which stands before its upstream
    assert upstreams == {"registry": "http://registry-front:8080", "registry-ghcr": "http://registry-front-ghcr:8080"}
    fronts = {name: ev.uploads(name)["/etc/nginx/nginx.conf"] for name in ("registry-front", "registry-front-ghcr")}
    assert "set $front_upstream https://registry-1.docker.io;" in fronts["registry-front"]
    assert "set $front_upstream https://ghcr.io;" in fronts["registry-front-ghcr"]
    assert "set $front_realm https://ghcr.io/token;" in fronts["registry-front-ghcr"]
    secrets = ev.of_type("random:index/randomPassword:RandomPassword")
    assert {"registry-http-secret", "registry-ghcr-http-secret"} <= {r.name for r in secrets}


def test_prometheus_scrapes_and_blackbox_probes_both_mirrors():
    ev = evaluate(CONFIG, program=two_mirrors)
    prom = yaml.safe_load(ev.uploads("prometheus")["/etc/prometheus/prometheus.yml"])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["registry"]["static_configs"][0]["targets"] == ["registry:5001"]
    assert jobs["registry-ghcr"]["static_configs"][0]["targets"] == ["registry-ghcr:5001"]
    assert jobs["blackbox"]["static_configs"][0]["targets"] == [
        "https://registry:5000/v2/", "https://registry-ghcr:5000/v2/"]


def test_the_docker_hub_mirror_keeps_the_urns_and_inputs_it_has_in_the_default_stack():
    ev = evaluate(CONFIG, program=two_mirrors)
    alone = evaluate(CONFIG)
    hub_urns = {r.urn for r in alone.resources if "registry:Mirror" in r.urn}
    # the component, its image, container, volume and http secret, its front's image and container
    assert len(hub_urns) == 7
    both = {r.urn: r for r in ev.resources}
    for r in alone.resources:
        if r.urn in hub_urns:
            assert r.urn in both
            assert json.dumps(snapshot._mask(both[r.urn].raw_inputs, ())) == json.dumps(
                snapshot._mask(r.raw_inputs, ())), r.urn
