"""Snippets that point clients at the mirror (pure: plain values in, text out). Shell lines
are built with `shlex.quote`, TOML and JSON by their serializers, so a configured path with
quotes, `$(…)` or spaces is pasted as itself and runs nothing."""

from __future__ import annotations

import json
import shlex

import tomli_w

from contract import Registry


def docker_daemon_config(mirror_url: str) -> str:
    """The daemon.json fragment: registry-mirrors applies to Docker Hub pulls only."""
    return json.dumps({"registry-mirrors": [mirror_url]}, indent=2, sort_keys=True)


def pull_example(registry_host: str, image: str = "library/alpine:latest") -> str:
    return shlex.join(["docker", "pull", f"{registry_host}/{image}"])


def curl_example(registry_url: str) -> str:
    return shlex.join(["curl", "--cacert", "ca.crt", f"{registry_url}/v2/_catalog"])


def containerd_hosts_toml(mirror_url: str, ca_path: str) -> str:
    """`/etc/containerd/certs.d/docker.io/hosts.toml` (containerd docs/hosts.md)."""
    return tomli_w.dumps({
        "server": Registry.DOCKER_HUB,
        "host": {mirror_url: {"capabilities": ["pull", "resolve"], "ca": ca_path}},
    })


def docker_ca_path(certs_dir: str, registry_host: str) -> str:
    """Docker's fixed layout for a registry's CA."""
    return f"{certs_dir.rstrip('/')}/{registry_host}/ca.crt"


def manual_trust_steps(certs_dir: str, registry_host: str, stack: str, *, client_cert: bool = False) -> str:
    """Commands that install the CA (and, with `client_cert`, the client certificate) by hand
    on the host whose Docker daemon pulls."""
    ca_path = docker_ca_path(certs_dir, registry_host)
    directory = ca_path.rsplit("/", 1)[0]
    fetch = [shlex.join(["pulumi", "stack", "output", "--stack", stack, "caCertPem"]) + " > ca.crt"]
    install = [shlex.join(["sudo", "mkdir", "-p", directory]), shlex.join(["sudo", "cp", "ca.crt", ca_path])]
    if client_cert:
        output = ["pulumi", "stack", "output", "--stack", stack]
        fetch += [
            "( " + shlex.join([*output, "clientCertPem"]) + " && "
            + shlex.join([*output, "intermediateCaPem"]) + " ) > client.cert",
            "( umask 077 && " + shlex.join([*output, "--show-secrets", "clientKeyPem"]) + " > client.key )",
        ]
        install += [
            shlex.join(["sudo", "cp", "client.cert", f"{directory}/client.cert"]),
            shlex.join(["sudo", "install", "-m", "0600", "client.key", f"{directory}/client.key"]),
        ]
    return "\n".join([
        "# where Pulumi runs:",
        *fetch,
        "# on the host whose Docker daemon pulls (Docker reads certs.d there; copy the files to it first):",
        *install,
    ]) + "\n"
