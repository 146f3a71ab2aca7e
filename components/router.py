"""`registry-mirror:registry:Router`: one URL for every upstream (configs/router.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_docker as docker

from components.container import service_container
from components.mirror import Mirror
from components.pki import Pki
from configs import router
from contract import Naming, Registry
from settings import RegistrySettings


class Router(pulumi.ComponentResource):
    """nginx on Docker Hub's mirror port, routing `?ns=<upstream>` to that upstream's mirror.

    `mirrors` pairs each upstream (as image names write it) with its mirror, Docker Hub first.
    """

    def __init__(
        self,
        name: str,
        settings: RegistrySettings,
        image: str,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        mirrors: Sequence[tuple[str, Mirror]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:registry:Router", name, None, opts)
        routes = [router.Route(upstream, f"{mirror.alias}:{Registry.API_PORT}") for upstream, mirror in mirrors]
        spec = router.container_spec(
            image=image, routes=routes, port=settings.port, bind_address=settings.bind_address,
            server_chain_pem=pki.server_chain_pem, server_key_pem=pki.server_key_pem,
            root_ca_pem=pki.root_ca_pem, require_client_cert=settings.require_client_cert,
            client_chain_pem=pki.client_chain_pem, client_key_pem=pki.client_key_pem,
        )
        # nginx resolves the mirrors' aliases once, at start: they must exist first
        container = service_container(self, naming, network, spec,
                                      depends_on=[m.container for _, m in mirrors]).container
        self.url: str = settings.url
        self.probe_url = f"https://{router.ALIAS}:{router.PORT}/v2/"
        self.container_name: pulumi.Output[str] = container.name
        self.register_outputs({"url": self.url, "containerName": self.container_name})
