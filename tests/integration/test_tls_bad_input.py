"""The tls role on this machine: bad input refused before anything is written, and the
``provided`` and ``controller`` modes and the client side applied for real.

Each run applies one phase of the role (``tests/integration/playbooks/phase.yml``) to localhost
with every directory the role writes (``tls_dir``, ``tls_ca_dir``, ``tls_controller_dir``) in a
temporary one and the files owned by the current user. A refused run must fail with the
expected message, change nothing and leave that directory empty; a secret never shows.
The certificates are made here with ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.datetime.now(datetime.UTC)
SANS = ["203.0.113.10", "flower.example.test"]


# ----------------------------------------------------------------------------- material
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def make_ca(common_name="Test CA", *, days=30, expired=False, issuer=None, is_ca=True):
    """A CA (self-signed unless issuer=(cert, key) is given): (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = NOW - datetime.timedelta(days=days + 2 if expired else 1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def make_cert(ca, sans=SANS, *, key=None, expired=False):
    """A server certificate for the SANs signed by ca=(cert, key): (certificate, key)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = NOW - datetime.timedelta(days=40 if expired else 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("flower-superlink"))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca[1], hashes.SHA256())
    )
    return cert, key


def pem(obj, password: bytes | None = None) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CA = make_ca()
CERT = make_cert(CA)
GOOD = {
    "tls_ca_mode": "provided",
    "tls_provided_ca": pem(CA[0]),
    "tls_provided_cert": pem(CERT[0]),
    "tls_provided_key": pem(CERT[1]),
    "tls_provided_required_sans": SANS,
}
SECRET = pem(CERT[1])


def provided(**changes):
    return {**GOOD, **changes}


# ----------------------------------------------------------------------------- runs
def run_phase(tmp_path: Path, phase: str, extra: dict, *args: str) -> tuple[int, str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    variables = {
        "role": "tls",
        "phase": phase,
        "tls_dir": str(work / "certs"),
        "tls_ca_dir": str(work / "ca"),
        "tls_controller_dir": str(work / "controller"),
        "tls_owner_uid": os.getuid(),
        "tls_owner_gid": os.getgid(),
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    proc = subprocess.run(
        [
            "ansible-playbook",
            "tests/integration/playbooks/phase.yml",
            "-i",
            "localhost,",
            "-e",
            json.dumps(variables).replace("@WORK@", str(work)),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_STDOUT_CALLBACK": "default"},
        check=False,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


OTHER_CA = make_ca()  # same subject as CA: only the signature tells them apart
ENCRYPTED_KEY = pem(CERT[1], password=b"pass phrase")
BAD_KEY_B64 = "c2VjcmV0LWtleS1tYXRlcmlhbA="  # wrong padding; must never be shown

CASES = {
    # server settings
    "ca-mode-choice": (
        "server",
        {"tls_ca_mode": "vault"},
        ["tls_ca_mode", "vault", "local, controller, provided"],
    ),
    "key-type-choice": ("server", {"tls_key_type": "DSA"}, ["tls_key_type", "DSA", "ECC, RSA"]),
    "relative-dir": ("server", {"tls_dir": "certs"}, ["tls_dir='certs'", "absolute path"]),
    "file-names": (
        "server",
        {"tls_key_file": "server.pem"},
        ["tls_key_file='server.pem'", "distinct file names"],
    ),
    "ca-dir-inside": (
        "server",
        {"tls_ca_dir": "@WORK@/certs/ca"},
        ["tls_ca_dir='", "/certs/ca' must be", "outside tls_dir='"],
    ),
    "validity": ("server", {"tls_validity_days": 0}, ["tls_validity_days=0", "days > 0"]),
    "renew-window": (
        "server",
        {"tls_renew_before_days": 400},
        ["tls_renew_before_days=400", "less than both"],
    ),
    "rsa-size": (
        "server",
        {"tls_key_type": "RSA", "tls_rsa_key_size": 1024},
        ["tls_rsa_key_size=1024", "2048 bits"],
    ),
    "common-name": (
        "server",
        {"tls_server_common_name": "x" * 65},
        ["tls_server_common_name='xxx", "1 to 64"],
    ),
    "extra-san": (
        "server",
        {"tls_extra_sans": ["100.64.0.7", "not a name!"]},
        ["tls_extra_sans has entries", "'not a name!'", "DNS:flower.example.org"],
    ),
    "typed-san": (
        "server",
        {"tls_extra_sans": ["IP:flower.example.test"]},
        ["tls_extra_sans", "'IP:flower.example.test'"],
    ),
    "san-string": (
        "server",
        {"tls_sans": "10.0.0.1, 300.1.1.1"},
        ["tls_sans has entries", "'300.1.1.1'"],
    ),
    "no-san": (
        "server",
        {"tls_sans": [], "tls_extra_sans": []},
        ["tls_sans and tls_extra_sans are both empty"],
    ),
    # provided material
    "provided-empty": (
        "server",
        provided(tls_provided_cert=""),
        ["tls_ca_mode=provided needs", "tls_provided_cert is empty"],
    ),
    "provided-base64": (
        "server",
        provided(tls_provided_ca="not-base64!!"),
        ["tls_provided_ca='not-base64!!'", "neither PEM", "base64-encoded PEM"],
    ),
    "provided-base64-not-pem": (
        "server",
        provided(tls_provided_cert=b64("hello world")),
        ["tls_provided_cert=", "neither PEM"],
    ),
    "provided-key-base64": (
        "server",
        provided(tls_provided_key=BAD_KEY_B64),
        ["tls_provided_key is neither PEM"],
    ),
    "provided-key-encrypted": (
        "server",
        provided(tls_provided_key=ENCRYPTED_KEY),
        ["tls_provided_key holds an encrypted key"],
    ),
    "provided-key-not-a-key": (
        "server",
        provided(tls_provided_key=pem(CA[0])),
        ["tls_provided_key holds no private key"],
    ),
    "provided-cert-is-key": (
        "server",
        provided(tls_provided_cert=SECRET),
        ["tls_provided_cert holds no certificate", "BEGIN PRIVATE KEY"],
    ),
    "provided-cert-damaged": (
        "server",
        provided(tls_provided_cert="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
        ["tls_provided_cert cannot be read as an X.509 certificate"],
    ),
    "provided-ca-not-ca": (
        "server",
        provided(tls_provided_ca=pem(make_ca(is_ca=False)[0])),
        ["tls_provided_ca (subject 'commonName=Test CA') is not a CA certificate"],
    ),
    "provided-ca-expired": (
        "server",
        provided(tls_provided_ca=pem(make_ca(expired=True)[0])),
        ["tls_provided_ca", "has expired"],
    ),
    "provided-cert-expired": (
        "server",
        provided(tls_provided_cert=pem(make_cert(CA, expired=True)[0])),
        ["tls_provided_cert", "has expired"],
    ),
    "provided-cert-sans": (
        "server",
        provided(tls_provided_required_sans=["203.0.113.10", "203.0.113.99", "other.example.test"]),
        [
            "lacks SANs clients use (tls_provided_required_sans): "
            "DNS:other.example.test, IP:203.0.113.99",
            "it holds: IP:203.0.113.10, DNS:flower.example.test",
        ],
    ),
    "provided-key-mismatch": (
        "server",
        provided(tls_provided_key=pem(make_cert(CA)[1])),
        ["tls_provided_key does not match tls_provided_cert"],
    ),
    "provided-not-signed": (
        "server",
        provided(tls_provided_cert=pem(make_cert(OTHER_CA, key=CERT[1])[0])),
        ["tls_provided_cert (issuer 'commonName=Test CA') is not signed by tls_provided_ca"],
    ),
    # client side
    "client-no-ca": ("client", {}, ["tls_ca_cert is empty", "refusing"]),
    "client-base64": ("client", {"tls_ca_cert": "%%%"}, ["tls_ca_cert='%%%'", "neither PEM"]),
    "client-not-ca": (
        "client",
        {"tls_ca_cert": pem(CERT[0])},
        ["tls_ca_cert (subject 'commonName=flower-superlink') is not a CA"],
    ),
    "client-expired": (
        "client",
        {"tls_ca_cert": b64(pem(make_ca(expired=True)[0]))},
        ["tls_ca_cert", "has expired"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_any_change(case, tmp_path):
    phase, extra, expected = CASES[case]
    rc, output = run_phase(tmp_path, phase, extra)
    assert rc != 0, output
    for text in expected:
        assert text in output, f"{text!r} not in the error output:\n{output}"
    assert "changed=0" in output, output
    assert list((tmp_path / "work").iterdir()) == []
    for secret in (SECRET.splitlines()[1], ENCRYPTED_KEY.splitlines()[1], BAD_KEY_B64):
        assert secret not in output, "a key shows in the output"


# ----------------------------------------------------------------------------- applied
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provided_written_and_idempotent(tmp_path):
    # A wildcard covers a name; intermediates follow the certificate; base64 or PEM alike.
    intermediate = make_ca("Test intermediate", issuer=CA)
    cert, key = make_cert(intermediate, ["203.0.113.10", "*.example.test"])
    chain = pem(cert) + pem(intermediate[0])
    extra = provided(tls_provided_cert=chain, tls_provided_key=b64(pem(key)))
    rc, output = run_phase(tmp_path, "server", extra, "-v")  # -v shows every result...
    assert rc == 0, output
    assert "tls_certificate_changed: true" in output
    certs = tmp_path / "work" / "certs"
    assert (certs / "ca.crt").read_text().strip() == pem(CA[0]).strip()
    assert (certs / "server.pem").read_text().strip() == chain.strip()
    assert (certs / "server.key").read_text().strip() == pem(key).strip()
    assert mode(certs) == 0o750
    assert mode(certs / "server.key") == 0o600
    assert mode(certs / "server.pem") == mode(certs / "ca.crt") == 0o644
    for line in [*pem(key).splitlines()[1:-1], b64(pem(key))[48:96]]:  # ...but not the key
        assert line not in output

    extra = provided(tls_provided_cert=b64(chain), tls_provided_key=pem(key))
    rc, output = run_phase(tmp_path, "server", extra)
    assert rc == 0, output
    assert "changed=0" in output, output


def test_controller_ca_signs_and_keeps_its_key(tmp_path):
    extra = {
        "tls_ca_mode": "controller",
        "tls_sans": ["127.0.0.1"],
        "tls_extra_sans": "203.0.113.7,flwr.example.test",
    }
    rc, output = run_phase(tmp_path, "server", extra)
    assert rc == 0, output
    work = tmp_path / "work"
    certs, controller = work / "certs", work / "controller"
    assert sorted(p.name for p in certs.iterdir()) == ["ca.crt", "server.key", "server.pem"]
    assert sorted(p.name for p in controller.iterdir()) == ["ca.crt", "ca.key"]
    assert mode(controller) == 0o700 and mode(controller / "ca.key") == 0o600
    assert not (work / "ca").exists()
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    assert ca.public_bytes(serialization.Encoding.PEM) == (controller / "ca.crt").read_bytes()
    cert = x509.load_pem_x509_certificate((certs / "server.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n) for n in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "203.0.113.7",
    }
    assert names.get_values_for_type(x509.DNSName) == ["flwr.example.test"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(days=365, hours=1)) < datetime.timedelta(minutes=5)

    rc, output = run_phase(tmp_path, "server", extra, "-v")
    assert rc == 0, output
    assert "changed=0" in output, output
    assert "tls_certificate_changed: false" in output
    assert (certs / "server.pem").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)


def test_check_mode_on_a_fresh_host_writes_nothing(tmp_path):
    rc, output = run_phase(tmp_path, "server", {}, "--check")
    assert rc == 0, output
    assert list((tmp_path / "work").iterdir()) == []


def test_client_writes_the_ca(tmp_path):
    rc, output = run_phase(tmp_path, "client", {"tls_ca_cert": b64(pem(CA[0]))})
    assert rc == 0, output
    ca = tmp_path / "work" / "certs" / "ca.crt"
    assert ca.read_text().strip() == pem(CA[0]).strip()
    assert mode(ca) == 0o644
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["certs"]
