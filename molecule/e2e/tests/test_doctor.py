"""playbooks/doctor.yml against the running federation: healthy, then five injected faults.

The faults are injected together in one run, each on its own host and check, and undone before
the last run, which must pass again (test_federation.py runs after this module):

* OneGate unreachable: the SuperLink VM gets a one_env whose ONEGATE_ENDPOINT is a closed port
  (the scenario's VMs have no OneGate, so the healthy runs skip that check);
* wrong SAN: supernode-1's unit points its container at the SuperLink VM's name, which the
  SuperLink's certificate lacks (the edit site.yml would make with that address), restarted;
* mismatched CA: supernode-1's ca.crt replaced by a fresh CA's;
* stopped SuperNode: flower-supernode stopped on supernode-2;
* Flower version mismatch: on supernode-2, a container named flower-supernode of the other
  release's stock image (1.25.0) in the test registry.
"""

import os
import subprocess

import pytest
from e2e_playbook import run_playbook

pytestmark = pytest.mark.default_release_only

testinfra_hosts = ["ansible://superlink"]

TEST_ID = os.environ.get("FLOWER_TEST_ID", "dev")
UNIT = "/etc/systemd/system/flower-supernode.service"
CA = "/opt/flower/certs/ca.crt"
ONE_ENV = "/run/one-context/one_env"
OTHER_IMAGE = "flower-registry.test:5443/flwr/supernode:1.25.0"


def vm(name):
    return f"flower-e2e-{name}-{TEST_ID}"


def in_vm(name, script, timeout=120):
    """A shell script in one of the scenario's VMs (a container of the outer engine)."""
    proc = subprocess.run(["docker", "exec", vm(name), "sh", "-ec", script], capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def doctor():
    proc = run_playbook("playbooks/doctor.yml", timeout=240)
    return proc.returncode, proc.stdout + proc.stderr


def failed(out, check, name):
    """The report's lines naming this check on this host ('check | host | evidence | FIX: fix')."""
    return [line for line in out.splitlines() if f"{check} | {vm(name)} |" in line]


def inject():
    one_env = 'ONEGATE_ENDPOINT="http://127.0.0.1:1"\\nVMID="0"\\nTOKENTXT="t"\\n'
    in_vm("superlink", f"mkdir -p /run/one-context && printf '{one_env}' > {ONE_ENV}")
    superlink = in_vm("supernode-1", f"grep -o -- '[0-9.]*:9092' {UNIT}").strip()
    in_vm(
        "supernode-1",
        f"""cp -p {UNIT} /root/doctor-unit.bak
        sed -i 's/ {superlink} / {vm("superlink")}:9092 /' {UNIT}
        grep -q '{vm("superlink")}:9092' {UNIT}
        cp -p {CA} /root/doctor-ca.bak
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \\
            -subj /CN=another-ca -keyout /dev/null -out {CA} 2>/dev/null
        systemctl daemon-reload
        systemctl restart flower-supernode""",
    )
    in_vm(
        "supernode-2",
        f"""systemctl stop flower-supernode
        docker pull -q {OTHER_IMAGE} >/dev/null
        docker run -d --name flower-supernode --entrypoint sleep {OTHER_IMAGE} infinity""",
    )


def restore():
    in_vm("superlink", f"rm -f {ONE_ENV} && rmdir --ignore-fail-on-non-empty /run/one-context")
    in_vm(
        "supernode-1",
        f"""[ ! -f /root/doctor-unit.bak ] || mv /root/doctor-unit.bak {UNIT}
        [ ! -f /root/doctor-ca.bak ] || mv /root/doctor-ca.bak {CA}
        systemctl daemon-reload
        systemctl restart flower-supernode""",
    )
    in_vm(
        "supernode-2",
        f"""docker rm -f flower-supernode >/dev/null
        docker rmi {OTHER_IMAGE} >/dev/null || true
        systemctl start flower-supernode""",
    )


def test_doctor_names_each_fault_and_passes_on_a_healthy_federation(monkeypatch):
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")  # one line per report line
    rc, out = doctor()
    assert rc == 0, out
    assert "The federation is healthy" in out
    try:
        inject()
        rc, out = doctor()
    finally:
        restore()
    assert rc != 0, out
    assert "FAILED checks" in out
    onegate = failed(out, "OneGate", "superlink")
    assert onegate and "127.0.0.1:1" in onegate[0] and "FIX: OneGate unreachable" in onegate[0], out
    san = failed(out, "TLS SANs", "supernode-1")
    assert san and f"at {vm('superlink')}:9092" in san[0] and "FIX: reissue" in san[0], out
    ca = failed(out, "CA", "supernode-1")
    assert ca and "verification failed" in ca[0] and "FIX: the SuperNode's CA" in ca[0], out
    stopped = failed(out, "container running", "supernode-2")
    assert stopped and "ActiveState=inactive" in stopped[0], out
    version = failed(out, "Flower version", "supernode-2")
    assert version and "flwr 1.25.0 on the SuperNode" in version[0], out
    healthy = [("CA", "supernode-2"), ("Flower version", "supernode-1")]
    for check, name in [*healthy, ("state database", "superlink")]:
        assert not failed(out, check, name), f"{check} on {name} is healthy: {out}"
    rc, out = doctor()
    assert rc == 0, f"the federation is not healthy again after the faults were undone: {out}"
