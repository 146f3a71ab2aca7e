"""A fake of the pulumi-tls 5.6.2 provider for Pulumi mocks: REAL keys and certificates.

`fake_tls_resource(typ, inputs)` answers a mock `new_resource` call for the four pulumi-tls
resource types the program uses, with keys and certificates made by `cryptography` exactly as
terraform-provider-tls (the provider pulumi-tls bridges) would make them from the same inputs.
Inputs arrive camelCase as Pulumi sends them; the returned state echoes the inputs (Pulumi
state holds inputs too, minus write-only `*Wo` attributes) plus the provider's computed
outputs, with the camelCase names of the pulumi_tls SDK (`privateKeyPem`, `certPem`, ...).

Mapping followed, from hashicorp/terraform-provider-tls (4.x line, the one whose schema has
`max_path_length` and the write-only `*_pem_wo` attributes that pulumi-tls 5.6.2 exposes;
the commits read are in docs/upstream-references.md):

- internal/provider/common_cert.go (`createCertificate`, `createSubjectDistinguishedNames`,
  `generateSubjectKeyID`):
  * NotBefore = now, NotAfter = NotBefore + validity_period_hours; serial = random < 2**128;
    state id = serial in decimal; validity_*_time = Go `time.MarshalText` (RFC 3339, nanos).
  * allowed_uses: names of `keyUsages` OR-ed into KeyUsage (critical, as Go's x509 writes
    it), names of `extendedKeyUsages` appended to ExtKeyUsage in the given order.
  * is_ca_certificate: IsCA and a SubjectKeyId (SHA-1 of the marshalled public key: PKCS#1
    for RSA, the uncompressed point for ECDSA, `asn1.Marshal([]byte)` i.e. an OCTET STRING
    for ED25519 — so ED25519 ids differ from RFC 5280 method 1, as in the provider).
  * max_path_length: only a value >= 0 is copied into `template.MaxPathLen`, and the provider
    never sets `MaxPathLenZero`; Go's x509 therefore writes NO pathLenConstraint for 0
    (0 means "unlimited", not "no intermediate below"), and refuses any value other than
    0/-1 on a non-CA ("x509: only CAs are allowed to specify MaxPathLen").
  * set_subject_key_id: SubjectKeyId as above. set_authority_key_id (self-signed only):
    AuthorityKeyId = the issuer's SubjectKeyId, an error when it has none.
  * subject: C, ST, L, STREET, PC, O, OU, CN, SERIALNUMBER (Go `pkix.Name.ToRDNSequence`
    order, one RDN each, PrintableString when printable else UTF8String), then emailAddress
    as an IA5String extra name.
- internal/provider/resource_self_signed_cert.go
  (`BasicConstraintsValid: true` always; subject, dns_names, ip_addresses, uris from inputs).
- internal/provider/resource_locally_signed_cert.go
  (template = CSR's Subject, DNSNames, IPAddresses, URIs, `BasicConstraintsValid: true`;
  issuer = the CA cert; Go's x509 adds AuthorityKeyId = CA's SubjectKeyId when the issuer and
  subject names differ; the CSR subject is re-encoded by Go, which keeps only the fields of
  `pkix.Name` — the CSR's emailAddress attribute is dropped).
- internal/provider/resource_cert_request.go
  (subject, dns_names, ip_addresses, uris; id = `hashForState` of the DER: SHA-1 hex of
  `strings.TrimSpace(string(der))`).
- internal/provider/resource_private_key.go and common_key.go: RSA default 2048 bits, ECDSA
  default curve P224 (P224/P256/P384/P521), ED25519; private_key_pem = PKCS#1 (RSA), SEC1
  (ECDSA), PKCS#8 (ED25519); private_key_pem_pkcs8; OpenSSH private/public key and MD5 /
  SHA256 fingerprints, all empty strings for P224 (x/crypto/ssh lacks it); id = SHA-1 hex of
  the PKIX public key DER. (The provider hashes `strings.TrimSpace(string(der))`, which differs
  from the DER for the ~2% of keys whose DER ends in a byte Go counts as space; the fake draws
  another key then, so each key it hands out has the id the provider would give it AND that
  id is the plain SHA-1 of the DER.)
- Go crypto/x509 `CreateCertificate`: signature SHA256WithRSA for RSA issuers, ECDSA with
  SHA-256 (P224, P256) / SHA-384 (P384) / SHA-512 (P521), PureEd25519; basicConstraints
  critical; SAN critical only with an empty subject; a CA key that does not match the CA
  certificate is refused.

Not modelled: `ready_for_renewal` is false at create (as the provider's create), the time
is the real clock, and `name_constraint_*` (not in pulumi-tls 5.6.2) is not accepted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"

# Outputs the pulumi_tls SDK marks secret (`additional_secret_outputs` in the SDK): a mock
# must wrap these in `pulumi.Output.secret`, mocks do not do it by themselves.
SECRET_OUTPUTS: dict[str, frozenset[str]] = {
    PRIVATE_KEY: frozenset({"privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"}),
    SELF_SIGNED_CERT: frozenset({"privateKeyPem"}),
    CERT_REQUEST: frozenset({"privateKeyPem"}),
    LOCALLY_SIGNED_CERT: frozenset({"caPrivateKeyPem"}),
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_PUBLIC_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)

_CURVES: dict[str, ec.EllipticCurve] = {
    "P224": ec.SECP224R1(),
    "P256": ec.SECP256R1(),
    "P384": ec.SECP384R1(),
    "P521": ec.SECP521R1(),
}

# common_cert.go `keyUsages`: name -> bit number of the KeyUsage BIT STRING (RFC 5280 4.2.1.3)
_KEY_USAGE_BITS: dict[str, int] = {
    "digital_signature": 0,
    "content_commitment": 1,
    "key_encipherment": 2,
    "data_encipherment": 3,
    "key_agreement": 4,
    "cert_signing": 5,
    "crl_signing": 6,
    "encipher_only": 7,
    "decipher_only": 8,
}

# common_cert.go `extendedKeyUsages` -> the OIDs of Go's x509 ExtKeyUsage constants
_EXT_KEY_USAGES: dict[str, x509.ObjectIdentifier] = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec_end_system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec_tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec_user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft_server_gated_crypto": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape_server_gated_crypto": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoft_commercial_code_signing": x509.ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoft_kernel_code_signing": x509.ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}

# Go pkix.Name.ToRDNSequence order: (input key, OID, multi-valued field in pkix.Name)
_SUBJECT_FIELDS: tuple[tuple[str, x509.ObjectIdentifier], ...] = (
    ("country", NameOID.COUNTRY_NAME),
    ("province", NameOID.STATE_OR_PROVINCE_NAME),
    ("locality", NameOID.LOCALITY_NAME),
    ("streetAddresses", NameOID.STREET_ADDRESS),
    ("postalCode", NameOID.POSTAL_CODE),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("commonName", NameOID.COMMON_NAME),
    ("serialNumber", NameOID.SERIAL_NUMBER),
)
_EMAIL_OID = NameOID.EMAIL_ADDRESS  # 1.2.840.113549.1.9.1

_PRINTABLE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


class FakeTlsError(ValueError):
    """The real provider would fail this create (same condition, same reason)."""


# ----------------------------------------------------------------------------------------
# entry point


def fake_tls_resource(typ: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Create one pulumi-tls resource for real; return `(id, state)` for a Pulumi mock."""
    handlers = {
        PRIVATE_KEY: _private_key,
        SELF_SIGNED_CERT: _self_signed_cert,
        CERT_REQUEST: _cert_request,
        LOCALLY_SIGNED_CERT: _locally_signed_cert,
    }
    handler = handlers.get(typ)
    if handler is None:
        raise ValueError(f"fake_tls_resource: unsupported resource type {typ!r}")
    return handler(dict(inputs))


# ----------------------------------------------------------------------------------------
# private key


def _private_key(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm = inputs.get("algorithm")
    rsa_bits = _int(inputs.get("rsaBits"), 2048)
    curve_name = inputs.get("ecdsaCurve") or "P224"
    key, pem = _generate_key(algorithm, rsa_bits, curve_name)
    # Keys whose DER TrimSpace would shorten are drawn again: see the module docstring.
    while _go_trim_space(_public_der(key)) != _public_der(key):
        key, pem = _generate_key(algorithm, rsa_bits, curve_name)

    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_der = _public_der(key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    openssh_private, openssh_public, md5, sha256 = _openssh(key)

    state: dict[str, Any] = dict(inputs)
    state.update(
        {
            "algorithm": algorithm,
            "rsaBits": rsa_bits,
            "ecdsaCurve": curve_name,
            "privateKeyPem": pem.decode(),
            "privateKeyPemPkcs8": pkcs8.decode(),
            "privateKeyOpenssh": openssh_private,
            "publicKeyPem": public_pem.decode(),
            "publicKeyOpenssh": openssh_public,
            "publicKeyFingerprintMd5": md5,
            "publicKeyFingerprintSha256": sha256,
        }
    )
    return _hash_for_state(public_der), state


def _generate_key(algorithm: Any, rsa_bits: int, curve_name: str) -> tuple[PrivateKey, bytes]:
    """A new key and its `private_key_pem` (PKCS#1, SEC1 or PKCS#8 as the provider writes it)."""
    key: PrivateKey
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # "RSA PRIVATE KEY" = PKCS#1
            serialization.NoEncryption(),
        )
    elif algorithm == "ECDSA":
        if curve_name not in _CURVES:
            raise FakeTlsError(f"invalid ECDSA curve {curve_name!r}; supported: {sorted(_CURVES)}")
        key = ec.generate_private_key(_CURVES[curve_name])
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # "EC PRIVATE KEY" = SEC1
            serialization.NoEncryption(),
        )
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        raise FakeTlsError(f"Key Algorithm {algorithm!r} is not supported")
    return key, pem


def _public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _openssh(key: PrivateKey) -> tuple[str, str, str, str]:
    """OpenSSH private key, authorized_keys line, MD5 and SHA256 fingerprints (x/crypto/ssh)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp224r1":
        return "", "", "", ""  # x/crypto/ssh has no P-224: the provider leaves them empty
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public_line = (
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )
    blob = base64.b64decode(public_line.split()[1])
    md5 = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
    sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    # Go's pem.EncodeToMemory wraps at 64 columns; ssh.MarshalAuthorizedKey ends with "\n"
    return _rewrap_pem(private), public_line + "\n", md5, sha256


def _rewrap_pem(text: str) -> str:
    lines = text.strip().splitlines()
    body = "".join(lines[1:-1])
    wrapped = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([lines[0], *wrapped, lines[-1]]) + "\n"


# ----------------------------------------------------------------------------------------
# certificate request


def _cert_request(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _load_private_key(_key_input(inputs, "privateKeyPem"))
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject_name(inputs.get("subject")))
    sans = _sans(inputs.get("dnsNames"), inputs.get("ipAddresses"), inputs.get("uris"))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, _hash_for_key(key))
    der = csr.public_bytes(serialization.Encoding.DER)
    state = _echo(inputs)
    state.update(
        {
            "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "keyAlgorithm": _algorithm_name(key),
        }
    )
    return _hash_for_state(der), state


# ----------------------------------------------------------------------------------------
# certificates


def _self_signed_cert(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _load_private_key(_key_input(inputs, "privateKeyPem"))
    subject = _subject_name(inputs.get("subject"))
    sans = _sans(inputs.get("dnsNames"), inputs.get("ipAddresses"), inputs.get("uris"))
    cert, start, end = _create_certificate(
        inputs,
        subject=subject,
        sans=sans,
        public_key=key.public_key(),
        issuer_name=subject,
        issuer_key=key,
        issuer_ski=None,  # parent == template: the template's own SubjectKeyId
        self_signed=True,
    )
    state = _echo(inputs)
    state.setdefault("isCaCertificate", False)
    state.setdefault("setSubjectKeyId", False)
    state.setdefault("setAuthorityKeyId", False)
    state.setdefault("earlyRenewalHours", 0)
    state.update(_cert_outputs(cert, start, end))
    state["keyAlgorithm"] = _algorithm_name(key)
    return str(cert.serial_number), state


def _locally_signed_cert(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    csr = x509.load_pem_x509_csr(str(inputs["certRequestPem"]).encode())
    ca_key = _load_private_key(_key_input(inputs, "caPrivateKeyPem"))
    ca_cert = x509.load_pem_x509_certificate(str(inputs["caCertPem"]).encode())
    if ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != ca_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise FakeTlsError("x509: provided PrivateKey doesn't match parent's PublicKey")
    try:
        ca_ski: bytes | None = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ca_ski = None
    subject = _reencode_name(csr.subject)
    try:
        csr_sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # Go's template copies DNSNames, IPAddresses and URIs only
        sans: list[x509.GeneralName] = [
            n for n in csr_sans if isinstance(n, x509.DNSName | x509.IPAddress | x509.UniformResourceIdentifier)
        ]
    except x509.ExtensionNotFound:
        sans = []
    public_key = csr.public_key()
    if not isinstance(public_key, _PUBLIC_KEY_TYPES):
        raise FakeTlsError(f"unsupported CSR public key {type(public_key).__name__}")
    cert, start, end = _create_certificate(
        inputs,
        subject=subject,
        sans=sans,
        public_key=public_key,
        issuer_name=ca_cert.subject,
        issuer_key=ca_key,
        issuer_ski=ca_ski,
        self_signed=False,
    )
    state = _echo(inputs)
    state.setdefault("isCaCertificate", False)
    state.setdefault("setSubjectKeyId", False)
    state.setdefault("earlyRenewalHours", 0)
    state.update(_cert_outputs(cert, start, end))
    state["caKeyAlgorithm"] = _algorithm_name(ca_key)
    return str(cert.serial_number), state


def _create_certificate(
    inputs: Mapping[str, Any],
    *,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    public_key: PublicKey,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    issuer_ski: bytes | None,
    self_signed: bool,
) -> tuple[x509.Certificate, datetime.datetime, datetime.datetime]:
    """common_cert.go `createCertificate` followed by Go's `x509.CreateCertificate`."""
    if "validityPeriodHours" not in inputs or inputs["validityPeriodHours"] is None:
        raise FakeTlsError("validityPeriodHours is required")
    hours = _int(inputs["validityPeriodHours"], 0)
    if hours < 0:
        raise FakeTlsError("validityPeriodHours must be at least 0")
    start = datetime.datetime.now(datetime.UTC)
    end = start + datetime.timedelta(hours=hours)

    key_usage_bits: set[int] = set()
    ext_key_usages: list[x509.ObjectIdentifier] = []
    for use in inputs.get("allowedUses") or []:
        if use in _KEY_USAGE_BITS:
            key_usage_bits.add(_KEY_USAGE_BITS[use])
        elif use in _EXT_KEY_USAGES:
            ext_key_usages.append(_EXT_KEY_USAGES[use])
        else:
            raise FakeTlsError(f"allowed_uses: unsupported value {use!r}")

    is_ca = bool(inputs.get("isCaCertificate"))
    subject_key_id: bytes | None = None
    if is_ca:
        if len(subject) == 0:
            raise FakeTlsError(
                "Invalid Certificate Subject: Must contain at least one Distinguished Name "
                "when creating Certificate Authority (CA)"
            )
        subject_key_id = _provider_subject_key_id(public_key)

    # max_path_length: copied only when >= 0, never with MaxPathLenZero (see docstring)
    max_path_len = 0
    raw_max_path = inputs.get("maxPathLength")
    if raw_max_path is not None and _int(raw_max_path, -1) >= 0:
        max_path_len = _int(raw_max_path, -1)
    if not is_ca and max_path_len != 0:
        raise FakeTlsError("x509: only CAs are allowed to specify MaxPathLen")
    path_length = max_path_len if (is_ca and max_path_len > 0) else None

    if inputs.get("setSubjectKeyId"):
        subject_key_id = _provider_subject_key_id(public_key)

    authority_key_id: bytes | None = None
    if self_signed and inputs.get("setAuthorityKeyId"):
        if not subject_key_id:
            raise FakeTlsError("Invalid Certificate Authority: Could not determine Authority Key Identifier")
        authority_key_id = subject_key_id
    if not self_signed and issuer_ski and issuer_name.public_bytes() != subject.public_bytes():
        authority_key_id = issuer_ski  # Go x509: parent.SubjectKeyId when issuer != subject

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(secrets.randbelow(1 << 128) or 1)
        .not_valid_before(start)
        .not_valid_after(end)
    )
    # Go's buildCertExtensions order: keyUsage, extKeyUsage, basicConstraints, SKI, AKI, SAN
    if key_usage_bits:
        builder = builder.add_extension(_key_usage_extension(key_usage_bits), critical=True)
    if ext_key_usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext_key_usages), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
    if subject_key_id:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(subject_key_id), critical=False)
    if authority_key_id:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
    return builder.sign(issuer_key, _hash_for_key(issuer_key)), start, end


def _cert_outputs(cert: x509.Certificate, start: datetime.datetime, end: datetime.datetime) -> dict[str, Any]:
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": _go_time(start),
        "validityEndTime": _go_time(end),
        "readyForRenewal": False,
    }


def _key_usage_extension(bits: set[int]) -> x509.ExtensionType:
    """KeyUsage; Go allows encipher/decipher_only without key_agreement, cryptography not."""
    if {7, 8} & bits and 4 not in bits:
        return x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, _der_bit_string(bits))
    flags = {name: (bit in bits) for name, bit in _KEY_USAGE_BITS.items()}
    return x509.KeyUsage(
        digital_signature=flags["digital_signature"],
        content_commitment=flags["content_commitment"],
        key_encipherment=flags["key_encipherment"],
        data_encipherment=flags["data_encipherment"],
        key_agreement=flags["key_agreement"],
        key_cert_sign=flags["cert_signing"],
        crl_sign=flags["crl_signing"],
        encipher_only=flags["encipher_only"],
        decipher_only=flags["decipher_only"],
    )


def _der_bit_string(bits: set[int]) -> bytes:
    length = max(bits) + 1
    nbytes = (length + 7) // 8
    value = bytearray(nbytes)
    for bit in bits:
        value[bit // 8] |= 0x80 >> (bit % 8)
    unused = nbytes * 8 - length
    content = bytes([unused]) + bytes(value)
    return bytes([0x03, len(content)]) + content


# ----------------------------------------------------------------------------------------
# helpers


def _echo(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs as state: write-only attributes are never stored."""
    return {k: v for k, v in inputs.items() if not k.endswith("Wo")}


def _key_input(inputs: Mapping[str, Any], name: str) -> str:
    value = inputs.get(name) or inputs.get(name + "Wo")
    if not value:
        raise FakeTlsError(f"exactly one of {name} / {name}Wo must be set")
    return str(value)


def _load_private_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, _PRIVATE_KEY_TYPES):
        raise FakeTlsError(f"unsupported private key type {type(key).__name__}")
    return key


def _algorithm_name(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return "ED25519"


def _hash_for_key(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """Go x509 `signingParamsForKey` defaults."""
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp384r1":
            return hashes.SHA384()
        if key.curve.name == "secp521r1":
            return hashes.SHA512()
        return hashes.SHA256()
    return None  # Ed25519


def _provider_subject_key_id(public_key: PublicKey) -> bytes:
    """common_cert.go `generateSubjectKeyID`: SHA-1 of the provider's key marshalling."""
    if isinstance(public_key, rsa.RSAPublicKey):
        data = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        data = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        data = bytes([0x04, len(raw)]) + raw  # asn1.Marshal([]byte): OCTET STRING
    return hashlib.sha1(data).digest()


def _hash_for_state(data: bytes) -> str:
    """provider `hashForState`: SHA-1 hex of strings.TrimSpace(value)."""
    return hashlib.sha1(_go_trim_space(data)).hexdigest()


# unicode.IsSpace: the Latin-1 spaces plus the other White_Space code points
_GO_SPACE_RUNES = frozenset(
    "\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _go_trim_space(data: bytes) -> bytes:
    """Go `strings.TrimSpace` on a byte string (DER is no UTF-8, so only some endings decode).

    Go decodes UTF-8 runes from each end and drops them while `unicode.IsSpace`; an invalid
    sequence decodes as RuneError (not a space) and stops the trim. Python's bytes.strip
    would miss U+0085, U+00A0 and the other multi-byte spaces.
    """
    start, end = 0, len(data)
    while start < end:
        rune, width = _decode_rune(data[start:end], from_end=False)
        if rune not in _GO_SPACE_RUNES:
            break
        start += width
    while start < end:
        rune, width = _decode_rune(data[start:end], from_end=True)
        if rune not in _GO_SPACE_RUNES:
            break
        end -= width
    return data[start:end]


def _decode_rune(data: bytes, *, from_end: bool) -> tuple[str, int]:
    """The first (or last) UTF-8 rune of `data` and its width; "" for an invalid sequence."""
    for width in range(1, min(4, len(data)) + 1):
        chunk = data[len(data) - width :] if from_end else data[:width]
        try:
            return chunk.decode("utf-8"), width
        except UnicodeDecodeError:
            continue
    return "", 1


def _go_time(moment: datetime.datetime) -> str:
    """Go `time.Time.MarshalText` (RFC 3339 with trailing-zero-trimmed fraction), UTC."""
    base = moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def _int(value: Any, default: int) -> int:
    """Pulumi sends numbers as floats (protobuf Struct); accept ints, floats, numeric text."""
    if value is None:
        return default
    return int(float(value))


def _attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    asn1_type = _ASN1Type.PrintableString if value and set(value) <= _PRINTABLE else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=asn1_type)


def _subject_name(subject: Any) -> x509.Name:
    """`createSubjectDistinguishedNames` then Go's `ToRDNSequence`."""
    if isinstance(subject, Sequence) and not isinstance(subject, str):
        subject = subject[0] if subject else None  # TF block list form
    if not subject:
        return x509.Name([])
    fields: dict[str, list[str]] = {}
    for key, _oid in _SUBJECT_FIELDS:
        value = subject.get(key)
        if value is None:
            continue
        fields[key] = [str(v) for v in value] if key == "streetAddresses" else [str(value)]
    email = subject.get("emailAddress")
    return _go_name(fields, email=None if email is None else str(email))


def _go_name(fields: Mapping[str, list[str]], email: str | None) -> x509.Name:
    rdns: list[x509.RelativeDistinguishedName] = []
    for key, oid in _SUBJECT_FIELDS:
        for value in fields.get(key, []):
            if key in ("commonName", "serialNumber") and not value:
                continue  # Go appends CN / SERIALNUMBER only when non-empty
            rdns.append(x509.RelativeDistinguishedName([_attribute(oid, value)]))
    if email is not None:
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(_EMAIL_OID, email, _type=_ASN1Type.IA5String)]))
    return x509.Name(rdns)


def _reencode_name(name: x509.Name) -> x509.Name:
    """A CSR subject as Go's pkix.Name re-encodes it (known fields only, Go's order)."""
    by_oid = {oid: key for key, oid in _SUBJECT_FIELDS}
    fields: dict[str, list[str]] = {}
    for attribute in name:
        key = by_oid.get(attribute.oid)
        if key is None:
            continue
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode()
        if key in ("commonName", "serialNumber"):
            fields[key] = [value]  # single-valued in pkix.Name: the last one wins
        else:
            fields.setdefault(key, []).append(value)
    return _go_name(fields, email=None)


def _sans(dns_names: Any, ip_addresses: Any, uris: Any) -> list[x509.GeneralName]:
    """SubjectAlternativeName in Go's marshalSANs order: DNS, (email), IP, URI."""
    names: list[x509.GeneralName] = [x509.DNSName(str(n)) for n in dns_names or []]
    for ip in ip_addresses or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(str(ip))))
        except ValueError as error:
            raise FakeTlsError(f"Invalid IP address: Failed to parse {ip!r}") from error
    names.extend(x509.UniformResourceIdentifier(str(u)) for u in uris or [])
    return names
