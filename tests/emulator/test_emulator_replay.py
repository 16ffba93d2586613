"""Replay of the recorded OpenNebula 7.0.2 session (``tests/fixtures/one-samples``, copied from
``shared/reference/one-samples``).

One emulator walks through the same history as the recording — a plain VM ``test-vm``, the
``flower-fl`` service template, service ``flower-svc-1`` (instantiated, queried through OneFlow,
OneGate and oned, scaled up then down), then ``flower-svc-2`` from a copy of the template with
``cooldown: 5`` (scaled 2→4→1) — and each answer is compared with its recording.

Comparisons are exact after :func:`conftest.norm_xml` / :func:`conftest.norm_json`, which only
blank timestamps, MONITORING figures, the OS UUID, the ONEGATE_ENDPOINT port and TOKEN_PASSWORD.
IDs, names, IPs, MACs, states, key order, string-vs-integer types and XML layout (CDATA or not,
``<A/>`` vs ``<A></A>``) are compared as recorded.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
import xmlrpc.client
from typing import Any

import pytest
from emu_support import (
    FLOWER_TEMPLATE,
    Flow,
    Gate,
    Http,
    fast_timings,
    norm_json,
    norm_xml,
    sample_json,
    sample_text,
)

from opennebula_emulator import Emulator

HTML = "text/html;charset=utf-8"
JSON_UTF8 = "application/json;charset=utf-8"


def parse_xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - the emulator's and the recorded XML


def rpc(emu: Emulator, method: str, *args: Any) -> tuple[bytes, Any]:
    body = xmlrpc.client.dumps(("oneadmin:password", *args), method)
    status, headers, raw = Http(emu.oned_url.rsplit("/", 1)[0]).request(
        "POST", "/RPC2", body, {"Content-Type": "text/xml"}
    )
    assert status == 200 and headers["content-type"] == "text/xml"
    (result,), _ = xmlrpc.client.loads(raw)
    return raw, result


def rpc_xml(emu: Emulator, method: str, *args: Any) -> str:
    _, result = rpc(emu, method, *args)
    assert result[0] is True and result[2] == 0, result
    return result[1]


def wait_state(emu: Emulator, service_id: int, state: str) -> None:
    emu.wait_service_state(service_id, state, timeout=20)


@pytest.fixture(scope="module")
def rec() -> Any:
    """Run the recorded history once and keep every answer (name -> value)."""
    emu = Emulator(timings=fast_timings(cooldown_scale=1000.0), seed=3).start()
    flow = Flow(emu.oneflow_url)
    cap: dict[str, Any] = {}
    try:
        assert emu.add_vm("test-vm") == 0
        cap["template_create"] = flow.call("POST", "/service_template", FLOWER_TEMPLATE)
        cap["template_list"] = flow.call("GET", "/service_template")
        cap["template_show"] = flow.call("GET", "/service_template/0")
        cap["doc0"] = rpc_xml(emu, "one.document.info", 0)
        request = sample_json("oneflow-service_template-instantiate-request.json")
        cap["instantiate"] = flow.call("POST", "/service_template/0/action", request)
        wait_state(emu, 1, "RUNNING")
        cap["service_running"] = flow.call("GET", "/service/1")
        cap["service_list"] = flow.call("GET", "/service")
        cap["vm1_show"] = rpc_xml(emu, "one.vm.info", 1)
        cap["vm2_show"] = rpc_xml(emu, "one.vm.info", 2)

        gate = Gate(emu, 2)
        cap["og_vm"] = gate.call("GET", "/vm")
        cap["og_service"] = gate.call("GET", "/service")
        cap["og_vms_1"] = gate.call("GET", "/vms/1")
        cap["og_vm0"] = Gate(emu, 0).call("GET", "/vm")
        cap["og_put_endpoint"] = gate.update("FL_ENDPOINT=10.0.0.5:9092")
        cap["og_vm_after_put"] = gate.call("GET", "/vm")
        cap["og_service_extended"] = gate.call("GET", "/service?extended=true")
        cap["og_put_ready"] = gate.update("READY=YES")
        cap["og_service_after_ready"] = gate.call("GET", "/service")
        cap["vm2_info"] = rpc_xml(emu, "one.vm.info", 2)
        cap["user0"] = rpc_xml(emu, "one.user.info", 0)
        cap["hostpool"] = rpc_xml(emu, "one.hostpool.info")
        cap["vm999_raw"], _ = rpc(emu, "one.vm.info", 999)

        # scale supernode 2 -> 3; the cooldown (300 s) is long enough to look at COOLDOWN
        cap["scale_up"] = flow.call(
            "POST", "/service/1/scale", {"role_name": "supernode", "cardinality": 3, "force": False}
        )
        wait_state(emu, 1, "COOLDOWN")
        cap["doc1"] = rpc_xml(emu, "one.document.info", 1)
        cap["docpool"] = rpc_xml(emu, "one.documentpool.info", -2, -1, -1, 100)
        cap["vmpool"] = rpc_xml(emu, "one.vmpool.infoextended", -2, -1, -1, 3)
        # the recording waited the 300 s out; `recover` ends COOLDOWN with the same log line
        cap["recover"] = flow.call("POST", "/service/1/action", {"action": {"perform": "recover"}})
        wait_state(emu, 1, "RUNNING")
        cap["scale_down"] = flow.call(
            "POST", "/service/1/scale", raw=sample_text("oneflow-service-scale-request.json")
        )
        wait_state(emu, 1, "COOLDOWN")
        cap["service_cooldown"] = flow.call("GET", "/service/1")

        # flower-svc-2: same template with cooldown 5 on each role, scaled 2 -> 4 -> 1
        emu.timings.cooldown_scale = 0.01
        template2 = copy.deepcopy(FLOWER_TEMPLATE)
        for role in template2["roles"]:
            role["cooldown"] = 5
        assert flow.call("POST", "/service_template", template2)[0] == 201
        request2 = {
            "action": {
                "perform": "instantiate",
                "params": {
                    "merge_template": {
                        "name": "flower-svc-2",
                        "user_inputs_values": {"FL_ROUNDS": "1", "FL_STRATEGY": "FedAvg"},
                        "roles": [
                            {"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "x"}}
                        ],
                    }
                },
            }
        }
        assert flow.call("POST", "/service_template/2/action", request2)[0] == 201
        wait_state(emu, 3, "RUNNING")
        assert (
            flow.call(
                "POST",
                "/service/3/scale",
                {"role_name": "supernode", "cardinality": 4, "force": False},
            )[0]
            == 204
        )
        wait_state(emu, 3, "RUNNING")
        cap["svc2_after_up"] = flow.call("GET", "/service/3")
        assert (
            flow.call(
                "POST",
                "/service/3/scale",
                {"role_name": "supernode", "cardinality": 1, "force": False},
            )[0]
            == 204
        )
        wait_state(emu, 3, "RUNNING")
        cap["svc2_after_down"] = flow.call("GET", "/service/3")
        cap["counters"] = emu.counters()
        yield cap
    finally:
        emu.stop()


def assert_flow_json(resp: tuple[int, dict[str, str], str], sample: str, status: int = 200) -> None:
    code, headers, text = resp
    assert code == status, text
    assert headers["content-type"] == HTML  # Sinatra's default: OneFlow sets no Content-Type
    ours = json.loads(text)
    assert text == json.dumps(ours, indent=2, ensure_ascii=False)  # JSON.pretty_generate layout
    expected = json.loads(sample_text(sample))
    # json.dumps keeps key order, so this checks order, keys, types and values
    assert json.dumps(norm_json(ours), indent=1) == json.dumps(norm_json(expected), indent=1)


# ------------------------------------------------------------------------------- OneFlow
def test_template_create(rec: Any) -> None:
    assert_flow_json(rec["template_create"], "oneflow-service_template-create-response.json", 201)


def test_template_list_and_show(rec: Any) -> None:
    assert_flow_json(rec["template_list"], "oneflow-service_template-list.json")
    assert_flow_json(rec["template_show"], "oneflow-service_template-show.json")


def test_instantiate_response_is_pending_document(rec: Any) -> None:
    assert_flow_json(rec["instantiate"], "oneflow-service_template-instantiate-response.json", 201)


def test_service_running_and_list(rec: Any) -> None:
    assert_flow_json(rec["service_running"], "oneflow-service-show-running.json")
    assert_flow_json(rec["service_list"], "oneflow-service-list.json")


def test_service_in_cooldown_after_scale_down(rec: Any) -> None:
    assert rec["scale_up"][0] == 204 and rec["scale_up"][2] == ""
    assert rec["recover"][0] == 204
    assert rec["scale_down"][0] == 204
    assert_flow_json(rec["service_cooldown"], "oneflow-service-show-cooldown-after-scale.json")


def test_second_service_after_scale_up_and_down(rec: Any) -> None:
    assert_flow_json(rec["svc2_after_up"], "oneflow-service-show-after-scale-up.json")
    assert_flow_json(rec["svc2_after_down"], "oneflow-service-show-after-scale-down.json")


# -------------------------------------------------------------------------------- OneGate
@pytest.mark.parametrize(
    ("key", "sample"),
    [
        ("og_vm", "onegate-get-vm.json"),
        ("og_service", "onegate-get-service.json"),
        ("og_vms_1", "onegate-get-vms-1.json"),
        ("og_vm0", "onegate-get-vm-nonservice-vm0.json"),
        ("og_vm_after_put", "onegate-get-vm-after-put.json"),
        ("og_service_after_ready", "onegate-get-service-after-ready.json"),
    ],
)
def test_onegate_answers_byte_for_byte(rec: Any, key: str, sample: str) -> None:
    status, headers, text = rec[key]
    assert status == 200
    assert headers["content-type"] == JSON_UTF8
    assert text == sample_text(sample)  # compact to_json, strings for ids, ints for states


def test_onegate_service_extended(rec: Any) -> None:
    status, _, text = rec["og_service_extended"]
    assert status == 200
    ours, expected = json.loads(text), json.loads(sample_text("onegate-get-service-extended.json"))
    assert json.dumps(norm_json(ours)) == json.dumps(norm_json(expected))


def test_onegate_put_returns_empty_200(rec: Any) -> None:
    for key in ("og_put_endpoint", "og_put_ready"):
        status, headers, text = rec[key]
        assert (status, text, headers["content-type"]) == (200, "", JSON_UTF8)


# ------------------------------------------------------------------------------------ oned
@pytest.mark.parametrize(
    ("key", "sample"),
    [
        ("doc0", "oned-xmlrpc-one.document.info-0-service_template.xml"),
        ("vm2_info", "oned-xmlrpc-one.vm.info-2.xml"),
        ("user0", "oned-xmlrpc-one.user.info-0.xml"),
        ("doc1", "oned-xmlrpc-one.document.info-1-service.xml"),
        ("docpool", "oned-xmlrpc-one.documentpool.info-type100.xml"),
        ("vmpool", "oned-xmlrpc-one.vmpool.infoextended.xml"),
    ],
)
def test_oned_xml_is_identical(rec: Any, key: str, sample: str) -> None:
    assert norm_xml(rec[key]) == norm_xml(sample_text(sample))


def _shape(elem: ET.Element) -> Any:
    """Tag tree with leaf values (whitespace-insensitive, for the pretty ``onevm show -x``)."""
    if len(elem):
        return (elem.tag, [_shape(child) for child in elem])
    return (elem.tag, (elem.text or "").strip())


@pytest.mark.parametrize(
    ("key", "sample"),
    [("vm1_show", "oned-vm-1-superlink-show.xml"), ("vm2_show", "oned-vm-2-show.xml")],
)
def test_vm_show_xml_structure(rec: Any, key: str, sample: str) -> None:
    ours = _shape(parse_xml(norm_xml(rec[key])))
    expected = _shape(parse_xml(norm_xml(sample_text(sample).replace("\n", "").replace("  ", ""))))
    assert ours == expected


def test_vm_info_error_bytes(rec: Any) -> None:
    assert rec["vm999_raw"] == sample_text("oned-xmlrpc-one.vm.info-999-error.xml").encode()


def _types(elem: ET.Element, path: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for child in elem:
        p = f"{path}/{child.tag}"
        if len(child):
            out.update(_types(child, p))
        else:
            text = (child.text or "").strip()
            out[p] = "int" if text.lstrip("-").isdigit() else "str"
    return out


def test_hostpool_has_the_recorded_shape(rec: Any) -> None:
    """The dummy host is modelled, not copied: same elements in the same order at HOST and
    HOST_SHARE level, same leaf types; PCI/NUMA/KVM details of the recording are left out."""
    ours = parse_xml(rec["hostpool"]).find("HOST")
    theirs = parse_xml(sample_text("oned-xmlrpc-one.hostpool.info.xml")).find("HOST")
    assert [c.tag for c in ours] == [c.tag for c in theirs]
    assert [c.tag for c in ours.find("HOST_SHARE")] == [c.tag for c in theirs.find("HOST_SHARE")]
    their_types = _types(theirs)
    for path, kind in _types(ours).items():
        if path in their_types:
            assert kind == their_types[path], path
    assert ours.findtext("NAME") == "dummy-host"
    assert [e.text for e in ours.find("VMS")] == ["0", "1", "2", "3"]


def test_requests_were_counted(rec: Any) -> None:
    counters = rec["counters"]
    assert counters["oneflow"]["POST /service/:id/scale"] == 4
    assert counters["onegate"]["GET /vm"] == 3
    assert counters["oned"]["one.vm.info"] == 4
    assert counters["total"]["onegate"] == sum(counters["onegate"].values())
