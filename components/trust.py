"""Host trust: the root CA where Docker looks for it, and (when asked) the mirror setting.

A pulumi-command `Command` runs the rendered install script on `pulumi up` (the CA arrives on
stdin, never in the command text) and the remove script on `pulumi destroy`. Docker reads
`certs.d` on the host whose daemon pulls, so the command runs where the daemon is: locally
(`local.Command`), or over the same SSH target as an `ssh://` `docker:host`
(`remote.Command`). A `tcp://` daemon offers no way to run a command: the stack then outputs
the exact steps instead (`trustSteps`).
"""

from __future__ import annotations

import shlex

import pulumi
import pulumi_command as command

from configs.clients import docker_ca_path, manual_trust_steps
from settings import Naming, RegistrySettings, TrustSettings
from trust.render import TrustParams, render_install_script, render_remove_script


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
    ) -> None:
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
        )
        install, remove = render_install_script(params), render_remove_script(params)
        child = pulumi.ResourceOptions(
            parent=self,
            # pulumi-command would run `create` again on a change (an update), and the old
            # target (a renewed CA, a mirror setting turned off) would never be removed:
            # replace instead, running the old remove script before the new install
            replace_on_changes=["*"],
            delete_before_replace=True,
        )
        host = settings.docker_host
        self.where = {"local": "local", "ssh": "ssh", "tcp": "manual"}[host.kind]
        self.ca_path: str = docker_ca_path(settings.docker_certs_dir, registry.host)
        self.steps: str = manual_trust_steps(settings.docker_certs_dir, registry.host, naming.stack)
        self.stdout: pulumi.Output[str] | None = None
        if host.kind == "local":
            cmd = command.local.Command(
                "install-ca", create=install, delete=remove, stdin=root_ca_pem,
                interpreter=["/bin/sh", "-c"], opts=child,
            )
            self.stdout = cmd.stdout
        elif host.kind == "ssh":
            user, address, port = host.ssh
            # the remote login shell may not be POSIX: hand each script to sh explicitly;
            # authentication comes from the SSH agent (SSH_AUTH_SOCK), never from config
            remote = command.remote.Command(
                "install-ca",
                connection=command.remote.ConnectionArgs(host=address, user=user, port=port),
                create=f"sh -c {shlex.quote(install)}",
                delete=f"sh -c {shlex.quote(remove)}",
                stdin=root_ca_pem,
                opts=child,
            )
            self.stdout = remote.stdout
        else:
            pulumi.log.warn(
                f"docker:host {host.url} is reached over tcp://: the CA cannot be installed "
                "there by this program; run the commands in the stack output `trustSteps` "
                "on that host",
                resource=self,
            )
        self.register_outputs({"caPath": self.ca_path, "where": self.where, "steps": self.steps})
