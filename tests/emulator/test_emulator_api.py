"""The Python API used by later work: a hook that backs each VM with "a container"."""

from __future__ import annotations

import json
import urllib.request

import pytest
from emu_support import FLOWER_TEMPLATE, Flow, Gate, fast_timings

from opennebula_emulator import Emulator, Hooks, Vm

pyone = pytest.importorskip("pyone")


def test_container_backed_vms_via_hooks() -> None:
    """on_vm_create starts "a container" with its own IP, then boots the VM; the guest reports
    READY through OneGate; the ready gate lets the service reach RUNNING; delete calls back."""
    started: dict[int, str] = {}
    stopped: list[int] = []
    emu: Emulator

    def create(vm: Vm) -> None:
        ip = f"172.18.0.{10 + vm.id}"
        started[vm.id] = ip
        emu.set_vm_ip(vm.id, ip)
        emu.boot_vm(vm.id)

    def delete(vm: Vm) -> None:
        stopped.append(vm.id)

    template = json.loads(json.dumps(FLOWER_TEMPLATE)) | {"ready_status_gate": True}
    hooks = Hooks(on_vm_create=create, on_vm_delete=delete)
    with Emulator(timings=fast_timings(), seed=1, hooks=hooks, auto_boot=False) as emu:
        emu.add_service_template(template)
        merge = {
            "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
            "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "e"}}],
        }
        sid = emu.instantiate_service(0, merge)
        for vm_id in (0, 1, 2):
            emu.wait_for(lambda v=vm_id: v in emu.store.vms and emu.vm(v).lcm_state == 3)
            env = emu.vm_context_env(vm_id)
            assert env["ONEGATE_ENDPOINT"] == emu.onegate_url and env["TOKENTXT"]
            assert Gate(emu, vm_id).update("READY=YES")[0] == 200
        emu.wait_service_state(sid, "RUNNING")
        one = pyone.OneServer(emu.oned_url, session="oneadmin:password")
        vm = one.vm.info(1)
        assert vm.TEMPLATE["NIC"]["IP"] == started[1] == "172.18.0.11"
        assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"] == "172.18.0.11"
        assert Flow(emu.oneflow_url).call("DELETE", f"/service/{sid}")[0] == 204
        emu.wait_service_state(sid, None)
        emu.wait_for(lambda: sorted(stopped) == [0, 1, 2])


def test_networks_templates_and_http_controls() -> None:
    with Emulator(timings=fast_timings(), seed=1) as emu:
        emu.add_network(
            "edge", ar_start="172.18.0.10", network_address="172.18.0.0", gateway="172.18.0.1"
        )
        tid = emu.add_vm_template(
            "big",
            'CPU = 1\nMEMORY = 2048\nNIC = [ NETWORK = "edge" ]\n'
            "CONTEXT = [ TOKEN = YES, NETWORK = YES ]",
        )
        vm_id = emu.add_vm("edge-0", template_id=tid)
        vm = emu.vm(vm_id)
        assert vm.nics()[0]["IP"] == "172.18.0.10"
        assert vm.template["CONTEXT"]["ETH0_GATEWAY"] == "172.18.0.1"
        base = emu.oneflow_url

        def post(path: str, payload: dict) -> dict:
            data = json.dumps(payload).encode()
            req = urllib.request.Request(base + path, data, method="POST")  # noqa: S310 - local URL
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - local URL
                return json.load(resp)

        post(f"/_emulator/vms/{vm_id}/ready", {})
        post(f"/_emulator/vms/{vm_id}/user_template", {"LABELS": "edge"})
        assert (
            emu.vm(vm_id).user_template["READY"] == "YES"
            and emu.vm(vm_id).user_template["LABELS"] == "edge"
        )
        post(f"/_emulator/vms/{vm_id}/state", {"state": "POWEROFF"})
        assert emu.vm(vm_id).state == 8
        post(f"/_emulator/vms/{vm_id}/ip", {"ip": "172.18.0.99"})
        assert emu.vm(vm_id).nics()[0]["MAC"] == "02:00:ac:12:00:63"
        with urllib.request.urlopen(base + f"/_emulator/vms/{vm_id}/context", timeout=10) as resp:  # noqa: S310
            assert json.load(resp)["TOKENTXT"] == emu.vm_token(vm_id)
        with urllib.request.urlopen(base + "/_emulator/state", timeout=10) as resp:  # noqa: S310
            assert [v["name"] for v in json.load(resp)["vms"]] == ["edge-0"]
