"""Snippets that point clients at the mirror (pure: plain values in, text out)."""

from __future__ import annotations

import json


def docker_daemon_config(mirror_url: str) -> str:
    """The daemon.json fragment: registry-mirrors applies to Docker Hub pulls only."""
    return json.dumps({"registry-mirrors": [mirror_url]}, indent=2, sort_keys=True)


def pull_example(registry_host: str, image: str = "library/alpine:latest") -> str:
    return f"docker pull {registry_host}/{image}"


def containerd_hosts_toml(mirror_url: str, ca_path: str) -> str:
    """`/etc/containerd/certs.d/docker.io/hosts.toml` (containerd docs/hosts.md)."""
    return (
        'server = "https://registry-1.docker.io"\n'
        "\n"
        f'[host."{mirror_url}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{ca_path}"\n'
    )


def docker_ca_path(certs_dir: str, registry_host: str) -> str:
    """Docker's fixed layout for a registry's CA."""
    return f"{certs_dir.rstrip('/')}/{registry_host}/ca.crt"


def manual_trust_steps(certs_dir: str, registry_host: str, stack: str) -> str:
    """Commands that install the CA by hand on the host whose Docker daemon pulls."""
    ca_path = docker_ca_path(certs_dir, registry_host)
    directory = ca_path.rsplit("/", 1)[0]
    return (
        f"# on the Docker host (Docker reads certs.d on the host whose daemon pulls):\n"
        f"sudo mkdir -p '{directory}'\n"
        f"pulumi stack output --stack {stack} caCertPem | ssh <docker-host> "
        f"\"sudo tee '{ca_path}' >/dev/null\"\n"
    )
