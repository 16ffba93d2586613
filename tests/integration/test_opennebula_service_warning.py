"""oneflow_service with a service in WARNING, through ansible-playbook against the emulator.

What a real OneFlow 7.0.2 did with a SuperNode powered off: the watchdog moves the service to
WARNING, ``recover`` is answered with ``HTTP 500: Service cannot be recovered in state: WARNING``
and a scale with ``Service cannot be scaled in state: WARNING``; the service is RUNNING again once
the VM runs. The emulator does the same (tests/emulator/test_emulator_oneflow.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyone
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = "flower-fl"
INPUTS = {
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


def test_service_in_warning(emu, ansible, flower, helpers):
    template_id = emu.add_service_template(flower["7.0"](TEMPLATE, cooldown=0))
    service_id = emu.instantiate_service(
        template_id, {"name": "fl-warn", **INPUTS}, wait_running=True
    )
    vms = helpers.service_vm_ids(emu, service_id)
    off = vms["supernode"][1]
    name = f"supernode_1_(service_{service_id})"
    one = pyone.OneServer(emu.oned_url, session="oneadmin:password")
    one.vm.action("poweroff", off)  # what a SuperNode's host going down looks like to OneFlow
    emu.wait_service_state(service_id, "WARNING")

    run = ansible.playbook(
        "opennebula_service_warning.yml",
        {"tmpl_name": TEMPLATE, "svc_name": "fl-warn", "off_vm": off},
    )
    assert run.rc == 0, run.output

    # -- present: satisfied by the WARNING service, at once, with a warning naming the VM
    present = run["Present while a SuperNode is off"]
    assert present["changed"] is False and present["actions"] == []
    assert present["service"]["state"] == "WARNING"
    warning = " ".join(present["warnings"])
    assert f"VMs not running: {name} (VM {off}, POWEROFF) of role supernode" in warning
    assert "on_warning=resume" in warning
    powered_off = present["service"]["roles"]["supernode"]["vms"][1]
    assert powered_off["state"] == "POWEROFF" and powered_off["ips"] == [helpers.vm_ip(emu, off)]

    # -- a scale is refused at once (OneFlow scales only RUNNING), nothing sent
    refused = run["Scale while a SuperNode is off"]
    assert refused["failed"] is True and refused["changed"] is False
    assert refused["msg"].startswith(
        f"cannot scale service {service_id}: it is WARNING and OneFlow scales only a RUNNING "
        f"service. VMs not running: {name} (VM {off}, POWEROFF) of role supernode."
    )
    started = run.ended("Present while a SuperNode is off")
    assert run.ended("Scale while a SuperNode is off") - started < 10  # no wait for RUNNING

    # -- on_warning=fail: the failure carries the VM details oned has
    failed = run["Present with on_warning=fail"]
    assert failed["failed"] is True
    assert f"service {service_id} (fl-warn) is WARNING: VMs not running" in failed["msg"]
    vm = failed["service"]["roles"]["supernode"]["vms"][1]
    assert (vm["id"], vm["state"], vm["lcm_state"]) == (off, "POWEROFF", "LCM_INIT")
    assert vm["ips"] == [helpers.vm_ip(emu, off)] and vm["user_template"]["FL_NODE_LABEL"]

    # -- recover: OneFlow would answer 500, so the VM is resumed through oned
    check = run["Recover in check mode"]
    assert check["changed"] is True
    assert check["actions"] == [f"resume VM {name} (VM {off}, POWEROFF)"]
    recovered = run["Recover"]
    assert recovered["changed"] is True and recovered["actions"] == check["actions"]
    assert recovered["service"]["state"] == "RUNNING"
    vm = recovered["service"]["roles"]["supernode"]["vms"][1]
    assert (vm["state"], vm["lcm_state"]) == ("ACTIVE", "RUNNING")
    again = run["Present again"]
    assert again["changed"] is False and not again.get("warnings")

    # -- on_warning=resume with a scale: resume, wait for RUNNING, scale
    scaled = run["Scale with on_warning=resume"]
    assert scaled["actions"] == [
        f"resume VM {name} (VM {off}, POWEROFF)",
        "scale supernode 2 -> 3",
    ]
    assert scaled["service"]["state"] == "RUNNING"
    assert scaled["service"]["roles"]["supernode"]["cardinality"] == 3
    assert all(
        vm["lcm_state"] == "RUNNING" for vm in scaled["service"]["roles"]["supernode"]["vms"]
    )
    # no OneFlow recover was sent at all (it would have been refused)
    assert emu.counters()["oneflow"].get("POST /service/:id/action", 0) == 0
    assert emu.counters()["oned"]["one.vm.action"] == 3  # poweroff (the test), 2 resumes


def test_scale_playbook_on_a_warning_service(emu, ansible, flower, helpers):
    """playbooks/scale.yml with a SuperNode off: refused at once (no wait until the timeout),
    saying what to do; a wrong flower_on_warning is refused naming the variable."""
    template_id = emu.add_service_template(flower["7.0"](TEMPLATE, min_vms=2, max_vms=10))
    service_id = emu.instantiate_service(
        template_id, {"name": "fl-warn", **INPUTS}, wait_running=True
    )
    off = helpers.service_vm_ids(emu, service_id)["supernode"][0]
    emu.set_vm_state(off, "POWEROFF")
    emu.wait_service_state(service_id, "WARNING")
    variables = {"flower_service_name": "fl-warn", "flower_supernode_count": 3}

    run = ansible.playbook(str(ROOT / "playbooks" / "scale.yml"), variables, timeout=120)
    assert run.rc != 0
    scale = run["Scale the supernode role and wait for the new SuperNodes"]
    assert scale["msg"].startswith(f"cannot scale service {service_id}: it is WARNING"), scale
    assert f"(VM {off}, POWEROFF) of role supernode" in scale["msg"]
    assert emu.service(service_id)["roles"][1]["cardinality"] == 2

    bad = ansible.playbook(
        str(ROOT / "playbooks" / "scale.yml"), {**variables, "flower_on_warning": "later"}
    )
    assert bad.rc != 0
    assert "flower_on_warning=later: allowed: warn, wait, resume, fail" in bad.stdout, bad.output


def _doc_jq_programs():
    """The jq programs docs/deploy.md gives to build the instantiate values by hand."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    return re.findall(r"jq --arg net 3 '(.*?)' > flower-values\.json", text, re.S)


@pytest.mark.parametrize(
    ("version", "path", "refusal"),
    [
        ("7.0", "flower-service.yaml", "User Inputs but no values"),
        ("6.10", "flower-service-6.10.yaml", "custom attributes but no values"),
    ],
)
def test_deploy_doc_instantiate_by_hand(make_emulator, helpers, version, path, refusal):
    """What docs/deploy.md says: without values OneFlow answers 400; the values its jq command
    builds from `oneflow-template show --json` (every input with the default of its spec, the
    network) are accepted."""
    programs = _doc_jq_programs()
    assert len(programs) == 2, programs
    program = programs[0] if version == "7.0" else programs[1]
    emu = make_emulator(version=version)
    body = yaml.safe_load((ROOT / "oneflow" / path).read_text())
    template_id = emu.add_service_template(body)
    status, shown = helpers.oneflow_call(emu, "GET", f"/service_template/{template_id}")
    assert status == 200
    status, text = helpers.oneflow_call(
        emu,
        "POST",
        f"/service_template/{template_id}/action",
        {"action": {"perform": "instantiate"}},
    )
    assert status == 400 and refusal in text
    values = json.loads(
        subprocess.run(
            ["jq", "--arg", "net", "0", program],
            input=shown,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    key = "user_inputs" if version == "7.0" else "custom_attrs"

    def defaults(specs):
        return {name: (spec.split("|") + [""] * 5)[4] for name, spec in specs.items()}

    assert values[f"{key}_values"] == defaults(body[key])
    roles = [
        {"name": r["name"], f"{key}_values": defaults(r[key])} if key in r else {"name": r["name"]}
        for r in body["roles"]
    ]
    assert values["roles"] == roles  # 7.0 by name (both roles have inputs), 6.10 by position
    assert values["networks_values"] == [{"Private": {"id": "0"}}]
    request = {"action": {"perform": "instantiate", "params": {"merge_template": values}}}
    status, text = helpers.oneflow_call(
        emu, "POST", f"/service_template/{template_id}/action", request
    )
    assert status == 201, text
