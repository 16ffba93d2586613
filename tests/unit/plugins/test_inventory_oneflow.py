"""The opennebula.flower.oneflow inventory through `ansible-inventory`, on recorded answers.

OneFlow answers come from the replay server; oned answers from a small XML-RPC server that returns
the recorded VM pool. Both count the requests the plugin makes.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "fixtures" / "one-samples"
POOL_XML = (SAMPLES / "oned-xmlrpc-one.vmpool.infoextended.xml").read_text()


class RecordedOned:
    """oned answering the recorded pool; ``refuse_infoset`` plays an oned without that call."""

    def __init__(self, refuse_infoset=False):
        self.calls = []
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        self.server.register_function(self.infoset, "one.vmpool.infoset")
        self.server.register_function(self.infoextended, "one.vmpool.infoextended")
        self.refuse_infoset = refuse_infoset
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/RPC2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def infoset(self, session, ids, extended):
        self.calls.append(("one.vmpool.infoset", ids, extended))
        if self.refuse_infoset:
            return [False, "[one.vmpool.infoset] Method not supported.", 0x1000, 0, 0]
        return [True, POOL_XML, 0]

    def infoextended(self, session, who, first, last, state):
        self.calls.append(("one.vmpool.infoextended", who, first, last, state))
        return [True, POOL_XML, 0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oned():
    servers = []

    def make(**kwargs):
        servers.append(RecordedOned(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def load_sample(name):
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def oneflow(replay):
    flow = replay()
    flow.add("GET", "/service/1", (200, load_sample("oneflow-service-show-running.json")))
    flow.add("GET", "/service", (200, load_sample("oneflow-service-list.json")))
    return flow


def inventory(tmp_path: Path, flow, oned, **config):
    source = tmp_path / "flower.oneflow.yml"
    source.write_text(json.dumps({"plugin": "opennebula.flower.oneflow", **config}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ONEFLOW_URL": flow.url,
        "ONE_URL": oned.url,
        "ONE_USERNAME": "oneadmin",
        "ONE_PASSWORD": "secret:with:colons",
    }
    return subprocess.run(
        ["ansible-inventory", "-i", str(source), "--list", "--export"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def plain(value):
    """ansible-core 2.19 marks inventory values as untrusted in --list output; unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def listed(proc):
    assert proc.returncode == 0, proc.stderr
    return plain(json.loads(proc.stdout))


def test_groups_hosts_and_variables(tmp_path, oneflow, oned):
    server = oned()
    data = listed(inventory(tmp_path, oneflow, server, services=[1]))
    service = load_sample("oneflow-service-show-running.json")["DOCUMENT"]["TEMPLATE"]["BODY"]
    by_role = {r["name"]: [n["deploy_id"] for n in r["nodes"]] for r in service["roles"]}
    assert data["superlink"]["hosts"] == [f"superlink-{i}" for i in by_role["superlink"]]
    assert sorted(data["supernode"]["hosts"]) == sorted(
        f"supernode-{i}" for i in by_role["supernode"]
    )
    assert sorted(data["service_1"]["hosts"]) == sorted(
        data["superlink"]["hosts"] + data["supernode"]["hosts"]
    )
    hostvars = data["_meta"]["hostvars"]
    node = hostvars[f"supernode-{by_role['supernode'][0]}"]
    assert node["one_vm_id"] == by_role["supernode"][0]
    assert node["one_service_id"] == 1
    assert node["one_service_name"] == "flower-svc-1"
    assert node["one_role"] == "supernode"
    assert node["one_state"] == "ACTIVE"
    assert node["one_lcm_state"] == "RUNNING"
    assert node["one_ready"] in (True, False)
    assert node["FL_NODE_LABEL"] == "lab-a"
    assert node["ansible_host"].startswith("10.0.0.")


def test_one_request_per_service_and_one_for_all_vms(tmp_path, oneflow, oned):
    server = oned()
    listed(inventory(tmp_path, oneflow, server, services=[1]))
    assert [r.path for r in oneflow.requests] == ["/service/1"]
    assert [c[0] for c in server.calls] == ["one.vmpool.infoset"]
    assert server.calls[0][2] is True  # extended: USER_TEMPLATE and NICs


def test_names_are_resolved_with_one_listing(tmp_path, oneflow, oned):
    server = oned()
    data = listed(inventory(tmp_path, oneflow, server, services=["flower-svc-1"]))
    assert data["superlink"]["hosts"]
    assert [r.path for r in oneflow.requests] == ["/service"]


def test_falls_back_to_id_ranges_without_infoset(tmp_path, oneflow, oned):
    server = oned(refuse_infoset=True)
    data = listed(inventory(tmp_path, oneflow, server, services=[1]))
    assert data["supernode"]["hosts"]
    assert [c[0] for c in server.calls] == ["one.vmpool.infoset", "one.vmpool.infoextended"]


def test_unknown_service_name_is_an_error(tmp_path, oneflow, oned):
    proc = inventory(tmp_path, oneflow, oned(), services=["nope"])
    assert proc.returncode != 0
    assert "service name 'nope' must match exactly one OneFlow service" in proc.stderr


def test_constructed_options_and_prefixes(tmp_path, oneflow, oned):
    data = listed(
        inventory(
            tmp_path, oneflow, oned(),
            services=[1],
            role_group_prefix="flower_",
            service_group_prefix="svc",
            hostname_format="{service}-{role}-{id}",
            keyed_groups=[{"key": "one_lcm_state", "prefix": "lcm"}],
            compose={"label": "FL_NODE_LABEL | default('none')"},
            groups={"labelled": "FL_NODE_LABEL is defined"},
        )
    )  # fmt: skip
    assert "flower_superlink" in data and "svc1" in data
    assert all(h.startswith("flower-svc-1-") for h in data["svc1"]["hosts"])
    assert sorted(data["lcm_RUNNING"]["hosts"]) == sorted(data["svc1"]["hosts"])
    assert set(data["labelled"]["hosts"]) == set(data["flower_supernode"]["hosts"])
    hostvars = data["_meta"]["hostvars"]
    assert {hostvars[h]["label"] for h in data["flower_supernode"]["hosts"]} == {"lab-a"}


def test_hostname_format_must_stay_unique(tmp_path, oneflow, oned):
    proc = inventory(tmp_path, oneflow, oned(), services=[1], hostname_format="{service}")
    assert proc.returncode != 0
    assert "add {id} to make it unique" in proc.stderr
    proc = inventory(tmp_path, oneflow, oned(), services=[1], hostname_format="{role}")
    assert proc.returncode != 0
    assert "host name 'superlink' (hostname_format '{role}') is also a group name" in proc.stderr


@pytest.mark.parametrize(
    ("config", "expect_address"),
    [
        ({"address_from": "network", "network_name": "private"}, True),
        ({"address_from": "network", "network_name": "public"}, False),
        ({"address_from": "nic", "nic_name": "NIC0"}, True),
        ({"address_from": "nic", "nic_name": "NIC1"}, False),
        ({"ip_version": 6}, True),  # no IPv6 on the recorded VMs: falls back to IPv4
    ],
)
def test_ansible_host_selection(tmp_path, oneflow, oned, config, expect_address):
    data = listed(inventory(tmp_path, oneflow, oned(), services=[1], **config))
    hostvars = data["_meta"]["hostvars"]
    for host in data["service_1"]["hosts"]:
        if expect_address:
            assert hostvars[host]["ansible_host"].startswith("10.0.0.")
            assert hostvars[host]["ansible_host"] in hostvars[host]["one_ips"]
        else:
            assert "ansible_host" not in hostvars[host]
