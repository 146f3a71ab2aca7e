"""Stack settings: every config key of the project, parsed once and validated.

`SPECS` is the single list of public config keys with their type, default and description;
`Pulumi.yaml` declares the same defaults (a test keeps the two equal, since Pulumi's mocks do
not read `Pulumi.yaml`). `parse` is pure (plain strings in, frozen dataclasses out) and
reports every bad value at once, each naming the key, the value and what is allowed, as a
`pulumi.RunError` so that `pulumi preview` prints the message and no stack trace.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from contract import IMAGES, PROJECT, Naming

__all__ = ["Naming", "PROJECT"]


@dataclass(frozen=True)
class Spec:
    key: str
    type: str  # "string" | "integer" | "boolean" | "array" (Pulumi.yaml's types)
    default: Any
    description: str
    secret: bool = False


_HOUR_KEYS = ("rootCaValidityHours", "intermediateCaValidityHours", "certValidityHours")

SPECS: tuple[Spec, ...] = (
    # --- registry ---------------------------------------------------------------------
    Spec("hostname", "string", "localhost", "DNS name (or IPv4) clients use for the mirror; the server certificate's CN."),
    Spec("altNames", "array", [], "Extra DNS names (wildcards such as *.local allowed) or IPs added to the certificate."),
    Spec("registryPort", "integer", 6000, "Host port of the registry API (TLS); container port 5000."),
    Spec("registryBindAddress", "string", "0.0.0.0", "Host address the registry port is published on."),
    Spec("dockerHubUsername", "string", None, "Docker Hub user for authenticated pulls (with dockerHubPassword)."),
    Spec("dockerHubPassword", "string", None, "Docker Hub password or access token (secret).", secret=True),
    Spec("proxyTtl", "string", "168h", "How long cached content is kept before it is fetched again (Go duration; 0 = never expire)."),
    Spec("registryImage", "string", IMAGES["registry"], "Registry image (distribution v3)."),
    Spec("registryMemoryLimitMb", "integer", 512, "Memory limit of the registry container, in MiB."),
    Spec("tagConcurrencyLimit", "integer", 5, "The registry's storage.tag.concurrencylimit."),
    Spec("keepDataOnDestroy", "boolean", True, "Keep the cache and monitoring volumes when the stack is destroyed."),
    Spec("portOffset", "integer", 0, "Added to every published host port, so stacks can share a Docker host."),
    # --- PKI --------------------------------------------------------------------------
    Spec("pkiOrganization", "string", "Registry Mirror", "Certificate subject O; CA names are '<O> Root CA' and '<O> Intermediate CA'."),
    Spec("pkiOrganizationalUnit", "string", "Development", "Certificate subject OU."),
    Spec("pkiLocality", "string", "", "Certificate subject L (empty: omitted)."),
    Spec("pkiProvince", "string", "", "Certificate subject ST (empty: omitted)."),
    Spec("pkiCountry", "string", "US", "Certificate subject C: two letters (empty: omitted)."),
    Spec("pkiKeyAlgorithm", "string", "ECDSA", "ECDSA (P-256) or RSA (with pkiRsaBits)."),
    Spec("pkiRsaBits", "integer", 3072, "RSA key size: 2048, 3072 or 4096."),
    Spec("rootCaValidityHours", "integer", 43800, "Root CA lifetime in hours (5 years)."),
    Spec("intermediateCaValidityHours", "integer", 42720, "Intermediate CA lifetime in hours; at most the root's."),
    Spec("certValidityHours", "integer", 8760, "Server and client certificate lifetime in hours (1 year); at most the intermediate's."),
    Spec("earlyRenewalHours", "integer", 720, "Renew a certificate on the next up this many hours before it expires."),
    # --- host trust -------------------------------------------------------------------
    Spec("installTrust", "boolean", True, "Install the root CA as <dockerCertsDir>/<hostname>:<port>/ca.crt."),
    Spec("installSystemTrust", "boolean", False, "Also add the root CA to the OS trust store (Debian/Ubuntu, macOS)."),
    Spec("configureDockerMirror", "boolean", False, "Merge registry-mirrors into dockerDaemonJsonPath (restart Docker yourself)."),
    Spec("dockerCertsDir", "string", "/etc/docker/certs.d", "Docker's certs.d (Docker Desktop: ~/.docker/certs.d)."),
    Spec("dockerDaemonJsonPath", "string", "/etc/docker/daemon.json", "Docker's daemon.json (Docker Desktop: ~/.docker/daemon.json)."),
    Spec("trustUseSudo", "boolean", True, "Use sudo -n when a trust target is not writable."),
    # --- monitoring -------------------------------------------------------------------
    Spec("monitoring", "boolean", True, "Run Prometheus and Grafana (and, by their switches, Jaeger, Loki and Alloy)."),
    Spec("tracing", "boolean", True, "Run Jaeger and export the registry's traces to it."),
    Spec("logging", "boolean", True, "Run Loki and Alloy and ship container logs."),
    Spec("uiBindAddress", "string", "127.0.0.1", "Host address the monitoring UIs are published on."),
    Spec("grafanaPort", "integer", 3000, "Host port of Grafana."),
    Spec("prometheusPort", "integer", 9090, "Host port of Prometheus."),
    Spec("jaegerPort", "integer", 16686, "Host port of the Jaeger UI."),
    Spec("lokiPort", "integer", 3100, "Host port of Loki."),
    Spec("alloyPort", "integer", 12345, "Host port of the Alloy UI."),
    Spec("prometheusImage", "string", IMAGES["prometheus"], "Prometheus image."),
    Spec("blackboxImage", "string", IMAGES["blackbox"], "Blackbox exporter image."),
    Spec("jaegerImage", "string", IMAGES["jaeger"], "Jaeger v2 image."),
    Spec("lokiImage", "string", IMAGES["loki"], "Loki image."),
    Spec("alloyImage", "string", IMAGES["alloy"], "Grafana Alloy image."),
    Spec("grafanaImage", "string", IMAGES["grafana"], "Grafana image."),
    Spec("prometheusRetention", "string", "15d", "Prometheus TSDB retention (Prometheus duration)."),
    Spec("lokiRetention", "string", "168h", "Loki log retention (hours, e.g. 168h)."),
    Spec("grafanaAdminUser", "string", "admin", "Grafana admin user."),
    Spec("grafanaAdminPassword", "string", None, "Grafana admin password (secret; generated when unset).", secret=True),
    Spec("grafanaAnonymous", "boolean", True, "Let anonymous visitors view dashboards."),
)

SPEC_BY_KEY = {s.key: s for s in SPECS}
SECRET_KEYS = tuple(s.key for s in SPECS if s.secret)


class SettingsError(pulumi.RunError):
    """Invalid stack configuration; the message lists every problem."""


# --- the settings --------------------------------------------------------------------


@dataclass(frozen=True)
class PkiSettings:
    organization: str
    organizational_unit: str
    locality: str
    province: str
    country: str
    key_algorithm: str
    rsa_bits: int
    root_ca_validity_hours: int
    intermediate_ca_validity_hours: int
    cert_validity_hours: int
    early_renewal_hours: int


@dataclass(frozen=True)
class RegistrySettings:
    hostname: str
    alt_names: tuple[str, ...]
    port: int  # published host port, portOffset applied
    bind_address: str
    image: str
    memory_limit_mb: int
    tag_concurrency_limit: int
    proxy_ttl: str
    docker_hub_username: str | None
    docker_hub_password: Any = field(repr=False)  # pulumi.Output[str] (secret) or None
    keep_data_on_destroy: bool = True

    @property
    def host(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def san_dns_names(self) -> list[str]:
        """DNS SANs: the hostname, altNames, localhost and the network alias `registry`."""
        names = [self.hostname] if not is_ip(self.hostname) else []
        names += [n for n in self.alt_names if not is_ip(n)]
        names += ["localhost", "registry"]
        return list(dict.fromkeys(names))

    @property
    def san_ip_addresses(self) -> list[str]:
        ips = [self.hostname] if is_ip(self.hostname) else []
        ips += [n for n in self.alt_names if is_ip(n)]
        ips += ["127.0.0.1"]
        return list(dict.fromkeys(ips))


@dataclass(frozen=True)
class DockerHost:
    """Where the Docker daemon runs, from the provider's standard `docker:host` config.

    Docker reads `certs.d` on the host whose daemon pulls: a local daemon gets the trust
    locally, an `ssh://` daemon over SSH, and a `tcp://` daemon (no shell to run anything
    on) only gets the exact steps as a stack output.
    """

    url: str | None = None  # None: the local daemon (DOCKER_HOST or the default socket)

    @property
    def kind(self) -> str:
        if self.url is None or self.url.startswith(("unix://", "npipe://")):
            return "local"
        return "ssh" if self.url.startswith("ssh://") else "tcp"

    @property
    def ssh(self) -> tuple[str | None, str, int]:
        """(user, host, port) of an ssh:// URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url or "")
        return parts.username, parts.hostname or "", parts.port or 22


@dataclass(frozen=True)
class TrustSettings:
    install_trust: bool
    install_system_trust: bool
    configure_docker_mirror: bool
    docker_certs_dir: str
    docker_daemon_json_path: str
    use_sudo: bool
    docker_host: DockerHost = field(default_factory=DockerHost)


@dataclass(frozen=True)
class MonitoringSettings:
    enabled: bool
    tracing: bool
    logging: bool
    ui_bind_address: str
    grafana_port: int  # published host ports, portOffset applied
    prometheus_port: int
    jaeger_port: int
    loki_port: int
    alloy_port: int
    prometheus_image: str
    blackbox_image: str
    jaeger_image: str
    loki_image: str
    alloy_image: str
    grafana_image: str
    prometheus_retention: str
    loki_retention_hours: int
    grafana_admin_user: str
    grafana_admin_password: Any = field(repr=False)  # pulumi.Output[str] (secret) or None
    grafana_anonymous: bool = True


@dataclass(frozen=True)
class Settings:
    naming: Naming
    registry: RegistrySettings
    pki: PkiSettings
    trust: TrustSettings
    monitoring: MonitoringSettings
    port_offset: int

    def published_ports(self) -> dict[str, int]:
        """Every host port this stack publishes, by config key."""
        ports = {"registryPort": self.registry.port}
        m = self.monitoring
        if m.enabled:
            ports |= {"grafanaPort": m.grafana_port, "prometheusPort": m.prometheus_port}
            if m.tracing:
                ports["jaegerPort"] = m.jaeger_port
            if m.logging:
                ports |= {"lokiPort": m.loki_port, "alloyPort": m.alloy_port}
        return ports


# --- validation helpers ----------------------------------------------------------------

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
_PROM_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_IMAGE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def is_dns_name(value: str, *, wildcard: bool = False) -> bool:
    if not value or len(value) > 253:
        return False
    labels = value.rstrip(".").split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if all(label.isdigit() for label in labels):
        return False  # a dotted number is not a name (and not a valid IP either)
    return all(_DNS_LABEL.match(label) for label in labels)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class _Reader:
    """Reads raw config strings, converts them, and collects every problem."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self.values = values
        self.errors: list[str] = []

    def fail(self, key: str, value: object, allowed: str) -> None:
        shown = "<secret>" if SPEC_BY_KEY.get(key, Spec(key, "", None, "")).secret else repr(value)
        self.errors.append(f"{PROJECT}:{key} = {shown} is invalid: {allowed}")

    def raw(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    def string(self, key: str, check: Callable[[str], object] | None = None, allowed: str = "") -> str:
        raw = self.raw(key)
        value: str = SPEC_BY_KEY[key].default if raw is None else raw
        if check is not None and value is not None and not check(value):
            self.fail(key, value, allowed)
        return value

    def integer(self, key: str, low: int, high: int | None = None) -> int:
        default: int = SPEC_BY_KEY[key].default
        raw = self.raw(key)
        if raw is None:
            return default
        text = raw.strip()
        allowed = f"must be a whole number from {low}" + (f" to {high}" if high is not None else " up")
        if not re.fullmatch(r"-?[0-9]+", text):
            self.fail(key, raw, allowed)
            return default
        value = int(text)
        if value < low or (high is not None and value > high):
            self.fail(key, raw, allowed)
            return default
        return value

    def boolean(self, key: str) -> bool:
        default: bool = SPEC_BY_KEY[key].default
        raw = self.raw(key)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        self.fail(key, raw, "must be true or false")
        return default

    def array(self, key: str) -> list[str]:
        raw = self.raw(key)
        if raw is None or not raw.strip():
            return list(SPEC_BY_KEY[key].default)
        text = raw.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                self.fail(key, raw, "must be a list of strings (YAML list or JSON array)")
                return []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                self.fail(key, raw, "must be a list of strings")
                return []
            return [i.strip() for i in items]
        return [part.strip() for part in text.split(",") if part.strip()]


def _docker_host(url: str | None, r: _Reader) -> DockerHost:
    if url is None or not url.strip():
        return DockerHost()
    url = url.strip()
    host = DockerHost(url)
    if not url.startswith(("unix://", "npipe://", "ssh://", "tcp://")):
        r.errors.append(f"docker:host = {url!r} is invalid: must be unix://, npipe://, ssh:// or tcp://")
    elif host.kind == "ssh" and not host.ssh[1]:
        r.errors.append(f"docker:host = {url!r} is invalid: an ssh:// URL needs a host (ssh://user@host)")
    return host


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def parse(
    values: Mapping[str, str | None],
    *,
    project: str = PROJECT,
    stack: str,
    secrets: Mapping[str, Any] | None = None,
    docker_host: str | None = None,
) -> Settings:
    """Parse raw config values (key without project prefix -> string) into Settings.

    `secrets` maps secret keys to their (secret) Output when set; their plain value is
    never read here, so it can never appear in an error.
    """
    secrets = secrets or {}
    r = _Reader(values)
    for key in values:
        if key not in SPEC_BY_KEY:
            close = difflib.get_close_matches(key, SPEC_BY_KEY, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the README's config reference"
            r.errors.append(f"{PROJECT}:{key} is not a known setting: {hint}")
    for key in SECRET_KEYS:
        if key in values and key not in secrets:
            r.errors.append(
                f"{PROJECT}:{key} must be set as a secret: "
                f"pulumi config set --secret {key} <value>"
            )

    offset = r.integer("portOffset", 0, 60000)

    def port(key: str) -> int:
        base = r.integer(key, 1, 65535)
        if base + offset > 65535:
            r.fail(key, base, f"with portOffset {offset} it becomes {base + offset}, above 65535")
        return base + offset

    hostname = r.string(
        "hostname",
        lambda v: is_dns_name(v) or (is_ip(v) and ":" not in v),
        "must be a DNS name such as registry.lan or an IPv4 address",
    ).strip().lower()
    alt_names = []
    for name in r.array("altNames"):
        if is_dns_name(name, wildcard=True) or is_ip(name):
            alt_names.append(name.lower())
        else:
            r.fail("altNames", name, "each entry must be a DNS name (a leading *. is allowed) or an IP address")

    username = r.raw("dockerHubUsername")
    username = username.strip() if username and username.strip() else None
    password = secrets.get("dockerHubPassword")
    if (username is None) != (password is None):
        r.errors.append(
            f"{PROJECT}:dockerHubUsername and {PROJECT}:dockerHubPassword must be set together "
            "(or neither, for anonymous pulls): "
            + ("the password is missing" if password is None else "the username is missing")
        )

    registry = RegistrySettings(
        hostname=hostname,
        alt_names=tuple(dict.fromkeys(alt_names)),
        port=port("registryPort"),
        bind_address=r.string("registryBindAddress", is_ip, "must be an IP address such as 0.0.0.0 or 127.0.0.1"),
        image=r.string("registryImage", _IMAGE.match, "must be an image reference such as registry:3.1.1"),
        memory_limit_mb=r.integer("registryMemoryLimitMb", 64),
        tag_concurrency_limit=r.integer("tagConcurrencyLimit", 1, 1000),
        proxy_ttl=r.string("proxyTtl", _DURATION.match, "must be a Go duration such as 168h or 72h30m, or 0 to never expire"),
        docker_hub_username=username,
        docker_hub_password=password,
        keep_data_on_destroy=r.boolean("keepDataOnDestroy"),
    )

    algorithm = r.string("pkiKeyAlgorithm").strip().upper()
    if algorithm not in ("ECDSA", "RSA"):
        r.fail("pkiKeyAlgorithm", algorithm, "must be ECDSA (P-256) or RSA")
    rsa_bits = r.integer("pkiRsaBits", 2048, 4096)
    if rsa_bits not in (2048, 3072, 4096):
        r.fail("pkiRsaBits", rsa_bits, "must be 2048, 3072 or 4096")
    country = r.string("pkiCountry", lambda v: v == "" or bool(re.fullmatch(r"[A-Za-z]{2}", v)),
                       "must be a two-letter country code such as US or DE").upper()
    organization = r.string("pkiOrganization", lambda v: bool(v.strip()), "must not be empty")
    hours = {key: r.integer(key, 1) for key in _HOUR_KEYS}
    early = r.integer("earlyRenewalHours", 0)
    if hours["intermediateCaValidityHours"] > hours["rootCaValidityHours"]:
        r.fail("intermediateCaValidityHours", hours["intermediateCaValidityHours"],
               f"must be at most rootCaValidityHours ({hours['rootCaValidityHours']})")
    if hours["certValidityHours"] > hours["intermediateCaValidityHours"]:
        r.fail("certValidityHours", hours["certValidityHours"],
               f"must be at most intermediateCaValidityHours ({hours['intermediateCaValidityHours']})")
    if early >= min(hours.values()):
        r.fail("earlyRenewalHours", early,
               f"must be less than the shortest certificate lifetime ({min(hours.values())} hours)")
    pki = PkiSettings(
        organization=organization.strip(),
        organizational_unit=r.string("pkiOrganizationalUnit").strip(),
        locality=r.string("pkiLocality").strip(),
        province=r.string("pkiProvince").strip(),
        country=country,
        key_algorithm=algorithm,
        rsa_bits=rsa_bits,
        root_ca_validity_hours=hours["rootCaValidityHours"],
        intermediate_ca_validity_hours=hours["intermediateCaValidityHours"],
        cert_validity_hours=hours["certValidityHours"],
        early_renewal_hours=early,
    )

    absolute = "must be an absolute path (~ is expanded)"
    trust = TrustSettings(
        install_trust=r.boolean("installTrust"),
        install_system_trust=r.boolean("installSystemTrust"),
        configure_docker_mirror=r.boolean("configureDockerMirror"),
        docker_certs_dir=_expand(r.string("dockerCertsDir", lambda v: _expand(v).startswith("/"), absolute)),
        docker_daemon_json_path=_expand(r.string("dockerDaemonJsonPath", lambda v: _expand(v).startswith("/"), absolute)),
        use_sudo=r.boolean("trustUseSudo"),
        docker_host=_docker_host(docker_host, r),
    )
    if not trust.install_trust:
        for key in ("installSystemTrust", "configureDockerMirror"):
            if r.boolean(key):
                r.fail(key, "true", "needs installTrust: true (the trust step is off)")

    image_rule = "must be an image reference such as name:tag"
    # Loki's compactor refuses a retention period under 24h
    retention = r.string("lokiRetention", lambda v: bool(re.fullmatch(r"[0-9]+h", v)) and int(v[:-1]) >= 24,
                         "must be whole hours of at least 24h, such as 168h")
    monitoring = MonitoringSettings(
        enabled=r.boolean("monitoring"),
        tracing=r.boolean("tracing"),
        logging=r.boolean("logging"),
        ui_bind_address=r.string("uiBindAddress", is_ip, "must be an IP address such as 127.0.0.1"),
        grafana_port=port("grafanaPort"),
        prometheus_port=port("prometheusPort"),
        jaeger_port=port("jaegerPort"),
        loki_port=port("lokiPort"),
        alloy_port=port("alloyPort"),
        prometheus_image=r.string("prometheusImage", _IMAGE.match, image_rule),
        blackbox_image=r.string("blackboxImage", _IMAGE.match, image_rule),
        jaeger_image=r.string("jaegerImage", _IMAGE.match, image_rule),
        loki_image=r.string("lokiImage", _IMAGE.match, image_rule),
        alloy_image=r.string("alloyImage", _IMAGE.match, image_rule),
        grafana_image=r.string("grafanaImage", _IMAGE.match, image_rule),
        prometheus_retention=r.string("prometheusRetention", _PROM_DURATION.match,
                                      "must be a Prometheus duration such as 15d or 720h"),
        loki_retention_hours=int(retention[:-1]) if re.fullmatch(r"[0-9]+h", retention) else 168,
        grafana_admin_user=r.string("grafanaAdminUser", lambda v: bool(re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", v)),
                                    "must be 1-64 letters, digits or ._@-"),
        grafana_admin_password=secrets.get("grafanaAdminPassword"),
        grafana_anonymous=r.boolean("grafanaAnonymous"),
    )
    _check_settings_of_services_that_are_off(values, monitoring, r)

    settings = Settings(
        naming=Naming(project, stack),
        registry=registry,
        pki=pki,
        trust=trust,
        monitoring=monitoring,
        port_offset=offset,
    )
    _check_port_collisions(settings, r)
    if r.errors:
        raise SettingsError("invalid stack configuration:\n  " + "\n  ".join(r.errors))
    return settings


# keys that only matter while their service runs
_SERVICE_KEYS = {
    "monitoring": ("uiBindAddress", "grafanaPort", "prometheusPort", "prometheusImage", "blackboxImage",
                   "grafanaImage", "prometheusRetention", "grafanaAdminUser", "grafanaAdminPassword",
                   "grafanaAnonymous"),
    "tracing": ("jaegerPort", "jaegerImage"),
    "logging": ("lokiPort", "lokiImage", "lokiRetention", "alloyPort", "alloyImage"),
}


def _check_settings_of_services_that_are_off(
    values: Mapping[str, str | None], m: MonitoringSettings, r: _Reader
) -> None:
    """A key changed from its default for a service that is turned off is a mistake.

    Pulumi passes every declared default as config, so "changed" means "differs from the
    default", not "present".
    """
    enabled = {"monitoring": m.enabled, "tracing": m.enabled and m.tracing, "logging": m.enabled and m.logging}
    for switch, keys in _SERVICE_KEYS.items():
        if enabled[switch]:
            continue
        if switch != "monitoring" and not m.enabled:
            continue  # reported once, against monitoring
        for key in keys:
            raw = values.get(key)
            if raw is None:
                continue
            default = SPEC_BY_KEY[key].default
            if default is None or str(raw).strip().lower() != str(default).lower():
                shown = "<secret>" if SPEC_BY_KEY[key].secret else repr(raw)
                r.errors.append(f"{PROJECT}:{key} = {shown} is invalid: needs {switch}: true "
                                f"(that service is off)")


def _check_port_collisions(settings: Settings, r: _Reader) -> None:
    seen: dict[int, str] = {}
    for key, value in settings.published_ports().items():
        if value in seen:
            r.fail(key, value - settings.port_offset,
                   f"publishes host port {value}, which {seen[value]} already uses")
        else:
            seen[value] = key


def load() -> Settings:
    """Read this stack's config through Pulumi and parse it."""
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config()
    prefix = f"{config.name}:"
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, str | None] = {
        k[len(prefix):]: v for k, v in everything.items() if k.startswith(prefix)
    }
    secrets: dict[str, Any] = {}
    for key in SECRET_KEYS:
        if key in values:
            if runtime_config.is_config_secret(prefix + key):
                secrets[key] = config.require_secret(key)
            values[key] = "<set>"  # the plain value is never kept
    return parse(values, project=pulumi.get_project(), stack=pulumi.get_stack(), secrets=secrets,
                 docker_host=everything.get("docker:host") or os.environ.get("DOCKER_HOST"))
