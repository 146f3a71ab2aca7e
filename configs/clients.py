"""Snippets that point clients at the mirror (pure: plain values in, text out). Shell lines
are built with `shlex.quote`, TOML and JSON by their serializers, so a configured path with
quotes, `$(…)` or spaces is pasted as itself and runs nothing."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

import tomli_w
import yaml

from contract import CLIENT_KEY_PLACEHOLDER, PASSWORD_PLACEHOLDER, USER_PLACEHOLDER


def docker_daemon_config(mirror_url: str) -> str:
    """The daemon.json fragment: registry-mirrors applies to Docker Hub pulls only."""
    return json.dumps({"registry-mirrors": [mirror_url]}, indent=2, sort_keys=True)


def pull_example(registry_host: str, image: str = "library/alpine:latest") -> str:
    return shlex.join(["docker", "pull", f"{registry_host}/{image}"])


def curl_example(registry_url: str) -> str:
    return shlex.join(["curl", "--cacert", "ca.crt", f"{registry_url}/v2/_catalog"])


def docker_ca_path(certs_dir: str, registry_host: str) -> str:
    """Docker's fixed layout for a registry's CA."""
    return f"{certs_dir.rstrip('/')}/{registry_host}/ca.crt"


def manual_trust_steps(certs_dir: str, registry_hosts: Sequence[str], stack: str, *,
                       client_cert: bool = False) -> str:
    """Commands that install the CA (and, with `client_cert`, the client certificate) by hand
    on the host whose Docker daemon pulls, for every `<hostname>:<port>` Docker names."""
    fetch = [shlex.join(["pulumi", "stack", "output", "--stack", stack, "caCertPem"]) + " > ca.crt"]
    if client_cert:
        output = ["pulumi", "stack", "output", "--stack", stack]
        fetch += [
            shlex.join([*output, "clientCertChainPem"]) + " > client.cert",
            "( umask 077 && " + shlex.join([*output, "--show-secrets", "clientKeyPem"]) + " > client.key )",
        ]
    install: list[str] = []
    for host in registry_hosts:
        ca_path = docker_ca_path(certs_dir, host)
        directory = ca_path.rsplit("/", 1)[0]
        install += [shlex.join(["sudo", "mkdir", "-p", directory]), shlex.join(["sudo", "cp", "ca.crt", ca_path])]
        if client_cert:
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


# --- client configs that work as printed (the `clientConfigs` output, mirrorctl client-config)

CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K3S_CA = "/etc/rancher/k3s/registry-mirror/ca.crt"
K3S_CLIENT_CERT = "/etc/rancher/k3s/registry-mirror/client.crt"
K3S_CLIENT_KEY = "/etc/rancher/k3s/registry-mirror/client.key"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
KIND_CERTS_DIR = "/etc/registry-mirror/kind/certs.d"  # on the host; mounted into every node
KIND_CONFIG = "/etc/registry-mirror/kind/cluster.yaml"
# the client key is a secret output: its files are written from clientKeyPem, never from here
CLIENT_KEY_CONTENT = CLIENT_KEY_PLACEHOLDER
# Not file paths: fragments to merge into containerd's config.toml (a table set in an
# imported file would replace the whole plugin's table in containerd 1.x).
CONTAINERD_1_CONFIG = "config.toml (containerd 1.x)"
CONTAINERD_2_CONFIG = "config.toml (containerd 2.x)"


def containerd_upstream_hosts_toml(upstream: str, server: str, mirror_url: str, directory: str,
                                   client_cert: bool) -> str:
    """One upstream's `hosts.toml`: its CA (and client pair) beside it, so the file works on any
    host it is copied to with its directory (containerd docs/hosts.md)."""
    host: dict[str, object] = {"capabilities": ["pull", "resolve"], "ca": f"{directory}/ca.crt"}
    if client_cert:
        host["client"] = [[f"{directory}/client.crt", f"{directory}/client.key"]]
    return tomli_w.dumps({"server": server, "host": {mirror_url: host}})


def containerd_config_path(major: int, certs_dir: str = CONTAINERD_CERTS_DIR) -> str:
    """The CRI's `config_path` (it ignores hosts.toml until set): 1.x and 2.x name the plugin
    differently; each fragment is also a complete config.toml for a host on defaults."""
    if major == 1:
        return tomli_w.dumps({"version": 2, "plugins": {"io.containerd.grpc.v1.cri": {
            "registry": {"config_path": certs_dir}}}})
    return tomli_w.dumps({"version": 3, "plugins": {"io.containerd.cri.v1.images": {
        "registry": {"config_path": certs_dir}}}})


def _containerd_tree(certs_dir: str, mirror_url: str, upstreams: list[tuple[str, str]], ca_pem: str,
                     client_cert_pem: str | None) -> dict[str, str]:
    files: dict[str, str] = {}
    for upstream, server in upstreams:
        directory = f"{certs_dir}/{upstream}"
        files[f"{directory}/hosts.toml"] = containerd_upstream_hosts_toml(
            upstream, server, mirror_url, directory, client_cert_pem is not None)
        files[f"{directory}/ca.crt"] = ca_pem
        if client_cert_pem is not None:
            files[f"{directory}/client.crt"] = client_cert_pem
            files[f"{directory}/client.key"] = CLIENT_KEY_CONTENT
    return files


def client_configs(
    *,
    mirror_host: str,
    upstreams: list[tuple[str, str]],
    ca_pem: str,
    client_cert_pem: str | None = None,
    registry_users: bool = False,
    hostname: str = "localhost",
    other_hosts: tuple[str, ...] = (),
) -> dict[str, dict[str, str]]:
    """Every client kind's files, path -> content.

    `mirror_host` is the one URL's host:port (the router when there is more than one
    mirror); `other_hosts` the further host:ports Docker pulls or pushes by; `upstreams`
    are (upstream as image names write it, its server URL), Docker Hub first. A client key
    appears as `CLIENT_KEY_CONTENT`: write it from the secret output.
    """
    mirror_url = f"https://{mirror_host}"
    client = client_cert_pem is not None
    containerd = _containerd_tree(CONTAINERD_CERTS_DIR, mirror_url, upstreams, ca_pem, client_cert_pem)
    containerd[CONTAINERD_1_CONFIG] = containerd_config_path(1)
    containerd[CONTAINERD_2_CONFIG] = containerd_config_path(2)

    docker = {
        # registry-mirrors applies to Docker Hub pulls only; other upstreams by host:port
        DOCKER_DAEMON_JSON: docker_daemon_config(mirror_url) + "\n",
    }
    # Docker reads a CA (and client pair) per host:port: the one URL's, and `other_hosts`
    # (each further mirror's own port, the private registry's), which Docker names directly
    for host in (mirror_host, *other_hosts):
        docker[docker_ca_path("/etc/docker/certs.d", host)] = ca_pem
        if client:
            docker[f"/etc/docker/certs.d/{host}/client.cert"] = client_cert_pem or ""
            docker[f"/etc/docker/certs.d/{host}/client.key"] = CLIENT_KEY_CONTENT

    k3s_tls: dict[str, str] = {"ca_file": K3S_CA}
    k3s = {K3S_CA: ca_pem}
    if client:
        k3s_tls |= {"cert_file": K3S_CLIENT_CERT, "key_file": K3S_CLIENT_KEY}
        k3s |= {K3S_CLIENT_CERT: client_cert_pem or "", K3S_CLIENT_KEY: CLIENT_KEY_CONTENT}
    host_config: dict[str, object] = {"tls": k3s_tls}
    if registry_users:
        # k3s passes these to containerd for this host; mirrorctl fills them in (--user)
        host_config["auth"] = {"username": USER_PLACEHOLDER, "password": PASSWORD_PLACEHOLDER}
    k3s[K3S_REGISTRIES] = yaml.safe_dump({
        "mirrors": {upstream: {"endpoint": [mirror_url]} for upstream, _ in upstreams},
        "configs": {mirror_host: host_config},
    }, sort_keys=False)

    kind = {} if hostname in ("localhost", "127.0.0.1") else _containerd_tree(
        KIND_CERTS_DIR, mirror_url, upstreams, ca_pem, client_cert_pem)
    # inside a node the tree is at containerd's certs.d: its hosts.toml name that path
    kind = {path: text.replace(KIND_CERTS_DIR, CONTAINERD_CERTS_DIR) if path.endswith(".toml") else text
            for path, text in kind.items()}
    if kind:
        kind[KIND_CONFIG] = yaml.safe_dump({
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "containerdConfigPatches": [
                '[plugins."io.containerd.grpc.v1.cri".registry]\n'
                f'  config_path = "{CONTAINERD_CERTS_DIR}"\n'],
            "nodes": [{"role": "control-plane", "extraMounts": [
                {"hostPath": KIND_CERTS_DIR, "containerPath": CONTAINERD_CERTS_DIR, "readOnly": True}]}],
        }, sort_keys=False)
    return {"docker": docker, "containerd": containerd, "kind": kind, "k3s": k3s}
