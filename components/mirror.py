"""The Docker Hub pull-through cache: `registry:3` with TLS, its cache on a named volume."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.pki import Pki
from components.service import Mount, Port, ServiceSpec, Upload, named_volume, service_container
from configs import registry as cfg
from settings import Naming, RegistrySettings

SERVICE = "registry"


class Mirror(pulumi.ComponentResource):
    """Outputs: `url`, `host`, `container_name`, `volume_name`, `metrics_target`."""

    def __init__(
        self,
        name: str,
        settings: RegistrySettings,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        telemetry_env: Sequence[str] = ("OTEL_TRACES_EXPORTER=none",),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:registry:Mirror", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        volume = named_volume(self, naming, SERVICE, "data", settings.keep_data_on_destroy)
        # http.secret signs upload state; stable across runs because it lives in state
        http_secret = random.RandomPassword("registry-http-secret", length=48, special=False,
                                            opts=child)
        envs: list[pulumi.Input[str]] = [
            pulumi.Output.secret(pulumi.Output.concat("REGISTRY_HTTP_SECRET=", http_secret.result)),
        ]
        if settings.docker_hub_username is not None:
            envs += [
                pulumi.Output.secret(f"REGISTRY_PROXY_USERNAME={settings.docker_hub_username}"),
                pulumi.Output.secret(
                    pulumi.Output.concat("REGISTRY_PROXY_PASSWORD=", settings.docker_hub_password)
                ),
            ]
        envs += list(telemetry_env)

        config_text = cfg.render_registry_config(
            proxy_ttl=settings.proxy_ttl,
            tag_concurrency_limit=settings.tag_concurrency_limit,
        )
        spec = ServiceSpec(
            service=SERVICE,
            image=settings.image,
            memory_mb=settings.memory_limit_mb,
            uploads=[
                Upload(cfg.CONFIG_PATH, config_text),
                Upload(cfg.CERT_PATH, pki.server_chain_pem),
                Upload(cfg.KEY_PATH, pki.server_key_pem, permissions="0600"),
            ],
            envs=envs,
            ports=[Port(cfg.API_PORT, settings.port, settings.bind_address)],
            mounts=[Mount(cfg.STORAGE_ROOT, volume_name=volume.name)],
            # registry:3 is Alpine-based: busybox wget asks the debug server's health check
            healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                         f"http://127.0.0.1:{cfg.DEBUG_PORT}/debug/health"],
        )
        resources = service_container(self, naming, network, spec)

        self.url: str = settings.url
        self.host: str = settings.host
        self.container_name: pulumi.Output[str] = resources.container.name
        self.volume_name: pulumi.Output[str] = volume.name
        self.metrics_target: str = f"{SERVICE}:{cfg.DEBUG_PORT}"
        self.register_outputs({
            "url": self.url,
            "containerName": self.container_name,
            "volumeName": self.volume_name,
        })
