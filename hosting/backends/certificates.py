"""The nodes' certificates: the panel reaches each node's Docker engine over mutual TLS.

Every node has a certificate authority of its own, made by the panel. It signs
two certificates, and nothing else:
- the panel's client certificate for that node (kept with the CA key in the
  node's folder of NODE_CREDENTIALS_DIR, which only the worker and the gateway
  can read): the node's engine (`--tlsverify --tlscacert`) lets in only it;
- the node's server certificate, from a request the node made with a key that
  never leaves it: the panel checks the engine it talks to against it.

A node's CA trusts nobody else's certificates, so what one node holds (its key,
its certificate, its CA's certificate) opens no other node's engine. Removing a
node deletes its folder: the panel then refuses anything that CA signed.
"""

import datetime
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

CA_YEARS = 20  # a node's CA outlives its certificates
CERT_YEARS = 5
CSR_MAX_BYTES = 16 * 1024


class CertificateError(Exception):
    """A request or a certificate that cannot be used; str() is fit to show."""


@dataclass(frozen=True)
class ClientCredentials:
    """The files the panel presents to one node's engine, and checks it against."""

    ca: str
    cert: str
    key: str
    made: int  # when they were made (ns): a node set up again gets new ones, and new connections


def _folder(node_name):
    return Path(settings.NODE_CREDENTIALS_DIR) / node_name


def credentials(node_name):
    """The panel's files for this node, or None when it has none (never set up, or removed)."""
    folder = _folder(node_name)
    try:
        made = (folder / "ca.pem").stat().st_mtime_ns
    except OSError:
        return None
    files = ClientCredentials(ca=str(folder / "ca.pem"), cert=str(folder / "cert.pem"), key=str(folder / "key.pem"), made=made)
    return files if os.path.exists(files.cert) and os.path.exists(files.key) else None


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "controlpanel"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key, years, *, issuer_key=None):
    """A certificate with the key identifiers strict verification (Python's default) asks for."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_public = issuer_key or public_key
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365 * years))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False))


def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def node_ca_ensure(node_name):
    """The node's CA and the panel's client certificate for it, made once. Returns the CA
    certificate (PEM text: public, the node's engine needs it)."""
    folder = _folder(node_name)
    if (folder / "ca.pem").exists() and credentials(node_name):
        return (folder / "ca.pem").read_text()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = _key()
    ca_name = _name(f"controlpanel node CA {node_name}")
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), CA_YEARS)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    client_key = _key()
    client = (_builder(_name("controlpanel"), ca_name, client_key.public_key(), CERT_YEARS, issuer_key=ca_key.public_key())
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    _write(folder / "ca-key.pem", _pem(ca_key), 0o600)
    _write(folder / "key.pem", _pem(client_key), 0o600)
    _write(folder / "cert.pem", client.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)  # last: its presence means done
    return (folder / "ca.pem").read_text()


def node_sign(node_name, csr_pem, *, address):
    """The node's server certificate (PEM text) for its request, valid for `address` (its
    engine's IP or host name) only. The request's own names are not trusted: the panel
    says which address the certificate is for."""
    folder = _folder(node_name)
    if not (folder / "ca-key.pem").exists():
        raise CertificateError("This node has no certificate authority: it was removed.")
    if len(csr_pem) > CSR_MAX_BYTES:
        raise CertificateError("That certificate request is too large.")
    try:
        request = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    except ValueError:
        raise CertificateError("That is not a certificate request (PEM).") from None
    if not request.is_signature_valid:
        raise CertificateError("The certificate request's signature does not match its key.")
    public_key = request.public_key()
    if not isinstance(public_key, (ec.EllipticCurvePublicKey,)) and getattr(public_key, "key_size", 0) < 2048:
        raise CertificateError("Use an EC key or an RSA key of 2048 bits or more.")
    ca_key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    try:
        alt_name = x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        alt_name = x509.DNSName(address)
    certificate = (_builder(_name(f"controlpanel node {node_name}"), ca.subject, public_key, CERT_YEARS, issuer_key=ca.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def node_forget(node_name):
    """A removed node: its CA and the panel's certificate for it are gone, so nothing they signed is trusted again."""
    shutil.rmtree(_folder(node_name), ignore_errors=True)
