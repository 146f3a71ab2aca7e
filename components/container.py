"""The wiring every service shares: pinned image, container, uploads, labels, health,
volumes and the private network.

Written once here: every container gets the same name scheme, labels, network alias,
restart policy, log rotation, memory limit and replacement behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from configs.spec import Secret, ServiceSpec
from contract import STOP_GRACE_SECONDS, Naming

# json-file rotation: a chatty container cannot fill the host's disk
LOG_OPTS = {"max-size": "10m", "max-file": "3"}


@dataclass(frozen=True)
class ServiceResources:
    image: docker.RemoteImage
    container: docker.Container


def service_container(
    parent: pulumi.Resource,
    naming: Naming,
    network: docker.Network,
    spec: ServiceSpec,
    depends_on: Sequence[pulumi.Resource] = (),
) -> ServiceResources:
    """Create the pinned image and the container of one service, as children of `parent`."""
    image = docker.RemoteImage(
        f"{spec.service}-image",
        name=spec.image,
        # Other stacks on the same host may use the same image: never delete it on destroy.
        keep_locally=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    labels = naming.labels(spec.service)
    healthcheck = None
    if spec.healthcheck is not None:
        healthcheck = docker.ContainerHealthcheckArgs(
            tests=list(spec.healthcheck),
            interval="15s",
            timeout="5s",
            retries=5,
            start_period="20s",
        )
    secret_fields = [field for field, secret in (
        ("envs", any(isinstance(e, Secret) for e in spec.envs)),
        ("uploads", any(u.secret for u in spec.uploads)),
    ) if secret]
    container = docker.Container(
        spec.service,
        name=naming.docker_name(spec.service),
        image=image.image_id,
        hostname=spec.service,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[spec.service])
        ],
        ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip)
               for p in spec.ports],
        uploads=[
            docker.ContainerUploadArgs(
                file=u.path, content=pulumi.Output.secret(u.content) if u.secret else u.content,
                permissions=u.permissions,
            )
            for u in spec.uploads
        ],
        volumes=[
            docker.ContainerVolumeArgs(
                container_path=m.container_path, volume_name=m.volume_name,
                host_path=m.host_path, read_only=m.read_only,
            )
            for m in spec.mounts
        ],
        envs=[pulumi.Output.secret(e.value) if isinstance(e, Secret) else e for e in spec.envs],
        command=list(spec.command) if spec.command is not None else None,
        entrypoints=list(spec.entrypoint) if spec.entrypoint is not None else None,
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        healthcheck=healthcheck,
        capabilities=docker.ContainerCapabilitiesArgs(drops=list(spec.drop_capabilities))
        if spec.drop_capabilities else None,
        security_opts=["no-new-privileges:true"] if spec.no_new_privileges else None,
        restart="unless-stopped",
        log_driver="json-file",
        log_opts=LOG_OPTS,
        memory=spec.memory_mb,
        # no swap: without it Docker sets swap to twice the memory and the plan drifts
        memory_swap=spec.memory_mb,
        stop_timeout=STOP_GRACE_SECONDS,
        destroy_grace_seconds=STOP_GRACE_SECONDS,
        must_run=True,
        # wait for "healthy" only where the image has the means to report it
        wait=spec.healthcheck is not None,
        wait_timeout=120,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            # fixed name and host port: the old container must go before the new one starts
            delete_before_replace=True,
            # some provider releases ignore a healthcheck edit in place
            replace_on_changes=["healthcheck"],
            # per-element secrets reach the state's outputs in clear unless the field is declared
            additional_secret_outputs=secret_fields,
        ),
    )
    return ServiceResources(image=image, container=container)


def named_volume(
    parent: pulumi.Resource, naming: Naming, service: str, purpose: str, keep: bool
) -> docker.Volume:
    """A named volume for a service's data, kept on destroy when `keep` is true."""
    return docker.Volume(
        f"{service}-{purpose}",
        name=naming.docker_name(f"{service}-{purpose}"),
        labels=[docker.VolumeLabelArgs(label=k, value=v)
                for k, v in sorted(naming.labels(service).items())],
        # fixed name: the old volume must go (or be kept) before one of that name is created
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=keep, delete_before_replace=True),
    )


def private_network(naming: Naming) -> docker.Network:
    """The stack's private network: every service joins it under its own alias."""
    return docker.Network(
        "network",
        name=naming.docker_name("net"),
        driver="bridge",
        labels=[docker.NetworkLabelArgs(label=k, value=v)
                for k, v in sorted(naming.labels("network").items())],
        opts=pulumi.ResourceOptions(delete_before_replace=True),  # fixed name
    )
