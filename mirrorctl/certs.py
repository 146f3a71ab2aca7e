"""`verify-certs`: connect to the registry with TLS, verify against the stack CA, report.

The handshake itself verifies the chain (trusting only the stack's root CA) and the host
name. The report lists the verified chain, leaf first (subject, issuer, validity, days
left, whether the server sent it), and the leaf's SANs. The chain comes from OpenSSL's
verified chain: `SSLSocket.get_verified_chain()` (Python 3.13+) or, on 3.10-3.12, the same
method of the private `_sslobj` (added with it in CPython bpo-18233); without either, only
the leaf is shown.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from mirrorctl.errors import MirrorctlError
from mirrorctl.transport import tls_context


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    days_left: int
    is_ca: bool
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    sha256: str
    sent_by_server: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "is_ca": self.is_ca,
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "sha256": self.sha256,
            "sent_by_server": self.sent_by_server,
        }


@dataclass(frozen=True)
class ChainReport:
    host: str
    port: int
    tls_version: str
    cipher: str
    chain: tuple[CertInfo, ...]  # leaf first, root last

    @property
    def leaf(self) -> CertInfo:
        return self.chain[0]

    @property
    def earliest(self) -> CertInfo:
        return min(self.chain, key=lambda c: c.not_after)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "verified": True,
            "chain": [c.as_dict() for c in self.chain],
            "sans": {"dns": list(self.leaf.dns_names), "ip": list(self.leaf.ip_addresses)},
            "earliest_expiry": self.earliest.not_after.isoformat(),
            "min_days_left": self.earliest.days_left,
        }


def describe_cert(der: bytes, *, sent: bool, now: datetime.datetime) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    not_after = cert.not_valid_after_utc
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=not_after,
        days_left=int((not_after - now).total_seconds() // 86400),
        is_ca=is_ca,
        dns_names=dns,
        ip_addresses=ips,
        sha256=hashlib.sha256(der).hexdigest(),
        sent_by_server=sent,
    )


def _der_chain(tls: ssl.SSLSocket, method: str) -> list[bytes] | None:
    """The chain as DER bytes, from the public (3.13+) or the private (3.10+) method."""
    getter = getattr(tls, method, None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), method, None)
    if getter is None:
        return None
    items = getter()
    der: list[bytes] = []
    for item in items or []:
        if isinstance(item, bytes):
            der.append(item)
        else:  # _ssl.Certificate (3.10-3.12)
            der.append(item.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    return der


def endpoint(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise MirrorctlError(f"registry URL {url!r} is not https://host:port")
    return parts.hostname, parts.port or 443


def inspect_chain(
    url: str,
    ca_pem: str,
    *,
    timeout: float = 10.0,
    ca_source: str = "the stack CA",
    now: datetime.datetime | None = None,
) -> ChainReport:
    host, port = endpoint(url)
    context = tls_context(ca_pem)
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                verified = _der_chain(tls, "get_verified_chain")
                sent = _der_chain(tls, "get_unverified_chain") or []
                leaf = tls.getpeercert(binary_form=True)
                version = tls.version() or "?"
                cipher = (tls.cipher() or ("?",))[0]
    except ssl.SSLCertVerificationError as error:
        reason = error.verify_message or error.reason or str(error)
        raise MirrorctlError(
            f"TLS verification of {host}:{port} failed (trusting only {ca_source}): {reason}"
        ) from error
    except ssl.SSLError as error:
        raise MirrorctlError(
            f"TLS handshake with {host}:{port} failed: {error.reason or error}"
        ) from error
    except OSError as error:
        raise MirrorctlError(
            f"cannot connect to {host}:{port}: {error.strerror or error}"
        ) from error
    if not verified:
        verified = [leaf] if leaf else []
    if not verified:
        raise MirrorctlError(f"{host}:{port} presented no certificate")
    sent_digests = {hashlib.sha256(d).hexdigest() for d in sent}
    chain = tuple(
        describe_cert(der, sent=hashlib.sha256(der).hexdigest() in sent_digests, now=now)
        for der in verified
    )
    return ChainReport(host=host, port=port, tls_version=version, cipher=cipher, chain=chain)
