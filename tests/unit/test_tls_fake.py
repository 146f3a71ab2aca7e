"""The pulumi-tls fake makes real keys and certificates exactly as the inputs say.

Checks that matter for the rehearsals are made with `openssl` (not with the library that
made the certificate): chain verification, basic constraints, key usages, SANs, curves.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pulumi_tls
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from rehearsal.fakes.tls import (
    CERT_REQUEST,
    LOCALLY_SIGNED_CERT,
    PRIVATE_KEY,
    SECRET_OUTPUTS,
    SELF_SIGNED_CERT,
    FakeTlsError,
    _hash_for_state,
    fake_tls_resource,
)
from tests.conftest import require_tool

CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]


def key(algorithm: str, **extra: Any) -> dict[str, Any]:
    return fake_tls_resource(PRIVATE_KEY, {"algorithm": algorithm, **extra})[1]


def root_ca(private_key_pem: str, **extra: Any) -> dict[str, Any]:
    inputs = {
        "privateKeyPem": private_key_pem,
        "isCaCertificate": True,
        "subject": {"commonName": "Test Root CA", "organization": "registry-mirror"},
        "allowedUses": CA_USES,
        "validityPeriodHours": 87600,
        **extra,
    }
    return fake_tls_resource(SELF_SIGNED_CERT, inputs)[1]


def signed(
    ca_key_pem: str, ca_cert_pem: str, subject_key_pem: str, csr: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    request = fake_tls_resource(CERT_REQUEST, {"privateKeyPem": subject_key_pem, **csr})[1]
    inputs = {
        "certRequestPem": request["certRequestPem"],
        "caPrivateKeyPem": ca_key_pem,
        "caCertPem": ca_cert_pem,
        "validityPeriodHours": 24,
        "allowedUses": SERVER_USES,
        **extra,
    }
    return fake_tls_resource(LOCALLY_SIGNED_CERT, inputs)[1]


def openssl_text(tmp_path: Path, pem: str, kind: str = "x509") -> str:
    openssl = require_tool("openssl")
    path = tmp_path / f"{kind}-{hashlib.sha1(pem.encode()).hexdigest()}.pem"
    path.write_text(pem)
    result = subprocess.run(
        [openssl, kind, "-noout", "-text", "-in", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def sdk_outputs(resource: type, args: type) -> set[str]:
    """camelCase names of the SDK resource's output-only properties."""

    def names(cls: type) -> set[str]:
        return {
            getattr(v.fget, "_pulumi_name")  # noqa: B009 - set by @pulumi.getter
            for v in vars(cls).values()
            if isinstance(v, property) and hasattr(v.fget, "_pulumi_name")
        }

    return names(resource) - names(args)


@pytest.fixture(scope="module")
def pki() -> dict[str, dict[str, Any]]:
    """root (ECDSA P384) -> intermediate (ECDSA P256) -> server (RSA 2048), as the program."""
    root_key = key("ECDSA", ecdsaCurve="P384")
    root = root_ca(root_key["privateKeyPem"], maxPathLength=1)
    inter_key = key("ECDSA", ecdsaCurve="P256")
    inter = signed(
        root_key["privateKeyPem"],
        root["certPem"],
        inter_key["privateKeyPem"],
        {"subject": {"commonName": "Test Intermediate CA"}},
        isCaCertificate=True,
        allowedUses=CA_USES,
        validityPeriodHours=8760,
    )
    leaf_key = key("RSA")
    leaf = signed(
        inter_key["privateKeyPem"],
        inter["certPem"],
        leaf_key["privateKeyPem"],
        {
            "subject": {"commonName": "mirror.test"},
            "dnsNames": ["mirror.test", "localhost"],
            "ipAddresses": ["127.0.0.1", "::1"],
            "uris": ["spiffe://mirror.test/registry"],
        },
    )
    return {
        "root_key": root_key,
        "root": root,
        "inter_key": inter_key,
        "inter": inter,
        "leaf_key": leaf_key,
        "leaf": leaf,
    }


# ---------------------------------------------------------------------------- keys


def test_rsa_key_defaults_to_2048_bits_with_pkcs1_pem():
    state = key("RSA")
    private = serialization.load_pem_private_key(state["privateKeyPem"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert state["rsaBits"] == 2048
    assert state["privateKeyPem"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert state["privateKeyPemPkcs8"].startswith("-----BEGIN PRIVATE KEY-----\n")
    assert state["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----\n")


def test_rsa_bits_as_pulumi_float_are_honoured(tmp_path: Path):
    state = key("RSA", rsaBits=3072.0)
    text = openssl_text(tmp_path, state["privateKeyPem"], kind="pkey")
    assert "Private-Key: (3072 bit, 2 primes)" in text


def test_ecdsa_key_defaults_to_p224_without_openssh_forms():
    state = key("ECDSA")
    private = serialization.load_pem_private_key(state["privateKeyPem"].encode(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp224r1"
    assert state["ecdsaCurve"] == "P224"
    assert state["privateKeyPem"].startswith("-----BEGIN EC PRIVATE KEY-----\n")
    # x/crypto/ssh has no P-224: the provider sets these to empty strings
    for name in (
        "privateKeyOpenssh",
        "publicKeyOpenssh",
        "publicKeyFingerprintMd5",
        "publicKeyFingerprintSha256",
    ):
        assert state[name] == ""


@pytest.mark.parametrize(
    ("curve", "openssl_oid"),
    [("P224", "secp224r1"), ("P256", "prime256v1"), ("P384", "secp384r1"), ("P521", "secp521r1")],
)
def test_ecdsa_curve_names_map_to_nist_curves(tmp_path: Path, curve: str, openssl_oid: str):
    state = key("ECDSA", ecdsaCurve=curve)
    text = openssl_text(tmp_path, state["privateKeyPem"], kind="pkey")
    assert f"ASN1 OID: {openssl_oid}" in text


def test_ed25519_key_is_pkcs8_pem():
    state = key("ED25519")
    assert state["privateKeyPem"].startswith("-----BEGIN PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(state["privateKeyPem"].encode(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert state["publicKeyOpenssh"].startswith("ssh-ed25519 ")


def test_openssh_fingerprints_match_the_ssh_wire_format():
    """Fingerprints recomputed from the RSA numbers by hand (RFC 4253 ssh-rsa blob)."""
    state = key("RSA")
    public = serialization.load_pem_public_key(state["publicKeyPem"].encode())
    assert isinstance(public, rsa.RSAPublicKey)
    numbers = public.public_numbers()

    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    def mpint(value: int) -> bytes:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # leading 0 keeps it positive
        return ssh_string(raw)

    blob = ssh_string(b"ssh-rsa") + mpint(numbers.e) + mpint(numbers.n)
    assert state["publicKeyOpenssh"] == f"ssh-rsa {base64.b64encode(blob).decode()}\n"
    assert state["publicKeyFingerprintMd5"] == ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
    expected_sha = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert state["publicKeyFingerprintSha256"] == f"SHA256:{expected_sha}"
    assert state["privateKeyOpenssh"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")


def test_private_key_id_is_sha1_of_the_public_key_der():
    key_id, state = fake_tls_resource(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    public = serialization.load_pem_public_key(state["publicKeyPem"].encode())
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_id == hashlib.sha1(der).hexdigest()



# The id above held for only ~98% of keys before the fake redrew keys whose DER ends in a
# byte Go's TrimSpace drops: 500 keys make that regression show with certainty 1 - 0.98**500.
KEYS_FOR_THE_ID_RULE = 500


def test_private_key_id_is_sha1_of_the_public_key_der_for_every_one_of_500_keys():
    mismatched = []
    for _ in range(KEYS_FOR_THE_ID_RULE):
        key_id, state = fake_tls_resource(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
        public = serialization.load_pem_public_key(state["publicKeyPem"].encode())
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key_id != hashlib.sha1(der).hexdigest():
            mismatched.append(der[-4:].hex())
    assert mismatched == []


@pytest.mark.parametrize(
    ("data", "trimmed"),
    [
        # written from Go's strings.TrimSpace / unicode.IsSpace, not from the fake
        (b"\x30\x59\x01", b"\x30\x59\x01"),
        (b" \t\x30\x01\n\r\v\f", b"\x30\x01"),
        (b"\x30\x01\xc2\x85", b"\x30\x01"),  # U+0085 NEL
        (b"\xc2\xa0\x30\x01\xe3\x80\x80", b"\x30\x01"),  # U+00A0 and U+3000
        (b"\x30\x01\x85", b"\x30\x01\x85"),  # a lone continuation byte is RuneError
        (b"\x30\x01\x1c", b"\x30\x01\x1c"),  # Python's isspace() says yes, Go says no
        (b"\x30\x01\xe2\x80\x8b", b"\x30\x01\xe2\x80\x8b"),  # U+200B is not White_Space
    ],
)
def test_state_ids_hash_the_der_trimmed_as_go_strings_trimspace_trims(data: bytes, trimmed: bytes):
    """The cert request and certificate ids keep the provider's hashForState quirk."""
    assert _hash_for_state(data) == hashlib.sha1(trimmed).hexdigest()

def test_unknown_algorithm_and_curve_are_refused():
    with pytest.raises(FakeTlsError):
        key("DSA")
    with pytest.raises(FakeTlsError):
        key("ECDSA", ecdsaCurve="P192")


def test_unknown_resource_type_raises():
    with pytest.raises(ValueError, match="unsupported resource type"):
        fake_tls_resource("tls:index/unknown:Unknown", {})


# ---------------------------------------------------------------------------- state shape


@pytest.mark.parametrize(
    ("typ", "resource", "args"),
    [
        (PRIVATE_KEY, pulumi_tls.PrivateKey, pulumi_tls.PrivateKeyArgs),
        (SELF_SIGNED_CERT, pulumi_tls.SelfSignedCert, pulumi_tls.SelfSignedCertArgs),
        (CERT_REQUEST, pulumi_tls.CertRequest, pulumi_tls.CertRequestArgs),
        (LOCALLY_SIGNED_CERT, pulumi_tls.LocallySignedCert, pulumi_tls.LocallySignedCertArgs),
    ],
)
def test_state_carries_every_sdk_output_and_echoes_inputs(
    pki: dict[str, dict[str, Any]], typ: str, resource: type, args: type
):
    inputs: dict[str, Any] = {
        PRIVATE_KEY: {"algorithm": "ECDSA", "ecdsaCurve": "P256"},
        SELF_SIGNED_CERT: {
            "privateKeyPem": pki["root_key"]["privateKeyPem"],
            "subject": {"commonName": "x"},
            "allowedUses": ["server_auth"],
            "validityPeriodHours": 1,
            "dnsNames": ["x.test"],
        },
        CERT_REQUEST: {
            "privateKeyPem": pki["leaf_key"]["privateKeyPem"],
            "subject": {"commonName": "x"},
        },
        LOCALLY_SIGNED_CERT: {
            "certRequestPem": pki["leaf"]["certRequestPem"],
            "caPrivateKeyPem": pki["inter_key"]["privateKeyPem"],
            "caCertPem": pki["inter"]["certPem"],
            "allowedUses": ["server_auth"],
            "validityPeriodHours": 1,
        },
    }[typ]
    _, state = fake_tls_resource(typ, inputs)
    missing = sdk_outputs(resource, args) - set(state)
    assert not missing, f"outputs the SDK declares but the fake leaves None: {missing}"
    for name, value in inputs.items():
        assert state[name] == value


def test_write_only_key_input_signs_but_is_not_stored(pki: dict[str, dict[str, Any]]):
    _, state = fake_tls_resource(
        CERT_REQUEST,
        {
            "privateKeyPemWo": pki["leaf_key"]["privateKeyPem"],
            "privateKeyPemWoVersion": 1,
            "subject": {"commonName": "wo.test"},
        },
    )
    assert "privateKeyPemWo" not in state
    csr = x509.load_pem_x509_csr(state["certRequestPem"].encode())
    assert csr.is_signature_valid


@pytest.mark.parametrize("typ", [PRIVATE_KEY, SELF_SIGNED_CERT, CERT_REQUEST, LOCALLY_SIGNED_CERT])
def test_secret_outputs_match_the_sdk_declaration(typ: str):
    module = {
        PRIVATE_KEY: "private_key",
        SELF_SIGNED_CERT: "self_signed_cert",
        CERT_REQUEST: "cert_request",
        LOCALLY_SIGNED_CERT: "locally_signed_cert",
    }[typ]
    source = (Path(pulumi_tls.__file__).parent / f"{module}.py").read_text()
    declared = re.search(r"additional_secret_outputs=\[([^\]]*)\]", source)
    assert declared is not None
    names = set(re.findall(r'"(\w+)"', declared.group(1)))
    assert SECRET_OUTPUTS[typ] == {n for n in names if not n.endswith("Wo")}


# ---------------------------------------------------------------------------- certificates


def test_root_ca_has_ca_flag_pathlen_usages_and_key_ids(tmp_path: Path, pki: dict[str, dict[str, Any]]):
    text = openssl_text(tmp_path, pki["root"]["certPem"])
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:1", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign", text)
    assert "X509v3 Subject Key Identifier" in text
    assert "X509v3 Authority Key Identifier" not in text  # set_authority_key_id not set
    assert "Signature Algorithm: ecdsa-with-SHA384" in text
    assert "Subject: O = registry-mirror, CN = Test Root CA" in text
    assert pki["root"]["keyAlgorithm"] == "ECDSA"


def test_max_path_length_zero_encodes_no_constraint_as_the_provider(tmp_path: Path):
    """The provider copies 0 into MaxPathLen without MaxPathLenZero: Go omits pathlen."""
    ca_key = key("ECDSA", ecdsaCurve="P256")
    text = openssl_text(tmp_path, root_ca(ca_key["privateKeyPem"], maxPathLength=0)["certPem"])
    assert re.search(r"CA:TRUE\n", text)
    assert "pathlen" not in text
    unset = openssl_text(tmp_path, root_ca(ca_key["privateKeyPem"])["certPem"])
    assert "pathlen" not in unset
    two = openssl_text(tmp_path, root_ca(ca_key["privateKeyPem"], maxPathLength=2.0)["certPem"])
    assert "CA:TRUE, pathlen:2" in two


def test_max_path_length_on_a_non_ca_is_refused_like_go_x509(pki: dict[str, dict[str, Any]]):
    inputs = {
        "privateKeyPem": pki["leaf_key"]["privateKeyPem"],
        "subject": {"commonName": "leaf"},
        "allowedUses": SERVER_USES,
        "validityPeriodHours": 1,
    }
    with pytest.raises(FakeTlsError, match="only CAs are allowed"):
        fake_tls_resource(SELF_SIGNED_CERT, {**inputs, "maxPathLength": 1})
    _, state = fake_tls_resource(SELF_SIGNED_CERT, {**inputs, "maxPathLength": 0})
    assert not load(state["certPem"]).extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_without_subject_is_refused(pki: dict[str, dict[str, Any]]):
    with pytest.raises(FakeTlsError, match="Distinguished Name"):
        fake_tls_resource(
            SELF_SIGNED_CERT,
            {
                "privateKeyPem": pki["root_key"]["privateKeyPem"],
                "isCaCertificate": True,
                "allowedUses": CA_USES,
                "validityPeriodHours": 1,
            },
        )


def test_self_signed_authority_key_id_equals_subject_key_id(tmp_path: Path):
    ca_key = key("RSA")
    cert = load(root_ca(ca_key["privateKeyPem"], setAuthorityKeyId=True)["certPem"])
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski
    # provider's generateSubjectKeyID for RSA: SHA-1 of the PKCS#1 public key
    pkcs1 = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert ski == hashlib.sha1(pkcs1).digest()


def test_ed25519_subject_key_id_hashes_an_octet_string_like_the_provider():
    ca_key = key("ED25519")
    cert = load(root_ca(ca_key["privateKeyPem"])["certPem"])
    raw = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == hashlib.sha1(b"\x04\x20" + raw).digest()


def test_authority_key_id_without_subject_key_id_is_refused():
    leaf_key = key("ECDSA", ecdsaCurve="P256")
    with pytest.raises(FakeTlsError, match="Authority Key Identifier"):
        fake_tls_resource(
            SELF_SIGNED_CERT,
            {
                "privateKeyPem": leaf_key["privateKeyPem"],
                "subject": {"commonName": "leaf"},
                "allowedUses": SERVER_USES,
                "validityPeriodHours": 1,
                "setAuthorityKeyId": True,
            },
        )


def test_set_subject_key_id_on_a_leaf(pki: dict[str, dict[str, Any]]):
    plain = load(pki["leaf"]["certPem"])
    with pytest.raises(x509.ExtensionNotFound):
        plain.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    with_ski = signed(
        pki["inter_key"]["privateKeyPem"],
        pki["inter"]["certPem"],
        pki["leaf_key"]["privateKeyPem"],
        {"subject": {"commonName": "ski.test"}},
        setSubjectKeyId=True,
    )
    load(with_ski["certPem"]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_intermediate_is_a_ca_signed_by_root_with_root_key_id(tmp_path: Path, pki: dict[str, dict[str, Any]]):
    inter = load(pki["inter"]["certPem"])
    root = load(pki["root"]["certPem"])
    text = openssl_text(tmp_path, pki["inter"]["certPem"])
    assert re.search(r"Basic Constraints: critical\s+CA:TRUE\n", text)
    assert "Issuer: O = registry-mirror, CN = Test Root CA" in text
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root_ski
    assert pki["inter"]["caKeyAlgorithm"] == "ECDSA"


def test_leaf_has_server_usages_and_every_san(tmp_path: Path, pki: dict[str, dict[str, Any]]):
    text = openssl_text(tmp_path, pki["leaf"]["certPem"])
    assert re.search(r"Key Usage: critical\s+Digital Signature, Key Encipherment", text)
    assert re.search(r"Extended Key Usage: \s*TLS Web Server Authentication", text)
    assert re.search(r"Basic Constraints: critical\s+CA:FALSE", text)
    assert (
        "DNS:mirror.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, "
        "URI:spiffe://mirror.test/registry"
    ) in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text  # signed by the P256 intermediate
    assert "Public-Key: (2048 bit)" in text


def test_chain_verifies_with_openssl_anchored_at_the_root_only(tmp_path: Path, pki: dict[str, dict[str, Any]]):
    openssl = require_tool("openssl")
    for name in ("root", "inter", "leaf"):
        (tmp_path / f"{name}.pem").write_text(pki[name]["certPem"])
    ok = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
         str(tmp_path / "inter.pem"), "-purpose", "sslserver", "-verify_hostname",
         "mirror.test", str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # without the intermediate the leaf does not chain to the root
    missing = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert missing.returncode != 0


def test_chain_verifies_with_a_webpki_verifier(pki: dict[str, dict[str, Any]]):
    verifier = (
        PolicyBuilder().store(Store([load(pki["root"]["certPem"])])).build_server_verifier(x509.DNSName("mirror.test"))
    )
    chain = verifier.verify(load(pki["leaf"]["certPem"]), [load(pki["inter"]["certPem"])])
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=mirror.test",
        "CN=Test Intermediate CA",
        "CN=Test Root CA,O=registry-mirror",
    ]


def test_lifetime_follows_validity_period_hours(pki: dict[str, dict[str, Any]]):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    state = signed(
        pki["inter_key"]["privateKeyPem"],
        pki["inter"]["certPem"],
        pki["leaf_key"]["privateKeyPem"],
        {"subject": {"commonName": "life.test"}},
        validityPeriodHours=2160.0,
        earlyRenewalHours=360,
    )
    after = datetime.datetime.now(datetime.UTC)
    cert = load(state["certPem"])
    assert before <= cert.not_valid_before_utc <= after
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=2160)
    start = datetime.datetime.fromisoformat(state["validityStartTime"])
    end = datetime.datetime.fromisoformat(state["validityEndTime"])
    assert end - start == datetime.timedelta(hours=2160)
    assert start.replace(microsecond=0) == cert.not_valid_before_utc
    assert state["validityStartTime"].endswith("Z")
    assert state["readyForRenewal"] is False
    assert state["earlyRenewalHours"] == 360


def test_every_provider_usage_name_is_mapped(tmp_path: Path):
    ca_key = key("ECDSA", ecdsaCurve="P256")
    uses = [
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "cert_signing", "crl_signing", "encipher_only", "decipher_only",
        "any_extended", "server_auth", "client_auth", "code_signing", "email_protection",
        "ipsec_end_system", "ipsec_tunnel", "ipsec_user", "timestamping", "ocsp_signing",
        "microsoft_server_gated_crypto", "netscape_server_gated_crypto",
        "microsoft_commercial_code_signing", "microsoft_kernel_code_signing",
    ]  # fmt: skip
    text = openssl_text(tmp_path, root_ca(ca_key["privateKeyPem"], allowedUses=uses)["certPem"])
    assert re.search(
        r"Key Usage: critical\s+Digital Signature, Non Repudiation, Key Encipherment, "
        r"Data Encipherment, Key Agreement, Certificate Sign, CRL Sign, Encipher Only, "
        r"Decipher Only",
        text,
    )
    eku = re.search(r"Extended Key Usage: \n\s+(.*)\n", text)
    assert eku is not None
    assert eku.group(1).split(", ") == [
        "Any Extended Key Usage", "TLS Web Server Authentication",
        "TLS Web Client Authentication", "Code Signing", "E-mail Protection",
        "IPSec End System", "IPSec Tunnel", "IPSec User", "Time Stamping", "OCSP Signing",
        "Microsoft Server Gated Crypto", "Netscape Server Gated Crypto",
        "Microsoft Commercial Code Signing", "1.3.6.1.4.1.311.61.1.1",
    ]  # fmt: skip


def test_encipher_only_without_key_agreement_is_encoded_like_go(tmp_path: Path):
    ca_key = key("ECDSA", ecdsaCurve="P256")
    cert = root_ca(ca_key["privateKeyPem"], allowedUses=["cert_signing", "encipher_only"])
    text = openssl_text(tmp_path, cert["certPem"])
    assert re.search(r"Key Usage: critical\s+Certificate Sign, Encipher Only\n", text)


def test_subject_fields_in_go_order_with_email(pki: dict[str, dict[str, Any]]):
    subject = {
        "commonName": "cn",
        "organization": "org",
        "organizationalUnit": "ou",
        "locality": "loc",
        "province": "prov",
        "country": "NL",
        "postalCode": "1000",
        "streetAddresses": ["s1", "s2"],
        "serialNumber": "42",
        "emailAddress": "ops@mirror.test",
    }
    _, state = fake_tls_resource(
        SELF_SIGNED_CERT,
        {
            "privateKeyPem": pki["root_key"]["privateKeyPem"],
            "subject": subject,
            "allowedUses": [],
            "validityPeriodHours": 1,
        },
    )
    oids = [attr.oid for attr in load(state["certPem"]).subject]
    assert oids == [
        NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
        NameOID.STREET_ADDRESS, NameOID.STREET_ADDRESS, NameOID.POSTAL_CODE,
        NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME,
        NameOID.SERIAL_NUMBER, NameOID.EMAIL_ADDRESS,
    ]  # fmt: skip


def test_san_is_critical_only_with_an_empty_subject(pki: dict[str, dict[str, Any]]):
    state = signed(
        pki["inter_key"]["privateKeyPem"],
        pki["inter"]["certPem"],
        pki["leaf_key"]["privateKeyPem"],
        {"dnsNames": ["nosubject.test"]},
    )
    san = load(state["certPem"]).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert not load(pki["leaf"]["certPem"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_server_auth_only_leaf_has_no_key_usage_extension(pki: dict[str, dict[str, Any]]):
    state = signed(
        pki["inter_key"]["privateKeyPem"],
        pki["inter"]["certPem"],
        pki["leaf_key"]["privateKeyPem"],
        {"subject": {"commonName": "eku.test"}},
        allowedUses=["server_auth"],
    )
    cert = load(state["certPem"])
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.KeyUsage)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_ca_key_not_matching_ca_cert_is_refused(pki: dict[str, dict[str, Any]]):
    with pytest.raises(FakeTlsError, match="doesn't match"):
        signed(
            pki["leaf_key"]["privateKeyPem"],
            pki["inter"]["certPem"],
            pki["leaf_key"]["privateKeyPem"],
            {"subject": {"commonName": "bad.test"}},
        )


def test_certificate_id_is_the_decimal_serial(pki: dict[str, dict[str, Any]]):
    cert_id, state = fake_tls_resource(
        SELF_SIGNED_CERT,
        {
            "privateKeyPem": pki["root_key"]["privateKeyPem"],
            "subject": {"commonName": "id"},
            "allowedUses": [],
            "validityPeriodHours": 1,
        },
    )
    serial = load(state["certPem"]).serial_number
    assert cert_id == str(serial)
    assert 0 < serial < 2**128


def test_p224_and_ed25519_issuers_sign_verifiable_chains(tmp_path: Path):
    openssl = require_tool("openssl")
    for algorithm in ("ECDSA", "ED25519"):  # ECDSA defaults to P224
        ca_key = key(algorithm)
        ca = root_ca(ca_key["privateKeyPem"])
        leaf = signed(
            ca_key["privateKeyPem"],
            ca["certPem"],
            key("ECDSA", ecdsaCurve="P256")["privateKeyPem"],
            {"subject": {"commonName": "alg.test"}, "dnsNames": ["alg.test"]},
        )
        (tmp_path / "ca.pem").write_text(ca["certPem"])
        (tmp_path / "leaf.pem").write_text(leaf["certPem"])
        result = subprocess.run(
            [openssl, "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, (algorithm, result.stderr)
