"""The bounded cache in the program, under Pulumi's mocks: off by default (the default stack is
the snapshot's), on per mirror with cacheMaxSize or cachePin. What the keeper does is in
test_cache_keeper.py; with registry 3.1.1 in tests/rehearsal/test_cache_rehearsal.py."""

from __future__ import annotations

import json

import yaml

from configs import cache
from configs.grafana import CACHE_ROW_TITLE, DASHBOARD_NAME
from configs.registry import CONFIG_PATH
from contract import IMAGES, Cache, Grafana, Prometheus
from rehearsal.fakes.program import Evaluation, evaluate

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
BOUNDED = {"hostname": "mirror.test", "cacheMaxSize": "50GB", "cachePin": json.dumps(["alpine:3.20"])}


def registry_config(ev: Evaluation, service: str = "registry") -> dict:
    return yaml.safe_load(ev.uploads(service)[CONFIG_PATH])


def keeper_config(ev: Evaluation, service: str = Cache.ALIAS) -> dict:
    return json.loads(ev.uploads(service)[Cache.CONFIG_PATH])


def dashboard_titles(ev: Evaluation) -> list[str]:
    text = ev.uploads(Grafana.ALIAS)[f"{Grafana.DASHBOARDS_PATH}/{DASHBOARD_NAME}"]
    return [p["title"] for p in json.loads(text)["panels"]]


def test_by_default_there_is_no_keeper_and_the_registry_keeps_its_ttl_and_descriptor_cache():
    ev = evaluate({"hostname": "mirror.test"})
    assert Cache.ALIAS not in {c.name for c in ev.of_type(CONTAINER)}
    config = registry_config(ev)
    assert config["proxy"]["ttl"] == "168h"
    assert config["storage"]["cache"] == {"blobdescriptor": "inmemory"}
    assert "notifications" not in config
    rules = ev.uploads(Prometheus.ALIAS)[Prometheus.RULES_PATH]
    assert "MirrorCacheOverLimit" not in rules
    assert CACHE_ROW_TITLE not in dashboard_titles(ev)


def test_a_bounded_cache_runs_a_keeper_on_the_registry_volume_notified_of_every_pull():
    ev = evaluate(BOUNDED)
    keeper = ev.container(Cache.ALIAS)
    image = ev.find("docker:index/remoteImage:RemoteImage", f"{Cache.ALIAS}-image")
    assert image.inputs["name"] == IMAGES["cache"]
    registry_volume = ev.find(VOLUME, "registry-data").inputs["name"]
    state_volume = ev.find(VOLUME, f"{Cache.ALIAS}-state").inputs["name"]
    assert state_volume == "registry-mirror-dev-registry-cache-state"
    mounts = {v["containerPath"]: v["volumeName"] for v in keeper.inputs["volumes"]}
    assert mounts == {"/var/lib/registry": registry_volume, Cache.STATE_PATH: state_volume}
    assert not keeper.inputs.get("ports"), "the keeper is on the private network only"
    config = registry_config(ev)
    assert config["proxy"]["ttl"] == "0", "TTL expiry would delete pinned images and shared layers"
    assert "cache" not in config["storage"], "a blob-descriptor cache would serve swept blobs as present"
    [endpoint] = config["notifications"]["endpoints"]
    assert endpoint["url"] == f"http://{Cache.ALIAS}:{Cache.PORT}/events"
    assert endpoint["ignore"] == {"mediatypes": ["application/octet-stream"], "actions": ["push", "delete", "mount"]}
    settings = keeper_config(ev)
    assert settings["max_bytes"] == 50_000_000_000
    assert (settings["high_watermark"], settings["low_watermark"], settings["min_age_seconds"]) == (90, 80, 900)
    assert settings["pins"] == ["library/alpine:3.20"]
    assert settings["registry_url"] == "https://registry:5000"
    assert settings["username"] is None and settings["client_cert"] is None
    # the keeper's code is this repository's package, every module of it
    uploads = ev.uploads(Cache.ALIAS)
    assert {p: t for p, t in uploads.items() if p.startswith(Cache.CODE_DIR)} == cache.package_files()
    assert f"{Cache.CODE_DIR}/cachekeeper/service.py" in uploads
    assert keeper.inputs["command"] == ["python", "-m", "cachekeeper", "--config", Cache.CONFIG_PATH]
    # it seeds through the registry: created after it
    registry = ev.container("registry")
    assert registry.urn in keeper.dependencies


def test_the_keeper_drops_net_raw_and_gains_no_privileges():
    keeper = evaluate(BOUNDED).container(Cache.ALIAS)
    assert keeper.inputs["capabilities"] == {"drops": ["NET_RAW"]}
    assert keeper.inputs["securityOpts"] == ["no-new-privileges:true"]


def test_prometheus_scrapes_the_keeper_and_the_cache_alerts_and_dashboard_row_appear():
    ev = evaluate(BOUNDED)
    prometheus = yaml.safe_load(ev.uploads(Prometheus.ALIAS)[Prometheus.CONFIG_PATH])
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs[Cache.ALIAS]["static_configs"] == [
        {"targets": [f"{Cache.ALIAS}:{Cache.PORT}"], "labels": {"upstream": "docker.io"}}]
    rules = yaml.safe_load(ev.uploads(Prometheus.ALIAS)[Prometheus.RULES_PATH])
    names = {r["alert"] for r in rules["groups"][0]["rules"]}
    assert {"MirrorCacheOverLimit", "MirrorPinnedImageNotCached"} <= names
    titles = dashboard_titles(ev)
    assert CACHE_ROW_TITLE in titles and "Pinned images missing" in titles


def test_a_pin_alone_turns_the_keeper_on_without_a_limit():
    ev = evaluate({"hostname": "mirror.test", "cachePin": json.dumps(["busybox:1.37"])})
    settings = keeper_config(ev)
    assert settings["max_bytes"] is None and settings["pins"] == ["library/busybox:1.37"]
    assert registry_config(ev)["proxy"]["ttl"] == "0"


def test_each_mirror_has_its_own_keeper_only_where_its_entry_bounds_it():
    mirrors = [{"upstream": "ghcr.io", "port": 6001, "cacheMaxSize": "10GB", "cachePin": ["ghcr.io/org/tool:1"]},
               {"upstream": "quay.io", "port": 6002}]
    ev = evaluate({"hostname": "mirror.test", "mirrors": json.dumps(mirrors)})
    names = {c.name for c in ev.of_type(CONTAINER)}
    assert f"{Cache.ALIAS}-ghcr" in names
    assert Cache.ALIAS not in names and f"{Cache.ALIAS}-quay" not in names
    config = registry_config(ev, "registry-ghcr")
    assert config["notifications"]["endpoints"][0]["url"] == f"http://{Cache.ALIAS}-ghcr:{Cache.PORT}/events"
    assert "notifications" not in registry_config(ev, "registry-quay")
    assert "notifications" not in registry_config(ev)
    settings = keeper_config(ev, f"{Cache.ALIAS}-ghcr")
    assert settings["pins"] == ["org/tool:1"] and settings["upstream"] == "ghcr.io"
    assert settings["registry_url"] == "https://registry-ghcr:5000"
    mounts = {v["containerPath"]: v["volumeName"] for v in ev.container(f"{Cache.ALIAS}-ghcr").inputs["volumes"]}
    assert mounts["/var/lib/registry"] == ev.find(VOLUME, "registry-ghcr-data").inputs["name"]


def test_with_registry_users_the_keeper_pulls_pins_as_its_own_user_whose_password_stays_secret():
    ev = evaluate(BOUNDED | {"registryBindAddress": "127.0.0.1"},
                  secrets={"registryUsers": json.dumps({"alice": "correct-horse-battery"})})
    htpasswd = ev.uploads("registry")["/etc/distribution/htpasswd"]
    assert sorted(line.split(":")[0] for line in htpasswd.splitlines()) == ["alice", Cache.USER]
    keeper = ev.container(Cache.ALIAS)
    assert keeper_config(ev)["username"] == Cache.USER
    password_env = [e for e in keeper.inputs["envs"] if e.startswith(f"{cache.PASSWORD_ENV}=")]
    assert len(password_env) == 1
    assert f"envs[{keeper.inputs['envs'].index(password_env[0])}]" in " ".join(keeper.secret_paths())
    assert "envs" in keeper.options.get("additionalSecretOutputs", [])


def test_with_client_certificates_the_keeper_presents_the_stacks_client_certificate():
    ev = evaluate(BOUNDED | {"requireClientCert": "true"})
    uploads = ev.uploads(Cache.ALIAS)
    assert uploads[Cache.CLIENT_CERT_PATH].startswith("-----BEGIN CERTIFICATE-----")
    assert keeper_config(ev)["client_cert"] == Cache.CLIENT_CERT_PATH
    assert "uploads" in ev.container(Cache.ALIAS).options.get("additionalSecretOutputs", [])
