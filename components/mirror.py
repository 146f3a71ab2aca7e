"""A pull-through cache: `registry:3` with TLS, its cache on a named volume."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.container import named_volume, service_container
from components.pki import Pki
from configs import registry
from configs.spec import Secret
from contract import Naming, registry_alias
from settings import RegistrySettings


class Mirror(pulumi.ComponentResource):
    """One mirror of one upstream. The Docker Hub mirror is the instance "" (its children
    keep the names of the first release, so existing stacks see no replacement); every
    further instance gets its own alias, children, Docker names and volume.

    Outputs: `url`, `container_name`, `volume_name`.
    """

    def __init__(
        self,
        name: str,
        settings: RegistrySettings,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        telemetry_env: Sequence[str] = ("OTEL_TRACES_EXPORTER=none",),
        *,
        instance: str = "",
        remote_url: str = registry.DOCKER_HUB,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:registry:Mirror", name, None, opts)
        alias = registry_alias(instance)
        volume = named_volume(self, naming, alias, "data", settings.keep_data_on_destroy)
        # http.secret signs upload state; stable across runs because it lives in state
        http_secret = random.RandomPassword(f"{alias}-http-secret", length=48, special=False,
                                            opts=pulumi.ResourceOptions(parent=self))
        envs: list[pulumi.Input[str] | Secret] = [
            Secret(pulumi.Output.concat("REGISTRY_HTTP_SECRET=", http_secret.result)),
        ]
        if settings.docker_hub_username is not None:
            envs += [
                Secret(f"REGISTRY_PROXY_USERNAME={settings.docker_hub_username}"),
                Secret(pulumi.Output.concat("REGISTRY_PROXY_PASSWORD=", settings.docker_hub_password)),
            ]
        envs += list(telemetry_env)
        htpasswd = None
        if settings.users is not None:
            # the hashes' salts come from this value in state: the file stays byte-stable
            seed = random.RandomPassword(f"{alias}-htpasswd-salt", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
            htpasswd = pulumi.Output.all(settings.users, seed.result).apply(
                lambda args: registry.render_htpasswd(args[0], args[1]))
        spec = registry.container_spec(
            settings, alias=alias, envs=envs, remote_url=remote_url,
            server_chain_pem=pki.server_chain_pem, server_key_pem=pki.server_key_pem,
            volume_name=volume.name,
            client_ca_pem=pki.root_ca_pem if settings.require_client_cert else None,
            htpasswd=htpasswd,
        )
        container = service_container(self, naming, network, spec).container

        self.alias = alias
        self.url: str = settings.url
        self.container_name: pulumi.Output[str] = container.name
        self.volume_name: pulumi.Output[str] = volume.name
        self.register_outputs({
            "url": self.url,
            "containerName": self.container_name,
            "volumeName": self.volume_name,
        })
