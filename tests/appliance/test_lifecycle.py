"""End to end, the user's path: the appliance images (container counterparts of the QCOW2s),
``playbooks/deploy.yml`` against the emulator (its VMs are systemd containers booting the
appliances with one-context's files), SuperNodes discovering the SuperLink through OneGate,
``flwr run`` over TLS; then ``site.yml`` through the ``oneflow`` inventory, scaling 2 -> 3 and
a SuperLink restart. The tests run in file order on one federation.

Needs Docker and ``make appliance-images`` (the Makefile's ``lifecycle`` target does both).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("appliance_demo", ROOT / "scripts/appliance_demo.py")
appliance_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(appliance_demo)

RUN_ID = f"lc{os.environ.get('FLOWER_TEST_ID', os.getpid())}"
ARCHIVE = f"/var/cache/flower-images/flower-{appliance_demo.VERSION}-sklearn.tar"
# What the images were baked with: site.yml must be told the same.
SITE_VARS = {
    "docker_source": "distribution",
    "superlink_image_source": "load",
    "superlink_image_archive": ARCHIVE,
    "supernode_image_source": "load",
    "supernode_image_archive": ARCHIVE,
}


@pytest.fixture(scope="module")
def demo():
    demo = appliance_demo.Demo(RUN_ID)
    demo.start()
    yield demo
    demo.down()


@pytest.fixture(scope="module")
def deployed(demo):
    return demo.deploy()


def service(demo):
    """The OneFlow service document of the demo (from the emulator's state)."""
    docs = demo.emulator("/_emulator/state")["documents"]
    (body,) = [d["body"] for d in docs if d.get("body", {}).get("name") == f"flower-{demo.id}"]
    return body


def role_vms(demo, role):
    body = service(demo)
    (found,) = [r for r in body["roles"] if r["name"] == role]
    return sorted(int(node["deploy_id"]) for node in found["nodes"])


def user_template(demo, vm_id):
    state = demo.emulator("/_emulator/state")
    (vm,) = [vm for vm in state["vms"] if vm["id"] == vm_id]
    return vm["user_template"]


def run_ids(demo):
    proc = demo.flwr("--list-runs", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {str(run["run-id"]) for run in json.loads(proc.stdout)}


FLOWER_PULL_RACE = "Both bytes_sent and bytes_recv cannot be zero"


def in_vm(demo, vm_id, *command):
    return subprocess.run(["docker", "exec", demo.container(vm_id), *command],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def flower_logs(demo, vm_id, container, since):
    proc = in_vm(demo, vm_id, "docker", "logs", "--since", since, container)
    return proc.stdout + proc.stderr


def vm_clock(demo, vm_id):
    return in_vm(demo, vm_id, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()


def train(demo, rounds, *config, min_accuracy=0.85):
    """demo.train with 240 s per round; on failure the Flower logs are printed.

    Flower 1.25's SuperLink fails a PullObject of an object not yet fully pushed ("Both
    bytes_sent and bytes_recv cannot be zero"): the SuperNode drops that message and the run
    waits for its reply. Fixed upstream (traffic is counted only for available objects); here
    that failure, recognised in a SuperNode's log, earns one more run; no other failure does.
    """
    superlink, nodes = role_vms(demo, "superlink")[0], role_vms(demo, "supernode")
    since = vm_clock(demo, superlink)
    timeout = 240 * rounds
    try:
        return demo.train(rounds, *config, min_accuracy=min_accuracy, timeout=timeout)
    except appliance_demo.DemoError:
        logs = {vm: flower_logs(demo, vm, "flower-supernode", since) for vm in nodes}
        print(f"== VM {superlink}, flower-superlink since {since}:")
        print(flower_logs(demo, superlink, "flower-superlink", since)[-4000:])
        for vm_id, text in logs.items():
            print(f"== VM {vm_id}, flower-supernode since {since}:", text[-4000:], sep="\n")
        if not any(FLOWER_PULL_RACE in text for text in logs.values()):
            raise
    return demo.train(rounds, *config, min_accuracy=min_accuracy, timeout=timeout)


def nodes_polling(demo, superlink, since):
    """Node ids that the SuperLink's new container has seen pulling messages."""
    logs = flower_logs(demo, superlink, "flower-superlink", since)
    return set(re.findall(r"PullMessages\] node_id=(\d+)", logs))


def test_deploy_reaches_ready_and_fl_ready(demo, deployed):
    superlink = role_vms(demo, "superlink")[0]
    published = user_template(demo, superlink)
    assert published["READY"] == "YES" and published["FL_READY"] == "YES"
    assert published["FL_TLS"] == "YES"
    assert deployed["address"] == published["FL_ENDPOINT"].rsplit(":", 1)[0] + ":9093"
    for node in role_vms(demo, "supernode"):
        assert user_template(demo, node)["FL_NODE_READY"] == "YES"
    assert "BEGIN CERTIFICATE" in demo.ca_file.read_text()


def test_plain_text_client_is_refused(demo, deployed):
    proc = demo.flwr("--list-runs", tls=False, timeout=180)
    assert proc.returncode != 0, "the SuperLink answered a plain-text client"


def test_demo_trains_over_tls(demo, deployed):
    result = train(demo, 3)
    assert result["status"] == "finished:completed"
    assert result["rounds"][-1]["accuracy"] > 0.85


def site(demo, inventory, extra):
    return demo.playbook("site.yml", "-i", str(inventory), extra={**SITE_VARS, **extra})


def test_site_yml_through_the_oneflow_inventory(demo, deployed, tmp_path_factory):
    inventory = tmp_path_factory.mktemp("inventory") / "flower.oneflow.yml"
    inventory.write_text(
        "plugin: opennebula.flower.oneflow\n"
        f"services: [flower-{demo.id}]\n"
        "compose:\n"
        "  ansible_connection: \"'community.docker.docker'\"\n"
        f"  ansible_host: \"'{demo.network}-vm-' ~ one_vm_id\"\n"
        "  ansible_python_interpreter: \"'/usr/bin/python3'\"\n"
    )
    change = {"superlink_training": {"num_rounds": 2, "strategy": "FedAvg"}}
    first = site(demo, inventory, change)
    print(first.stdout[-3000:], first.stderr[-2000:])
    assert first.returncode == 0
    assert re.search(r"changed=[1-9]", first.stdout)
    superlink = role_vms(demo, "superlink")[0]
    env = in_vm(demo, superlink, "cat", "/opt/flower/config/superlink.env")
    assert env.returncode == 0 and "FL_NUM_ROUNDS=2" in env.stdout
    second = site(demo, inventory, change)
    assert second.returncode == 0
    assert not re.search(r"changed=[1-9]", second.stdout), second.stdout[-3000:]


def test_scaling_adds_a_node_that_joins_the_next_run(demo, deployed):
    before = role_vms(demo, "supernode")
    proc = demo.playbook(
        "scale.yml",
        extra={"flower_service_name": f"flower-{demo.id}", "flower_supernode_count": 3,
               "flower_poll_interval": 1},
    )  # fmt: skip
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    after = role_vms(demo, "supernode")
    assert len(after) == 3 and set(before) < set(after)
    # The run waits for 3 nodes: it finishes only if the new one joined.
    result = train(demo, 1, "min-nodes=3", min_accuracy=0.5)
    assert result["status"] == "finished:completed"


def test_superlink_restart_keeps_nodes_and_history(demo, deployed):
    history = run_ids(demo)
    superlink = role_vms(demo, "superlink")[0]
    nodes = {user_template(demo, vm)["FL_NODE_ID"]: vm for vm in role_vms(demo, "supernode")}
    since = vm_clock(demo, superlink)
    assert in_vm(demo, superlink, "systemctl", "restart", "flower-superlink").returncode == 0
    # The SuperNodes come back by themselves (Flower retries every 20 s at most).
    start = time.monotonic()
    while not set(nodes) <= nodes_polling(demo, superlink, since):
        if time.monotonic() > start + 180:
            break
        time.sleep(3)
    back = nodes_polling(demo, superlink, since)
    assert set(nodes) <= back, f"SuperNodes not back after the restart: {set(nodes) - back}"
    print(f"{len(nodes)} SuperNodes back {time.monotonic() - start:.1f} s after the restart")
    result = train(demo, 1, "min-nodes=3", min_accuracy=0.5)
    assert result["status"] == "finished:completed"
    assert history < run_ids(demo)
