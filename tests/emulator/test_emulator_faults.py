"""Injected faults: 502/503/504 or a closed connection, after the request was handled (the client
cannot tell whether it was) or instead of handling it; from Python, over HTTP and on the CLI."""

from __future__ import annotations

import http.client
import json

import pytest
from emu_support import FLOWER_INPUTS, FLOWER_TEMPLATE, Flow

from opennebula_emulator import Emulator
from opennebula_emulator.faults import Fault

pyone = pytest.importorskip("pyone")

INSTANTIATE = "POST /service_template/:id/action"
SCALE = "POST /service/:id/scale"


def instantiate(flow: Flow, template_id: int, name: str) -> tuple[int, str]:
    merge = {"name": name, **FLOWER_INPUTS}
    body = {"action": {"perform": "instantiate", "params": {"merge_template": merge}}}
    status, _, text = flow.call("POST", f"/service_template/{template_id}/action", body)
    return status, text


def services_named(emu: Emulator, name: str) -> list[int]:
    with emu.lock:
        return [d.id for d in emu.store.documents.values() if d.type == 100 and d.name == name]


def test_502_and_drop_after_acting(emu: Emulator, flow: Flow) -> None:
    """The instantiate is done, then answered 502 (once); a scale is done, then its connection
    is closed; both are counted, as requests that reached the server."""
    template_id = emu.add_service_template(FLOWER_TEMPLATE)
    fault = emu.add_fault("oneflow", INSTANTIATE)
    status, text = instantiate(flow, template_id, "a")
    assert status == 502 and "<h1>502 Bad Gateway</h1>" in text
    assert len(services_named(emu, "a")) == 1 and fault.fired == 1
    assert instantiate(flow, template_id, "b")[0] == 201  # times=1: used up
    assert emu.counters()["oneflow"][INSTANTIATE] == 2

    (service_id,) = services_named(emu, "a")
    emu.wait_service_state(service_id, "RUNNING")
    emu.add_fault("oneflow", SCALE, "drop")
    scale = {"role_name": "supernode", "cardinality": 3, "force": False}
    with pytest.raises(http.client.RemoteDisconnected):
        flow.call("POST", f"/service/{service_id}/scale", scale)
    body = emu.service(service_id)
    assert [r["cardinality"] for r in body["roles"] if r["name"] == "supernode"] == [3]
    assert emu.counters()["oneflow"][SCALE] == 1


def test_fault_instead_of_handling(emu: Emulator, flow: Flow) -> None:
    """``after=False``: answered 503 twice without reaching OneFlow (not counted), then served."""
    template_id = emu.add_service_template(FLOWER_TEMPLATE)
    emu.add_fault("oneflow", INSTANTIATE, "503", times=2, after=False)
    assert [instantiate(flow, template_id, "a")[0] for _ in range(3)] == [503, 503, 201]
    assert len(services_named(emu, "a")) == 1
    assert emu.counters()["oneflow"][INSTANTIATE] == 1


def test_oned_and_onegate_faults(emu: Emulator, one) -> None:
    """XML-RPC methods are routes too: one.vm.allocate is done, the answer is lost."""
    emu.add_fault("oned", "one.vm.allocate", "504")
    with pytest.raises(Exception, match="504"):
        one.vm.allocate("NAME = late\nCPU = 1\nMEMORY = 64", False)
    assert [vm.name for vm in emu.store.vms.values()] == ["late"]
    assert one.vm.info(0).NAME == "late"  # other methods are not affected


def test_control_endpoint(emu: Emulator, flow: Flow) -> None:
    """POST /_emulator/faults adds one, GET lists them (with how many fired), DELETE clears."""
    spec = {"api": "oneflow", "route": "POST /service_template", "kind": "drop", "times": 2}
    status, _, text = flow.call("POST", "/_emulator/faults", spec)
    assert status == 200 and json.loads(text)[0]["kind"] == "drop"
    for _ in range(2):
        with pytest.raises(http.client.RemoteDisconnected):
            flow.call("POST", "/service_template", FLOWER_TEMPLATE)
    assert json.loads(flow.call("GET", "/_emulator/faults")[2])[0]["fired"] == 2
    assert len(emu.store.documents) == 2  # both templates were created
    status, _, text = flow.call(
        "POST", "/_emulator/faults", {"api": "oneflow", "route": "x", "kind": "500"}
    )
    assert status == 400 and "502, 503, 504, drop" in text
    assert json.loads(flow.call("DELETE", "/_emulator/faults")[2]) == []


def test_fault_specs() -> None:
    assert Fault.parse("oneflow:POST /service/:id/scale=drop*2") == Fault(
        "oneflow", "POST /service/:id/scale", "drop", 2
    )
    assert Fault.parse("before:oned:one.vm.allocate") == Fault(
        "oned", "one.vm.allocate", "502", 1, after=False
    )
    with pytest.raises(ValueError, match="fault api"):
        Fault.parse("flow:POST /service")
