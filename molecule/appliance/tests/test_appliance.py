"""The baked appliance: the boot hook configures the SuperLink from the VM context, and a bad
context is refused before anything changes."""

import base64
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "pki", Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tests" / "pki.py"
)
pki = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pki)

FLOWER_VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
ONE_ENV = "/run/one-context/one_env"
GOOD = {
    "ONEAPP_FLOWER_VERSION": FLOWER_VERSION,
    "ONEAPP_FL_NUM_ROUNDS": "4",
    "ONEAPP_FL_STRATEGY": "FedProx",
    "ONEAPP_FL_CERT_EXTRA_SAN": "flower.example.test",
    "ONEAPP_FL_METRICS_ENABLED": "YES",
    "ONEAPP_FL_METRICS_PORT": "9102",
    "ONEAPP_FL_LOG_FORMAT": "json",
}


def write_context(host, variables):
    """/run/one-context/one_env as one-context writes it (0400, root, export lines)."""
    text = "".join(f'export {k}="{v}"\n' for k, v in {"VMID": "7", **variables}.items())
    host.run(f"mkdir -p /run/one-context && rm -f {ONE_ENV}")
    host.run(f"cat > {ONE_ENV} <<'EOF'\n{text}EOF\nchmod 0400 {ONE_ENV}")


def boot(host):
    """What the next boot does: the hook runs again (a oneshot unit)."""
    return host.run("systemctl restart flower-appliance.service")


def test_image_carries_ansible_and_the_collection(host):
    assert host.file("/opt/flower/appliance/venv/bin/ansible-playbook").is_file
    flower = "/opt/flower/appliance/collections/ansible_collections/opennebula/flower"
    assert host.file(f"{flower}/playbooks/boot.yml").is_file
    for dep in ("community/crypto", "community/docker"):
        assert host.file(
            f"/opt/flower/appliance/collections/ansible_collections/{dep}"
        ).is_directory
    settings = host.file("/etc/flower/appliance.yml")
    assert settings.mode == 0o600
    assert "flower_appliance_role: superlink" in settings.content_string
    assert "superlink_image_source: load" in settings.content_string


def test_boot_hook_is_enabled_after_one_context(host):
    unit = host.file("/etc/systemd/system/flower-appliance.service").content_string
    assert "After=one-context.service" in unit
    assert host.service("flower-appliance").is_enabled


BOOT = {}


@pytest.fixture(scope="module")
def booted(host):
    write_context(host, GOOD)
    BOOT["since"] = host.check_output("date -u '+%Y-%m-%d %H:%M:%S'")
    result = boot(host)
    assert result.rc == 0, host.run("journalctl -u flower-appliance --no-pager -n 80").stdout
    return json.loads(host.check_output("docker inspect flower-superlink"))[0]


def test_boot_configures_the_superlink_over_tls(host, booted):
    assert booted["State"]["Running"]
    assert "--ssl-certfile" in booted["Args"]
    key = host.file("/opt/flower/certs/server.key")
    assert (key.mode, key.uid) == (0o600, 49999)
    sans = host.check_output(
        "openssl x509 -in /opt/flower/certs/server.pem -noout -ext subjectAltName"
    )
    assert "DNS:flower.example.test" in sans


def test_training_context_reaches_the_serverapp_environment(booted):
    env = booted["Config"]["Env"]
    assert "FL_NUM_ROUNDS=4" in env
    assert "FL_STRATEGY=FedProx" in env


def scrape(host, port):
    """The exporter's /metrics as Prometheus would read it on the VM (it may still be starting)."""
    for _ in range(45):
        answer = host.run(f"curl -fsS http://127.0.0.1:{port}/metrics")
        if answer.rc == 0 and "flower_superlink_up 1.0" in answer.stdout:
            break
        time.sleep(2)
    return answer.stdout


def test_metrics_and_json_logs_from_the_context(host, booted):
    assert "9101/tcp -> 0.0.0.0:9102" in host.check_output("docker port flower-superlink")
    metrics = scrape(host, 9102)
    assert "flower_superlink_up 1.0" in metrics, metrics
    assert f'flower_build_info{{flower_version="{FLOWER_VERSION}"}} 1.0' in metrics
    log = host.check_output("docker logs flower-superlink 2>&1")
    lines = [line for line in log.splitlines() if line]
    assert lines and all(json.loads(line)["component"] for line in lines)
    # The boot's own lines (ansible-playbook's) too.
    boot_log = host.check_output(
        f"journalctl _SYSTEMD_UNIT=flower-appliance.service -o cat --since '{BOOT['since']}'"
    )
    records = [json.loads(line) for line in boot_log.splitlines() if line.strip()]
    assert records and {r["component"] for r in records} == {"appliance"}
    assert any(r["message"].startswith("PLAY RECAP") for r in records)


def test_bad_context_is_refused_before_anything_changes(host, booted):
    before = host.file("/opt/flower/config/superlink.env").content_string
    write_context(host, {**GOOD, "ONEAPP_FL_NUM_ROUNDS": "many", "ONEAPP_FL_STRATEGY": "FedSGD"})
    assert boot(host).rc != 0
    log = host.check_output("journalctl -u flower-appliance --no-pager -n 200")
    assert "ONEAPP_FL_NUM_ROUNDS" in log and "ONEAPP_FL_STRATEGY" in log
    assert host.file("/opt/flower/config/superlink.env").content_string == before
    write_context(host, GOOD)  # leave the VM booted as it was
    assert boot(host).rc == 0


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_standalone_operator_certificates_never_logged(host, booted):
    """A standalone VM (no OneFlow service, so no sibling reads its CONTEXT) may take the
    operator's key from its context: it is served, and no log shows it, even at -vvv."""
    address = host.interface("eth0").addresses[0]
    pem = pki.operator_pki([address, "127.0.0.1", "flower.example.test"])
    key_text = b64(pem.key)
    write_context(host, {
        **GOOD,
        "ONEAPP_FL_SSL_CA_CERTFILE": b64(pem.ca),
        "ONEAPP_FL_SSL_CERTFILE": b64(pem.cert),
        "ONEAPP_FL_SSL_KEYFILE": key_text,
    })  # fmt: skip
    verbose = host.run("/usr/local/sbin/flower-appliance-boot -vvv")
    assert verbose.rc == 0, verbose.stdout[-3000:]
    assert boot(host).rc == 0
    assert host.file("/opt/flower/certs/server.pem").content_string.strip() == pem.cert.strip()
    key = host.file("/opt/flower/certs/server.key")
    assert (key.mode, key.uid) == (0o600, 49999)
    logs = "\n".join([
        verbose.stdout, verbose.stderr,
        host.check_output("journalctl -u flower-appliance --no-pager"),
        host.run("cat /var/log/flower-appliance.log").stdout,
    ])  # fmt: skip
    for secret in [key_text, *pem.key_body_lines()]:
        assert secret not in logs
    write_context(host, GOOD)  # back to a CA of its own, and a certificate it signed
    assert boot(host).rc == 0
    certs = "/opt/flower/certs"
    host.run_expect([0], f"openssl verify -CAfile {certs}/ca.crt {certs}/server.pem")


def test_cleanup_leaves_a_reusable_image(host):
    """The bake's last step (appliance_cleanup, as Packer's bake runs it): SSH host keys gone and
    remade at boot by a drop-in, machine-id emptied, the given leftovers removed. Kept last: it
    empties this container's machine-id."""
    # The cleanup acts on an SSH server only where there is one; the container has none.
    host.run("test -e /usr/sbin/sshd || install -m 0755 /bin/true /usr/sbin/sshd")
    host.run("mkdir -p /etc/ssh && echo k > /etc/ssh/ssh_host_test_key && echo x > /root/leftover")
    result = host.run(
        "cat > /root/cleanup.yml <<'EOF' && ANSIBLE_CONFIG=/opt/flower/appliance/ansible.cfg "
        "HOME=/root /opt/flower/appliance/venv/bin/ansible-playbook -i localhost, -c local "
        "/root/cleanup.yml\n"
        "- hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - ansible.builtin.include_role:\n"
        "        name: opennebula.flower.appliance\n"
        "        tasks_from: cleanup\n"
        "      vars:\n"
        "        appliance_cleanup_paths: [/root/leftover, /root/cleanup.yml]\n"
        "EOF"
    )
    assert result.rc == 0, result.stdout + result.stderr
    drop_in = host.file("/etc/systemd/system/ssh.service.d/host-keys.conf")
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" in drop_in.content_string
    assert not host.file("/etc/ssh/ssh_host_test_key").exists
    assert not host.file("/root/leftover").exists
    assert host.file("/etc/machine-id").content_string == ""
