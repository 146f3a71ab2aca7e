"""The PKI: root CA -> intermediate CA -> registry server certificate and a client certificate."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_tls as tls

from settings import PkiSettings

CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


class Pki(pulumi.ComponentResource):
    """Keys and certificates from stack settings; private keys are secret outputs.

    Outputs: `root_ca_pem`, `intermediate_ca_pem`, `server_chain_pem` (leaf + intermediate),
    `server_key_pem`, `client_cert_pem`, `client_key_pem`.
    """

    def __init__(
        self,
        name: str,
        settings: PkiSettings,
        common_name: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("registry-mirror:pki:Pki", name, None, opts)
        self._settings = settings
        child = pulumi.ResourceOptions(parent=self)

        root_key = self._key("root-ca-key")
        root = tls.SelfSignedCert(
            "root-ca",
            private_key_pem=root_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(**self._subject_fields(f"{settings.organization} Root CA")),
            is_ca_certificate=True,
            # pathlen:1 on the root: at most one CA (our intermediate) below it. This is the
            # only length limit pulumi-tls can express: it never sets Go's MaxPathLenZero, so
            # max_path_length=0 on the intermediate would mean "unlimited", not "leaves only".
            max_path_length=1,
            set_subject_key_id=True,
            allowed_uses=CA_USES,
            validity_period_hours=settings.root_ca_validity_hours,
            early_renewal_hours=settings.early_renewal_hours,
            opts=child,
        )

        inter_key = self._key("intermediate-ca-key")
        inter_csr = tls.CertRequest(
            "intermediate-ca-csr",
            private_key_pem=inter_key.private_key_pem,
            subject=self._subject(f"{settings.organization} Intermediate CA"),
            opts=child,
        )
        intermediate = tls.LocallySignedCert(
            "intermediate-ca",
            cert_request_pem=inter_csr.cert_request_pem,
            ca_private_key_pem=root_key.private_key_pem,
            ca_cert_pem=root.cert_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            allowed_uses=CA_USES,
            validity_period_hours=settings.intermediate_ca_validity_hours,
            early_renewal_hours=settings.early_renewal_hours,
            opts=child,
        )

        server_key = self._key("server-key")
        server = self._leaf(
            "server", server_key, common_name, list(dns_names), list(ip_addresses),
            SERVER_USES, inter_key, intermediate,
        )
        client_key = self._key("client-key")
        client = self._leaf(
            "client", client_key, f"{settings.organization} registry client", [], [],
            CLIENT_USES, inter_key, intermediate,
        )

        self.root_ca_pem: pulumi.Output[str] = root.cert_pem
        self.intermediate_ca_pem: pulumi.Output[str] = intermediate.cert_pem
        self.server_chain_pem: pulumi.Output[str] = pulumi.Output.concat(
            server.cert_pem, intermediate.cert_pem
        )
        self.server_key_pem: pulumi.Output[str] = pulumi.Output.secret(server_key.private_key_pem)
        self.client_cert_pem: pulumi.Output[str] = client.cert_pem
        # what a client presents: the registry trusts the root, so the intermediate goes along
        self.client_chain_pem: pulumi.Output[str] = pulumi.Output.concat(
            client.cert_pem, intermediate.cert_pem
        )
        self.client_key_pem: pulumi.Output[str] = pulumi.Output.secret(client_key.private_key_pem)
        self.server_cert_expiry: pulumi.Output[str] = server.validity_end_time
        self.register_outputs({
            "rootCaPem": self.root_ca_pem,
            "intermediateCaPem": self.intermediate_ca_pem,
            "serverChainPem": self.server_chain_pem,
            "serverKeyPem": self.server_key_pem,
            "clientCertPem": self.client_cert_pem,
            "clientKeyPem": self.client_key_pem,
        })

    def _key(self, name: str) -> tls.PrivateKey:
        s = self._settings
        if s.key_algorithm == "RSA":
            return tls.PrivateKey(name, algorithm="RSA", rsa_bits=s.rsa_bits,
                                  opts=pulumi.ResourceOptions(parent=self))
        # pulumi-tls defaults to P224 when no curve is given: always say P256
        return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256",
                              opts=pulumi.ResourceOptions(parent=self))

    def _subject_fields(self, common_name: str) -> dict[str, str]:
        s = self._settings
        fields = {
            "common_name": common_name,
            "organization": s.organization,
            "organizational_unit": s.organizational_unit,
            "locality": s.locality,
            "province": s.province,
            "country": s.country,
        }
        # an empty subject attribute is left out rather than written as ""
        return {k: v for k, v in fields.items() if v}

    def _subject(self, common_name: str) -> tls.CertRequestSubjectArgs:
        return tls.CertRequestSubjectArgs(**self._subject_fields(common_name))

    def _leaf(
        self,
        name: str,
        key: tls.PrivateKey,
        common_name: str,
        dns_names: list[str],
        ip_addresses: list[str],
        uses: list[str],
        ca_key: tls.PrivateKey,
        ca: tls.LocallySignedCert,
    ) -> tls.LocallySignedCert:
        csr = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=self._subject(common_name),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            is_ca_certificate=False,
            set_subject_key_id=True,
            allowed_uses=uses,
            validity_period_hours=self._settings.cert_validity_hours,
            early_renewal_hours=self._settings.early_renewal_hours,
            opts=pulumi.ResourceOptions(parent=self),
        )
