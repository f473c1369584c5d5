"""The manager's CA: files and modes, server certificate, agent CSRs, and a real TLS handshake."""

import contextlib
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manager.pki import CertificateAuthority, fingerprint


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority(str(tmp_path))


@pytest.fixture
def served(ca):
    ca.ensure_server_certificate(["mgr.example", "10.1.2.3"])
    return ca


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def sans(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def make_csr(cn="agent-chosen-name"):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return key, csr


# --- the CA ----------------------------------------------------------------------------


def test_creates_private_key_and_directory(tmp_path, ca):
    tls = tmp_path / "tls"
    assert mode(tls) == 0o700
    assert mode(tls / "ca.key") == 0o600
    assert (tls / "ca.crt").is_file()
    assert ca.ca_cert_path == str(tls / "ca.crt")


def test_ca_certificate_is_a_ca(ca):
    cert = load_cert(ca.ca_cert_path)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)


def test_tightens_an_existing_tls_directory(tmp_path):
    (tmp_path / "tls").mkdir(mode=0o755)
    os.chmod(tmp_path / "tls", 0o755)
    CertificateAuthority(str(tmp_path))
    assert mode(tmp_path / "tls") == 0o700


def test_second_instance_loads_the_same_ca(tmp_path, ca):
    again = CertificateAuthority(str(tmp_path))
    assert again.fingerprint == ca.fingerprint
    assert again.ca_pem == ca.ca_pem


def test_fingerprint_is_sha256_of_der(ca):
    fp = ca.fingerprint
    assert len(fp) == 64
    assert fp == fp.lower()
    int(fp, 16)
    der = load_cert(ca.ca_cert_path).public_bytes(serialization.Encoding.DER)
    assert fp == hashlib.sha256(der).hexdigest()
    assert fingerprint(ca.ca_pem) == fp


def test_separate_state_dirs_get_separate_cas(tmp_path, ca):
    other = CertificateAuthority(str(tmp_path / "other"))
    assert other.fingerprint != ca.fingerprint


# --- server certificate ----------------------------------------------------------------


def test_server_certificate_names_and_issuer(served):
    cert = load_cert(served.server_cert_path)
    names = sans(cert)
    dns = names.get_values_for_type(x509.DNSName)
    ips = names.get_values_for_type(x509.IPAddress)
    assert {"mgr.example", "localhost"} <= set(dns)
    assert {ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("127.0.0.1")} <= set(ips)
    cert.verify_directly_issued_by(served.ca_cert)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert mode(served.server_key_path) == 0o600


def test_server_certificate_not_reissued_without_need(served):
    serial = load_cert(served.server_cert_path).serial_number
    served.ensure_server_certificate(["mgr.example", "10.1.2.3"])
    served.ensure_server_certificate(["10.1.2.3"])
    assert load_cert(served.server_cert_path).serial_number == serial


def test_server_certificate_reissued_for_a_new_name(served):
    serial = load_cert(served.server_cert_path).serial_number
    served.ensure_server_certificate(["mgr.example", "10.1.2.3", "new.example"])
    cert = load_cert(served.server_cert_path)
    assert cert.serial_number != serial
    assert "new.example" in sans(cert).get_values_for_type(x509.DNSName)


def test_server_certificate_reissued_when_the_key_is_missing(served):
    serial = load_cert(served.server_cert_path).serial_number
    os.remove(served.server_key_path)
    served.ensure_server_certificate(["mgr.example", "10.1.2.3"])
    assert load_cert(served.server_cert_path).serial_number != serial


def test_server_certificate_reissued_after_the_ca_is_regenerated(tmp_path, served):
    os.remove(served.ca_key_path)
    os.remove(served.ca_cert_path)
    fresh = CertificateAuthority(str(tmp_path))
    fresh.ensure_server_certificate(["mgr.example", "10.1.2.3"])
    load_cert(fresh.server_cert_path).verify_directly_issued_by(fresh.ca_cert)


# --- agent certificates ----------------------------------------------------------------


def test_sign_agent_csr(ca):
    key, csr = make_csr("i-pick-my-own-name")
    pem, serial = ca.sign_agent_csr(csr.public_bytes(serialization.Encoding.PEM), "node17")
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.serial_number == serial
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node17")])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node17"
    assert sans(cert).get_values_for_type(x509.DNSName) == ["node17"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(ca.ca_cert)


def test_agent_serials_differ(ca):
    pem = make_csr()[1].public_bytes(serialization.Encoding.PEM)
    assert ca.sign_agent_csr(pem, "a")[1] != ca.sign_agent_csr(pem, "a")[1]


def test_csr_with_broken_signature_refused(ca):
    _, csr = make_csr()
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s value
    broken = x509.load_der_x509_csr(bytes(der))
    assert not broken.is_signature_valid
    with pytest.raises(ValueError, match="signature"):
        ca.sign_agent_csr(broken.public_bytes(serialization.Encoding.PEM), "node1")


@pytest.mark.parametrize("pem", [
    b"", b"garbage",
    b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
])
def test_garbage_csr_refused(ca, pem):
    with pytest.raises(ValueError):
        ca.sign_agent_csr(pem, "node1")


# --- TLS -------------------------------------------------------------------------------


def test_server_context_minimum_version(served):
    ctx = served.server_ssl_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER


def handshake(server_ctx, client_ctx, server_hostname="localhost", cipher=False):
    """One handshake over loopback; returns the negotiated version (or cipher) or raises
    the client error."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve():
        with contextlib.suppress(OSError):  # the client side reports the failure
            conn, _ = listener.accept()
            conn.settimeout(5)
            with conn, server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            negotiated = tls.cipher()[0] if cipher else tls.version()
            tls.sendall(b"x")
            return negotiated
    finally:
        thread.join(5)
        listener.close()


def test_tls_handshake_succeeds(served):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    assert handshake(served.server_ssl_context(), client) in ("TLSv1.2", "TLSv1.3")


def test_tls_handshake_with_extra_name(served):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    assert handshake(served.server_ssl_context(), client, "mgr.example")


def test_tls_handshake_refuses_unknown_name(served):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(served.server_ssl_context(), client, "other.example")


def test_tls_handshake_refuses_another_ca(tmp_path, served):
    stranger = CertificateAuthority(str(tmp_path / "stranger"))
    client = ssl.create_default_context(cafile=stranger.ca_cert_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(served.server_ssl_context(), client)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_client_refused(served):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    client.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client really offer TLS 1.1
    with pytest.raises(ssl.SSLError) as info:
        handshake(served.server_ssl_context(), client)
    assert "PROTOCOL" in info.value.reason  # TLSV1_ALERT_PROTOCOL_VERSION from the server


def test_tls_1_2_negotiates_a_forward_secret_aead_cipher(served):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    name = handshake(served.server_ssl_context(), client, cipher=True)
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


@pytest.mark.parametrize("offered", [
    "AES128-GCM-SHA256",       # no forward secrecy (RSA key exchange)
    "AES256-SHA",              # and CBC with SHA-1
    "ECDHE-ECDSA-AES256-SHA",  # forward secret, but CBC with SHA-1
    "ECDHE-RSA-AES128-SHA256",
    "DHE-RSA-AES128-GCM-SHA256",  # finite-field DH
])
def test_tls_1_2_clients_offering_only_old_ciphers_are_refused(served, offered):
    client = ssl.create_default_context(cafile=served.ca_cert_path)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(f"{offered}:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(served.server_ssl_context(), client)
