"""The agent's cryptographic identity: its EC P-256 key, the CSR it sends, CA fingerprints.

The key is generated on the machine and never leaves it; the manager only ever sees the CSR.
The manager's CA is pinned by the SHA-256 of its DER encoding, which the admin copies from
the registration command, so fingerprints are compared in one canonical form.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_HEX64 = re.compile(r"[0-9a-f]{64}")


class FingerprintError(ValueError):
    """A CA fingerprint is malformed or does not match the pinned one."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(key: ec.EllipticCurvePrivateKey, fqdn: str) -> bytes:
    """A PEM CSR with CN = fqdn and the fqdn as DNS SAN, signed by ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def normalize_fingerprint(text: str) -> str:
    """Canonical form of a SHA-256 fingerprint: lowercase hex, no separators.

    Accepts what admins paste: ``AB:CD:…``, ``ab cd …``, ``sha256:abcd…``.
    """
    cleaned = text.strip().lower()
    cleaned = cleaned.removeprefix("sha256:").removeprefix("sha256=")
    cleaned = re.sub(r"[\s:-]", "", cleaned)
    if not _HEX64.fullmatch(cleaned):
        raise FingerprintError(f"not a SHA-256 fingerprint (64 hex digits): {text.strip()!r}")
    return cleaned


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, in canonical form."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_pinned(ca_pem: bytes, expected: str) -> None:
    """Raise FingerprintError unless ``ca_pem`` is the CA the admin pinned."""
    try:
        actual = ca_fingerprint(ca_pem)
    except ValueError as exc:
        raise FingerprintError(f"the manager's /certificate/ is not a PEM certificate: {exc}") \
            from exc
    if not hmac.compare_digest(actual, normalize_fingerprint(expected)):
        raise FingerprintError(
            f"the manager's CA has fingerprint {actual}, not the expected "
            f"{normalize_fingerprint(expected)}: refusing to trust it (wrong manager, or "
            "someone in between)")
