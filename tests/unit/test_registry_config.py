"""The registry's config.yml, parsed and checked key by key."""

from __future__ import annotations

import yaml

from configs.registry import render_registry_config


def config(**kw):
    return yaml.safe_load(config_text(**kw))


def config_text(**kw):
    return render_registry_config(**({"proxy_ttl": "168h", "tag_concurrency_limit": 5} | kw))


def test_storage_is_filesystem_with_delete_inmemory_descriptor_cache_and_tag_limit():
    storage = config(tag_concurrency_limit=7)["storage"]
    assert storage == {
        "filesystem": {"rootdirectory": "/var/lib/registry"},
        "delete": {"enabled": True},
        "cache": {"blobdescriptor": "inmemory"},
        "tag": {"concurrencylimit": 7},
    }


def test_tls_uses_chain_and_key_at_container_paths_with_tls12_minimum():
    tls = config()["http"]["tls"]
    assert tls == {
        "certificate": "/etc/distribution/certs/registry.crt",
        "key": "/etc/distribution/certs/registry.key",
        "minimumtls": "tls1.2",
    }


def test_client_ca_is_only_set_when_asked():
    assert "clientcas" not in config()["http"]["tls"]
    assert config(client_ca_path="/x/ca.crt")["http"]["tls"]["clientcas"] == ["/x/ca.crt"]


def test_api_on_5000_and_debug_metrics_on_5001():
    http = config()["http"]
    assert http["addr"] == ":5000"
    assert http["debug"] == {"addr": ":5001", "prometheus": {"enabled": True, "path": "/metrics"}}


def test_proxy_points_at_docker_hub_with_the_ttl_and_no_credentials():
    proxy = config(proxy_ttl="72h")["proxy"]
    assert proxy == {"remoteurl": "https://registry-1.docker.io", "ttl": "72h"}


def test_storage_health_check_and_json_logs():
    c = config()
    assert c["health"]["storagedriver"] == {"enabled": True, "interval": "10s", "threshold": 3}
    assert c["log"]["formatter"] == "json"
    assert c["version"] == 0.1


def test_no_secret_keys_in_the_file():
    text = render_registry_config(proxy_ttl="168h", tag_concurrency_limit=5)
    c = yaml.safe_load(text)
    assert "secret" not in c["http"]
    assert "username" not in c["proxy"] and "password" not in c["proxy"]


def test_rendering_is_deterministic():
    assert config_text(proxy_ttl="1h") == config_text(proxy_ttl="1h")


def test_the_registry_drains_on_sigterm_within_the_containers_stop_grace():
    from contract import STOP_GRACE_SECONDS

    drain = config()["http"]["draintimeout"]
    assert drain.endswith("s") and 0 < int(drain[:-1]) < STOP_GRACE_SECONDS
