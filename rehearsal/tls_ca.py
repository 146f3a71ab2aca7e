"""A throwaway certificate authority for the rehearsals' TLS stand-ins (CDN hosts, hostile stubs).

    ca = TestCa.create(directory)           # writes directory/ca.crt (what a client trusts)
    context = ca.server_context(["cdn.hub.test", "127.0.0.1"])   # an ssl server context

Real CDNs and storage services answer over TLS with a certificate for their name: the stand-ins
do the same, so the upstream front's `proxy_ssl_verify` (on, as in the stack) is exercised
against a CA the rehearsal controls instead of the public bundle. Names that parse as IP
addresses go into the certificate as IP SANs (and as DNS SANs, which is where nginx looks for
them), the rest as DNS SANs.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TestCa:
    directory: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    __test__ = False  # not a pytest class, despite its name

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.crt"

    @classmethod
    def create(cls, directory: Path) -> TestCa:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-mirror rehearsal CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
            .sign(key, hashes.SHA256())
        )
        (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, cert)

    def issue(self, names: Iterable[str]) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a server certificate for `names`."""
        names = list(names)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
            else:
                # nginx checks an upstream's name with OpenSSL's X509_check_host, which matches
                # an IP literal against DNS names only: such a server passes nginx's check too
                sans.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def server_context(self, names: Iterable[str]) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for `names` (files under `directory`)."""
        names = list(names)
        cert_pem, key_pem = self.issue(names)
        stem = self.directory / f"server-{abs(hash(tuple(names)))}"
        stem.with_suffix(".crt").write_bytes(cert_pem)
        stem.with_suffix(".key").write_bytes(key_pem)
        stem.with_suffix(".key").chmod(0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        return context
