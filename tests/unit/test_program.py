"""The whole program under Pulumi's mocks: graph, PKI inputs, registry wiring, secrets, outputs."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml
from cryptography import x509

from configs.registry import render_registry_config
from rehearsal.fakes.program import evaluate
from settings import SettingsError

CONTAINER = "docker:index/container:Container"
KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CSR = "tls:index/certRequest:CertRequest"
SIGNED = "tls:index/locallySignedCert:LocallySignedCert"

CONFIG = {
    "hostname": "mirror.test",
    "altNames": '["*.mirror.test", "10.1.2.3"]',
    "registryPort": "6010",
    "registryBindAddress": "127.0.0.1",
    "proxyTtl": "72h",
    "tagConcurrencyLimit": "9",
    "registryMemoryLimitMb": "768",
    "dockerHubUsername": "alice",
    "pkiOrganization": "Acme",
    "pkiOrganizationalUnit": "Platform",
    "pkiLocality": "Tampa",
    "pkiProvince": "FL",
    "pkiCountry": "us",
    "certValidityHours": "4000",
    "earlyRenewalHours": "100",
    "dockerCertsDir": "/tmp/certs.d",
    "monitoring": "false",  # the monitoring stack has its own tests (test_monitoring.py)
}
SECRETS = {"dockerHubPassword": "hub-token-xyz"}


@pytest.fixture(scope="module")
def ev():
    return evaluate(CONFIG, stack="dev", secrets=SECRETS)


def test_resource_graph_types_and_parents(ev):
    got = sorted((r.typ, r.name, r.parent_type) for r in ev.resources)
    pki = "registry-mirror:pki:Pki"
    mirror = "registry-mirror:registry:Mirror"
    stack = "pulumi:pulumi:Stack"
    expected = sorted([
        ("registry-mirror:pki:Pki", "pki", stack),
        ("registry-mirror:registry:Mirror", "mirror", stack),
        ("registry-mirror:trust:HostTrust", "trust", stack),
        ("docker:index/network:Network", "network", stack),
        (KEY, "root-ca-key", pki), (KEY, "intermediate-ca-key", pki),
        (KEY, "server-key", pki), (KEY, "client-key", pki),
        (SELF_SIGNED, "root-ca", pki),
        (CSR, "intermediate-ca-csr", pki), (CSR, "server-csr", pki), (CSR, "client-csr", pki),
        (SIGNED, "intermediate-ca", pki), (SIGNED, "server-cert", pki), (SIGNED, "client-cert", pki),
        ("docker:index/volume:Volume", "registry-data", mirror),
        ("random:index/randomPassword:RandomPassword", "registry-http-secret", mirror),
        ("docker:index/remoteImage:RemoteImage", "registry-image", mirror),
        (CONTAINER, "registry", mirror),
        ("docker:index/remoteImage:RemoteImage", "registry-front-image", mirror),
        (CONTAINER, "registry-front", mirror),
        ("command:local:Command", "install-ca", "registry-mirror:trust:HostTrust"),
    ])
    assert got == expected


def test_registry_container_depends_on_its_image_network_volume_and_certificates(ev):
    deps = {ev.by_urn(u).name for u in ev.container("registry").dependencies}
    assert {"registry-image", "network", "registry-data", "server-cert", "intermediate-ca",
            "server-key", "registry-http-secret"} <= deps


def test_certificate_signing_order_follows_the_chain(ev):
    def deps(typ, name):
        return {ev.by_urn(u).name for u in ev.find(typ, name).dependencies}
    assert deps(SIGNED, "intermediate-ca") >= {"root-ca", "root-ca-key", "intermediate-ca-csr"}
    assert deps(SIGNED, "server-cert") >= {"intermediate-ca", "intermediate-ca-key", "server-csr"}
    assert deps(SIGNED, "client-cert") >= {"intermediate-ca", "intermediate-ca-key", "client-csr"}


def test_every_key_is_ecdsa_p256_by_default(ev):
    for key in ev.of_type(KEY):
        assert key.inputs["algorithm"] == "ECDSA"
        assert key.inputs["ecdsaCurve"] == "P256"


def test_rsa_keys_use_the_configured_bits():
    ev = evaluate({"pkiKeyAlgorithm": "RSA", "pkiRsaBits": "2048", "installTrust": "false",
                   "monitoring": "false"})
    keys = ev.of_type(KEY)
    assert len(keys) == 4
    assert all(k.inputs["algorithm"] == "RSA" and k.inputs["rsaBits"] == 2048 for k in keys)
    assert all("ecdsaCurve" not in k.inputs for k in keys)


def test_root_ca_is_self_signed_ca_limited_to_one_level_below(ev):
    root = ev.find(SELF_SIGNED, "root-ca").inputs
    assert root["isCaCertificate"] is True
    assert root["maxPathLength"] == 1
    assert set(root["allowedUses"]) == {"cert_signing", "crl_signing", "digital_signature"}
    assert root["validityPeriodHours"] == 43800
    assert root["earlyRenewalHours"] == 100
    assert root["subject"] == {"commonName": "Acme Root CA", "organization": "Acme",
                               "organizationalUnit": "Platform", "locality": "Tampa",
                               "province": "FL", "country": "US"}


def test_intermediate_is_a_ca_signed_by_the_root_whose_pathlen_limits_the_chain(ev):
    inter = ev.find(SIGNED, "intermediate-ca").inputs
    root = ev.find(SELF_SIGNED, "root-ca")
    assert inter["isCaCertificate"] is True
    # pulumi-tls cannot write pathlen:0 (it never sets MaxPathLenZero): the root's pathlen:1
    # is what stops a CA below the intermediate
    assert "maxPathLength" not in inter
    assert inter["caCertPem"] == root.state["certPem"]
    assert inter["caPrivateKeyPem"] == ev.find(KEY, "root-ca-key").state["privateKeyPem"]
    assert inter["validityPeriodHours"] == 42720
    csr = ev.find(CSR, "intermediate-ca-csr").inputs
    assert csr["subject"]["commonName"] == "Acme Intermediate CA"


def test_server_certificate_has_hostname_cn_and_every_san(ev):
    csr = ev.find(CSR, "server-csr").inputs
    assert csr["subject"]["commonName"] == "mirror.test"
    assert csr["dnsNames"] == ["mirror.test", "*.mirror.test", "localhost", "registry"]
    assert csr["ipAddresses"] == ["10.1.2.3", "127.0.0.1"]
    cert = ev.find(SIGNED, "server-cert").inputs
    assert cert["isCaCertificate"] is False
    assert "server_auth" in cert["allowedUses"] and "client_auth" not in cert["allowedUses"]
    assert cert["validityPeriodHours"] == 4000
    assert cert["earlyRenewalHours"] == 100
    assert cert["caCertPem"] == ev.find(SIGNED, "intermediate-ca").state["certPem"]


def test_client_certificate_is_for_client_auth_only(ev):
    cert = ev.find(SIGNED, "client-cert").inputs
    assert "client_auth" in cert["allowedUses"] and "server_auth" not in cert["allowedUses"]
    assert ev.find(CSR, "client-csr").inputs.get("dnsNames", []) == []


def test_registry_config_upload_is_the_rendered_file_for_these_settings(ev):
    uploads = ev.uploads("registry")
    rendered = yaml.safe_load(uploads["/etc/distribution/config.yml"])
    # the upstream front (on by default) stands before Docker Hub; the registry's cold-blob
    # copy may take as long as the front lets concurrent pulls wait for it
    assert rendered["proxy"] == {"remoteurl": "http://registry-front:8080", "ttl": "72h", "cachewritetimeout": "30m"}
    assert rendered["storage"]["tag"]["concurrencylimit"] == 9
    assert rendered["http"]["tls"]["certificate"] == "/etc/distribution/certs/registry.crt"
    assert rendered == yaml.safe_load(render_registry_config(
        proxy_ttl="72h", tag_concurrency_limit=9, remote_url="http://registry-front:8080", cache_write_timeout="30m"))


def test_registry_uploads_the_chain_leaf_first_then_intermediate_and_its_key(ev):
    uploads = ev.uploads("registry")
    chain = x509.load_pem_x509_certificates(uploads["/etc/distribution/certs/registry.crt"].encode())
    assert [c.subject.rfc4514_string() for c in chain][0].startswith("CN=mirror.test")
    assert chain[1].subject == chain[0].issuer
    assert "Intermediate CA" in chain[1].subject.rfc4514_string()
    assert uploads["/etc/distribution/certs/registry.key"] == ev.find(KEY, "server-key").state["privateKeyPem"]
    perms = {u["file"]: u["permissions"] for u in ev.container("registry").inputs["uploads"]}
    assert perms["/etc/distribution/certs/registry.key"] == "0600"


def test_registry_container_publishes_tls_port_with_health_restart_logs_and_memory(ev):
    c = ev.container("registry").inputs
    assert c["name"] == "registry-mirror-dev-registry"
    assert c["ports"] == [{"internal": 5000, "external": 6010, "ip": "127.0.0.1"}]
    assert c["healthcheck"]["tests"][:2] == ["CMD", "wget"]
    assert c["healthcheck"]["tests"][-1] == "http://127.0.0.1:5001/debug/health"
    assert c["restart"] == "unless-stopped"
    assert c["logDriver"] == "json-file" and c["logOpts"] == {"max-size": "10m", "max-file": "3"}
    assert c["memory"] == 768
    assert c["volumes"] == [{"containerPath": "/var/lib/registry",
                             "volumeName": "registry-mirror-dev-registry-data", "readOnly": False}]
    assert c["networksAdvanced"] == [{"name": "registry-mirror-dev-net", "aliases": ["registry"]}]
    labels = {lab["label"]: lab["value"] for lab in c["labels"]}
    assert labels == {"registry-mirror.project": "registry-mirror",
                      "registry-mirror.stack": "dev", "registry-mirror.service": "registry"}
    assert c["image"] == ev.find("docker:index/remoteImage:RemoteImage", "registry-image").state["imageId"]
    assert ev.container("registry").options["deleteBeforeReplace"] is True


def test_debug_port_5001_is_never_published(ev):
    for container in ev.of_type(CONTAINER):
        assert all(p["internal"] != 5001 for p in container.inputs.get("ports", []))


def test_image_is_pinned_and_kept_locally_for_other_stacks(ev):
    image = ev.find("docker:index/remoteImage:RemoteImage", "registry-image").inputs
    assert image["name"] == "registry:3.1.1"
    assert image["keepLocally"] is True


def test_cache_volume_is_kept_on_destroy_unless_asked():
    kept = evaluate({"installTrust": "false", "monitoring": "false"})
    assert kept.find("docker:index/volume:Volume", "registry-data").options["retainOnDelete"] is True
    dropped = evaluate({"installTrust": "false", "monitoring": "false", "keepDataOnDestroy": "false"})
    assert dropped.find("docker:index/volume:Volume", "registry-data").options["retainOnDelete"] is False


def test_secrets_stay_secret_in_every_resource_input(ev):
    c = ev.container("registry")
    envs = c.inputs["envs"]
    secret_paths = set(c.secret_paths())
    for i, env in enumerate(envs):
        name = env.split("=", 1)[0]
        is_secret = f"envs[{i}]" in secret_paths
        assert is_secret == (name in {"REGISTRY_HTTP_SECRET", "REGISTRY_PROXY_USERNAME",
                                      "REGISTRY_PROXY_PASSWORD"}), name
    upload_files = [u["file"] for u in c.inputs["uploads"]]
    key_index = upload_files.index("/etc/distribution/certs/registry.key")
    assert f"uploads[{key_index}].content" in secret_paths
    # the config file and the certificate chain stay readable in preview diffs
    assert {p for p in secret_paths if p.startswith("uploads")} == {f"uploads[{key_index}].content"}
    assert ev.envs("registry")["REGISTRY_PROXY_PASSWORD"] == "hub-token-xyz"
    assert ev.envs("registry")["REGISTRY_PROXY_USERNAME"] == "alice"
    for r in ev.of_type(SIGNED) + ev.of_type(CSR) + ev.of_type(SELF_SIGNED):
        for key in ("caPrivateKeyPem", "privateKeyPem"):
            if key in r.inputs:
                assert key in r.secret_paths(), (r.name, key)


def test_http_secret_comes_from_a_stateful_random_resource(ev):
    pw = ev.find("random:index/randomPassword:RandomPassword", "registry-http-secret")
    assert ev.envs("registry")["REGISTRY_HTTP_SECRET"] == pw.state["result"]
    again = evaluate(CONFIG, stack="dev", secrets=SECRETS)
    assert again.envs("registry")["REGISTRY_HTTP_SECRET"] == pw.state["result"]


def test_anonymous_pulls_send_no_credential_env():
    ev = evaluate({"installTrust": "false", "monitoring": "false"})
    assert not {"REGISTRY_PROXY_USERNAME", "REGISTRY_PROXY_PASSWORD"} & ev.envs("registry").keys()


def test_stack_outputs(ev):
    out = ev.outputs
    assert out["registryUrl"] == "https://mirror.test:6010"
    assert out["registryHost"] == "mirror.test:6010"
    assert out["caCertPem"] == ev.find(SELF_SIGNED, "root-ca").state["certPem"]
    assert out["urls"]["registry"] == "https://mirror.test:6010"
    assert json.loads(out["dockerDaemonConfig"]) == {"registry-mirrors": ["https://mirror.test:6010"]}
    assert out["pullExample"] == "docker pull mirror.test:6010/library/alpine:latest"
    assert out["dockerCaPath"] == "/tmp/certs.d/mirror.test:6010/ca.crt"
    hosts = tomllib.loads(out["containerdHostsToml"])
    # the CA beside the file, as clientConfigs installs it: not this host's Docker path
    assert hosts["host"]["https://mirror.test:6010"] == {
        "capabilities": ["pull", "resolve"], "ca": "/etc/containerd/certs.d/docker.io/ca.crt"}
    assert out["clientConfigs"]["containerd"]["/etc/containerd/certs.d/docker.io/hosts.toml"] == (
        out["containerdHostsToml"])
    assert out["clientKeyPem"] == ev.find(KEY, "client-key").state["privateKeyPem"]
    # the chain an mTLS client must send: the leaf, then the intermediate that signed it
    assert out["clientCertChainPem"] == out["clientCertPem"] + out["intermediateCaPem"]
    assert out["clientCertChainPem"].count("-----BEGIN CERTIFICATE-----") == 2
    assert "clientKeyPem" in ev.secret_outputs
    assert "caCertPem" not in ev.secret_outputs


def test_trust_command_gets_the_root_ca_on_stdin_never_in_its_command_text(ev):
    cmd = ev.find("command:local:Command", "install-ca")
    root = ev.find(SELF_SIGNED, "root-ca").state["certPem"]
    assert cmd.inputs["stdin"] == root
    assert root not in cmd.inputs["create"] and root not in cmd.inputs["delete"]
    assert "/tmp/certs.d" in cmd.inputs["create"]
    assert "mirror.test:6010" in cmd.inputs["create"]
    # any change replaces it, so the old remove script runs before the new install
    assert cmd.options["deleteBeforeReplace"] is True
    assert "*" in cmd.options["replaceOnChanges"]


def test_install_trust_false_creates_no_host_command():
    ev = evaluate({"installTrust": "false", "monitoring": "false"})
    assert ev.of_type("command:local:Command") == []
    assert ev.outputs["trustInstalled"] is False


def test_invalid_config_fails_the_program_with_the_key_named():
    with pytest.raises(SettingsError, match="registry-mirror:registryPort = '70000'"):
        evaluate({"registryPort": "70000"})


def test_docker_hub_password_set_without_secret_is_refused():
    with pytest.raises(SettingsError, match="must be set as a secret"):
        evaluate({"dockerHubUsername": "a", "dockerHubPassword": "plain"})


# Where secrets may show (inputs, the outputs the engine stores, options, stack outputs) is
# walked over the combinations of the secret-carrying features in tests/unit/test_secret_walk.py.
