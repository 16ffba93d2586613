"""The tls role: a local CA and a server certificate on the SuperLink, the CA on the SuperNode.

The tests run in file order: the converged material (files, owners, modes, chain, SANs,
lifetime), a TLS handshake from the SuperNode with hostname verification, then runs of the
converge playbook from here: unchanged (nothing re-issued), with other SANs (re-issued, the key
and CA kept), back again; and the controller CA mode in another directory.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

testinfra_hosts = ["ansible://superlink"]

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(__file__).resolve().parents[1]
INVENTORY = f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory"
CERTS = "/opt/flower/certs"
EXTRA_SANS = ["100.64.0.7", "flower.example.test"]
UID = 49999


@pytest.fixture(scope="module")
def supernode():
    return testinfra.get_hosts(["ansible://supernode"], ansible_inventory=INVENTORY)[0]


@pytest.fixture(scope="module")
def address(host):
    facts = host.ansible("setup", "filter=ansible_default_ipv4", check=False)
    return facts["ansible_facts"]["ansible_default_ipv4"]["address"]


def certificate(host, path=f"{CERTS}/server.pem") -> x509.Certificate:
    return x509.load_pem_x509_certificate(host.file(path).content_string.encode())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        {str(ip) for ip in names.get_values_for_type(x509.IPAddress)},
        set(names.get_values_for_type(x509.DNSName)),
    )


def converge(*extra: str) -> str:
    """Run the scenario's converge playbook on the SuperLink from here; return its output."""
    proc = subprocess.run(
        ["ansible-playbook", str(SCENARIO / "converge.yml"), "-i", INVENTORY,
         "--limit", "superlink", *extra],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    assert proc.returncode == 0
    return proc.stdout


def changed(output: str) -> int:
    return int(re.search(r"flower-tls-superlink\S*\s*:.*changed=(\d+)", output).group(1))


# ----------------------------------------------------------------------------- files
def test_cryptography_installed(host):
    assert host.package("python3-cryptography").is_installed


@pytest.mark.parametrize(
    ("name", "mode"), [("ca.crt", 0o644), ("server.pem", 0o644), ("server.key", 0o600)]
)
def test_material_owned_by_the_container_uid(host, name, mode):
    f = host.file(f"{CERTS}/{name}")
    assert f.is_file
    assert (f.uid, f.gid, f.mode) == (UID, UID, mode)


def test_certs_directory(host):
    d = host.file(CERTS)
    assert (d.uid, d.gid, d.mode) == (UID, UID, 0o750)
    assert sorted(host.file(CERTS).listdir()) == ["ca.crt", "server.key", "server.pem"]


def test_key_readable_by_the_container_uid_only(host):
    read_as = "setpriv --reuid {0} --regid {0} --clear-groups cat " + CERTS + "/server.key"
    as_flower = host.run(read_as.format(UID))
    assert as_flower.rc == 0 and "PRIVATE KEY" in as_flower.stdout
    assert host.run(read_as.format(65534)).rc != 0  # nobody


def test_ca_key_kept_apart(host):
    ca_dir = host.file("/opt/flower/ca")
    assert (ca_dir.user, ca_dir.mode) == ("root", 0o700)
    key = host.file("/opt/flower/ca/ca.key")
    assert (key.user, key.mode) == ("root", 0o600)
    assert host.file(f"{CERTS}/ca.crt").content == host.file("/opt/flower/ca/ca.crt").content


# ----------------------------------------------------------------------------- contents
def test_chain_verifies(host):
    out = host.check_output(f"openssl verify -CAfile {CERTS}/ca.crt {CERTS}/server.pem")
    assert out == f"{CERTS}/server.pem: OK"
    certificate(host).verify_directly_issued_by(certificate(host, f"{CERTS}/ca.crt"))


def test_ca_is_a_ca(host):
    ca = certificate(host, f"{CERTS}/ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject.rfc4514_string() == "CN=Flower federation CA"


def test_sans(host, address):
    ips, names = sans(certificate(host))
    assert {address, "127.0.0.1", "::1", "100.64.0.7"} <= ips
    assert names == {"localhost", "flower.example.test"}


def test_server_certificate(host):
    cert = certificate(host)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    # 365 days, the start backdated one hour for clocks behind.
    assert abs(lifetime - datetime.timedelta(days=365, hours=1)) < datetime.timedelta(minutes=5)
    assert cert.not_valid_before_utc < datetime.datetime.now(datetime.UTC)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usage] == ["1.3.6.1.5.5.7.3.1"]  # serverAuth
    key_pub = host.check_output(f"openssl pkey -in {CERTS}/server.key -pubout")
    cert_pub = host.check_output(f"openssl x509 -in {CERTS}/server.pem -noout -pubkey")
    assert key_pub == cert_pub


def test_supernode_trusts_the_ca(host, supernode):
    f = supernode.file(f"{CERTS}/ca.crt")
    assert (f.uid, f.gid, f.mode) == (UID, UID, 0o644)
    assert f.content_string.strip() == host.file(f"{CERTS}/ca.crt").content_string.strip()
    assert sorted(supernode.file(CERTS).listdir()) == ["ca.crt"]
    assert not supernode.file("/opt/flower/ca").exists


def test_handshake_with_hostname_verification(host, supernode, address):
    """A TLS server with the material, run as uid 49999 as the SuperLink container would."""
    host.run("systemctl stop flower-tls-probe")
    host.run_expect(
        [0],
        f"systemd-run --unit flower-tls-probe --collect "
        f"setpriv --reuid {UID} --regid {UID} --clear-groups "
        f"timeout 60 openssl s_server -quiet -accept 9443 -cert {CERTS}/server.pem "
        f"-key {CERTS}/server.key -CAfile {CERTS}/ca.crt",
    )
    client = (
        f"timeout 20 openssl s_client -connect {address}:9443 -CAfile {CERTS}/ca.crt "
        "-verify_return_error -brief {} </dev/null"
    )
    try:
        for _attempt in range(20):
            by_ip = supernode.run(client.format(f"-verify_ip {address}"))
            if "Connection refused" not in by_ip.stderr:
                break
            supernode.run("sleep 0.5")
        assert by_ip.rc == 0, by_ip.stderr
        assert "Verification: OK" in by_ip.stderr
        name = "flower.example.test"
        by_name = supernode.run(client.format(f"-verify_hostname {name} -servername {name}"))
        assert by_name.rc == 0, by_name.stderr
        # An address not in the SANs is refused, as Flower's gRPC client refuses it.
        other = supernode.run(client.format("-verify_ip 192.0.2.99"))
        assert other.rc != 0
        assert "mismatch" in other.stdout + other.stderr
    finally:
        host.run("systemctl stop flower-tls-probe")


# ----------------------------------------------------------------------------- re-issue
def test_unchanged_run_keeps_the_certificate(host):
    before = certificate(host).serial_number
    assert changed(converge()) == 0
    assert certificate(host).serial_number == before


def test_san_change_reissues(host, address):
    before = certificate(host).serial_number
    key = host.file(f"{CERTS}/server.key").sha256sum
    ca = host.file(f"{CERTS}/ca.crt").sha256sum

    output = converge("-e", '{"tls_extra_sans": ["100.64.0.8", "flower.example.test"]}')
    assert changed(output) == 1
    cert = certificate(host)
    assert cert.serial_number != before
    ips = sans(cert)[0]
    assert "100.64.0.8" in ips and "100.64.0.7" not in ips and address in ips
    assert host.file(f"{CERTS}/server.key").sha256sum == key
    assert host.file(f"{CERTS}/ca.crt").sha256sum == ca
    assert host.run(f"openssl verify -CAfile {CERTS}/ca.crt {CERTS}/server.pem").rc == 0

    # Back to the scenario's SANs: issued once more, then left alone.
    assert changed(converge()) == 1
    assert certificate(host).serial_number != cert.serial_number
    assert "100.64.0.7" in sans(certificate(host))[0]
    assert changed(converge()) == 0


def test_renewal_window_reissues(host):
    """A certificate ending within tls_renew_before_days is issued again, once (the scenario's
    runs end here: the certificate keeps its 400 days)."""
    before = certificate(host)
    key = host.file(f"{CERTS}/server.key").sha256sum
    # The certificate ends in 365 days: a 366-day window covers it.
    window = ["-e", '{"tls_validity_days": 400, "tls_renew_before_days": 366}']
    assert changed(converge(*window)) == 1
    renewed = certificate(host)
    assert renewed.serial_number != before.serial_number
    assert renewed.not_valid_after_utc - before.not_valid_after_utc > datetime.timedelta(days=34)
    assert host.file(f"{CERTS}/server.key").sha256sum == key
    assert changed(converge(*window)) == 0


# ----------------------------------------------------------------------------- controller
def test_controller_ca(host, address):
    """The CA stays on the controller; the VM's request is signed there."""
    with tempfile.TemporaryDirectory(prefix="flower-ca-") as controller_dir:
        extra = [
            "-e", "tls_ca_mode=controller",
            "-e", "tls_dir=/opt/flower-controller/certs",
            "-e", f"tls_controller_dir={controller_dir}/ca",
        ]  # fmt: skip
        try:
            assert changed(converge(*extra)) > 0
            ctl = Path(controller_dir, "ca")
            assert sorted(p.name for p in ctl.iterdir()) == ["ca.crt", "ca.key"]
            assert ctl.stat().st_mode & 0o777 == 0o700
            assert (ctl / "ca.key").stat().st_mode & 0o777 == 0o600
            certs = "/opt/flower-controller/certs"
            assert sorted(host.file(certs).listdir()) == ["ca.crt", "server.key", "server.pem"]
            assert host.file(f"{certs}/ca.crt").content == (ctl / "ca.crt").read_bytes()
            key = host.file(f"{certs}/server.key")
            assert (key.uid, key.mode) == (UID, 0o600)
            ca = x509.load_pem_x509_certificate((ctl / "ca.crt").read_bytes())
            cert = certificate(host, f"{certs}/server.pem")
            cert.verify_directly_issued_by(ca)
            assert {address, *EXTRA_SANS[:1]} <= sans(cert)[0]
            # The controller's CA key is nowhere on the VM.
            ca_key = (ctl / "ca.key").read_text().splitlines()[1]
            assert host.run(f"grep -rqsF '{ca_key}' /opt /etc /root /tmp").rc != 0

            assert changed(converge(*extra)) == 0
            assert certificate(host, f"{certs}/server.pem").serial_number == cert.serial_number
        finally:
            host.run("rm -rf /opt/flower-controller")
