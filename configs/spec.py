"""What a service asks of its container, as plain data: each service module builds one, and
`components/container.py` turns it into pulumi-docker resources (the only place that does).

Values that come from other resources (a certificate, a generated password) are Pulumi
inputs; they pass through here untouched, so this module needs no Pulumi import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# A plain value or a Pulumi input (Output) carrying one.
Input = Any


@dataclass(frozen=True)
class Secret:
    """A value that stays secret end to end: sent as a Pulumi secret, and the container field
    that carries it is declared a secret output, so the state never holds it in clear."""

    value: Input


@dataclass(frozen=True)
class Upload:
    """A file the program generates and delivers into the container."""

    path: str
    content: Input
    permissions: str = "0644"
    secret: bool = False


@dataclass(frozen=True)
class Port:
    internal: int
    external: int
    ip: str


@dataclass(frozen=True)
class Mount:
    container_path: str
    volume_name: Input = None
    host_path: str | None = None
    read_only: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    service: str  # network alias, label and name suffix
    image: str
    memory_mb: int
    uploads: Sequence[Upload] = ()
    envs: Sequence[Input | Secret] = ()
    ports: Sequence[Port] = ()
    mounts: Sequence[Mount] = ()
    healthcheck: Sequence[str] | None = None  # Docker's ["CMD", ...] form
    command: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    # Every container: no raw sockets (the registry sends upstream credentials to its front
    # in plain HTTP on the bridge network; no probe of ours uses ICMP) and no privilege
    # gained through execve (setuid binaries, file capabilities). Anything tighter only for
    # a service whose real binary was run with it.
    cap_drop: Sequence[str] = ("NET_RAW",)
    security_opts: Sequence[str] = ("no-new-privileges:true",)


@dataclass(frozen=True)
class Deployment:
    """One monitoring service as the stack runs it: its container, the named volumes it keeps
    its data in (purpose, container path), its published port (for the URL output) and the
    services it must start after."""

    kind: str  # the component type's last part: registry-mirror:monitoring:<kind>
    spec: ServiceSpec
    volumes: Sequence[tuple[str, str]] = ()
    published_port: int | None = None
    after: Sequence[str] = ()


@dataclass(frozen=True)
class MonitoringInputs:
    """What monitoring services take from the rest of the stack besides their settings."""

    project: str
    stack: str
    root_ca_pem: Input
    grafana_password_env: Secret  # "GF_SECURITY_ADMIN_PASSWORD=<password>"
    scrape_jobs: Sequence[tuple[str, str]]  # (job, host:port) of every running service
    probe_urls: Sequence[str]  # the mirrors' TLS endpoints, probed through blackbox
    upstream_probe_urls: Sequence[str] = ()  # each front's view of its upstream (/_front/upstream)
    registry_users: bool = False  # the mirrors ask for a user (htpasswd)
    client_cert: tuple[Input, Input] | None = None  # (chain, key) when the mirrors require one
    # scrape target or probe URL -> the upstream its mirror serves (Prometheus label `upstream`)
    upstreams: Mapping[str, str] = field(default_factory=dict)
    cache: bool = False  # a mirror runs a cache keeper: its alerts and dashboard row
