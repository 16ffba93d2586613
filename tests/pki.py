"""An operator's PKI for the tests: a CA and a server certificate signed by it, as PEM text.

Used where tests play the operator who brings their own certificates (``tls_ca_mode:
provided``); the keys are test material, made fresh in each run.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class Pem:
    """PEM texts of a CA certificate, a server certificate and its key (loaded by path in
    several test suites, hence a plain class)."""

    def __init__(self, ca: str, cert: str, key: str) -> None:
        self.ca, self.cert, self.key = ca, cert, key

    def key_body_lines(self) -> list[str]:
        """The base64 lines of the private key: none of them may ever show up in a log."""
        return [line for line in self.key.splitlines() if line and not line.startswith("-----")]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def operator_pki(sans: list[str], days: int = 30) -> Pem:
    """A CA and a server certificate for ``sans`` (IP addresses or DNS names)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Operator test CA"))
        .issuer_name(_name("Operator test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("flower-superlink"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(
        ca=ca.public_bytes(serialization.Encoding.PEM).decode(),
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key=_pem(key),
    )
