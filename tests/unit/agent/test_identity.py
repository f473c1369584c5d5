"""Key, CSR and CA fingerprint pinning."""

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import identity
from tests.unit.agent.tls import make_ca


def test_csr_names_the_fqdn_and_carries_the_key():
    key = identity.new_key()
    csr = x509.load_pem_x509_csr(identity.make_csr(key, "node1.example.com"))
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key().curve.name == "secp256r1"
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "node1.example.com"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node1.example.com"]
    loaded = serialization.load_pem_private_key(identity.key_pem(key), password=None)
    assert loaded.public_key().public_numbers() == key.public_key().public_numbers()


@pytest.fixture(scope="module")
def ca():
    return make_ca()


def colon_upper(hex_digest):
    return ":".join(hex_digest[i:i + 2] for i in range(0, 64, 2)).upper()


def test_fingerprint_is_sha256_of_der(ca):
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert identity.ca_fingerprint(ca.pem) == hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("spelling", [str, colon_upper, lambda h: f"  SHA256:{h.upper()}\n"])
def test_pasted_fingerprints_are_accepted(ca, spelling):
    identity.check_pinned(ca.pem, spelling(identity.ca_fingerprint(ca.pem)))


def test_other_ca_is_refused(ca):
    other = identity.ca_fingerprint(make_ca("impostor").pem)
    with pytest.raises(identity.FingerprintError, match="refusing to trust it"):
        identity.check_pinned(ca.pem, other)


@pytest.mark.parametrize("text", ["", "abcd", "zz" * 32, "ab" * 33])
def test_malformed_fingerprint_is_refused(ca, text):
    with pytest.raises(identity.FingerprintError, match="not a SHA-256 fingerprint"):
        identity.check_pinned(ca.pem, text)


def test_not_a_certificate_is_refused():
    with pytest.raises(identity.FingerprintError, match="not a PEM certificate"):
        identity.check_pinned(b"<html>hello</html>", "ab" * 32)
