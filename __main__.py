"""registry-mirror: a TLS Docker Hub pull-through cache with its monitoring stack.

settings -> PKI -> network -> mirrors (+ private registry) -> router -> monitoring -> trust -> exports
"""

import pulumi

import settings as stack_settings
from components.container import private_network
from components.mirror import stack_mirrors
from components.monitoring import Monitoring, registry_telemetry_env
from components.outputs import stack_outputs
from components.pki import Pki
from components.router import Router
from components.trust import HostTrust

config = stack_settings.load()

pki = Pki(
    "pki",
    config.pki,
    common_name=config.registry.hostname,
    dns_names=config.san_dns_names,
    ip_addresses=config.registry.san_ip_addresses,
)

network = private_network(config.naming)

mirrors = stack_mirrors(config, network, pki, registry_telemetry_env(config.monitoring))
# the router runs the front's nginx image: one nginx pin for the stack
router = (Router("router", config.registry, config.registry.front_image, config.naming, network, pki,
                 mirrors.upstreams)
          if config.routed else None)

monitoring = (
    Monitoring("monitoring", config.monitoring, config.naming, network, pki, mirrors.watched,
               keep_data=config.registry.keep_data_on_destroy,
               client_auth=(config.registry.users is not None, config.registry.require_client_cert),
               # the one URL of every containerd client: probed like a mirror, labelled `router`
               probes=[(router.probe_url, "router")] if router is not None else [])
    if config.monitoring.enabled
    else None
)

trust = (
    HostTrust("trust", config.trust, config.registry, config.naming, pki.root_ca_pem,
              client=(pki.client_chain_pem, pki.client_key_pem) if config.registry.require_client_cert else None,
              containerd_upstreams=tuple((m.upstream, m.remote_url) for m in config.mirrors),
              other_hosts=config.tls_hosts[1:])
    if config.trust.install_trust
    else None
)

for name, value in stack_outputs(config, pki, mirrors.hub, monitoring, trust,
                                  private_registry=mirrors.private).items():
    pulumi.export(name, value)
