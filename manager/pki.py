"""The manager's certificate authority: HTTPS server certificate and agent certificates.

On first start the manager creates an EC P-256 CA in its state directory; the same CA signs
the REST/gRPC server certificate and, at registration, each agent's CSR. Clients pin the CA
by the SHA-256 fingerprint of its DER encoding (``fingerprint``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manager.files import ensure_private_dir, write_atomic

CA_DAYS = 3650
SERVER_DAYS = 825
AGENT_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex without separators."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


class CertificateAuthority:
    """Loads or creates ``ca.key``/``ca.crt`` and the server pair in ``state_dir``."""

    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(state_dir, "tls")
        self.ca_key_path = os.path.join(self.dir, "ca.key")
        self.ca_cert_path = os.path.join(self.dir, "ca.crt")
        self.server_key_path = os.path.join(self.dir, "server.key")
        self.server_cert_path = os.path.join(self.dir, "server.crt")
        ensure_private_dir(self.dir)
        self._load_or_create_ca()

    # --- the CA itself -----------------------------------------------------------------

    def _load_or_create_ca(self) -> None:
        if os.path.exists(self.ca_key_path) and os.path.exists(self.ca_cert_path):
            with open(self.ca_key_path, "rb") as f:
                self.ca_key = serialization.load_pem_private_key(f.read(), password=None)
            with open(self.ca_cert_path, "rb") as f:
                self.ca_pem = f.read()
            self.ca_cert = x509.load_pem_x509_certificate(self.ca_pem)
            return
        self.ca_key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shepherd"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"Shepherd CA {socket.getfqdn()}")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256()))
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM)
        write_atomic(self.ca_key_path, _key_pem(self.ca_key), 0o600)
        write_atomic(self.ca_cert_path, self.ca_pem, 0o644)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.ca_pem)

    # --- issuing -----------------------------------------------------------------------

    def _issue(self, subject: x509.Name, public_key, days: int, usage: ExtendedKeyUsageOID,
               sans: list[x509.GeneralName]) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.ca_cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.ca_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.ca_key, hashes.SHA256())

    def ensure_server_certificate(self, names: list[str]) -> None:
        """(Re)issue the server certificate when missing, near expiry or lacking a name."""
        wanted = _server_names(names)
        if os.path.exists(self.server_cert_path) and os.path.exists(self.server_key_path):
            with open(self.server_cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            try:
                have = set(cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                have = set()
            fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
            if (fresh and set(wanted) <= have and self._issued_by_us(cert)
                    and self._server_key_matches(cert)):
                return
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.getfqdn())])
        cert = self._issue(subject, key.public_key(), SERVER_DAYS,
                           ExtendedKeyUsageOID.SERVER_AUTH, wanted)
        write_atomic(self.server_key_path, _key_pem(key), 0o600)
        write_atomic(self.server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _server_key_matches(self, cert: x509.Certificate) -> bool:
        """False when a crash between writing the key and the certificate left them apart
        (each file is atomic, the pair is not): TLS could not load them."""
        try:
            with open(self.server_key_path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError):  # missing, unreadable or not a key
            return False
        return key.public_key() == cert.public_key()

    def _issued_by_us(self, cert: x509.Certificate) -> bool:
        """True when this CA's key signed ``cert`` (a regenerated CA keeps its subject name)."""
        try:
            cert.verify_directly_issued_by(self.ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def sign_agent_csr(self, csr_pem: bytes, common_name: str) -> tuple[bytes, int]:
        """Sign an agent's CSR as a client certificate whose CN is ``common_name``.

        The CSR's own subject is ignored: the manager decides the identity. Returns the
        certificate PEM and its serial number (kept so removal can revoke it).
        """
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature is invalid")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = self._issue(subject, csr.public_key(), AGENT_DAYS, ExtendedKeyUsageOID.CLIENT_AUTH,
                           [x509.DNSName(common_name)])
        return cert.public_bytes(serialization.Encoding.PEM), cert.serial_number

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+ with forward-secret AEAD suites only."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
        ctx.load_cert_chain(self.server_cert_path, self.server_key_path)
        return ctx


def _server_names(extra: list[str]) -> list[x509.GeneralName]:
    names = ["localhost", socket.gethostname(), socket.getfqdn(), "127.0.0.1", "::1", *extra]
    result: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result
