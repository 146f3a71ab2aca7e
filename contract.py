"""Names shared by the program, `mirrorctl`, the benchmark and the tests.

Written once here and imported everywhere: project name, label keys, image pins, network
aliases, container ports and in-container paths. No Pulumi import, so the operator CLI and
the rehearsals can use it without the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECT = "registry-mirror"

LABEL_PROJECT = f"{PROJECT}.project"
LABEL_STACK = f"{PROJECT}.stack"
LABEL_SERVICE = f"{PROJECT}.service"

# The image pins: one line each so that Renovate's custom manager (renovate.json) finds and
# bumps them. The settings take their image defaults from here.
IMAGES: dict[str, str] = {
    "registry": "registry:3.1.1",
    "prometheus": "prom/prometheus:v3.7.3",
    "blackbox": "prom/blackbox-exporter:v0.27.0",
    "jaeger": "jaegertracing/jaeger:2.11.0",
    "loki": "grafana/loki:3.5.7",
    "alloy": "grafana/alloy:v1.11.3",
    "grafana": "grafana/grafana:12.2.1",
}


@dataclass(frozen=True)
class Naming:
    """Names of Docker objects and labels: project + stack, so stacks never collide."""

    project: str
    stack: str

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stack}"

    def docker_name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def labels(self, service: str) -> dict[str, str]:
        return {LABEL_PROJECT: self.project, LABEL_STACK: self.stack, LABEL_SERVICE: service}
