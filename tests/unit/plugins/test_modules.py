"""The modules end to end against recorded responses served over HTTP (replay, not emulation)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from ansible_collections.opennebula.flower.plugins.modules import (
    oneflow_service,
    oneflow_service_info,
    oneflow_template,
    onegate,
    onegate_info,
)

ROOT = Path(__file__).resolve().parents[3]
MODULES = ["onegate", "onegate_info", "oneflow_template", "oneflow_service", "oneflow_service_info"]


@pytest.fixture
def gate(replay, clean_env, tmp_path):
    server = replay()
    one_env = tmp_path / "one_env"
    one_env.write_text(
        f'export TOKENTXT="tok=="\nexport VMID="2"\nexport ONEGATE_ENDPOINT="{server.url}"\n'
    )
    return server, {"one_env_file": str(one_env), "retries": 0}


# ------------------------------------------------------------------------------------ onegate
def test_onegate_no_change_reads_once(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    result, failed = run_module(onegate.main, dict(args, attributes={"FL_ROUNDS": 5}))
    assert not failed and result["changed"] is False
    assert [r.method for r in server.requests] == ["GET"]
    assert server.requests[0].headers["X-ONEGATE-VMID"] == "2"
    assert result["vm"]["published"]["FL_ROUNDS"] == "5"


def test_onegate_publishes_with_diff(gate, sample, run_module):
    server, args = gate
    server.add(
        "GET",
        "/vm",
        (200, sample("onegate-get-vm.json")),
        (200, sample("onegate-get-vm-after-put.json")),
    )
    server.add("PUT", "/vm", (200, ""))
    result, failed = run_module(
        onegate.main, dict(args, attributes={"FL_ENDPOINT": "10.0.0.5:9092"}), diff=True
    )
    assert not failed and result["changed"] is True
    assert result["diff"] == {"before": {}, "after": {"FL_ENDPOINT": "10.0.0.5:9092"}}
    (put,) = server.calls("PUT")
    assert parse_qs(put.body.decode()) == {"data": ["FL_ENDPOINT=10.0.0.5:9092"], "type": ["1"]}
    assert result["vm"]["published"]["FL_ENDPOINT"] == "10.0.0.5:9092"


def test_onegate_check_mode_writes_nothing(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    result, failed = run_module(
        onegate.main,
        dict(args, attributes={"FL_READY": True}, remove=["FL_STRATEGY"]),
        check_mode=True,
        diff=True,
    )
    assert not failed and result["changed"] is True
    assert result["changes"] == {"set": {"FL_READY": "YES"}, "remove": ["FL_STRATEGY"]}
    assert result["diff"]["before"] == {"FL_STRATEGY": "FedProx"}
    assert result["vm"]["published"]["FL_READY"] == "YES"
    assert "FL_STRATEGY" not in result["vm"]["published"]
    assert server.calls("PUT") == []


def test_onegate_remove_uses_type_2_per_key(gate, sample, run_module):
    server, args = gate
    after = copy.deepcopy(sample("onegate-get-vm.json"))
    del after["VM"]["USER_TEMPLATE"]["FL_STRATEGY"]
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")), (200, after))
    server.add("PUT", "/vm", (200, ""))
    result, failed = run_module(onegate.main, dict(args, remove=["fl_strategy", "NOT_THERE"]))
    assert not failed and result["changed"] is True
    (put,) = server.calls("PUT")
    assert parse_qs(put.body.decode()) == {"data": ["FL_STRATEGY"], "type": ["2"]}


def test_onegate_fails_when_the_value_did_not_land(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    server.add("PUT", "/vm", (200, ""))  # 7.0.0-like: 200 but nothing stored
    result, failed = run_module(onegate.main, dict(args, attributes={"FL_READY": "YES"}))
    assert failed and "does not show it" in result["msg"]


def test_onegate_error_keeps_status_and_text(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    server.add("PUT", "/vm", (403, "Attribute (ROLE_NAME) cannot be modified"))
    result, failed = run_module(onegate.main, dict(args, attributes={"ROLE_NAME": "x"}))
    assert failed
    assert (
        "HTTP 403" in result["msg"] and "Attribute (ROLE_NAME) cannot be modified" in result["msg"]
    )
    assert result["status"] == 403
    assert result["server_message"] == "Attribute (ROLE_NAME) cannot be modified"


# ------------------------------------------------------------------------------- onegate_info
def test_onegate_info_waits_for_the_superlink(gate, sample, run_module):
    server, args = gate
    before = sample("onegate-get-service-extended.json")
    ready = copy.deepcopy(before)
    superlink = ready["SERVICE"]["roles"][0]["nodes"][0]["vm_info"]["VM"]
    superlink["USER_TEMPLATE"].update(FL_READY="YES", FL_ENDPOINT="10.0.0.11:9092")
    server.add("GET", "/service", (200, before), (503, "busy"), (200, ready))
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    result, failed = run_module(
        onegate_info.main,
        dict(
            args,
            role="superlink",
            wait_for={"FL_READY": True, "FL_ENDPOINT": None},
            wait_timeout=30,
            backoff={"policy": "exponential", "initial": 0.01, "factor": 2, "cap": 0.05},
        ),
    )
    assert not failed, result
    assert result["wait"]["attempts"] == 3
    assert result["role_vms"][0]["published"]["FL_ENDPOINT"] == "10.0.0.11:9092"
    assert result["role_vms"][0]["ips"] == ["10.0.0.11"]
    assert result["vm"]["id"] == 2
    assert all(
        r.path == "/service?extended=true" for r in server.calls("GET") if "service" in r.path
    )


def test_onegate_info_times_out_with_what_is_missing(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    result, failed = run_module(
        onegate_info.main,
        dict(args, wait_for=["FL_READY"], wait_timeout=0, backoff={"interval": 0.01}),
    )
    assert failed and "timed out" in result["msg"]
    assert result["unmet"] == {"supernode_0_(service_1)": {"FL_READY": None}}


def test_onegate_info_plain_service(gate, sample, run_module):
    server, args = gate
    server.add("GET", "/vm", (200, sample("onegate-get-vm.json")))
    server.add("GET", "/service", (200, sample("onegate-get-service.json")))
    result, failed = run_module(onegate_info.main, dict(args, service=True))
    assert not failed
    assert result["service"]["roles"]["supernode"]["vm_ids"] == [2, 3]
    assert [r.path for r in server.requests] == ["/vm", "/service"]


# --------------------------------------------------------------------------- oneflow_template
@pytest.fixture
def flow(replay, clean_env):
    server = replay()
    args = {
        "oneflow_url": server.url, "oneflow_username": "oneadmin", "oneflow_password": "pw",
        "retries": 0,
    }  # fmt: skip
    return server, args


def test_template_unchanged_means_no_write(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, sample("oneflow-service_template-list.json")))
    body = sample("oneflow-service_template-create-request.json")
    result, failed = run_module(oneflow_template.main, dict(args, name="flower-fl", template=body))
    assert not failed and result["changed"] is False
    assert (result["id"], result["schema"], result["differences"]) == (0, "7.0", [])
    assert [r.method for r in server.requests] == ["GET"]


def test_template_created_in_the_server_schema(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, {"DOCUMENT_POOL": {}}))
    server.add("GET", "/service", (200, sample("oneflow-service-list.json")))
    server.add(
        "POST", "/service_template", (201, sample("oneflow-service_template-create-response.json"))
    )
    old_style = {
        "description": "Flower superlink + supernodes (test)",
        "deployment": "straight",
        "ready_status_gate": False,
        "custom_attrs": sample("oneflow-service_template-create-request.json")["user_inputs"],
        "roles": [
            {"name": "superlink", "vm_template": 0, "cardinality": 1, "min_vms": 1, "max_vms": 1},
            {"name": "supernode", "vm_template": 0, "cardinality": 2, "min_vms": 1, "max_vms": 5,
             "parents": ["superlink"],
             "custom_attrs": {"FL_NODE_LABEL": "O|text|Label for supernodes| |edge"}},
        ],
    }  # fmt: skip
    result, failed = run_module(
        oneflow_template.main, dict(args, name="flower-fl", template=old_style), diff=True
    )
    assert not failed and result["changed"] is True and result["id"] == 0
    (post,) = server.calls("POST")
    assert post.headers["Content-Type"] == "application/json"
    sent = post.json()
    expected = sample("oneflow-service_template-create-request.json")
    assert sent["roles"] == [
        dict(r, type="vm") if "type" not in r else r for r in expected["roles"]
    ]
    assert sent["user_inputs"] == expected["user_inputs"]
    assert result["diff"]["before"] == {}


def test_template_update_and_check_mode(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, sample("oneflow-service_template-list.json")))
    server.add("PUT", "/service_template/0", (200, sample("oneflow-service_template-show.json")))
    body = sample("oneflow-service_template-create-request.json")
    body["roles"][1]["max_vms"] = 10
    args = dict(args, name="flower-fl", template=body)
    result, failed = run_module(oneflow_template.main, args, check_mode=True, diff=True)
    assert not failed and result["changed"] is True
    assert result["differences"] == ["roles[1].max_vms"]
    assert result["diff"]["before"]["roles"][1]["max_vms"] == 5
    assert result["diff"]["after"]["roles"][1]["max_vms"] == 10
    assert server.calls("PUT") == []
    result, failed = run_module(oneflow_template.main, args)
    (put,) = server.calls("PUT")
    assert put.json()["roles"][1]["max_vms"] == 10
    assert "registration_time" not in put.json()


def test_template_absent(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, sample("oneflow-service_template-list.json")))
    server.add("DELETE", "/service_template/0", (204, b""))
    result, failed = run_module(
        oneflow_template.main, dict(args, name="flower-fl", state="absent", delete_type="templates")
    )
    assert not failed and result["changed"] is True
    (delete,) = server.calls("DELETE")
    assert delete.json() == {"delete_type": "templates"}
    result, failed = run_module(oneflow_template.main, dict(args, name="other", state="absent"))
    assert result["changed"] is False


def test_template_server_error_is_reported_with_its_text(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, {"DOCUMENT_POOL": {}}))
    server.add("GET", "/service", (200, {"DOCUMENT_POOL": {}}))
    server.add("POST", "/service_template", (400, "KEY: 'cardinality' must be an Integer;"))
    result, failed = run_module(
        oneflow_template.main, dict(args, name="x", template={"roles": [{"name": "a"}]})
    )
    assert failed and "HTTP 400" in result["msg"]
    assert "KEY: 'cardinality' must be an Integer;" in result["msg"]


# ---------------------------------------------------------------------------- oneflow_service
def scaled_service(sample, cardinality, node_ids, state=2):
    doc = copy.deepcopy(sample("oneflow-service-show-running.json"))
    body = doc["DOCUMENT"]["TEMPLATE"]["BODY"]
    body["state"] = state
    role = body["roles"][1]
    role["cardinality"] = cardinality
    role["nodes"] = [
        {"deploy_id": i, "vm_info": {"VM": {"ID": str(i), "NAME": f"supernode_{i}_(service_1)"}}}
        for i in node_ids
    ]
    return doc


def test_service_scale_sends_the_recorded_request(flow, sample, run_module):
    server, args = flow
    three = scaled_service(sample, 3, [2, 3, 4])
    listing = {"DOCUMENT_POOL": {"DOCUMENT": [three["DOCUMENT"]]}}
    server.add("GET", "/service", (200, listing))
    server.add(
        "GET", "/service/1",
        (200, scaled_service(sample, 2, [2, 3, 4], state=8)),
        (200, scaled_service(sample, 2, [3, 4], state=10)),
        (200, scaled_service(sample, 2, [3, 4])),
    )  # fmt: skip
    server.add("POST", "/service/1/scale", (204, b""))
    result, failed = run_module(
        oneflow_service.main,
        dict(args, name="flower-svc-1", roles={"supernode": 2}, poll_interval=0.01, vm_info=False),
        diff=True,
    )
    assert not failed, result
    (post,) = server.calls("POST")
    assert post.json() == sample("oneflow-service-scale-request.json")
    assert post.headers["Content-Type"] == "application/json"
    assert result["diff"]["before"]["roles"]["supernode"] == 3
    assert result["diff"]["after"]["roles"]["supernode"] == 2
    assert result["service"]["roles"]["supernode"]["vm_ids"] == [3, 4]


def test_service_scale_outside_min_max_sends_nothing(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service", (200, sample("oneflow-service-list.json")))
    result, failed = run_module(
        oneflow_service.main, dict(args, name="flower-svc-1", roles={"supernode": 6}, vm_info=False)
    )
    assert failed
    assert "'supernode'" in result["msg"] and "6" in result["msg"] and "1..5" in result["msg"]
    assert server.calls("POST") == []


def test_service_instantiate_error_keeps_server_text(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service", (200, {"DOCUMENT_POOL": {}}))
    server.add("GET", "/service_template", (200, sample("oneflow-service_template-list.json")))
    server.add(
        "POST", "/service_template/0/action",
        (400, "The Service template specifies user inputs for the role supernode but no values "
              "have been found"),
    )  # fmt: skip
    result, failed = run_module(
        oneflow_service.main,
        dict(args, name="svc", template_name="flower-fl", vm_info=False),
    )
    assert failed and "HTTP 400" in result["msg"]
    assert "specifies user inputs for the role supernode" in result["msg"]
    (post,) = server.calls("POST")
    merge = post.json()["action"]["params"]["merge_template"]
    assert merge["roles"] == [
        {"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}
    ]


def test_service_needs_oned_for_vm_waits(flow, run_module):
    _, args = flow
    result, failed = run_module(
        oneflow_service.main, dict(args, name="svc", template_id=0, wait_ready=True)
    )
    assert failed and "one_url" in result["msg"]


def test_service_info_lists_services(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service", (200, sample("oneflow-service-list.json")))
    result, failed = run_module(oneflow_service_info.main, dict(args, vm_info=False))
    assert not failed and result["changed"] is False
    names = [s["name"] for s in result["services"]]
    assert "flower-svc-1" in names
    result, _ = run_module(oneflow_service_info.main, dict(args, name="nope", vm_info=False))
    assert result["services"] == []


# ----------------------------------------------------------------------- packaging and docs
def test_modules_import_without_pyone(tmp_path):
    """OneGate/OneFlow code must not need pyone; oneflow_service imports it lazily."""
    code = (
        "import sys; sys.modules['pyone'] = None; sys.path.insert(0, sys.argv[1])\n"
        "import importlib\n"
        "base = 'ansible_collections.opennebula.flower.plugins.modules.'\n"
        "for m in sys.argv[2:]:\n"
        "    importlib.import_module(base + m)\n"
        "from ansible_collections.opennebula.flower.plugins.module_utils import _oned\n"
        "assert _oned.HAS_PYONE is False and 'pyone' in _oned.PYONE_IMPORT_ERROR\n"
    )
    collections = Path(sys.modules["ansible_collections.opennebula.flower"].__path__[0]).parents[2]
    subprocess.run(
        [sys.executable, "-c", code, str(collections), *MODULES], check=True, capture_output=True
    )


@pytest.mark.skipif(not shutil.which("ansible-doc", path=os.path.dirname(sys.executable)),
                    reason="ansible-doc not installed next to this Python")  # fmt: skip
def test_ansible_doc_renders_every_module():
    if not (ROOT / ".collections" / "ansible_collections" / "opennebula" / "flower").exists():
        pytest.skip("no .collections link in this checkout (scripts/bootstrap.sh makes it)")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    out = subprocess.run(
        ["ansible-doc", "-t", "module", "--json"] + [f"opennebula.flower.{m}" for m in MODULES],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    docs = json.loads(out.stdout)
    assert sorted(docs) == sorted(f"opennebula.flower.{m}" for m in MODULES)
    for name, doc in docs.items():
        attributes = doc["doc"]["attributes"]
        assert attributes["action_group"]["membership"] == ["opennebula.flower.opennebula"], name
        assert attributes["check_mode"]["support"] in ("full", "partial"), name
        assert "diff_mode" in attributes, name
        assert doc["examples"] and doc["return"], name


def test_template_on_an_empty_610_server_is_resent_converted(flow, sample, run_module):
    server, args = flow
    server.add("GET", "/service_template", (200, {"DOCUMENT_POOL": {}}))
    server.add("GET", "/service", (200, {"DOCUMENT_POOL": {}}))
    created = sample("oneflow-service_template-create-response.json")
    server.add(
        "POST", "/service_template",
        (400, "Mandatory document key 'vm_template (integer)' is missing from {...}"),
        (201, created),
    )  # fmt: skip
    body = sample("oneflow-service_template-create-request.json")
    result, failed = run_module(oneflow_template.main, dict(args, name="flower-fl", template=body))
    assert not failed and result["schema"] == "6.10"
    first, second = server.calls("POST")
    assert "template_id" in first.json()["roles"][0]
    assert second.json()["roles"][0]["vm_template"] == 0
    assert second.json()["custom_attrs"] == body["user_inputs"]
