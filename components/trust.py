"""Host trust: the root CA where Docker looks for it, and (when asked) the mirror setting.

A pulumi-command `Command` runs the rendered install script on `pulumi up` (the CA arrives on
stdin, never in the command text) and the remove script on `pulumi destroy`. Docker reads
`certs.d` on the host whose daemon pulls, so the command runs where the daemon is: locally
(`local.Command`), or over the same SSH target as an `ssh://` `docker:host`
(`remote.Command`). A `tcp://` daemon offers no way to run a command: the stack then outputs
the exact steps instead (`trustSteps`).

With `requireClientCert`, stdin also carries the client chain and its key, for Docker's
`client.cert`/`client.key`: stdin is then a secret, in the inputs and in the outputs.
"""

from __future__ import annotations

import getpass
import shlex

import pulumi
import pulumi_command as command

from configs.clients import docker_ca_path, manual_trust_steps
from settings import Naming, RegistrySettings, TrustSettings
from trust.known_hosts import lookup_name, read_host_key
from trust.render import TrustParams, render_install_script, render_remove_script


def _stdin(parts: list[str]) -> str:
    """PEM blocks one after another, each ending in a newline (the script splits them)."""
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def ssh_user(url_user: str | None) -> str:
    """The login for an ssh:// Docker host: the URL's user, else the local user, as `ssh`
    picks it when Docker runs it (pulumi-command would otherwise log in as root)."""
    if url_user:
        return url_user
    try:
        return getpass.getuser()
    except Exception as err:  # no LOGNAME/USER and no passwd entry
        raise pulumi.RunError(
            f"cannot tell which user to log in as over ssh ({err}); put it in the URL: "
            "pulumi config set docker:host ssh://<user>@<host>"
        ) from err


class HostTrust(pulumi.ComponentResource):
    """Outputs: `ca_path` (where Docker finds the CA), `where` (local/ssh/manual), `steps`."""

    def __init__(
        self,
        name: str,
        settings: TrustSettings,
        registry: RegistrySettings,
        naming: Naming,
        root_ca_pem: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
        client: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None,
        containerd_upstreams: tuple[tuple[str, str], ...] = (),
        other_hosts: tuple[str, ...] = (),
    ) -> None:
        """`client`: the client chain and its (secret) key, when the registry requires them;
        `other_hosts`: every further `<hostname>:<port>` the stack publishes with TLS (each
        further mirror's, the private registry's), trusted like `registry.host`."""
        super().__init__("registry-mirror:trust:HostTrust", name, None, opts)
        params = TrustParams(
            registry_host=registry.host,
            mirror_url=registry.url,
            docker_certs_dir=settings.docker_certs_dir,
            install_system_trust=settings.install_system_trust,
            configure_docker_mirror=settings.configure_docker_mirror,
            docker_daemon_json_path=settings.docker_daemon_json_path,
            use_sudo=settings.use_sudo,
            instance=naming.prefix,
            client_cert=client is not None,
            containerd_upstreams=containerd_upstreams if settings.install_containerd_config else (),
            other_hosts=other_hosts,
        )
        install, remove = render_install_script(params), render_remove_script(params)
        stdin: pulumi.Input[str] = root_ca_pem
        secret_outputs: list[str] = []
        if client is not None:
            chain, key = client
            stdin = pulumi.Output.secret(pulumi.Output.all(root_ca_pem, chain, key).apply(_stdin))
            # the provider echoes stdin among its outputs; declared secret there, the key is
            # encrypted in the state whatever the engine carries over from the secret input
            secret_outputs = ["stdin"]
        child = pulumi.ResourceOptions(
            parent=self,
            # pulumi-command would run `create` again on a change (an update), and the old
            # target (a renewed CA, a mirror setting turned off) would never be removed:
            # replace instead, running the old remove script before the new install
            replace_on_changes=["*"],
            delete_before_replace=True,
            additional_secret_outputs=secret_outputs or None,
        )
        host = settings.docker_host
        self.where = {"local": "local", "ssh": "ssh", "tcp": "manual"}[host.kind]
        self.ca_path: str = docker_ca_path(settings.docker_certs_dir, registry.host)
        self.steps: str = manual_trust_steps(settings.docker_certs_dir, (registry.host, *other_hosts), naming.stack,
                                             client_cert=registry.require_client_cert)
        if host.kind == "local":
            command.local.Command(
                "install-ca", create=install, delete=remove, stdin=stdin,
                interpreter=["/bin/sh", "-c"], opts=child,
            )
        elif host.kind == "ssh":
            url_user, address, port = host.ssh
            host_key = read_host_key(address, port)
            if host_key is None:
                pulumi.log.warn(
                    f"neither ~/.ssh/known_hosts nor /etc/ssh/ssh_known_hosts has a key for "
                    f"{lookup_name(address, port)}: the trust "
                    f"command will log in to {address} WITHOUT checking its host key, so whoever "
                    "can intercept that connection can pose as the host and receive what the "
                    "command sends (the root CA, and with requireClientCert the client key). "
                    f"Fix: compare `ssh-keyscan -p {port} {address} | ssh-keygen -lf -` with the "
                    "fingerprint shown on the host itself (ssh-keygen -lf "
                    "/etc/ssh/ssh_host_ed25519_key.pub), then append that ssh-keyscan output to "
                    "~/.ssh/known_hosts and run pulumi again",
                    resource=self,
                )
            # the remote login shell may not be POSIX: hand each script to sh explicitly;
            # authentication comes from the SSH agent (SSH_AUTH_SOCK), never from config
            command.remote.Command(
                "install-ca",
                connection=command.remote.ConnectionArgs(
                    host=address, user=ssh_user(url_user), port=port, host_key=host_key,
                ),
                create=f"sh -c {shlex.quote(install)}",
                delete=f"sh -c {shlex.quote(remove)}",
                stdin=stdin,
                opts=child,
            )
        else:
            pulumi.log.warn(
                f"docker:host {host.url} is reached over tcp://: the CA cannot be installed "
                "there by this program; run the commands in the stack output `trustSteps` "
                "on that host",
                resource=self,
            )
        self.register_outputs({"caPath": self.ca_path, "where": self.where, "steps": self.steps})
