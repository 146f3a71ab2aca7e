"""Stack settings: every config key of the project, declared once, parsed once, validated.

`StackConfig` is the one declaration of the public config keys (name, type, default,
description, rule). `Pulumi.yaml`'s `config:` block is generated from it
(`python -m settings --pulumi-yaml` rewrites the block; a test fails on any difference).
`parse` is pure (plain strings in, frozen models out) and reports every bad value at once,
one line each naming the key, the value (`<secret>` for secrets) and what is allowed, as a
`pulumi.RunError` so that `pulumi preview` prints the lines and no stack trace. `load` reads
the stack's config through Pulumi's public API and calls `parse`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import pulumi
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from contract import (
    IMAGES,
    PRIVATE_INSTANCE,
    PROJECT,
    ROUTER_ALIAS,
    Cache,
    Naming,
    Redirects,
    front_alias,
    redirect_refusal,
    registry_alias,
)

CACHE_USER = Cache.USER

__all__ = [
    "PROJECT", "DockerHost", "MonitoringSettings", "Naming", "PkiSettings", "PrivateRegistrySettings",
    "RegistrySettings", "UpstreamSettings",
    "Settings", "SettingsError", "StackConfig", "TrustSettings", "load", "parse",
]


class SettingsError(pulumi.RunError):
    """Invalid stack configuration; the message lists every problem, one line each."""


# --- rules: raw config string -> typed value, or a refusal saying what is allowed ---------

# Pulumi passes every config value as a string. Each rule checks length before any pattern,
# so no regex or int() ever sees an unbounded input.

_HOURS_MAX = 876_000  # 100 years: far beyond any sane lifetime, far below Go's duration limit


def _refuse(allowed: str, shown: str | None = None) -> NoReturn:
    # the template is a bare placeholder: `allowed` may hold braces of its own
    raise PydanticCustomError("setting", "{allowed}", {"allowed": allowed, "shown": shown})


def _has_control(text: str) -> bool:
    """Control, format, surrogate or unassigned characters: newline, NUL, lone surrogates..."""
    return any(unicodedata.category(c).startswith("C") for c in text)


def _text(value: object, max_len: int, allowed: str) -> str:
    if not isinstance(value, str):
        _refuse(allowed)
    if len(value) > max_len:
        _refuse(allowed if f"at most {max_len} characters" in allowed else f"{allowed} (at most {max_len} characters)")
    return value


def _number(value: object, low: int, high: int, allowed: str) -> int:
    text = _text(value, 32, allowed).strip()
    # ASCII digits only, and few of them: int() never sees thousands of digits
    if not re.fullmatch(r"-?[0-9]{1,12}", text) or not low <= int(text) <= high:
        _refuse(allowed)
    return int(text)


def whole(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda v: _number(v, low, high, f"must be a whole number from {low} to {high}"))


def one_of(*choices: int) -> BeforeValidator:
    allowed = "must be " + ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}"

    def convert(value: object) -> int:
        number = _number(value, min(choices), max(choices), allowed)
        if number not in choices:
            _refuse(allowed)
        return number

    return BeforeValidator(convert)


def _boolean(value: object) -> bool:
    text = _text(value, 8, "must be true or false").strip().lower()
    if text not in ("true", "false"):
        _refuse("must be true or false")
    return text == "true"


Boolean = Annotated[bool, BeforeValidator(_boolean)]


def pattern(regex: str, allowed: str, max_len: int) -> BeforeValidator:
    compiled = re.compile(regex)

    def convert(value: object) -> str:
        text = _text(value, max_len, allowed)
        if not compiled.fullmatch(text):  # fullmatch: `$` would let a trailing newline through
            _refuse(allowed)
        return text

    return BeforeValidator(convert)


def free_text(max_len: int, *, required: bool = False) -> BeforeValidator:
    allowed = f"must be {'1' if required else '0'}-{max_len} characters, no control characters"

    def convert(value: object) -> str:
        text = _text(value, max_len, allowed)
        if _has_control(text) or (required and not text.strip()):
            _refuse(allowed)
        return text.strip()

    return BeforeValidator(convert)


_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_dns_name(value: str, *, wildcard: bool = False) -> bool:
    """A DNS name without a trailing dot (an absolute name would not match certs.d or the CN)."""
    if not value or len(value) > 253:
        return False
    labels = value.split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if all(label.isdigit() for label in labels):
        return False  # a dotted number is not a name (and not a valid IP either)
    return all(_DNS_LABEL.fullmatch(label) for label in labels)


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address as written; no zone index (fe80::1%eth0), which no SAN holds."""
    if not value.isascii() or "%" in value or len(value) > 45:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _hostname(value: object) -> str:
    # at most 64: it is the server certificate's CN (RFC 5280 ub-common-name)
    allowed = "must be a DNS name such as registry.lan (no trailing dot, at most 64 characters) or an IPv4 address"
    text = _text(value, 64, allowed)
    if not (is_dns_name(text) or (is_ip(text) and ":" not in text)):
        _refuse(allowed)
    return text.lower()


def _ip_address(example: str) -> BeforeValidator:
    allowed = f"must be an IP address such as {example}"

    def convert(value: object) -> str:
        text = _text(value, 45, allowed)
        if not is_ip(text):
            _refuse(allowed)
        return text

    return BeforeValidator(convert)


_MAX_ALT_NAMES = 100


def _alt_names(value: object) -> tuple[str, ...]:
    """A JSON array: how Pulumi passes a YAML list, or names set one by one with `pulumi
    config set --path 'altNames[0]' NAME`. Pulumi.yaml declares the key `array<string>`, so
    the CLI itself refuses plain text (`pulumi config set altNames a,b`) before the program
    runs (tests/pulumi, on the real CLI): a comma list never reaches here."""
    listed = ("must be a list of strings: a YAML list in Pulumi.<stack>.yaml, or "
              "pulumi config set --path 'altNames[0]' NAME")
    text = _text(value, 30_000, listed).strip()
    if not text:
        return ()
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        _refuse(listed)
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        _refuse(listed)
    names = [i.strip() for i in items]
    if len(names) > _MAX_ALT_NAMES:
        _refuse(f"must hold at most {_MAX_ALT_NAMES} names")
    bad = [n for n in names if not (is_dns_name(n, wildcard=True) or is_ip(n))]
    if bad:
        _refuse("each entry must be a DNS name (a leading *. is allowed, no trailing dot) or an IP address",
                ", ".join(_shown(b) for b in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    return tuple(dict.fromkeys(n.lower() for n in names))


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_PROXY_TTL_MAX_H = 87_600  # 10 years; 0 already means "never expire"


def _proxy_ttl(value: object) -> str:
    allowed = f"must be a Go duration such as 168h or 72h30m, up to {_PROXY_TTL_MAX_H}h, or 0 to never expire"
    text = _text(value, 32, allowed)
    if text == "0":
        return text
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text)
    if not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", text) or \
            sum(float(n) * _GO_UNITS[u] for n, u in parts) > _PROXY_TTL_MAX_H * 3600:
        _refuse(allowed)
    return text


# prometheus/common model/time.go ParseDuration: units in this order, each at most once
_PROM_DURATION = re.compile(r"(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?")
_PROM_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 1e-3)


def _prometheus_retention(value: object) -> str:
    allowed = "must be a Prometheus duration such as 15d or 720h (units y w d h m s ms in that order), up to 100y"
    text = _text(value, 32, allowed)
    match = _PROM_DURATION.fullmatch(text)
    if not match:
        _refuse(allowed)
    seconds = sum(int(n) * unit for n, unit in zip(match.groups()[1::2], _PROM_UNITS, strict=True) if n)
    if not 0 < seconds <= 100 * _PROM_UNITS[0]:
        _refuse(allowed)
    return text


def _loki_retention(value: object) -> str:
    # Loki's compactor refuses a retention period under 24h
    allowed = f"must be whole hours of at least 24h, such as 168h, up to {_HOURS_MAX}h"
    text = _text(value, 16, allowed)
    if not re.fullmatch(r"[0-9]{1,7}h", text) or not 24 <= int(text[:-1]) <= _HOURS_MAX:
        _refuse(allowed)
    return text


_IMAGE_RULE = pattern(
    r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?",
    "must be an image reference such as registry:3.1.1 or name:tag@sha256:<digest>", 255)


def _path(*, file: bool) -> BeforeValidator:
    allowed = "must be an absolute path (~ is expanded), no control characters" + (
        ", naming a file (not ending in /)" if file else "")

    def convert(value: object) -> str:
        text = _text(value, 1024, allowed)
        if _has_control(text):
            _refuse(allowed)
        expanded = os.path.expanduser(text)
        if not expanded.startswith("/") or (file and expanded.endswith("/")):
            _refuse(allowed)
        return expanded

    return BeforeValidator(convert)


def _key_algorithm(value: object) -> str:
    text = _text(value, 16, "must be ECDSA (P-256) or RSA").strip()
    if not text.isascii() or text.upper() not in ("ECDSA", "RSA"):
        _refuse("must be ECDSA (P-256) or RSA")
    return text.upper()


def _country(value: object) -> str:
    text = _text(value, 2, "must be a two-letter country code such as US or DE (or empty)")
    if not re.fullmatch(r"([A-Za-z]{2})?", text):
        _refuse("must be a two-letter country code such as US or DE (or empty)")
    return text.upper()


def _optional_name(value: object) -> str | None:
    allowed = "must be 1-255 characters without spaces or control characters (or empty)"
    text = _text(value, 255, allowed).strip()
    if not text:
        return None
    if _has_control(text) or any(c.isspace() for c in text):
        _refuse(allowed)
    return text


def _secret_text(value: object) -> str:
    allowed = "must be 1-1024 characters, no control characters"
    text = _text(value, 1024, allowed)
    if not text or _has_control(text):
        _refuse(allowed)
    return text


_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _json(value: object, allowed: str) -> object:
    """An object or list as Pulumi passes it (JSON text), or already decoded."""
    if not isinstance(value, str):
        return value
    if len(value) > 100_000:
        _refuse(allowed)
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        _refuse(allowed)


def _registry_users(value: object) -> str:
    """A JSON object user -> password (`pulumi config set --path --secret registryUsers.<user> <pw>`),
    kept as its JSON text: the program gets the secret Output of that text."""
    allowed = ("must be an object of 1-100 users (letters, digits, '.', '_', '-'; up to 64 "
               "characters) to passwords of 12 characters to 72 bytes in UTF-8 (bcrypt's limit) "
               "without control characters")
    value = _json(value, allowed)
    if not isinstance(value, dict) or not 1 <= len(value) <= 100:
        _refuse(allowed)
    for user, password in value.items():
        if not _USER.fullmatch(user) or not isinstance(password, str):
            _refuse(allowed)
        # bcrypt hashes at most 72 bytes (the bcrypt package raises past them, at `pulumi up`)
        if len(password) < 12 or _has_control(password) or len(password.encode()) > 72:
            _refuse(allowed)
    return json.dumps(value, sort_keys=True)


def _grafana_password(value: object) -> str:
    allowed = "must be 12-1024 characters without control characters (unset: a generated one)"
    text = _text(value, 1024, allowed)
    if len(text) < 12 or _has_control(text):
        _refuse(allowed)
    return text


_MAX_MIRRORS = 20


def _mirror_list(value: object) -> str:
    """An object list (`pulumi config set --path 'mirrors[1].upstream' ghcr.io`), kept as JSON
    text; each entry's fields are checked by `parse`, one line per problem."""
    allowed = f"must be a list of 1-{_MAX_MIRRORS} objects such as [{{upstream: ghcr.io, port: 6001}}]"
    value = _json(value, allowed)
    if not isinstance(value, list) or not 1 <= len(value) <= _MAX_MIRRORS or \
            not all(isinstance(entry, dict) for entry in value):
        _refuse(allowed)
    return json.dumps(value)


_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_CACHE_SIZE_MIN, _CACHE_SIZE_MAX = 10**6, 10**15  # 1 MB to 1 PB


def cache_size_bytes(value: object) -> int:
    """`cacheMaxSize`: a number with a unit (50GB, 1.5TB, 200GiB), in bytes."""
    allowed = "must be a size with a unit such as 50GB, 500MB or 1.5TiB (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), " \
              "from 1MB to 1000TB"
    text = _text(value, 32, allowed).strip()
    match = re.fullmatch(r"([0-9]{1,15})(\.[0-9]{1,6})?\s?([A-Za-z]{1,3})", text)
    if not match or match.group(3).upper() not in _SIZE_UNITS:
        _refuse(allowed)
    number = float(match.group(1) + (match.group(2) or ""))
    size = int(number * _SIZE_UNITS[match.group(3).upper()])
    if not _CACHE_SIZE_MIN <= size <= _CACHE_SIZE_MAX:
        _refuse(allowed)
    return size


def _cache_size(value: object) -> str:
    cache_size_bytes(value)
    return str(value).strip()


_CACHE_AGE_MAX_S = 30 * 86400


def cache_min_age_seconds(value: object) -> int:
    """`cacheMinAge`: a duration of whole s/m/h/d units such as 15m or 1h30m, at most 30d."""
    allowed = "must be a duration such as 15m, 2h or 1h30m (units d h m s, in that order), up to 30d, or 0"
    text = _text(value, 32, allowed).strip()
    if text == "0":
        return 0
    match = re.fullmatch(r"(?:([0-9]{1,5})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,7})m)?(?:([0-9]{1,8})s)?", text)
    if not text or not match:
        _refuse(allowed)
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total > _CACHE_AGE_MAX_S:
        _refuse(allowed)
    return total


def _cache_min_age(value: object) -> str:
    cache_min_age_seconds(value)
    return str(value).strip()


_PIN_MAX = 200
_PIN = re.compile(
    r"(?:(?P<host>[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?")


def normalize_pin(text: str, upstream: str) -> str:
    """An image reference of one mirror's upstream as the keeper stores it: `repository:tag`
    or `repository@sha256:<hex>`; Docker Hub's one-part names get `library/`, no tag means
    `latest`. Raises ValueError with what is allowed."""
    match = _PIN.fullmatch(text)
    if match is None or len(text) > 255:
        raise ValueError("must be an image reference such as library/alpine:3.20 or org/app@sha256:<digest>")
    host, path = match.group("host"), match.group("path")
    # like Docker: a first part with a dot or a port, or `localhost`, names the registry
    if host is not None and "." not in host and ":" not in host and host != "localhost":
        host, path = None, f"{host}/{path}"
    if host is not None and host != upstream:
        raise ValueError(f"names {host}, but this mirror serves {upstream} (write the name without the host)")
    if upstream == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if match.group("digest"):
        return f"{path}@{match.group('digest')}"
    return f"{path}:{match.group('tag') or 'latest'}"


def _pin_list(value: object) -> tuple[str, ...]:
    """`cachePin`: a list of image references (syntax only: each mirror normalizes its own)."""
    allowed = f"must be a list of at most {_PIN_MAX} image references such as library/alpine:3.20"
    if isinstance(value, (list, tuple)):
        items: object = list(value)
    else:
        text = _text(value, 60_000, allowed).strip()
        if not text:
            return ()
        items = _json(text, allowed) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
    if not isinstance(items, list) or len(items) > _PIN_MAX or not all(isinstance(i, str) for i in items):
        _refuse(allowed)
    bad = [i for i in items if _PIN.fullmatch(i.strip()) is None or len(i) > 255]
    if bad:
        _refuse("each entry must be an image reference such as library/alpine:3.20 or org/app@sha256:<digest>",
                ", ".join(_shown(b) for b in bad[:3]))
    return tuple(dict.fromkeys(i.strip() for i in items))


class Secret:
    """Marks a key whose value is a secret: never shown, and refused unless set with --secret."""


# --- the config keys -----------------------------------------------------------------------

Port = Annotated[int, whole(1, 65535)]
Hours = Annotated[int, whole(1, _HOURS_MAX)]
Image = Annotated[str, _IMAGE_RULE]


class StackConfig(BaseModel):
    """Every public config key of the project, as `pulumi config set` names it.

    The field name is the config key; the default is the one default of the project
    (`Pulumi.yaml` is generated from it); keys without a default are optional and not
    declared in `Pulumi.yaml`, since Pulumi would require a declared key without a default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- registry ------------------------------------------------------------------------
    hostname: Annotated[str, BeforeValidator(_hostname)] = Field(
        "localhost", description="DNS name (or IPv4) clients use for the mirror; the server certificate's CN.")
    altNames: Annotated[tuple[str, ...], BeforeValidator(_alt_names)] = Field(
        (), description="Extra DNS names (wildcards such as *.local allowed) or IPs added to the certificate.")
    registryPort: Port = Field(6000, description="Host port of the registry API (TLS); container port 5000.")
    registryBindAddress: Annotated[str, _ip_address("0.0.0.0 or 127.0.0.1")] = Field(
        "0.0.0.0", description="Host address the registry port is published on.")
    dockerHubUsername: Annotated[str | None, BeforeValidator(_optional_name)] = Field(
        None, description="Docker Hub user for authenticated pulls (with dockerHubPassword).")
    dockerHubPassword: Annotated[str | None, BeforeValidator(_secret_text), Secret()] = Field(
        None, description="Docker Hub password or access token (secret).")
    registryUsers: Annotated[str | None, BeforeValidator(_registry_users), Secret()] = Field(
        None, description="Users allowed to pull, user -> password (secret object; htpasswd, bcrypt).")
    requireClientCert: Boolean = Field(
        False, description="Require a client certificate signed by the stack's CA (mutual TLS).")
    proxyTtl: Annotated[str, BeforeValidator(_proxy_ttl)] = Field(
        "168h",
        description="How long cached content is kept before it is fetched again (Go duration; 0 = never expire).")
    registryImage: Image = Field(IMAGES["registry"], description="Registry image (distribution v3).")
    registryMemoryLimitMb: Annotated[int, whole(64, 1_048_576)] = Field(
        512, description="Memory limit of the registry container, in MiB.")
    tagConcurrencyLimit: Annotated[int, whole(1, 1000)] = Field(
        5, description="The registry's storage.tag.concurrencylimit.")
    upstreamFront: Boolean = Field(
        True, description="Run the upstream front (nginx) between the mirror and Docker Hub: offline start, "
        "bounded waits on a failing upstream, one upstream fetch per blob for concurrent pulls.")
    frontImage: Image = Field(IMAGES["front"], description="Image of the upstream front (nginx, Alpine).")
    mirrors: Annotated[str | None, BeforeValidator(_mirror_list)] = Field(
        None, description="Upstreams to mirror, each {upstream, remoteUrl, port, username, password, ttl, "
                          "tokenRealm, tokenService, redirectHosts, cacheMaxSize, cacheHighWatermark, "
                          "cacheLowWatermark, cacheMinAge, cachePin}; "
                          "Docker Hub (docker.io) is always one (the keys above describe it).")
    cacheMaxSize: Annotated[str | None, BeforeValidator(_cache_size)] = Field(
        None, description="Bound Docker Hub's mirror cache to this size (50GB, 500MB, 1.5TiB): least recently pulled "
                          "images are evicted; unset: the cache grows until the disk is full.")
    cacheHighWatermark: Annotated[int, whole(2, 100)] = Field(
        90, description="Percent of cacheMaxSize where eviction starts.")
    cacheLowWatermark: Annotated[int, whole(1, 99)] = Field(
        80, description="Percent of cacheMaxSize eviction brings the cache down to; below cacheHighWatermark.")
    cacheMinAge: Annotated[str, BeforeValidator(_cache_min_age)] = Field(
        "15m", description="An image pulled within this time is never evicted (15m, 2h; d h m s).")
    cachePin: Annotated[tuple[str, ...], BeforeValidator(_pin_list)] = Field(
        (), description="Images of Docker Hub never evicted, fetched into the cache at start and refreshed "
                        "while Docker Hub answers (library/alpine:3.20, org/app@sha256:<digest>).")
    cacheImage: Image = Field(IMAGES["cache"], description="Image of the cache keeper (Python, runs cachekeeper/).")
    privateRegistry: Boolean = Field(
        False, description="Run a private registry for pushes (no proxy) on privateRegistryPort.")
    privateRegistryPort: Port = Field(6100, description="Host port of the private registry (TLS).")
    keepDataOnDestroy: Boolean = Field(
        True, description="Keep the cache and monitoring volumes when the stack is destroyed.")
    portOffset: Annotated[int, whole(0, 60000)] = Field(
        0, description="Added to every published host port, so stacks can share a Docker host.")
    # --- PKI -----------------------------------------------------------------------------
    # X.509 upper bounds (RFC 5280): O and OU 64, L and ST 128; O leaves room for the CA
    # common name "<O> Intermediate CA" within the 64 of a CN.
    pkiOrganization: Annotated[str, free_text(48, required=True)] = Field(
        "Registry Mirror", description="Certificate subject O; CA names are '<O> Root CA' and '<O> Intermediate CA'.")
    pkiOrganizationalUnit: Annotated[str, free_text(64)] = Field(
        "Development", description="Certificate subject OU.")
    pkiLocality: Annotated[str, free_text(128)] = Field("", description="Certificate subject L (empty: omitted).")
    pkiProvince: Annotated[str, free_text(128)] = Field("", description="Certificate subject ST (empty: omitted).")
    pkiCountry: Annotated[str, BeforeValidator(_country)] = Field(
        "US", description="Certificate subject C: two letters (empty: omitted).")
    pkiKeyAlgorithm: Annotated[str, BeforeValidator(_key_algorithm)] = Field(
        "ECDSA", description="ECDSA (P-256) or RSA (with pkiRsaBits).")
    pkiRsaBits: Annotated[int, one_of(2048, 3072, 4096)] = Field(3072, description="RSA key size: 2048, 3072 or 4096.")
    rootCaValidityHours: Hours = Field(43800, description="Root CA lifetime in hours (5 years).")
    intermediateCaValidityHours: Hours = Field(
        42720, description="Intermediate CA lifetime in hours; at most the root's.")
    certValidityHours: Hours = Field(
        8760, description="Server and client certificate lifetime in hours (1 year); at most the intermediate's.")
    earlyRenewalHours: Annotated[int, whole(0, _HOURS_MAX)] = Field(
        720, description="Renew a certificate on the next up this many hours before it expires.")
    # --- host trust ----------------------------------------------------------------------
    installTrust: Boolean = Field(
        True, description="Install the root CA as <dockerCertsDir>/<hostname>:<port>/ca.crt.")
    installSystemTrust: Boolean = Field(
        False, description="Also add the root CA to the OS trust store (Debian/Ubuntu, macOS).")
    configureDockerMirror: Boolean = Field(
        False, description="Merge registry-mirrors into dockerDaemonJsonPath (restart Docker yourself).")
    installContainerdConfig: Boolean = Field(
        False, description="Also install containerd's certs.d/<upstream>/hosts.toml with the CA beside it, per mirror.")
    dockerCertsDir: Annotated[str, _path(file=False)] = Field(
        "/etc/docker/certs.d", description="Docker's certs.d (Docker Desktop: ~/.docker/certs.d).")
    dockerDaemonJsonPath: Annotated[str, _path(file=True)] = Field(
        "/etc/docker/daemon.json", description="Docker's daemon.json (Docker Desktop: ~/.docker/daemon.json).")
    trustUseSudo: Boolean = Field(True, description="Use sudo -n when a trust target is not writable.")
    # --- monitoring ----------------------------------------------------------------------
    monitoring: Boolean = Field(
        True, description="Run Prometheus and Grafana (and, by their switches, Jaeger, Loki and Alloy).")
    tracing: Boolean = Field(True, description="Run Jaeger and export the registry's traces to it.")
    logging: Boolean = Field(True, description="Run Loki and Alloy and ship container logs.")
    uiBindAddress: Annotated[str, _ip_address("127.0.0.1")] = Field(
        "127.0.0.1", description="Host address the monitoring UIs are published on (other than loopback: "
                                 "needs exposeUis).")
    exposeUis: Boolean = Field(
        False, description="Allow a uiBindAddress other than loopback: publishes Prometheus, Jaeger, Loki and "
                           "Alloy (no login) and Grafana's anonymous viewer to the network.")
    grafanaPort: Port = Field(3000, description="Host port of Grafana.")
    prometheusPort: Port = Field(9090, description="Host port of Prometheus.")
    jaegerPort: Port = Field(16686, description="Host port of the Jaeger UI.")
    lokiPort: Port = Field(3100, description="Host port of Loki.")
    alloyPort: Port = Field(12345, description="Host port of the Alloy UI.")
    prometheusImage: Image = Field(IMAGES["prometheus"], description="Prometheus image.")
    blackboxImage: Image = Field(IMAGES["blackbox"], description="Blackbox exporter image.")
    jaegerImage: Image = Field(IMAGES["jaeger"], description="Jaeger v2 image.")
    lokiImage: Image = Field(IMAGES["loki"], description="Loki image.")
    alloyImage: Image = Field(IMAGES["alloy"], description="Grafana Alloy image.")
    grafanaImage: Image = Field(IMAGES["grafana"], description="Grafana image.")
    prometheusRetention: Annotated[str, BeforeValidator(_prometheus_retention)] = Field(
        "15d", description="Prometheus TSDB retention (Prometheus duration).")
    lokiRetention: Annotated[str, BeforeValidator(_loki_retention)] = Field(
        "168h", description="Loki log retention (hours, e.g. 168h).")
    grafanaAdminUser: Annotated[str, pattern(r"[A-Za-z0-9._@-]{1,64}", "must be 1-64 letters, digits or ._@-", 64)] = (
        Field("admin", description="Grafana admin user."))
    grafanaAdminPassword: Annotated[str | None, BeforeValidator(_grafana_password), Secret()] = Field(
        None, description="Grafana admin password (secret; generated when unset).")
    grafanaAnonymous: Boolean = Field(True, description="Let anonymous visitors view dashboards.")


KEYS: tuple[str, ...] = tuple(StackConfig.model_fields)
SECRET_KEYS: tuple[str, ...] = tuple(
    k for k, f in StackConfig.model_fields.items() if any(isinstance(m, Secret) for m in f.metadata))


# --- the settings the components use ---------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")


class PkiSettings(_Frozen):
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


class CacheSettings(_Frozen):
    """One mirror's bounded cache (cachekeeper/): off unless a size or a pin is set."""

    max_bytes: int | None = None
    high_watermark: int = 90
    low_watermark: int = 80
    min_age_seconds: int = 900
    pins: tuple[str, ...] = ()  # normalized: repository:tag or repository@sha256:<hex>

    @property
    def enabled(self) -> bool:
        return self.max_bytes is not None or bool(self.pins)


class RegistrySettings(_Frozen):
    hostname: str
    alt_names: tuple[str, ...]
    port: int  # published host port, portOffset applied
    bind_address: str
    image: str
    memory_limit_mb: int
    tag_concurrency_limit: int
    proxy_ttl: str
    docker_hub_username: str | None
    docker_hub_password: Any = Field(None, repr=False)  # pulumi.Output[str] (secret) or None
    keep_data_on_destroy: bool = True
    users: Any = Field(None, repr=False)  # JSON user -> password: pulumi.Output[str] (secret) or None
    require_client_cert: bool = False
    upstream_front: bool = True
    front_image: str = IMAGES["front"]
    cache: CacheSettings = Field(default_factory=CacheSettings)
    cache_image: str = IMAGES["cache"]

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


DOCKER_HUB = "docker.io"
# upstream as written in image names -> (default remote URL, instance name). Docker Hub's API
# is not served at docker.io; its instance "" keeps the names of the first release.
UPSTREAM_PRESETS: dict[str, tuple[str, str]] = {
    DOCKER_HUB: ("https://registry-1.docker.io", ""),
    "ghcr.io": ("https://ghcr.io", "ghcr"),
    "quay.io": ("https://quay.io", "quay"),
    "registry.k8s.io": ("https://registry.k8s.io", "k8s"),
    "gcr.io": ("https://gcr.io", "gcr"),
}
CACHE_FIELDS = ("cacheMaxSize", "cacheHighWatermark", "cacheLowWatermark", "cacheMinAge", "cachePin")
MIRROR_FIELDS = ("upstream", "remoteUrl", "port", "username", "password", "ttl", "tokenRealm", "tokenService",
                 "redirectHosts", *CACHE_FIELDS)
_MAX_REDIRECT_HOSTS = 20
# why a redirectHosts value can never be followed (contract.Redirects), as a line says it
_REDIRECT_REFUSALS = {
    Redirects.IP_LITERAL: "an IP address",
    Redirects.SINGLE_LABEL: "a single-label name (the stack's own services have such names)",
    Redirects.RESERVED_NAME: "a name under a reserved suffix (" + ", ".join(
        f".{s}" for s in Redirects.RESERVED_SUFFIXES) + ")",
    Redirects.NOT_PUBLIC: "not a public DNS name",
    Redirects.MALFORMED: "not a host name",
}
# The token realm and service of each preset's /v2/ challenge, for the upstream front (which
# answers /v2/ itself and forwards token requests there). registry.k8s.io redirects to the
# regional Artifact Registry it serves from, so no fixed realm is known for it here.
TOKEN_AUTH_PRESETS: dict[str, tuple[str, str]] = {
    DOCKER_HUB: ("https://auth.docker.io/token", "registry.docker.io"),
    "ghcr.io": ("https://ghcr.io/token", "ghcr.io"),
    "quay.io": ("https://quay.io/v2/auth", "quay.io"),
    "gcr.io": ("https://gcr.io/v2/token", "gcr.io"),
}


def _mirror_names(upstream: str) -> tuple[str, str]:
    """The names a further mirror's instance gives its registry and its front: their Docker
    names, aliases, volumes and Pulumi resource names all derive from these."""
    instance = instance_name(upstream)
    return registry_alias(instance), front_alias(instance)


def _name_clash(upstream: str, taken: Mapping[str, str]) -> str | None:
    """Whose names (the Docker Hub mirror, the router, the private registry, an earlier
    entry) a mirror of `upstream` would take: two resources with one URN stop the engine's
    run, two containers with one Docker name fail their create."""
    for name in _mirror_names(upstream):
        if name in taken:
            return taken[name]
    return None


def instance_name(upstream: str) -> str:
    """The suffix of a mirror's alias, Docker names and volume (`registry-<instance>`)."""
    if upstream in UPSTREAM_PRESETS:
        return UPSTREAM_PRESETS[upstream][1]
    return re.sub(r"[^a-z0-9]+", "-", upstream).strip("-")


class UpstreamSettings(_Frozen):
    """One mirror: `upstream` is the registry host as image names write it (and as containerd
    sends it in `?ns=`); Docker Hub comes first and is the instance ""."""

    upstream: str
    remote_url: str
    port: int  # published host port, portOffset applied
    username: str | None = None
    password: Any = Field(None, repr=False)  # pulumi.Output[str] (secret) or None
    proxy_ttl: str = "168h"
    # the upstream's token realm and service ("" realm: no token auth; None: not known)
    token_realm: str | None = None
    token_service: str | None = None
    # where its front follows a redirect: None = any public name (a preset at its own URL);
    # else only these hosts (its own host, if public, and its redirectHosts)
    redirect_hosts: tuple[str, ...] | None = None
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @property
    def instance(self) -> str:
        return instance_name(self.upstream)


class PrivateRegistrySettings(_Frozen):
    port: int  # published host port, portOffset applied


class DockerHost(_Frozen):
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
        """(user, host, port) of an ssh:// URL (checked by `parse`, so the port is valid)."""
        parts = urlsplit(self.url or "")
        return parts.username, parts.hostname or "", parts.port or 22


class TrustSettings(_Frozen):
    install_trust: bool
    install_system_trust: bool
    configure_docker_mirror: bool
    docker_certs_dir: str
    docker_daemon_json_path: str
    use_sudo: bool
    docker_host: DockerHost = Field(default_factory=DockerHost)
    install_containerd_config: bool = False


class MonitoringSettings(_Frozen):
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
    grafana_admin_password: Any = Field(None, repr=False)  # pulumi.Output[str] (secret) or None
    grafana_anonymous: bool = True


class Settings(_Frozen):
    naming: Naming
    registry: RegistrySettings
    pki: PkiSettings
    trust: TrustSettings
    monitoring: MonitoringSettings
    port_offset: int
    # Docker Hub first; more than one entry puts the router on Docker Hub's port
    mirrors: tuple[UpstreamSettings, ...] = ()
    private_registry: PrivateRegistrySettings | None = None

    @property
    def routed(self) -> bool:
        """One URL for every upstream: a router on registryPort picks the mirror by `?ns=`."""
        return len(self.mirrors) > 1

    def mirror_registry(self, mirror: UpstreamSettings) -> RegistrySettings:
        """The registry settings of one mirror: the shared ones with its port, TTL and
        upstream credentials."""
        return self.registry.model_copy(update={
            "port": mirror.port, "proxy_ttl": mirror.proxy_ttl,
            "docker_hub_username": mirror.username, "docker_hub_password": mirror.password,
            "cache": mirror.cache,
        })

    @property
    def san_dns_names(self) -> list[str]:
        """The server certificate's DNS names: the registry's, and the network alias of every
        further mirror, the router and the private registry (the blackbox exporter probes each
        by its alias). A stack with only Docker Hub's mirror gets exactly the registry's."""
        aliases = [registry_alias(m.instance) for m in self.mirrors[1:]]
        if self.routed:
            aliases.append(ROUTER_ALIAS)
        if self.private_registry is not None:
            aliases.append(registry_alias(PRIVATE_INSTANCE))
        return list(dict.fromkeys(self.registry.san_dns_names + aliases))

    def private_registry_settings(self) -> RegistrySettings:
        """The private registry: the shared settings on its own port, no upstream credentials."""
        port = self.private_registry.port if self.private_registry is not None else self.registry.port
        return self.registry.model_copy(update={"port": port, "docker_hub_username": None,
                                                "docker_hub_password": None, "cache": CacheSettings()})

    @property
    def tls_hosts(self) -> tuple[str, ...]:
        """Every `<hostname>:<port>` the stack publishes with TLS, registryPort's first (the one
        URL), then each further mirror's own port and the private registry's: Docker trusts
        each by a certs.d directory of its own."""
        hostname = self.registry.hostname
        hosts = [self.registry.host, *(f"{hostname}:{m.port}" for m in self.mirrors[1:])]
        if self.private_registry is not None:
            hosts.append(f"{hostname}:{self.private_registry.port}")
        return tuple(hosts)

    def published_ports(self) -> dict[str, int]:
        """Every host port this stack publishes, by config key."""
        ports = {"registryPort": self.registry.port}
        for index, mirror in enumerate(self.mirrors):
            if mirror.upstream != DOCKER_HUB:
                ports[f"mirrors[{index}].port"] = mirror.port
        if self.private_registry is not None:
            ports["privateRegistryPort"] = self.private_registry.port
        m = self.monitoring
        if m.enabled:
            ports |= {"grafanaPort": m.grafana_port, "prometheusPort": m.prometheus_port}
            if m.tracing:
                ports["jaegerPort"] = m.jaeger_port
            if m.logging:
                ports |= {"lokiPort": m.loki_port, "alloyPort": m.alloy_port}
        return ports


# --- parse ---------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """A value as an error line shows it: quoted, escaped, and short (one line, always)."""
    if not isinstance(value, str):
        return repr(value)
    if len(value) > 80:
        return f"{value[:60]!r}... ({len(value)} characters)"
    return repr(value)


def _shown_key(key: str) -> str:
    return key if key.isprintable() and len(key) <= 100 else _shown(key)


class _Problems:
    """Every problem found, one line each; values of secret keys are never shown."""

    def __init__(self, project: str, secret_keys: Iterable[str]) -> None:
        self.project = project
        self.hidden = set(secret_keys) | set(SECRET_KEYS)
        self.lines: list[str] = []
        self.keys: set[str] = set()

    def value(self, key: str, shown: str, allowed: str) -> None:
        if key in self.hidden:
            shown = "<secret>"
        self.lines.append(f"{self.project}:{key} = {shown} is invalid: {allowed}")
        self.keys.add(key)

    def line(self, key: str, text: str) -> None:
        self.lines.append(text)
        self.keys.add(key)

    def clear(self, *keys: str) -> bool:
        """True when none of `keys` has a problem yet (a cross-key check needs good values)."""
        return not self.keys.intersection(keys)


def parse(
    values: Mapping[str, object],
    *,
    stack: str,
    project: str = PROJECT,
    secret_keys: Iterable[str] = (),
    secrets: Mapping[str, Any] | None = None,
    docker_host: str | None = None,
    docker_host_name: str = "docker:host",
) -> Settings:
    """Parse raw config values (key without project prefix -> string) into Settings.

    `secret_keys` names the keys that were set with `--secret`: their values are checked
    but never shown. `secrets` maps secret keys to the (secret) Output the program uses in
    place of the plain value; a key in `secrets` counts as set with `--secret`.
    `docker_host` is the `docker:host` config, or DOCKER_HOST (then `docker_host_name`
    is "DOCKER_HOST", so that an error names what the user set).
    """
    secrets = dict(secrets or {})
    secret_set = set(secret_keys) | set(secrets)
    problems = _Problems(project, secret_set)

    raw: dict[str, str] = {}
    for key, value in values.items():
        if key not in StackConfig.model_fields:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the README's configuration reference"
            problems.line(key, f"{project}:{_shown_key(key)} is not a known setting: {hint}")
        elif value is not None:
            raw[key] = value if isinstance(value, str) else str(value)
    for key in SECRET_KEYS:
        if key in raw and key not in secret_set:
            problems.line(key, f"{project}:{key} must be set as a secret: pulumi config set --secret {key} <value>")

    config = _validate(raw, problems)
    offset = config.portOffset

    def port(key: str) -> int:
        base: int = getattr(config, key)
        if base + offset > 65535 and problems.clear(key, "portOffset"):
            problems.value(key, str(base), f"with portOffset {offset} it becomes {base + offset}, above 65535")
        return base + offset

    has_user = config.dockerHubUsername is not None
    has_password = "dockerHubPassword" in raw
    if has_user != has_password and problems.clear("dockerHubUsername", "dockerHubPassword"):
        problems.line("dockerHubUsername",
                      f"{project}:dockerHubUsername and {project}:dockerHubPassword must be set together "
                      "(or neither, for anonymous pulls): "
                      + ("the password is missing" if not has_password else "the username is missing"))

    def secret(key: str) -> Any:
        # the program gets the secret Output; a test that passes none gets the checked text
        return secrets.get(key, getattr(config, key)) if key in raw else None

    registry = RegistrySettings(
        hostname=config.hostname,
        alt_names=config.altNames,
        port=port("registryPort"),
        bind_address=config.registryBindAddress,
        image=config.registryImage,
        memory_limit_mb=config.registryMemoryLimitMb,
        tag_concurrency_limit=config.tagConcurrencyLimit,
        proxy_ttl=config.proxyTtl,
        docker_hub_username=config.dockerHubUsername,
        docker_hub_password=secret("dockerHubPassword"),
        keep_data_on_destroy=config.keepDataOnDestroy,
        upstream_front=config.upstreamFront,
        front_image=config.frontImage,
        cache_image=config.cacheImage,
        users=secret("registryUsers"),
        require_client_cert=config.requireClientCert,
    )
    _check_client_auth(config, raw, problems)
    _check_lifetimes(config, problems)
    pki = PkiSettings(
        organization=config.pkiOrganization,
        organizational_unit=config.pkiOrganizationalUnit,
        locality=config.pkiLocality,
        province=config.pkiProvince,
        country=config.pkiCountry,
        key_algorithm=config.pkiKeyAlgorithm,
        rsa_bits=config.pkiRsaBits,
        root_ca_validity_hours=config.rootCaValidityHours,
        intermediate_ca_validity_hours=config.intermediateCaValidityHours,
        cert_validity_hours=config.certValidityHours,
        early_renewal_hours=config.earlyRenewalHours,
    )
    trust = TrustSettings(
        install_trust=config.installTrust,
        install_system_trust=config.installSystemTrust,
        configure_docker_mirror=config.configureDockerMirror,
        docker_certs_dir=config.dockerCertsDir,
        docker_daemon_json_path=config.dockerDaemonJsonPath,
        use_sudo=config.trustUseSudo,
        docker_host=_docker_host(docker_host, problems, docker_host_name),
        install_containerd_config=config.installContainerdConfig,
    )
    if not config.installTrust:
        for key in ("installSystemTrust", "configureDockerMirror", "installContainerdConfig"):
            if getattr(config, key) and problems.clear(key, "installTrust"):
                problems.value(key, "'true'", "needs installTrust: true (the trust step is off)")
    monitoring = MonitoringSettings(
        enabled=config.monitoring,
        tracing=config.tracing,
        logging=config.logging,
        ui_bind_address=config.uiBindAddress,
        grafana_port=port("grafanaPort"),
        prometheus_port=port("prometheusPort"),
        jaeger_port=port("jaegerPort"),
        loki_port=port("lokiPort"),
        alloy_port=port("alloyPort"),
        prometheus_image=config.prometheusImage,
        blackbox_image=config.blackboxImage,
        jaeger_image=config.jaegerImage,
        loki_image=config.lokiImage,
        alloy_image=config.alloyImage,
        grafana_image=config.grafanaImage,
        prometheus_retention=config.prometheusRetention,
        loki_retention_hours=int(config.lokiRetention.removesuffix("h")),
        grafana_admin_user=config.grafanaAdminUser,
        grafana_admin_password=secret("grafanaAdminPassword"),
        grafana_anonymous=config.grafanaAnonymous,
    )
    _check_settings_of_services_that_are_off(config, raw, problems)
    if (config.monitoring and config.uiBindAddress not in ("127.0.0.1", "::1") and not config.exposeUis
            and problems.clear("uiBindAddress", "exposeUis")):
        problems.value("uiBindAddress", _shown(config.uiBindAddress),
                       "would publish Prometheus, the Jaeger UI, Loki (which accepts log pushes) and the Alloy "
                       "UI, none of which asks for a login, and Grafana's anonymous viewer: set exposeUis true "
                       "to publish them anyway, or keep uiBindAddress 127.0.0.1")
    mirrors = _mirrors(config, raw, registry, secrets.get("mirrors"), secret_set, problems, offset)
    # the keys above and a docker.io entry describe one mirror: the entry's values win
    registry = registry.model_copy(update={
        "port": mirrors[0].port, "proxy_ttl": mirrors[0].proxy_ttl,
        "docker_hub_username": mirrors[0].username, "docker_hub_password": mirrors[0].password,
        "cache": mirrors[0].cache,
    })
    if "registryUsers" in raw and any(m.cache.pins for m in mirrors) and problems.clear("registryUsers"):
        users = _json(raw["registryUsers"], "") if isinstance(raw["registryUsers"], str) else {}
        if isinstance(users, dict) and CACHE_USER in users:
            problems.value("registryUsers", "<secret>", f"the user {CACHE_USER} is the cache keeper's own (it pulls "
                           "the pinned images as that user): pick another name")
    if config.upstreamFront:
        for mirror in mirrors:
            if mirror.token_realm is None and problems.clear("upstreamFront"):
                problems.line("mirrors", f"{project}:mirrors: the upstream front of {mirror.upstream} needs its token "
                              "realm: set tokenRealm and tokenService of its entry (from its /v2/ challenge), "
                              "tokenRealm '' for an upstream without token auth, or upstreamFront false")
    exposed = config.registryBindAddress not in ("127.0.0.1", "::1")
    for mirror in mirrors:
        if mirror is mirrors[0] and config.dockerHubUsername is not None:
            continue  # Docker Hub's credentials by the legacy keys: _check_client_auth said it
        if (exposed and mirror.username is not None and "registryUsers" not in raw and not config.requireClientCert
                and problems.clear("registryUsers", "requireClientCert")):
            problems.line("mirrors", f"{project}:mirrors: the {mirror.upstream} mirror pulls as {mirror.username} "
                          "and anyone who reaches its port pulls as that account: set registryUsers, set "
                          "requireClientCert true, or set registryBindAddress 127.0.0.1")
    private = None
    if config.privateRegistry:
        private = PrivateRegistrySettings(port=port("privateRegistryPort"))
        if (config.registryBindAddress not in ("127.0.0.1", "::1") and "registryUsers" not in raw
                and not config.requireClientCert and problems.clear("privateRegistry", "registryUsers")):
            problems.value("privateRegistry", "'true'",
                           "needs registryUsers or requireClientCert while registryBindAddress is "
                           f"{config.registryBindAddress} (anyone reaching the port could push and delete), "
                           "or registryBindAddress 127.0.0.1")
    elif "privateRegistryPort" in raw and config.privateRegistryPort != StackConfig.model_fields[
            "privateRegistryPort"].default and problems.clear("privateRegistryPort"):
        problems.value("privateRegistryPort", raw["privateRegistryPort"], "needs privateRegistry: true")

    settings = Settings(
        naming=Naming(project, stack),
        registry=registry,
        pki=pki,
        trust=trust,
        monitoring=monitoring,
        port_offset=offset,
        mirrors=mirrors,
        private_registry=private,
    )
    _check_port_collisions(settings, problems)
    if problems.lines:
        raise SettingsError("invalid stack configuration:\n  " + "\n  ".join(problems.lines))
    return settings


def _validate(raw: Mapping[str, str], problems: _Problems) -> StackConfig:
    """The model of every key that is good; a bad key is reported and takes its default."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as err:
        bad: set[str] = set()
        for error in err.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            ctx = error.get("ctx") or {}
            shown = ctx.get("shown") or _shown(raw.get(key))
            problems.value(key, shown, str(ctx.get("allowed", error["msg"])))
            bad.add(key)
        # every rule accepts its own default, so this second pass cannot fail
        return StackConfig.model_validate({k: v for k, v in raw.items() if k not in bad})


_UPSTREAM = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
_REMOTE_URL = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]{0,200})?")
_LEGACY = {"port": "registryPort", "username": "dockerHubUsername", "password": "dockerHubPassword",
           "ttl": "proxyTtl", **{name: name for name in CACHE_FIELDS}}
_CACHE_RULES: dict[str, tuple[Any, str]] = {
    "cacheHighWatermark": (lambda v: _number(v, 2, 100, "must be a whole number from 2 to 100"), "90"),
    "cacheLowWatermark": (lambda v: _number(v, 1, 99, "must be a whole number from 1 to 99"), "80"),
}


def _cache_settings(values: Mapping[str, Any], given: set[str], upstream: str,
                    report: Any) -> CacheSettings | None:
    """One mirror's cache from its five fields (`values`: name -> raw value; `given`: the names
    the user set); `report(name, shown, allowed)` takes each problem. None when any is bad."""
    ok = True

    def check(name: str, rule: Any) -> Any:
        nonlocal ok
        value = values.get(name)
        try:
            return rule(value if isinstance(value, (str, list, tuple)) or value is None else str(value))
        except (PydanticCustomError, ValueError) as err:
            allowed = str((err.context or {}).get("allowed", err)) if isinstance(err, PydanticCustomError) \
                else str(err)
            report(name, _shown(value), allowed)
            ok = False
            return None

    size = check("cacheMaxSize", lambda v: None if v is None else cache_size_bytes(v))
    high = check("cacheHighWatermark", _CACHE_RULES["cacheHighWatermark"][0])
    low = check("cacheLowWatermark", _CACHE_RULES["cacheLowWatermark"][0])
    age = check("cacheMinAge", cache_min_age_seconds)
    raw_pins = check("cachePin", lambda v: () if v is None else _pin_list(v))
    pins: list[str] = []
    for pin in raw_pins or ():
        try:
            pins.append(normalize_pin(pin, upstream))
        except ValueError as err:
            report("cachePin", _shown(pin), str(err))
            ok = False
    if size is None:
        for name in ("cacheHighWatermark", "cacheLowWatermark", "cacheMinAge"):
            if name in given:
                report(name, _shown(values.get(name)), "needs cacheMaxSize (only a bounded cache evicts)")
                ok = False
    if not ok:
        return None
    if low >= high:
        report("cacheLowWatermark", str(low), f"must be below cacheHighWatermark ({high})")
        return None
    return CacheSettings(max_bytes=size, high_watermark=high, low_watermark=low, min_age_seconds=age,
                         pins=tuple(dict.fromkeys(pins)))


def _with_cache(mirror: UpstreamSettings, cache: CacheSettings | None, ttl_given: bool, ttl_key: str,
                problems: _Problems) -> UpstreamSettings:
    """A mirror with its cache; a bounded or pinned cache runs with proxy.ttl 0 (TTL expiry
    would delete pinned images and layers that kept images share)."""
    if cache is None or not cache.enabled:
        return mirror
    if ttl_given and mirror.proxy_ttl != "0":
        problems.line("mirrors" if ttl_key != "proxyTtl" else "proxyTtl",
                      f"{problems.project}:{ttl_key} = {mirror.proxy_ttl!r} is invalid: with cacheMaxSize or "
                      "cachePin the cache keeper decides what leaves the cache and proxy.ttl is 0 "
                      "(TTL expiry would delete pinned images and shared layers): remove it or set it to 0")
    return mirror.model_copy(update={"cache": cache, "proxy_ttl": "0"})


def _mirrors(c: StackConfig, raw: Mapping[str, str], hub: RegistrySettings, secret_list: Any,
             secret_set: set[str], problems: _Problems, offset: int) -> tuple[UpstreamSettings, ...]:
    """The mirrors, Docker Hub first; each problem of each entry on its own line."""
    project = problems.project
    hub_entry: dict[str, Any] = {}
    others: list[UpstreamSettings] = []
    entries: list[dict[str, Any]] = json.loads(c.mirrors) if c.mirrors is not None and "mirrors" not in \
        problems.keys else []
    seen_upstreams: dict[str, int] = {}
    # what the Docker Hub mirror, the router and the private registry are named (whether or
    # not this stack has them yet: turning one on later must not collide either)
    names_taken = {registry_alias(): "Docker Hub's mirror", front_alias(): "Docker Hub's front",
                   ROUTER_ALIAS: "the router", registry_alias(PRIVATE_INSTANCE): "the private registry"}

    def bad(index: int, name: str, shown: str, allowed: str) -> None:
        problems.line("mirrors", f"{project}:mirrors[{index}].{name} = {shown} is invalid: {allowed}")

    for index, entry in enumerate(entries):
        ok = True
        for name in entry:
            if name not in MIRROR_FIELDS:
                problems.line("mirrors", f"{project}:mirrors[{index}].{_shown_key(str(name))} is not a known "
                              f"field: use {', '.join(MIRROR_FIELDS)}")
                ok = False
        upstream = entry.get("upstream")
        if not isinstance(upstream, str) or not _UPSTREAM.fullmatch(upstream.lower()) or \
                not is_dns_name(upstream.lower().split(":")[0]):
            bad(index, "upstream", _shown(upstream), "must be a registry host as image names write it: "
                f"{', '.join(UPSTREAM_PRESETS)} or another host[:port]")
            continue
        upstream = upstream.lower()
        if upstream in seen_upstreams:
            problems.line("mirrors", f"{project}:mirrors[{index}].upstream = {upstream!r} is invalid: "
                          f"mirrors[{seen_upstreams[upstream]}] already mirrors it (one entry per upstream)")
            continue
        seen_upstreams[upstream] = index
        if upstream != DOCKER_HUB:
            clash = _name_clash(upstream, names_taken)
            if clash:
                problems.line("mirrors", f"{project}:mirrors[{index}].upstream = {upstream!r} is invalid: its "
                              f"containers and resources ({', '.join(_mirror_names(upstream))}) would take the "
                              f"names of {clash}; mirror one of the two, or the other's host")
                continue
            for name in _mirror_names(upstream):
                names_taken[name] = f"mirrors[{index}] ({upstream!r})"
        remote = entry.get("remoteUrl", UPSTREAM_PRESETS.get(upstream, (f"https://{upstream}", ""))[0])
        if not isinstance(remote, str) or not _REMOTE_URL.fullmatch(remote):
            bad(index, "remoteUrl", _shown(remote), "must be an http(s) URL such as https://ghcr.io")
            ok = False
        port_value = entry.get("port")
        port = None
        if port_value is not None:
            if isinstance(port_value, int) and not isinstance(port_value, bool) and 1 <= port_value <= 65535:
                port = port_value + offset
                if port > 65535:
                    bad(index, "port", str(port_value), f"with portOffset {offset} it becomes {port}, above 65535")
                    ok = False
            else:
                bad(index, "port", _shown(port_value), "must be a whole number from 1 to 65535")
                ok = False
        elif upstream != DOCKER_HUB:
            bad(index, "port", "unset", "every upstream but docker.io needs its own host port")
            ok = False
        username, password = entry.get("username"), entry.get("password")
        if username is not None and (not isinstance(username, str) or not re.fullmatch(r"[^\s]{1,255}", username)
                                     or _has_control(username)):
            bad(index, "username", _shown(username), "must be 1-255 characters without spaces")
            ok = False
        if password is not None and (not isinstance(password, str) or not 1 <= len(password) <= 1024
                                     or _has_control(password)):
            bad(index, "password", "<secret>", "must be 1-1024 characters, no control characters")
            ok = False
        if (username is None) != (password is None):
            problems.line("mirrors", f"{project}:mirrors[{index}].username and password must be set together "
                          "(or neither, for anonymous pulls)")
            ok = False
        if password is not None and "mirrors" not in secret_set:
            problems.line("mirrors", f"{project}:mirrors[{index}].password must be set as a secret: pulumi config "
                          f"set --path --secret 'mirrors[{index}].password' <value>")
            ok = False
        ttl = entry.get("ttl", c.proxyTtl)
        try:
            ttl = _proxy_ttl(ttl if isinstance(ttl, str) else str(ttl))
        except PydanticCustomError as err:
            bad(index, "ttl", _shown(ttl), str((err.context or {}).get("allowed", err)))
            ok = False
        # a preset's realm holds only for the preset's own API URL
        known = TOKEN_AUTH_PRESETS.get(upstream, (None, None)) if isinstance(remote, str) and \
            remote == UPSTREAM_PRESETS.get(upstream, ("",))[0] else (None, None)
        realm = entry.get("tokenRealm", known[0])
        service = entry.get("tokenService", known[1])
        if realm is not None and (not isinstance(realm, str) or (realm and not _REMOTE_URL.fullmatch(realm))):
            bad(index, "tokenRealm", _shown(realm), "must be the https URL of the upstream's token realm "
                "(its /v2/ challenge), or '' for an upstream without token auth")
            ok = False
        if (isinstance(realm, str) and realm.startswith("http://") and username is not None
                and password is not None):
            bad(index, "tokenRealm", _shown(realm), "must be https when the entry has a username and password "
                "(the upstream front sends them to the realm)")
            ok = False
        if service is not None and (not isinstance(service, str)
                                    or not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", service)):
            bad(index, "tokenService", _shown(service), "must be the service of the upstream's /v2/ challenge")
            ok = False
        if isinstance(realm, str) and realm and service is None:
            problems.line("mirrors", f"{project}:mirrors[{index}].tokenService must be set with tokenRealm")
            ok = False
        listed = _redirect_hosts(entry, index, c.upstreamFront, problems)
        if listed is None:
            ok = False
        cache_given = {name for name in CACHE_FIELDS if name in entry}
        cache: CacheSettings | None = None
        if upstream != DOCKER_HUB:
            defaults = {n: StackConfig.model_fields[n].default for n in CACHE_FIELDS}
            cache = _cache_settings({**defaults, **{n: entry[n] for n in cache_given}}, cache_given, upstream,
                                    lambda name, shown, allowed, i=index: bad(i, name, shown, allowed))
            ok = ok and cache is not None
        if not ok:
            continue
        assert listed is not None and isinstance(remote, str)
        preset = upstream in TOKEN_AUTH_PRESETS and remote == UPSTREAM_PRESETS[upstream][0]
        redirect_hosts = None if preset and "redirectHosts" not in entry else _own_hosts(remote, listed)
        secret_password = password
        if password is not None and secret_list is not None:
            secret_password = secret_list.apply(lambda text, i=index: json.loads(text)[i]["password"])
        if upstream == DOCKER_HUB:
            hub_entry = {"index": index, "entry": entry, "password": secret_password, "remote": remote,
                         "ttl": ttl, "realm": realm, "service": service, "redirect_hosts": redirect_hosts}
            continue
        assert port is not None  # checked above: only docker.io may leave it unset
        mirror = UpstreamSettings(upstream=upstream, remote_url=remote, port=port, username=username,
                                  password=secret_password, proxy_ttl=ttl, token_realm=realm, token_service=service,
                                  redirect_hosts=redirect_hosts)
        others.append(_with_cache(mirror, cache, "ttl" in entry, f"mirrors[{index}].ttl", problems))

    hub_mirror = UpstreamSettings(upstream=DOCKER_HUB, remote_url=UPSTREAM_PRESETS[DOCKER_HUB][0], port=hub.port,
                                  username=hub.docker_hub_username, password=hub.docker_hub_password,
                                  proxy_ttl=hub.proxy_ttl, token_realm=TOKEN_AUTH_PRESETS[DOCKER_HUB][0],
                                  token_service=TOKEN_AUTH_PRESETS[DOCKER_HUB][1])
    if hub_entry:
        entry, index = hub_entry["entry"], hub_entry["index"]
        for name, key in _LEGACY.items():
            default = StackConfig.model_fields[key].default
            legacy_set = key in raw and (default is None or getattr(c, key) != default)
            if name in entry and legacy_set:
                problems.line("mirrors", f"{project}:mirrors[{index}].{name} and {project}:{key} both describe "
                              f"Docker Hub's mirror: keep one (remove mirrors[{index}].{name} or {key})")
        if "port" in entry:
            hub_mirror = hub_mirror.model_copy(update={"port": int(entry["port"]) + offset})
        if "username" in entry:
            hub_mirror = hub_mirror.model_copy(update={"username": entry["username"],
                                                       "password": hub_entry["password"]})
        hub_mirror = hub_mirror.model_copy(update={
            "remote_url": hub_entry["remote"], "proxy_ttl": hub_entry["ttl"] if "ttl" in entry else hub.proxy_ttl,
            "token_realm": hub_entry["realm"], "token_service": hub_entry["service"],
            "redirect_hosts": hub_entry["redirect_hosts"]})
    # Docker Hub's cache: the top-level keys, or the fields of a docker.io entry
    entry = hub_entry.get("entry", {})
    values: dict[str, Any] = {}
    given: set[str] = set()
    for name in CACHE_FIELDS:
        default = StackConfig.model_fields[name].default
        if name in entry:
            values[name] = entry[name]
            given.add(name)
        else:
            values[name] = getattr(c, name)
            if name in raw and getattr(c, name) != default:
                given.add(name)

    def report(name: str, shown: str, allowed: str) -> None:
        if name in entry:
            problems.line("mirrors", f"{project}:mirrors[{hub_entry['index']}].{name} = {shown} is invalid: {allowed}")
        elif problems.clear(name):
            problems.value(name, shown, allowed)

    cache = _cache_settings(values, given, DOCKER_HUB, report)
    ttl_given = "ttl" in entry or ("proxyTtl" in raw and c.proxyTtl != StackConfig.model_fields["proxyTtl"].default)
    ttl_key = f"mirrors[{hub_entry['index']}].ttl" if "ttl" in entry else "proxyTtl"
    hub_mirror = _with_cache(hub_mirror, cache, ttl_given, ttl_key, problems)
    return (hub_mirror, *others)


def _redirect_hosts(entry: Mapping[str, Any], index: int, front: bool, problems: _Problems) -> list[str] | None:
    """An entry's redirectHosts, lower-cased ([] when unset), or None after reporting each bad value."""
    project = problems.project
    if "redirectHosts" not in entry:
        return []
    value = entry["redirectHosts"]
    key = f"{project}:mirrors[{index}].redirectHosts"
    if not isinstance(value, list) or not 1 <= len(value) <= _MAX_REDIRECT_HOSTS:
        problems.line("mirrors", f"{key} = {_shown(value)} is invalid: must be a list of 1-{_MAX_REDIRECT_HOSTS} "
                      "host names its front may follow a redirect to, such as [s3.eu-west-1.amazonaws.com]")
        return None
    if not front:
        problems.line("mirrors", f"{key} needs upstreamFront true: without the front the registry follows "
                      "every redirect itself, wherever it points")
        return None
    hosts: list[str] = []
    for position, host in enumerate(value):
        reason = redirect_refusal(host) if isinstance(host, str) and len(host) <= 253 else Redirects.MALFORMED
        if reason is not None:
            problems.line("mirrors", f"{key}[{position}] = {_shown(host)} is invalid: {_REDIRECT_REFUSALS[reason]}; "
                          "the front follows redirects only to public host names (no scheme, no port), such as "
                          "s3.eu-west-1.amazonaws.com")
        else:
            hosts.append(host.lower().removesuffix("."))
    return hosts if len(hosts) == len(value) else None


def _own_hosts(remote: str, listed: list[str]) -> tuple[str, ...]:
    """A front held to a list follows its upstream's own host (when that is a public name) and the list."""
    own = (urlsplit(remote).hostname or "").removesuffix(".")
    return tuple(dict.fromkeys(([own] if redirect_refusal(own) is None else []) + listed))


def _check_client_auth(c: StackConfig, raw: Mapping[str, str], problems: _Problems) -> None:
    users = "registryUsers" in raw
    if c.configureDockerMirror and users and problems.clear("configureDockerMirror", "registryUsers"):
        problems.value(
            "configureDockerMirror", "'true'",
            "cannot be used with registryUsers: dockerd sends no credentials to a registry-mirrors "
            "entry and silently pulls from Docker Hub instead (moby/moby#30880); use requireClientCert "
            "for the mirror setting, or pull by host:port after docker login")
    exposed = c.registryBindAddress not in ("127.0.0.1", "::1")
    if (exposed and c.dockerHubUsername is not None and not users and not c.requireClientCert
            and problems.clear("registryBindAddress", "dockerHubUsername", "registryUsers", "requireClientCert")):
        problems.value(
            "registryBindAddress", _shown(c.registryBindAddress),
            "with dockerHubUsername set and no client authentication, anyone who reaches the port pulls "
            "as that Docker Hub account: set registryUsers, set requireClientCert true, or set "
            "registryBindAddress 127.0.0.1")


def _check_lifetimes(c: StackConfig, problems: _Problems) -> None:
    if c.intermediateCaValidityHours > c.rootCaValidityHours and problems.clear(
            "intermediateCaValidityHours", "rootCaValidityHours"):
        problems.value("intermediateCaValidityHours", str(c.intermediateCaValidityHours),
                       f"must be at most rootCaValidityHours ({c.rootCaValidityHours})")
    if c.certValidityHours > c.intermediateCaValidityHours and problems.clear(
            "certValidityHours", "intermediateCaValidityHours"):
        problems.value("certValidityHours", str(c.certValidityHours),
                       f"must be at most intermediateCaValidityHours ({c.intermediateCaValidityHours})")
    hour_keys = ("rootCaValidityHours", "intermediateCaValidityHours", "certValidityHours")
    shortest = min(hour_keys, key=lambda k: int(getattr(c, k)))
    hours = getattr(c, shortest)
    if c.earlyRenewalHours >= hours and problems.clear("earlyRenewalHours", *hour_keys):
        problems.value("earlyRenewalHours", str(c.earlyRenewalHours),
                       f"must be less than the shortest certificate lifetime ({shortest}: {hours} hours)")


def _docker_host(url: str | None, problems: _Problems, name: str) -> DockerHost:
    """`name`: where the URL came from, `docker:host` or the DOCKER_HOST variable."""
    if url is None or not url.strip():
        return DockerHost()
    allowed = "must be unix://<socket>, npipe://<pipe>, ssh://[user@]host[:port] or tcp://host[:port]"
    if len(url) > 2048 or _has_control(url) or not url.isascii():
        problems.line(name, f"{name} = {_shown(url)} is invalid: {allowed}")
        return DockerHost()
    url = url.strip()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        parts = urlsplit(url)
        usable = parts.port != 0 and bool(parts.hostname)  # .port raises ValueError unless 0-65535
    except ValueError:
        usable = False
    if scheme not in ("unix", "npipe", "ssh", "tcp"):
        problems.line(name, f"{name} = {_shown(url)} is invalid: {allowed}")
    elif scheme in ("ssh", "tcp") and (not usable or any(c.isspace() for c in url)):
        problems.line(name, f"{name} = {_shown(url)} is invalid: an {scheme}:// URL needs a "
                      f"host and, if given, a port from 1 to 65535 ({scheme}://user@host:22)")
    elif scheme in ("unix", "npipe") and not url.split("://", 1)[1].strip("/"):
        problems.line(name, f"{name} = {_shown(url)} is invalid: needs a socket path "
                      "(unix:///var/run/docker.sock)")
    else:
        return DockerHost(url=url)
    return DockerHost()


# keys that only matter while their service runs
_SERVICE_KEYS = {
    "monitoring": ("uiBindAddress", "grafanaPort", "prometheusPort", "prometheusImage", "blackboxImage",
                   "grafanaImage", "prometheusRetention", "grafanaAdminUser", "grafanaAdminPassword",
                   "grafanaAnonymous", "exposeUis"),
    "tracing": ("jaegerPort", "jaegerImage"),
    "logging": ("lokiPort", "lokiImage", "lokiRetention", "alloyPort", "alloyImage"),
}


def _check_settings_of_services_that_are_off(c: StackConfig, raw: Mapping[str, str], problems: _Problems) -> None:
    """A key changed from its default for a service that is turned off is a mistake.

    Pulumi passes every declared default as config, so "changed" means "differs from the
    default", not "present".
    """
    enabled = {"monitoring": c.monitoring, "tracing": c.monitoring and c.tracing,
               "logging": c.monitoring and c.logging}
    for switch, keys in _SERVICE_KEYS.items():
        if enabled[switch] or (switch != "monitoring" and not c.monitoring):
            continue  # a sub-service of monitoring that is off is reported once, against monitoring
        for key in keys:
            if key in raw and problems.clear(key) and getattr(c, key) != StackConfig.model_fields[key].default:
                problems.value(key, _shown(raw[key]), f"needs {switch}: true (that service is off)")


def _check_port_collisions(settings: Settings, problems: _Problems) -> None:
    seen: dict[int, str] = {}
    for key, value in settings.published_ports().items():
        if value in seen:
            if problems.clear(key, seen[value], "portOffset"):
                problems.value(key, str(value - settings.port_offset),
                               f"publishes host port {value}, which {seen[value]} already uses")
        else:
            seen[value] = key


# --- Pulumi I/O ----------------------------------------------------------------------------


def load() -> Settings:
    """Read this stack's config through Pulumi's public API and parse it.

    The key names come from PULUMI_CONFIG (every key the CLI passes, declared defaults
    included); the values from `pulumi.Config`; secret values only as secret Outputs.
    """
    config = pulumi.Config()
    prefix = f"{config.name}:"
    secret_full = set(pulumi.runtime.get_config_secret_keys_env())
    keys = [k[len(prefix):] for k in pulumi.runtime.get_config_env() if k.startswith(prefix)]
    secret_keys = {k for k in keys if prefix + k in secret_full or pulumi.runtime.is_config_secret(prefix + k)}
    values = {k: config.get(k) for k in keys}
    # `mirrors` is a secret key once an entry's password is set with --path --secret
    secrets = {k: config.get_secret(k) for k in secret_keys & {*SECRET_KEYS, "mirrors"}}
    # like the Docker provider: its `docker:host` config first, then the DOCKER_HOST variable
    docker_host, docker_host_name = pulumi.Config("docker").get("host"), "docker:host"
    if not docker_host:
        docker_host, docker_host_name = os.environ.get("DOCKER_HOST"), "DOCKER_HOST"
    return parse(values, project=pulumi.get_project(), stack=pulumi.get_stack(), secret_keys=secret_keys,
                 secrets=secrets, docker_host=docker_host, docker_host_name=docker_host_name)


# --- Pulumi.yaml ---------------------------------------------------------------------------

_PULUMI_TYPES = {bool: "boolean", int: "integer", str: "string", tuple[str, ...]: "array"}


def _yaml_scalar(value: object) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...")


def _config_value(default: object) -> object:
    return list(default) if isinstance(default, tuple) else default


def pulumi_yaml_config() -> str:
    """The `config:` block of Pulumi.yaml: every key with a default, from `StackConfig`."""
    lines = ["config:"]
    for key, field in StackConfig.model_fields.items():
        if field.default is None:
            continue  # optional: Pulumi requires a declared key that has no default
        kind = _PULUMI_TYPES[field.annotation]  # type: ignore[index]
        lines += [f"  {key}:", f"    type: {kind}"]
        if kind == "array":
            lines.append("    items: {type: string}")
        lines.append(f"    description: {_yaml_scalar(field.description)}")
        lines.append(f"    default: {_yaml_scalar(_config_value(field.default))}")
    return "\n".join(lines) + "\n"


def with_generated_config(pulumi_yaml: str) -> str:
    """Pulumi.yaml's text with its top-level `config:` block replaced by the generated one."""
    match = re.search(r"^config:\n(?:(?:[ #].*)?\n)*", pulumi_yaml, re.MULTILINE)
    if match is None:
        return pulumi_yaml.rstrip("\n") + "\n" + pulumi_yaml_config()
    block = match.group(0)
    # comment lines that open the next top-level section belong to it, not to config
    trailing = re.search(r"(?:^(?:#.*)?\n)*\Z", block, re.MULTILINE)
    keep = trailing.group(0) if trailing else ""
    return pulumi_yaml[: match.start()] + pulumi_yaml_config() + keep + pulumi_yaml[match.end():]


def _main(argv: list[str]) -> int:
    if argv != ["--pulumi-yaml"]:
        print("usage: python -m settings --pulumi-yaml   (rewrites the config: block of Pulumi.yaml)",
              file=sys.stderr)
        return 2
    path = Path(__file__).resolve().parent / "Pulumi.yaml"
    path.write_text(with_generated_config(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

