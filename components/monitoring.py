"""The monitoring stack: one component per service, all on the stack's private network.

Prometheus (with a blackbox exporter probing the registry's TLS endpoint), Jaeger v2
(the registry's traces over OTLP), Loki + Alloy (container logs) and Grafana (provisioned
datasources and the registry dashboard). `tracing` and `logging` switch Jaeger and
Loki + Alloy off; the whole stack comes with `monitoring`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.pki import Pki
from components.service import Mount, Port, ServiceSpec, Upload, named_volume, service_container
from configs import alloy, blackbox, grafana, jaeger, loki, prometheus
from settings import MonitoringSettings, Naming

DASHBOARD = Path(__file__).resolve().parents[1] / "configs" / "dashboards" / "registry-mirror.json"
GRAFANA_DASHBOARD_DIR = "/etc/grafana/dashboards"
LOKI_CONFIG_PATH = "/etc/loki/config.yaml"
DOCKER_SOCKET = "/var/run/docker.sock"


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
    """The monitoring services that the settings turn on.

    Outputs: `urls` (service -> published URL), `grafana_admin_password` (secret),
    `registry_telemetry_env` (the registry's OTel environment).
    """

    def __init__(
        self,
        name: str,
        settings: MonitoringSettings,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        keep_data: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:monitoring:Monitoring", name, None, opts)
        self._naming = naming
        self._network = network
        self._keep = keep_data
        s = settings
        ui = s.ui_bind_address

        def published(port: int) -> str:
            host = "localhost" if ui in ("127.0.0.1", "0.0.0.0") else ui
            return f"http://{host}:{port}"

        self.urls: dict[str, str] = {}
        self.services: dict[str, ServiceComponent] = {}

        self._add("Prometheus", ServiceSpec(
            service="prometheus",
            image=s.prometheus_image,
            memory_mb=512,
            uploads=[
                Upload(prometheus.CONFIG_PATH,
                       prometheus.render_prometheus_config(tracing=s.tracing, logging=s.logging)),
                Upload(prometheus.RULES_PATH, prometheus.render_alert_rules()),
            ],
            ports=[Port(prometheus.PORT, s.prometheus_port, ui)],
            command=[
                f"--config.file={prometheus.CONFIG_PATH}",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={s.prometheus_retention}",
            ],
            # prom/prometheus is busybox-based: wget is there
            healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                         f"http://127.0.0.1:{prometheus.PORT}/-/ready"],
        ), volumes=[("data", "/prometheus")], url=published(s.prometheus_port))

        self._add("Blackbox", ServiceSpec(
            service="blackbox",
            image=s.blackbox_image,
            memory_mb=64,
            uploads=[
                Upload(blackbox.CONFIG_PATH, blackbox.render_blackbox_config(blackbox.CA_PATH)),
                Upload(blackbox.CA_PATH, pki.root_ca_pem),
            ],
            healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                         f"http://127.0.0.1:{blackbox.PORT}/-/healthy"],
        ))

        if s.tracing:
            self._add("Jaeger", ServiceSpec(
                service="jaeger",
                image=s.jaeger_image,
                memory_mb=512,
                uploads=[Upload(jaeger.DEFAULT_CONFIG_PATH, jaeger.render_jaeger_config())],
                command=jaeger.jaeger_command(),
                ports=[Port(jaeger.QUERY_HTTP_PORT, s.jaeger_port, ui)],
                healthcheck=jaeger.jaeger_healthcheck(s.jaeger_image),
            ), url=published(s.jaeger_port))

        if s.logging:
            loki_service = self._add("Loki", ServiceSpec(
                service="loki",
                image=s.loki_image,
                memory_mb=512,
                uploads=[Upload(LOKI_CONFIG_PATH, loki.render_loki_config(s.loki_retention_hours))],
                command=[f"-config.file={LOKI_CONFIG_PATH}"],
                ports=[Port(loki.LOKI_HTTP_PORT, s.loki_port, ui)],
                healthcheck=loki.loki_healthcheck(s.loki_image),
            ), volumes=[("data", "/loki")], url=published(s.loki_port))
            self._add("Alloy", ServiceSpec(
                service="alloy",
                image=s.alloy_image,
                memory_mb=256,
                uploads=[Upload(alloy.DEFAULT_CONFIG_PATH,
                                alloy.render_alloy_config(naming.project, naming.stack))],
                command=alloy.alloy_command(),
                # Read-only keeps Alloy from replacing the socket file; it does NOT limit
                # the Docker API: whoever can talk to the socket can control Docker.
                mounts=[Mount(DOCKER_SOCKET, host_path=DOCKER_SOCKET, read_only=True)],
                ports=[Port(alloy.ALLOY_HTTP_PORT, s.alloy_port, ui)],
                healthcheck=alloy.alloy_healthcheck(),
            ), volumes=[("data", alloy.DEFAULT_STORAGE_PATH)], url=published(s.alloy_port),
               depends_on=[loki_service])

        password = s.grafana_admin_password
        if password is None:
            # generated once and kept in state; exported as a secret output
            password = random.RandomPassword(
                "grafana-admin-password", length=24, special=False,
                opts=pulumi.ResourceOptions(parent=self),
            ).result
        self.grafana_admin_password: pulumi.Output[str] = pulumi.Output.secret(password)
        datasources = grafana.render_datasources(
            f"http://prometheus:{prometheus.PORT}",
            f"http://loki:{loki.LOKI_HTTP_PORT}" if s.logging else None,
            f"http://jaeger:{jaeger.QUERY_HTTP_PORT}" if s.tracing else None,
        )
        self._add("Grafana", ServiceSpec(
            service="grafana",
            image=s.grafana_image,
            memory_mb=512,
            uploads=[
                Upload("/etc/grafana/provisioning/datasources/registry-mirror.yaml", datasources),
                Upload("/etc/grafana/provisioning/dashboards/registry-mirror.yaml",
                       grafana.render_dashboard_provider(GRAFANA_DASHBOARD_DIR)),
                Upload(f"{GRAFANA_DASHBOARD_DIR}/registry-mirror.json", DASHBOARD.read_text()),
            ],
            envs=[
                *grafana.grafana_env(s.grafana_admin_user, s.grafana_anonymous),
                pulumi.Output.secret(
                    pulumi.Output.concat(f"{grafana.ADMIN_PASSWORD_ENV}=", password)
                ),
            ],
            entrypoint=grafana.render_grafana_entrypoint(),
            ports=[Port(grafana.GRAFANA_HTTP_PORT, s.grafana_port, ui)],
            healthcheck=grafana.grafana_healthcheck(),
        ), volumes=[("data", "/var/lib/grafana")], url=published(s.grafana_port))

        self.register_outputs({"urls": self.urls,
                               "grafanaAdminPassword": self.grafana_admin_password})

    def _add(
        self,
        kind: str,
        spec: ServiceSpec,
        *,
        volumes: Sequence[tuple[str, str]] = (),
        url: str | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> ServiceComponent:
        component = ServiceComponent(
            kind, self._naming, self._network, spec, volumes=volumes, keep_data=self._keep,
            url=url, depends_on=depends_on, opts=pulumi.ResourceOptions(parent=self),
        )
        self.services[spec.service] = component
        if url is not None:
            self.urls[spec.service] = url
        return component


def registry_telemetry_env(settings: MonitoringSettings) -> list[str]:
    """The registry's OTel environment: export to Jaeger only when Jaeger runs."""
    return jaeger.registry_otel_env(settings.enabled and settings.tracing)
