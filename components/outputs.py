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
) -> dict[str, Any]:
    registry = settings.registry
    ca_path = clients.docker_ca_path(settings.trust.docker_certs_dir, registry.host)
    urls: dict[str, str] = {"registry": registry.url}
    extra: dict[str, Any] = {}
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
        "clientKeyPem": pki.client_key_pem,  # secret
        "urls": urls,
        "dockerCaPath": ca_path,
        "dockerDaemonConfig": clients.docker_daemon_config(registry.url),
        "containerdHostsToml": clients.containerd_hosts_toml(registry.url, ca_path),
        "pullExample": clients.pull_example(registry.host),
        "curlExample": clients.curl_example(registry.url),
        "registryContainer": mirror.container_name,
        "registryVolume": mirror.volume_name,
        "trustInstalled": trust is not None,
        "trustInstalledOn": trust.where if trust is not None else "nowhere",
        "trustSteps": clients.manual_trust_steps(settings.trust.docker_certs_dir, registry.host,
                                                 settings.naming.stack,
                                                 client_cert=registry.require_client_cert),
        "stack": pulumi.get_stack(),
    }
