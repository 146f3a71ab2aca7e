"""Host trust: the root CA where Docker looks for it, and (when asked) the mirror setting.

A `local.Command` runs the rendered install script on `pulumi up` (the CA arrives on stdin,
never in the command text) and the remove script on `pulumi destroy`.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command

from configs.clients import docker_ca_path
from configs.trust import TrustParams, render_install_script, render_remove_script
from settings import Naming, RegistrySettings, TrustSettings


class HostTrust(pulumi.ComponentResource):
    """Outputs: `ca_path` (where Docker finds the CA), `stdout` of the install."""

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
        install = command.local.Command(
            "install-ca",
            create=render_install_script(params),
            delete=render_remove_script(params),
            stdin=root_ca_pem,
            interpreter=["/bin/sh", "-c"],
            opts=pulumi.ResourceOptions(
                parent=self,
                # pulumi-command would run `create` again on a change (an update), and the old
                # target (a renewed CA, a mirror setting turned off) would never be removed:
                # replace instead, running the old remove script before the new install
                replace_on_changes=["*"],
                delete_before_replace=True,
            ),
        )
        self.ca_path: str = docker_ca_path(settings.docker_certs_dir, registry.host)
        self.stdout: pulumi.Output[str] = install.stdout
        self.register_outputs({"caPath": self.ca_path, "stdout": self.stdout})
