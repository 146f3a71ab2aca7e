"""The stack outputs: every URL, the CA, and ready-made client snippets."""

from __future__ import annotations

from typing import Any

import pulumi

from components.mirror import Mirror
from components.monitoring import Monitoring
from components.pki import Pki
from components.trust import HostTrust
from configs import clients
from settings import Settings


def stack_outputs(
    settings: Settings,
    pki: Pki,
    mirror: Mirror,
    monitoring: Monitoring | None,
    trust: HostTrust | None,
    *,
    private_registry: Mirror | None = None,
) -> dict[str, Any]:
    registry = settings.registry
    ca_path = clients.docker_ca_path(settings.trust.docker_certs_dir, registry.host)
    urls: dict[str, str] = {"registry": registry.url}
    extra: dict[str, Any] = {}
    if len(settings.mirrors) > 1:
        # every upstream's own port (Docker clients name the upstream by it)
        extra["mirrorUrls"] = {m.upstream: f"https://{registry.hostname}:{m.port}" for m in settings.mirrors}
    if private_registry is not None and settings.private_registry is not None:
        extra["privateRegistryUrl"] = f"https://{registry.hostname}:{settings.private_registry.port}"
    upstreams = [(m.upstream, m.remote_url) for m in settings.mirrors]
    other_hosts = settings.tls_hosts[1:]
    # the chain: the CA names only the root, and nginx and the registry must reach it
    client_cert = pki.client_chain_pem if registry.require_client_cert else None
    extra["clientConfigs"] = pulumi.Output.all(pki.root_ca_pem, client_cert).apply(
        lambda pems: clients.client_configs(
            mirror_host=registry.host, upstreams=upstreams, ca_pem=pems[0], client_cert_pem=pems[1],
            registry_users=registry.users is not None, hostname=registry.hostname,
            other_hosts=other_hosts))
    if monitoring is not None:
        urls |= monitoring.urls
        extra["grafanaAdminUser"] = settings.monitoring.grafana_admin_user
        extra["grafanaAdminPassword"] = monitoring.grafana_admin_password  # secret
    return extra | {
        "registryUrl": registry.url,
        "registryHost": registry.host,
        "caCertPem": pki.root_ca_pem,
        "intermediateCaPem": pki.intermediate_ca_pem,
        "clientCertPem": pki.client_cert_pem,
        # what an mTLS client must send: the leaf and the intermediate (the registry trusts
        # only the root, so a client sending clientCertPem alone is refused)
        "clientCertChainPem": pki.client_chain_pem,
        "clientKeyPem": pki.client_key_pem,  # secret
        "urls": urls,
        "dockerCaPath": ca_path,
        "dockerDaemonConfig": clients.docker_daemon_config(registry.url),
        # Docker Hub's file of clientConfigs: its CA beside it, not this host's Docker path
        "containerdHostsToml": clients.containerd_upstream_hosts_toml(
            "docker.io", settings.mirrors[0].remote_url, registry.url,
            f"{clients.CONTAINERD_CERTS_DIR}/docker.io", registry.require_client_cert),
        "pullExample": clients.pull_example(registry.host),
        "curlExample": clients.curl_example(registry.url),
        "registryContainer": mirror.container_name,
        "registryVolume": mirror.volume_name,
        "trustInstalled": trust is not None,
        "trustInstalledOn": trust.where if trust is not None else "nowhere",
        "trustSteps": clients.manual_trust_steps(settings.trust.docker_certs_dir, settings.tls_hosts,
                                                 settings.naming.stack,
                                                 client_cert=registry.require_client_cert),
        "stack": pulumi.get_stack(),
    }
