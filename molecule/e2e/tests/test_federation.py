"""End to end: the demo trains on the federation site.yml deployed, driven from the controller.

The tests run in file order: TLS is in use (a plain-text client is refused); the firewall lets
the SuperNodes reach the Fleet API only, and the controller the Control API; a SuperNode whose
key site.yml did not register is refused; train over TLS (one SuperNode asked for a GPU it
does not have and trains on the CPU); a run that overruns is stopped; then
reconfigure the running federation with site.yml (the SuperLink restarts with process isolation
and checkpoints) and train again on the same SuperNodes, then resume from the checkpoint.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_playbook import run_playbook

testinfra_hosts = ["ansible://superlink"]

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
FLWR_PYTHON = ROOT / f".venv-flwr-{VERSION}" / "bin" / "python"
CHECKER = ROOT / "scripts" / "flwr_run_check.py"
APP = ROOT / "demo" / "sklearn"


def vm_address(host):
    """The VM's address on its network (not the inner Docker bridge's)."""
    facts = host.ansible("setup", "filter=ansible_default_ipv4", check=False)
    return facts["ansible_facts"]["ansible_default_ipv4"]["address"]


def ca_file(host):
    """The federation's CA certificate, as an operator copies it from the SuperLink VM."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "flower-ca.crt"
    path.write_text(host.file("/opt/flower/certs/ca.crt").content_string)
    return path


def flwr_check(host, *args, timeout=660, tls=True):
    address = f"{vm_address(host)}:9093"
    federation = ["appliance", "--root-certificates", str(ca_file(host))] if tls else ["local"]
    cmd = [str(FLWR_PYTHON), str(CHECKER), str(APP), *federation, "--address", address, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    sys.stdout.write(proc.stdout + proc.stderr)
    return proc


def train(host, tmp_path, rounds, improvement=True):
    """The demo for ``rounds`` rounds; without ``improvement`` the final accuracy need not
    exceed the first round's (a run that resumed a checkpoint starts trained)."""
    result_file = tmp_path / "run.json"
    proc = flwr_check(
        host,
        "--run-config", f"num-server-rounds={rounds}",
        "--min-rounds", str(rounds),
        "--min-accuracy", "0.85",
        "--json-out", str(result_file),
        *([] if improvement else ["--no-improvement"]),
    )  # fmt: skip
    assert proc.returncode == 0, "the demo run did not pass its checks"
    return json.loads(result_file.read_text())


def run_ids(host):
    proc = flwr_check(host, "--list-runs", timeout=120)
    assert proc.returncode == 0
    return {str(run["run-id"]) for run in json.loads(proc.stdout)}


def activated_nodes(host):
    log = host.check_output("journalctl -u flower-superlink --no-pager -o cat")
    return set(re.findall(r"Activated node_id=(\d+)", log))


def playbook(name, *args):
    """One of the collection's playbooks on the scenario's inventory."""
    return run_playbook(f"playbooks/{name}", *args)


def test_plain_text_client_is_refused(host):
    proc = flwr_check(host, "--list-runs", timeout=120, tls=False)
    assert proc.returncode != 0, "the SuperLink answered a plain-text client"
    args = host.check_output("docker inspect -f '{{json .Args}}' flower-superlink")
    assert "--ssl-certfile" in args


def in_vm(name, *command, timeout=120):
    """A command in one of the scenario's VMs (a container of the outer engine)."""
    vm = f"flower-e2e-{name}-{os.environ.get('FLOWER_TEST_ID', 'dev')}"
    return subprocess.run(["docker", "exec", vm, *command], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def test_firewall_fleet_for_supernodes_control_for_the_controller(host):
    superlink = vm_address(host)
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    reach = {port: in_vm("supernode-1", "python3", "-c", probe, superlink, port).returncode
             for port in ("9092", "9093", "9091")}  # fmt: skip
    assert reach == {"9092": 0, "9093": 1, "9091": 1}, reach
    assert "tcp dport 9093 ip saddr @control_ipv4 accept" in host.check_output(
        "nft list table inet opennebula_flower"
    )


# A SuperNode with a key of its own that nobody registered, next to the real one on its VM.
ROGUE = """
import subprocess, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP384R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
open("/tmp/rogue", "wb").write(key)
sys.exit(subprocess.run(["flower-supernode", "--root-certificates", "certificates/ca.crt",
    "--superlink", sys.argv[1], "--auth-supernode-private-key", "/tmp/rogue",
    "--max-retries", "2"]).returncode)
"""
# What the SuperLink logs when it refuses a key it does not know (Flower 1.25 and 1.42 alike).
UNKNOWN_KEY = "No SuperNode found with the given public key"


def test_unregistered_supernode_is_refused(host):
    image = json.loads(host.check_output("docker inspect flower-superlink"))[0]["Config"]["Image"]
    image = image.replace("superlink", "supernode")
    since = host.check_output("date -u +%Y-%m-%dT%H:%M:%SZ")
    proc = in_vm(
        "supernode-1", "docker", "run", "--rm", "--entrypoint", "python3",
        "-v", "/opt/flower/certs:/app/certificates:ro", image,
        "-c", ROGUE, f"{vm_address(host)}:9092", timeout=180,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Receiving" not in out
    refusals = host.check_output(f"docker logs --since {since} flower-superlink 2>&1")
    assert UNKNOWN_KEY in refusals, refusals[-3000:]


def test_both_supernodes_activated(host):
    nodes = activated_nodes(host)
    assert len(nodes) >= 2, f"SuperNodes seen by the SuperLink: {sorted(nodes)}"


def test_demo_trains_to_completion(host, tmp_path):
    result = train(host, tmp_path, rounds=3)
    assert result["status"] == "finished:completed"
    assert len(result["rounds"]) >= 3
    first, last = result["rounds"][0], result["rounds"][-1]
    assert last["accuracy"] > 0.85
    assert last["accuracy"] > first["accuracy"]


def test_supernode_asked_for_a_gpu_trains_on_the_cpu(host):
    # supernode-2 has gpu_enabled (ONEAPP_FL_GPU_ENABLED=YES) and no GPU; it trained above.
    container = json.loads(in_vm("supernode-2", "docker", "inspect", "flower-supernode").stdout)[0]
    assert not container["HostConfig"]["DeviceRequests"]
    assert "FL_GPU_AVAILABLE=NO" in container["Config"]["Env"]
    warnings = in_vm(
        "supernode-2", "journalctl", "--no-pager", "-o", "cat", "-t", "flower-gpu", "-p", "warning"
    )
    assert "FL_GPU_ENABLED=YES but GPU not available: no NVIDIA PCI device" in warnings.stdout
    quiet = in_vm("supernode-1", "journalctl", "--no-pager", "-o", "cat", "-t", "flower-gpu")
    assert "GPU not available" not in quiet.stdout


def test_overrunning_run_is_stopped_before_the_failure_is_reported(host, tmp_path):
    result_file = tmp_path / "run.json"
    proc = flwr_check(
        host, "--run-config", "num-server-rounds=200", "--timeout", "20",
        "--json-out", str(result_file),
    )  # fmt: skip
    assert proc.returncode == 2
    result = json.loads(result_file.read_text())
    assert "timeout after 20s" in result["message"]
    assert result["status"] == "stopped with flwr stop (now finished:stopped)", result["message"]
    listing = json.loads(flwr_check(host, "--list-runs", timeout=120).stdout)
    statuses = {str(run["run-id"]): run["status"] for run in listing}
    assert statuses[str(result["run_id"])] == "finished:stopped"
    assert not [run for run, status in statuses.items() if not status.startswith("finished:")]


def test_reconfiguration_keeps_nodes_and_history(host, tmp_path):
    history = run_ids(host)
    assert history, "the first run is not in the SuperLink's history"
    settings = {
        "superlink_isolation": "process",
        "superlink_training": {"checkpoint_enabled": True, "checkpoint_resume": True},
    }
    proc = playbook("site.yml", "--limit", "superlink", "-e", json.dumps(settings))
    assert proc.returncode == 0
    assert re.search(r"changed=[1-9]", proc.stdout), "site.yml did not apply the new setting"

    running = "docker inspect -f '{{.State.Running}}' flower-superexec-serverapp"
    assert host.check_output(running) == "true"
    assert "process" in host.check_output("docker inspect -f '{{json .Args}}' flower-superlink")

    # The SuperNodes were not touched: they reconnect to the restarted SuperLink by themselves
    # (its state is in its database), and the ServerApp now runs in the SuperExec container.
    # The demo waits for both nodes (min-nodes = 2), so a finished run shows they are back.
    result = train(host, tmp_path, rounds=1)
    assert result["status"] == "finished:completed"
    after = run_ids(host)
    assert history < after, "runs from before the restart are missing"
    assert str(result["run_id"]) in after

    # The ServerApp in the SuperExec container saved its checkpoint on the VM, and the next run
    # starts from it: its initial model is the trained one, not an untrained one.
    saved = f"/opt/flower/state/checkpoints/{result['run_id']}/round-1.npz"
    assert host.file(saved).exists, f"no checkpoint at {saved}"
    assert result["initial"]["accuracy"] < 0.5  # the first run had nothing to resume
    resumed = train(host, tmp_path, rounds=1)
    assert resumed["initial"]["accuracy"] == pytest.approx(
        result["rounds"][-1]["accuracy"], abs=1e-3
    )


@pytest.mark.default_release_only
def test_certificate_rotation_keeps_nodes_and_history(host, tmp_path):
    """A new CA and server certificate: the SuperLink restarts on them, the SuperNodes get the
    new CA, and the federation trains again with its history."""
    history = run_ids(host)
    before = host.file("/opt/flower/certs/ca.crt").content_string
    proc = playbook("rotate_certs.yml", "-e", "tls_rotate_ca=true")
    assert proc.returncode == 0
    assert host.file("/opt/flower/certs/ca.crt").content_string != before
    result = train(host, tmp_path, rounds=1)  # trusts the new CA only (ca_file reads it again)
    assert result["status"] == "finished:completed"
    assert history < run_ids(host)
