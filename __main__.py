"""registry-mirror: a TLS Docker Hub pull-through cache with its monitoring stack.

settings -> PKI -> network -> mirror -> monitoring -> trust -> exports
"""

import pulumi

import settings as stack_settings
from components.container import private_network
from components.mirror import Mirror
from components.monitoring import Monitoring, registry_telemetry_env
from components.outputs import stack_outputs
from components.pki import Pki
from components.trust import HostTrust

config = stack_settings.load()

pki = Pki(
    "pki",
    config.pki,
    common_name=config.registry.hostname,
    dns_names=config.registry.san_dns_names,
    ip_addresses=config.registry.san_ip_addresses,
)

network = private_network(config.naming)

mirror = Mirror(
    "mirror",
    config.registry,
    config.naming,
    network,
    pki,
    telemetry_env=registry_telemetry_env(config.monitoring),
)

monitoring = (
    Monitoring("monitoring", config.monitoring, config.naming, network, pki, [mirror],
               keep_data=config.registry.keep_data_on_destroy,
               client_auth=(config.registry.users is not None, config.registry.require_client_cert))
    if config.monitoring.enabled
    else None
)

trust = (
    HostTrust("trust", config.trust, config.registry, config.naming, pki.root_ca_pem,
              client=(pki.client_chain_pem, pki.client_key_pem) if config.registry.require_client_cert else None)
    if config.trust.install_trust
    else None
)

for name, value in stack_outputs(config, pki, mirror, monitoring, trust).items():
    pulumi.export(name, value)
