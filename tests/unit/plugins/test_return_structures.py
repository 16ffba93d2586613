"""Every recorded OneFlow/OneGate/oned sample parses into the modules' return structures."""

from __future__ import annotations

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    SERVICE_STATES,
    role_state_name,
    service_state_name,
    vm_summary,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oned import vm_to_dict
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    cardinalities_of,
    onegate_service_summary,
    pool_documents,
    service_node_ids,
    service_summary,
)

SERVICE_SAMPLES = {
    "oneflow-service-show-running.json": ("RUNNING", {"superlink": [1], "supernode": [2, 3]}),
    "oneflow-service-show-cooldown-after-scale.json": (
        "COOLDOWN",
        {"superlink": [1], "supernode": [3, 4]},
    ),
    "oneflow-service-show-after-scale-up.json": (
        "RUNNING",
        {"superlink": [5], "supernode": [6, 7, 8, 9]},
    ),
    "oneflow-service-show-after-scale-down.json": ("RUNNING", {"superlink": [5], "supernode": [9]}),
    "oneflow-service_template-instantiate-response.json": (
        "PENDING",
        {"superlink": [], "supernode": []},
    ),
}

VM_KEYS = {
    "id", "name", "state", "state_id", "lcm_state", "lcm_state_id", "ready", "ips", "ipv4",
    "ipv6", "nics", "published", "user_template",
}  # fmt: skip


def check_vm_types(vm):
    assert set(vm) == VM_KEYS
    assert isinstance(vm["id"], int)
    assert isinstance(vm["ready"], bool)
    for key in ("ips", "ipv4", "ipv6", "nics"):
        assert isinstance(vm[key], list)
    assert all(isinstance(v, str) for v in vm["published"].values())
    assert all(k.startswith("FL_") for k in vm["published"])


@pytest.mark.parametrize("name", sorted(SERVICE_SAMPLES))
def test_oneflow_service_samples(sample, name):
    state, vm_ids = SERVICE_SAMPLES[name]
    doc = sample(name)["DOCUMENT"]
    summary = service_summary(doc)
    assert summary["state"] == state
    assert summary["state_id"] == SERVICE_STATES.index(state)
    assert isinstance(summary["id"], int)
    assert summary["schema"] == "7.0"
    assert {r: v["vm_ids"] for r, v in summary["roles"].items()} == vm_ids
    assert service_node_ids(doc) == vm_ids
    for role in summary["roles"].values():
        assert isinstance(role["cardinality"], int)
        assert role["state"] in ("RUNNING", "COOLDOWN", "PENDING")
        for vm in role["vms"]:
            check_vm_types(vm)
            assert vm["name"].startswith(role["name"] + "_")
            assert vm["state"] is None  # OneFlow keeps no VM state, only id and name
    assert summary["roles"]["supernode"]["min_vms"] == 1
    assert summary["roles"]["supernode"]["max_vms"] == 5


def test_cooldown_sample_role_state_and_cardinalities(sample):
    doc = sample("oneflow-service-show-cooldown-after-scale.json")["DOCUMENT"]
    summary = service_summary(doc)
    assert summary["roles"]["supernode"]["state"] == "COOLDOWN"
    assert cardinalities_of(doc) == {"superlink": 1, "supernode": 2}


def test_service_list_sample(sample):
    docs = pool_documents(sample("oneflow-service-list.json"))
    summaries = [service_summary(d) for d in docs]
    assert [s["name"] for s in summaries] == [d["NAME"] for d in docs]
    assert all(isinstance(s["state_id"], int) for s in summaries)


def test_states_cover_everything_without_index_errors():
    assert [service_state_name(i) for i in (11, 12, 13, 14, 15)] == [
        "DEPLOYING_NETS", "UNDEPLOYING_NETS", "FAILED_DEPLOYING_NETS",
        "FAILED_UNDEPLOYING_NETS", "HOLD",
    ]  # fmt: skip
    assert role_state_name(11) == "HOLD"
    assert service_state_name(42) == "SERVICE_STATE_42"
    assert service_state_name("2") == "RUNNING"
    assert service_state_name(None) is None


def test_oned_samples_through_pyone(sample_text):
    bindings = pytest.importorskip("pyone.bindings")
    pool = bindings.parseString(sample_text("oned-xmlrpc-one.vmpool.infoextended.xml").encode())
    vms = {vm.ID: vm_summary(vm_to_dict(vm)) for vm in pool.VM}
    assert sorted(vms) == [0, 1, 2, 3, 4]
    for vm in vms.values():
        check_vm_types(vm)
        assert vm["state"] == "ACTIVE" and vm["lcm_state"] == "RUNNING"
    assert vms[1]["ips"] == ["10.0.0.11"]
    assert vms[1]["nics"][0]["network"] == "private"
    assert vms[1]["nics"][0]["mac"] == "02:00:0a:00:00:0b"
    assert vms[2]["ready"] is True
    assert vms[2]["published"] == {
        "FL_ENDPOINT": "10.0.0.5:9092", "FL_NODE_LABEL": "lab-a", "FL_ROUNDS": "5",
        "FL_STRATEGY": "FedProx",
    }  # fmt: skip
    assert vms[1]["ready"] is False
    # the pretty-printed recording gives xmltodict whitespace '#text' keys: not attributes
    vm = bindings.parseString(sample_text("oned-vm-1-superlink-show.xml").encode())
    summary = vm_summary(vm_to_dict(vm))
    assert "#text" not in summary["user_template"]
    assert summary["user_template"]["ROLE_NAME"] == "superlink"
    single = bindings.parseString(sample_text("oned-xmlrpc-one.vm.info-2.xml").encode())
    assert vm_summary(vm_to_dict(single))["ips"] == ["10.0.0.12"]


def test_service_with_vms_from_oned(sample, sample_text):
    bindings = pytest.importorskip("pyone.bindings")
    pool = bindings.parseString(sample_text("oned-xmlrpc-one.vmpool.infoextended.xml").encode())
    vms = {vm.ID: vm_to_dict(vm) for vm in pool.VM}
    doc = sample("oneflow-service-show-running.json")["DOCUMENT"]
    summary = service_summary(doc, vms)
    superlink = summary["roles"]["superlink"]["vms"][0]
    assert superlink["ips"] == ["10.0.0.11"] and superlink["state"] == "ACTIVE"
    nodes = summary["roles"]["supernode"]["vms"]
    assert [n["ips"] for n in nodes] == [["10.0.0.12"], ["10.0.0.13"]]
    assert nodes[0]["published"]["FL_ENDPOINT"] == "10.0.0.5:9092"


@pytest.mark.parametrize(
    ("name", "ips", "published"),
    [
        ("onegate-get-vm.json", ["10.0.0.12"], {"FL_NODE_LABEL": "lab-a"}),
        ("onegate-get-vm-after-put.json", ["10.0.0.12"], {"FL_ENDPOINT": "10.0.0.5:9092"}),
        ("onegate-get-vms-1.json", ["10.0.0.11"], {"FL_ROUNDS": "5"}),
        ("onegate-get-vm-nonservice-vm0.json", ["10.0.0.10"], {}),
    ],
)
def test_onegate_vm_samples(sample, name, ips, published):
    vm = vm_summary(sample(name))
    check_vm_types(vm)
    assert vm["ips"] == ips
    assert vm["state"] == "ACTIVE" and vm["lcm_state"] == "RUNNING"
    for key, value in published.items():
        assert vm["published"][key] == value


@pytest.mark.parametrize(
    "name", ["onegate-get-service.json", "onegate-get-service-after-ready.json"]
)
def test_onegate_service_samples(sample, name):
    summary = onegate_service_summary(sample(name))
    assert summary["id"] == 1 and summary["state"] == "RUNNING"
    assert summary["roles"]["superlink"]["vm_ids"] == [1]
    assert summary["roles"]["supernode"]["vm_ids"] == [2, 3]
    assert summary["roles"]["supernode"]["vms"][0]["name"] == "supernode_0_(service_1)"


def test_onegate_extended_service_has_ips_and_template(sample):
    summary = onegate_service_summary(sample("onegate-get-service-extended.json"))
    superlink = summary["roles"]["superlink"]["vms"][0]
    check_vm_types(superlink)
    assert superlink["ips"] == ["10.0.0.11"]  # TEMPLATE.NIC is an object here, not a list
    assert superlink["state"] == "ACTIVE"
    assert superlink["user_template"]["ROLE_NAME"] == "superlink"
    nodes = summary["roles"]["supernode"]["vms"]
    assert all(n["ips"] for n in nodes)


def test_all_nics_v4_and_v6_and_aliases():
    vm = vm_summary(
        {
            "ID": "7", "NAME": "dual", "STATE": "3", "LCM_STATE": "3",
            "TEMPLATE": {
                "NIC": [
                    {"NIC_ID": "0", "IP": "10.0.0.7", "IP6_GLOBAL": "2001:db8::7",
                     "IP6_LINK": "fe80::7", "NETWORK": "pub"},
                    {"NIC_ID": "1", "IP6": "fd00::7", "NETWORK": "v6only"},
                ],
                "NIC_ALIAS": {"IP": "10.0.1.7", "NETWORK": "alias"},
            },
            "USER_TEMPLATE": {"READY": "YES", "FL_READY": "YES", "EMPTY": None},
        }
    )  # fmt: skip
    assert vm["ipv4"] == ["10.0.0.7", "10.0.1.7"]
    assert vm["ipv6"] == ["2001:db8::7", "fd00::7"]
    assert vm["ips"] == ["10.0.0.7", "10.0.1.7", "2001:db8::7", "fd00::7"]
    assert [n["alias"] for n in vm["nics"]] == [False, False, True]
    assert vm["nics"][0]["ip6_link"] == "fe80::7"
    assert vm["ready"] is True
    assert vm["user_template"]["EMPTY"] == ""
    assert vm["lcm_state"] == "RUNNING"
