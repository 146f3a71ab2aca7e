"""A pull-through cache: `registry:3` with TLS, its cache on a named volume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.container import named_volume, service_container
from components.pki import Pki
from configs import cache, front, registry
from configs.spec import Secret
from contract import PRIVATE_INSTANCE, Cache, Naming, cache_alias, front_alias, registry_alias
from settings import RegistrySettings, Settings


class Mirror(pulumi.ComponentResource):
    """One mirror of one upstream (`remote_url=None`: the private push registry). The Docker
    Hub mirror is the instance "" (its children
    keep the names of the first release, so existing stacks see no replacement); every
    further instance gets its own alias, children, Docker names and volume.

    With `settings.upstream_front` the mirror's upstream is its front (configs/front.py),
    which stands before `remote_url`; `upstream_realm` and `upstream_service` are that
    upstream's token realm and service (known for Docker Hub; "" for an upstream without
    token auth); `redirect_hosts` is where its front follows a redirect (None: any public
    name, for a preset; else only those hosts).

    With `settings.cache` enabled (`cacheMaxSize` or `cachePin`) the mirror gets its cache
    keeper (configs/cache.py, `registry-cache`): the registry notifies it of every pull, and
    it evicts from and seeds into the registry's volume.

    Outputs: `url`, `container_name`, `volume_name`, `front_alias` (None without a front),
    `cache_alias` (None without a keeper).
    """

    def __init__(
        self,
        name: str,
        settings: RegistrySettings,
        naming: Naming,
        network: docker.Network,
        pki: Pki,
        telemetry_env: Sequence[str] = ("OTEL_TRACES_EXPORTER=none",),
        *,
        instance: str = "",
        remote_url: str | None = registry.DOCKER_HUB,
        publish: bool = True,
        upstream: str = "docker.io",
        upstream_realm: str | None = None,
        upstream_service: str | None = None,
        redirect_hosts: tuple[str, ...] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:registry:Mirror", name, None, opts)
        alias = registry_alias(instance)
        # the private registry (no remote_url) caches nothing: no keeper
        self.cache_alias: str | None = cache_alias(instance) if settings.cache.enabled and remote_url else None
        front_container = None
        self.front_alias: str | None = None
        # the private registry (no remote_url) has no upstream to put a front before
        if settings.upstream_front and remote_url is not None:
            self.front_alias = front_alias(instance)
            realm, service = front.token_auth(remote_url, upstream_realm, upstream_service)
            front_spec = front.container_spec(settings, alias=self.front_alias, upstream_url=remote_url,
                                              upstream_realm=realm, service=service, redirect_hosts=redirect_hosts)
            front_container = service_container(self, naming, network, front_spec).container
            remote_url = front.front_url(self.front_alias)
        volume = named_volume(self, naming, alias, "data", settings.keep_data_on_destroy)
        # http.secret signs upload state; stable across runs because it lives in state
        http_secret = random.RandomPassword(f"{alias}-http-secret", length=48, special=False,
                                            opts=pulumi.ResourceOptions(parent=self))
        envs: list[pulumi.Input[str] | Secret] = [
            Secret(pulumi.Output.concat("REGISTRY_HTTP_SECRET=", http_secret.result)),
        ]
        if settings.docker_hub_username is not None:
            envs += [
                Secret(f"REGISTRY_PROXY_USERNAME={settings.docker_hub_username}"),
                Secret(pulumi.Output.concat("REGISTRY_PROXY_PASSWORD=", settings.docker_hub_password)),
            ]
        envs += list(telemetry_env)
        htpasswd = None
        keeper_password = None
        if settings.users is not None:
            users = settings.users
            if self.cache_alias is not None and settings.cache.pins:
                # the keeper pulls the pinned images through the registry as a user of its own
                keeper_password = random.RandomPassword(f"{alias}-cache-password", length=32, special=False,
                                                        opts=pulumi.ResourceOptions(parent=self)).result
                users = pulumi.Output.all(users, keeper_password).apply(
                    lambda args: json.dumps({**json.loads(args[0]), Cache.USER: args[1]}, sort_keys=True))
            # the hashes' salts come from this value in state: the file stays byte-stable
            seed = random.RandomPassword(f"{alias}-htpasswd-salt", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
            htpasswd = pulumi.Output.all(users, seed.result).apply(
                lambda args: registry.render_htpasswd(args[0], args[1]))
        spec = registry.container_spec(
            settings, alias=alias, envs=envs, remote_url=remote_url,
            server_chain_pem=pki.server_chain_pem, server_key_pem=pki.server_key_pem,
            volume_name=volume.name,
            client_ca_pem=pki.root_ca_pem if settings.require_client_cert else None,
            htpasswd=htpasswd, publish=publish,
            cache_write_timeout=front.LOCK_TIMEOUT if front_container is not None else None,
            notifications=cache.render_notifications(cache.events_url(self.cache_alias))
            if self.cache_alias is not None else None,
        )
        # the registry asks its upstream for a token realm once, at start: the front first
        after = [front_container] if front_container is not None else []
        container = service_container(self, naming, network, spec, depends_on=after).container
        if self.cache_alias is not None:
            state = named_volume(self, naming, self.cache_alias, "state", settings.keep_data_on_destroy)
            keeper_spec = cache.container_spec(
                settings, alias=self.cache_alias, registry_alias=alias, upstream=upstream,
                registry_volume=volume.name, state_volume=state.name, root_ca_pem=pki.root_ca_pem,
                client_cert=(pki.client_chain_pem, pki.client_key_pem) if settings.require_client_cert else None,
                password_env=pulumi.Output.concat(f"{cache.PASSWORD_ENV}=", keeper_password)
                if keeper_password is not None else None,
            )
            # it seeds pinned images through the registry: the registry first
            service_container(self, naming, network, keeper_spec, depends_on=[container])

        self.alias = alias
        self.upstream = upstream  # as image names write it; "private" for the push registry
        self.container = container
        self.url: str = settings.url
        self.container_name: pulumi.Output[str] = container.name
        self.volume_name: pulumi.Output[str] = volume.name
        self.register_outputs({
            "url": self.url,
            "containerName": self.container_name,
            "volumeName": self.volume_name,
            "frontAlias": self.front_alias,
            **({"cacheAlias": self.cache_alias} if self.cache_alias is not None else {}),
        })


@dataclass(frozen=True)
class StackMirrors:
    """Every registry of the stack: `hub` (Docker Hub's mirror), `upstreams` ((upstream, mirror)
    for every mirror, Docker Hub's first) and the `private` push registry (or None)."""

    hub: Mirror
    upstreams: list[tuple[str, Mirror]]
    private: Mirror | None

    @property
    def watched(self) -> list[Mirror]:
        """What monitoring scrapes and probes: every mirror and the private registry."""
        return [m for _, m in self.upstreams] + ([self.private] if self.private is not None else [])


def stack_mirrors(config: Settings, network: docker.Network, pki: Pki, telemetry_env: Sequence[str]) -> StackMirrors:
    """One Mirror per `mirrors` entry (the legacy keys describe Docker Hub's, which keeps the
    first release's names) and the private registry when it is on."""
    hub_entry, *others = config.mirrors
    hub = Mirror("mirror", config.registry, config.naming, network, pki, telemetry_env=telemetry_env,
                 remote_url=hub_entry.remote_url, publish=not config.routed,
                 upstream_realm=hub_entry.token_realm, upstream_service=hub_entry.token_service,
                 redirect_hosts=hub_entry.redirect_hosts)
    upstreams = [(hub_entry.upstream, hub)] + [
        (m.upstream, Mirror(f"mirror-{m.instance}", config.mirror_registry(m), config.naming, network, pki,
                            telemetry_env=telemetry_env, instance=m.instance, remote_url=m.remote_url,
                            upstream=m.upstream, upstream_realm=m.token_realm, upstream_service=m.token_service,
                            redirect_hosts=m.redirect_hosts))
        for m in others
    ]
    private = (
        Mirror("private-registry", config.private_registry_settings(), config.naming, network, pki,
               telemetry_env=telemetry_env, instance=PRIVATE_INSTANCE, remote_url=None, upstream=PRIVATE_INSTANCE)
        if config.private_registry is not None else None
    )
    return StackMirrors(hub, upstreams, private)
