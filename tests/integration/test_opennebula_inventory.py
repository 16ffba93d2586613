"""The opennebula.flower.oneflow inventory through ansible-inventory against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

INPUTS = {
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


@pytest.fixture
def services(emu, flower, helpers):
    """Two RUNNING services; the SuperLink of the first has published its keys via OneGate."""
    template_id = emu.add_service_template(flower["7.0"]("flower-fl"))
    first = emu.instantiate_service(template_id, {"name": "fl-a", **INPUTS}, wait_running=True)
    second = emu.instantiate_service(template_id, {"name": "fl-b", **INPUTS}, wait_running=True)
    superlink = helpers.service_vm_ids(emu, first)["superlink"][0]
    endpoint = f"{helpers.vm_ip(emu, superlink)}:9092"
    helpers.onegate_put(emu, superlink, {"FL_READY": "YES", "FL_ENDPOINT": endpoint})
    emu.set_vm_ready(superlink)
    return {"ids": [first, second], "superlink": superlink, "endpoint": endpoint}


def source(tmp_path, name="flower.oneflow.yml", **config):
    path = tmp_path / name
    path.write_text(json.dumps({"plugin": "opennebula.flower.oneflow", **config}))
    return path


def listing(ansible, path, *options):
    proc, data = ansible.inventory(path, "--list", *options)
    assert proc.returncode == 0 and data is not None, proc.stderr
    return data


def test_inventory_groups_vars_and_requests(emu, ansible, services, helpers, tmp_path):
    """Groups per role and service, ansible_host from the emulator's IPs, FL_* keys as host
    vars; 1 OneFlow request per service and 1 oned request, whatever the size of the pool."""
    first, second = services["ids"]
    path = source(tmp_path, services=services["ids"])
    emu.reset_counters()
    data = listing(ansible, path)
    counters = emu.counters()
    assert counters["oneflow"] == {"GET /service/:id": 2}  # one per service
    assert counters["oned"] == {"one.vmpool.infoset": 1}  # all their VMs at once
    assert counters["total"]["onegate"] == 0

    vms = {sid: helpers.service_vm_ids(emu, sid) for sid in (first, second)}
    superlinks = sorted(f"superlink-{vms[s]['superlink'][0]}" for s in (first, second))
    supernodes = sorted(f"supernode-{i}" for s in (first, second) for i in vms[s]["supernode"])
    assert sorted(data["superlink"]["hosts"]) == superlinks
    assert sorted(data["supernode"]["hosts"]) == supernodes
    for sid in (first, second):
        members = [f"superlink-{vms[sid]['superlink'][0]}"]
        members += [f"supernode-{i}" for i in vms[sid]["supernode"]]
        assert sorted(data[f"service_{sid}"]["hosts"]) == sorted(members)
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(superlinks + supernodes)
    for host, variables in hostvars.items():
        assert variables["ansible_host"] == helpers.vm_ip(emu, variables["one_vm_id"]), host
        assert variables["one_ips"] == [variables["ansible_host"]]
        assert variables["one_state"] == "ACTIVE" and variables["one_lcm_state"] == "RUNNING"
    superlink = hostvars[f"superlink-{services['superlink']}"]
    assert superlink["FL_ENDPOINT"] == services["endpoint"] and superlink["FL_READY"] == "YES"
    assert superlink["one_ready"] is True
    assert superlink["one_service_id"] == first and superlink["one_service_name"] == "fl-a"
    assert superlink["one_role"] == "superlink"
    other = hostvars[f"superlink-{vms[second]['superlink'][0]}"]
    assert "FL_ENDPOINT" not in other and other["one_ready"] is False
    node = hostvars[f"supernode-{vms[first]['supernode'][0]}"]
    assert node["FL_NODE_LABEL"] == "edge"  # user inputs are VM attributes (7.0)

    # 300 unrelated VMs: the same inventory, the same two + one requests
    emu.add_vm_pool(300)
    emu.reset_counters()
    assert listing(ansible, path) == data
    counters = emu.counters()
    assert counters["oneflow"] == {"GET /service/:id": 2}
    assert counters["oned"] == {"one.vmpool.infoset": 1}

    # --host: the variables of one host
    proc, host = ansible.inventory(path, "--host", f"superlink-{services['superlink']}")
    assert proc.returncode == 0, proc.stderr
    assert host == superlink

    # by name: one listing for all named services
    emu.reset_counters()
    by_name = listing(ansible, source(tmp_path, services=["fl-a"]))
    assert sorted(by_name["_meta"]["hostvars"]) == sorted(data[f"service_{first}"]["hosts"])
    assert emu.counters()["oneflow"] == {"GET /service": 1}
    assert emu.counters()["oned"] == {"one.vmpool.infoset": 1}


def test_inventory_cache(emu, ansible, services, tmp_path):
    """With the jsonfile cache a second run sends no request at all; --flush-cache reads again."""
    cache = tmp_path / "cache"
    path = source(
        tmp_path,
        services=services["ids"],
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(cache),
    )
    emu.reset_counters()
    first = listing(ansible, path)
    assert emu.counters()["total"] == {"oned": 1, "oneflow": 2, "onegate": 0}
    assert list(cache.iterdir())  # written

    emu.reset_counters()
    assert listing(ansible, path) == first
    assert emu.counters()["total"] == {"oned": 0, "oneflow": 0, "onegate": 0}

    emu.reset_counters()
    assert listing(ansible, path, "--flush-cache") == first
    assert emu.counters()["total"] == {"oned": 1, "oneflow": 2, "onegate": 0}


def test_inventory_errors(emu, ansible, services, tmp_path):
    """A wrong password and an unknown service fail the inventory with the server's text."""
    strict = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    proc, _ = ansible.inventory(
        source(tmp_path, services=services["ids"]),
        "--list",
        env={**strict, "ONE_PASSWORD": "not-the-password"},
    )
    output = " ".join(proc.stderr.split())
    assert proc.returncode != 0
    url = f"{emu.oneflow_url}/service/{services['ids'][0]}"
    assert f"GET {url} failed: HTTP 401: Invalid credentials" in output
    assert "not-the-password" not in proc.stdout + proc.stderr

    proc, _ = ansible.inventory(source(tmp_path, services=[999]), "--list", env=strict)
    output = " ".join(proc.stderr.split())
    assert proc.returncode != 0
    assert "HTTP 404: [one.document.info] Error getting document [999]." in output


def test_shipped_example_lists_the_service_named_flower(emu, ansible, flower, helpers):
    """inventories/oneflow/flower.oneflow.yml, as shipped, on a service with deploy.yml's
    default name."""
    template_id = emu.add_service_template(flower["7.0"]("flower-tpl"))
    sid = emu.instantiate_service(template_id, {"name": "flower", **INPUTS}, wait_running=True)
    example = ROOT / "inventories" / "oneflow" / "flower.oneflow.yml"
    data = listing(ansible, example)
    vms = helpers.service_vm_ids(emu, sid)
    assert data["superlink"]["hosts"] == [f"superlink-{vms['superlink'][0]}"]
    assert sorted(data["supernode"]["hosts"]) == sorted(f"supernode-{i}" for i in vms["supernode"])
    for variables in data["_meta"]["hostvars"].values():
        assert variables["ansible_user"] == "root"
        assert variables["ansible_host"] == helpers.vm_ip(emu, variables["one_vm_id"])
