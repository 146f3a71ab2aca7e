"""The monitoring stack: one component per enabled service, all on the stack's private
network. Each service's container spec comes from its module in `configs/`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.container import named_volume, service_container
from components.mirror import Mirror
from components.pki import Pki
from configs import alloy, blackbox, grafana, jaeger, loki, prometheus
from configs.spec import Deployment, MonitoringInputs, Mount, Secret, ServiceSpec
from contract import Cache, Front, Naming, Registry
from settings import MonitoringSettings


class ServiceModule(Protocol):
    SCRAPE_JOB: tuple[str, str] | None

    def enabled(self, settings: MonitoringSettings) -> bool: ...

    def deployment(self, settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment: ...


# Every monitoring service, in the order of Prometheus's scrape jobs (its own job last).
SERVICES: tuple[ServiceModule, ...] = (blackbox, jaeger, loki, alloy, grafana, prometheus)


class ServiceComponent(pulumi.ComponentResource):
    """One service: its volumes (kept per `keepDataOnDestroy`), image and container.

    Outputs: `container_name`, `url` (the published UI URL, or None).
    """

    def __init__(
        self,
        kind: str,
        naming: Naming,
        network: docker.Network,
        spec: ServiceSpec,
        *,
        volumes: Sequence[tuple[str, str]] = (),  # (purpose, container path)
        keep_data: bool = True,
        url: str | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(f"registry-mirror:monitoring:{kind}", spec.service, None, opts)
        mounts = list(spec.mounts)
        for purpose, path in volumes:
            volume = named_volume(self, naming, spec.service, purpose, keep_data)
            mounts.append(Mount(path, volume_name=volume.name))
        spec = dataclasses.replace(spec, mounts=mounts)
        # a component's depends_on does not reach its children: hand it to the container
        resources = service_container(self, naming, network, spec, depends_on=depends_on)
        self.container_name: pulumi.Output[str] = resources.container.name
        self.url = url
        self.register_outputs({"containerName": self.container_name, "url": url})


class Monitoring(pulumi.ComponentResource):
    """The monitoring services that the settings turn on, watching `mirrors`.

    Outputs: `urls` (service -> published URL), `grafana_admin_password` (secret).
    """

    def __init__(
        self,
        name: str,
        settings: MonitoringSettings,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        mirrors: Sequence[Mirror],
        keep_data: bool,
        client_auth: tuple[bool, bool] = (False, False),  # (users, client certificate)
        opts: pulumi.ResourceOptions | None = None,
        probes: Sequence[tuple[str, str]] = (),  # further TLS endpoints: (URL, upstream label)
    ) -> None:
        super().__init__("registry-mirror:monitoring:Monitoring", name, None, opts)
        ui = settings.ui_bind_address
        host = "localhost" if ui in ("127.0.0.1", "0.0.0.0") else ui

        password = settings.grafana_admin_password
        if password is None:
            # generated once and kept in state; exported as a secret output
            password = random.RandomPassword(
                "grafana-admin-password", length=24, special=False,
                opts=pulumi.ResourceOptions(parent=self),
            ).result
        self.grafana_admin_password: pulumi.Output[str] = pulumi.Output.secret(password)

        enabled = [service for service in SERVICES if service.enabled(settings)]
        inputs = MonitoringInputs(
            project=naming.project,
            stack=naming.stack,
            root_ca_pem=pki.root_ca_pem,
            grafana_password_env=Secret(
                pulumi.Output.concat(f"{grafana.ADMIN_PASSWORD_ENV}=", password)),
            scrape_jobs=[(m.alias, f"{m.alias}:{Registry.DEBUG_PORT}") for m in mirrors] + [
                (m.cache_alias, f"{m.cache_alias}:{Cache.PORT}") for m in mirrors if m.cache_alias is not None
            ] + [
                s.SCRAPE_JOB for s in enabled if s.SCRAPE_JOB is not None
            ],
            probe_urls=[f"https://{m.alias}:{Registry.API_PORT}/v2/" for m in mirrors] + [url for url, _ in probes],
            upstream_probe_urls=[f"http://{m.front_alias}:{Front.PORT}{Front.UPSTREAM_PROBE_PATH}"
                                 for m in mirrors if m.front_alias is not None],
            registry_users=client_auth[0],
            client_cert=(pki.client_chain_pem, pki.client_key_pem) if client_auth[1] else None,
            upstreams={target: m.upstream for m in mirrors for target in (
                f"{m.alias}:{Registry.DEBUG_PORT}", f"https://{m.alias}:{Registry.API_PORT}/v2/",
                f"http://{m.front_alias}:{Front.PORT}{Front.UPSTREAM_PROBE_PATH}")}
            | {f"{m.cache_alias}:{Cache.PORT}": m.upstream for m in mirrors if m.cache_alias is not None}
            | dict(probes),
            cache=any(m.cache_alias is not None for m in mirrors),
        )

        self.urls: dict[str, str] = {}
        components: dict[str, ServiceComponent] = {}
        for service in enabled:
            d = service.deployment(settings, inputs)
            url = f"http://{host}:{d.published_port}" if d.published_port is not None else None
            components[d.spec.service] = ServiceComponent(
                d.kind, naming, network, d.spec, volumes=d.volumes, keep_data=keep_data, url=url,
                depends_on=[components[after] for after in d.after],
                opts=pulumi.ResourceOptions(parent=self),
            )
            if url is not None:
                self.urls[d.spec.service] = url

        self.register_outputs({"urls": self.urls,
                               "grafanaAdminPassword": self.grafana_admin_password})


def registry_telemetry_env(settings: MonitoringSettings) -> list[str]:
    """The registry's OTel environment: export to Jaeger only when Jaeger runs."""
    return jaeger.registry_otel_env(settings.enabled and settings.tracing)
