"""OneFlow: auth, state machine, scale rules, deletion, schemas of 6.10 and 7.0, errors (§2, §3)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from emu_support import FLOWER_TEMPLATE, Flow, fast_timings

from opennebula_emulator import Emulator, Hooks

HTML = "text/html;charset=utf-8"
INPUTS = {
    "user_inputs_values": {"FL_ROUNDS": "5", "FL_STRATEGY": "FedProx"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "lab-a"}}],
}
SIMPLE = {
    "name": "simple",
    "deployment": "straight",
    "roles": [
        {"name": "superlink", "type": "vm", "template_id": 0, "cardinality": 1},
        {"name": "supernode", "type": "vm", "template_id": 0, "cardinality": 2, "min_vms": 1,
         "max_vms": 4,
         "cooldown": 1, "parents": ["superlink"]},
    ],
}  # fmt: skip


def instantiate(flow: Flow, template_id: int, merge: dict[str, Any] | None = None) -> int:
    body = {"action": {"perform": "instantiate", "params": {"merge_template": merge or {}}}}
    status, _, text = flow.call("POST", f"/service_template/{template_id}/action", body)
    assert status == 201, text
    return int(json.loads(text)["DOCUMENT"]["ID"])


def template_610(name: str, role: str, contents: str) -> dict[str, Any]:
    """A one-role service template in the 6.10 schema (vm_template, text vm_template_contents)."""
    roles = [{"name": role, "vm_template": 0, "cardinality": 1, "vm_template_contents": contents}]
    return {"name": name, "roles": roles}


def body_of(flow: Flow, service_id: int) -> dict[str, Any]:
    return flow.json("GET", f"/service/{service_id}")["DOCUMENT"]["TEMPLATE"]["BODY"]


def scale(
    flow: Flow, service_id: int, role: str, cardinality: Any, force: Any = False, **extra: Any
) -> tuple[int, str]:
    body: dict[str, Any] = {"role_name": role, "cardinality": cardinality, **extra}
    if force is not None:
        body["force"] = force
    status, _, text = flow.call("POST", f"/service/{service_id}/scale", body)
    return status, text


@pytest.fixture
def running(emu: Emulator, flow: Flow) -> int:
    """Service 1 from SIMPLE, RUNNING (VM 0 superlink, VMs 1-2 supernode)."""
    tid = emu.add_service_template(SIMPLE)
    sid = instantiate(flow, tid)
    emu.wait_service_state(sid, "RUNNING")
    return sid


# -------------------------------------------------------------------------------- auth
def test_authentication_messages(emu: Emulator) -> None:
    flow = Flow(emu.oneflow_url)
    assert flow.call("GET", "/service", auth=None)[::2] == (
        401,
        "A username and password must be provided",
    )
    assert flow.call("GET", "/service", auth=("oneadmin", "nope"))[::2] == (
        401,
        "Invalid credentials",
    )
    assert flow.call("GET", "/nowhere", auth=None)[0] == 401  # the before filter runs first
    status, headers, text = flow.call("GET", "/service", auth=("oneadmin", "password"))
    assert (status, headers["content-type"], text) == (200, HTML, '{\n  "DOCUMENT_POOL": {}\n}')


def test_old_role_route_is_sinatra_404(emu: Emulator, flow: Flow, running: int) -> None:
    """community.general.one_service scales with PUT /service/<id>/role/<name>: gone since 5.12."""
    status, headers, text = flow.call(
        "PUT", f"/service/{running}/role/supernode", {"cardinality": 3, "force": False}
    )
    assert status == 404 and headers["content-type"] == HTML and headers["x-cascade"] == "pass"
    assert "Sinatra doesn\u2019t know this ditty." in text
    assert (
        f"<pre>put &#39;/service/{running}/role/supernode&#39; do\n"
        "  &quot;Hello World&quot;\nend\n</pre>" in text
    )


def test_wrong_document_type_and_missing_ids(emu: Emulator, flow: Flow, running: int) -> None:
    assert flow.call("GET", "/service/0")[::2] == (
        500,
        "[DocumentInfo] Error getting document [0].",
    )
    assert flow.call("GET", f"/service_template/{running}")[::2] == (
        500,
        f"[DocumentInfo] Error getting document [{running}].",
    )
    assert flow.call("GET", "/service/99")[::2] == (
        404,
        "[one.document.info] Error getting document [99].",
    )
    assert flow.call("DELETE", "/service/99")[::2] == (
        404,
        "[one.document.info] Error getting document [99].",
    )


def test_other_users_see_nothing(emu: Emulator, running: int) -> None:
    emu.add_user("alice", "pw")
    alice = Flow(emu.oneflow_url, ("alice", "pw"))
    assert alice.call("GET", "/service")[2] == '{\n  "DOCUMENT_POOL": {}\n}'
    status, _, text = alice.call("GET", f"/service/{running}")
    assert (
        status == 401 and "Not authorized to perform USE DOCUMENT" in text
    )  # EAUTHORIZATION -> 401


# ------------------------------------------------------------------------ state machine
def test_states_and_log_of_a_deployment() -> None:
    with Emulator(timings=fast_timings(nets=0.3, vm_step=0.05), seed=1) as emu:
        flow = Flow(emu.oneflow_url)
        tid = emu.add_service_template(SIMPLE)
        status, _, text = flow.call(
            "POST", f"/service_template/{tid}/action", {"action": {"perform": "instantiate"}}
        )
        assert status == 201 and json.loads(text)["DOCUMENT"]["TEMPLATE"]["BODY"]["state"] == 0
        sid = int(json.loads(text)["DOCUMENT"]["ID"])
        assert body_of(flow, sid)["state"] == 11  # DEPLOYING_NETS right after the 201
        seen: list[int] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = body_of(flow, sid)
            if not seen or seen[-1] != body["state"]:
                seen.append(body["state"])
            if body["state"] == 1:  # straight: the child role waits for its parent
                roles = {r["name"]: r for r in body["roles"]}
                if roles["superlink"]["state"] == 1:
                    assert roles["supernode"]["nodes"] == [] and roles["supernode"]["state"] == 0
            if body["state"] == 2:
                break
            time.sleep(0.01)
        assert seen == [11, 1, 2]
        assert [e["message"] for e in body["log"]] == [
            "New state: DEPLOYING_NETS",
            "New state: DEPLOYING",
            "New state: RUNNING",
        ]
        assert [n["deploy_id"] for r in body["roles"] for n in r["nodes"]] == [0, 1, 2]
        assert [n["vm_info"]["VM"]["NAME"] for n in body["roles"][1]["nodes"]] == [
            "supernode_0_(service_1)",
            "supernode_1_(service_1)",
        ]
        vm = emu.vm(1)
        assert (vm.user_template["SERVICE_ID"], vm.user_template["ROLE_NAME"]) == ("1", "supernode")
        assert vm.nics()[0]["IP"] == "10.0.0.11"


def test_deployment_none_starts_all_roles_together(emu: Emulator, flow: Flow) -> None:
    template = copy.deepcopy(SIMPLE)
    template["deployment"] = "none"
    tid = emu.add_service_template(template)
    emu.timings.vm_step = 0.2
    sid = instantiate(flow, tid)
    emu.wait_service_state(sid, "DEPLOYING")
    assert [len(r["nodes"]) for r in body_of(flow, sid)["roles"]] == [1, 2]


def test_straight_undeploy_children_first_then_gone() -> None:
    with Emulator(timings=fast_timings(vm_step=0.05), seed=1) as emu:
        flow = Flow(emu.oneflow_url)
        sid = instantiate(flow, emu.add_service_template(SIMPLE))
        emu.wait_service_state(sid, "DEPLOYING")
        assert flow.call("DELETE", f"/service/{sid}")[::2] == (
            500,
            "Service cannot be undeployed in state: DEPLOYING",
        )
        emu.wait_service_state(sid, "RUNNING")
        assert flow.call("DELETE", f"/service/{sid}")[:3:2] == (204, "")
        states = []
        while emu.service(sid) is not None:
            with emu.lock:
                body = emu.service(sid)
                if body is None:
                    break
                states.append(body["state"])
                if emu.vm(1).state != 6 or emu.vm(2).state != 6:
                    assert emu.vm(0).lcm_state == 3  # the parent waits for its children
            time.sleep(0.005)
        assert states[0] == 3 and 12 in states  # UNDEPLOYING then UNDEPLOYING_NETS
        assert [emu.vm(i).state for i in range(3)] == [6, 6, 6]
        assert flow.call("GET", f"/service/{sid}")[::2] == (
            404,
            f"[one.document.info] Error getting document [{sid}].",
        )


# ------------------------------------------------------------------------------- scaling
def test_scale_rules(emu: Emulator, flow: Flow, running: int) -> None:
    sid = running
    assert scale(flow, sid, "supernode", 0) == (
        500,
        f"Can't scale service {sid}: Minimum cardinality is 1",
    )
    assert scale(flow, sid, "supernode", 9) == (
        500,
        f"Can't scale service {sid}: Maximum cardinality is 4",
    )
    assert scale(flow, sid, "supernode", 2) == (500, "Cardinality of supernode is already at 2")
    assert scale(flow, sid, "nope", 2) == (500, "Role nope not found")
    status, text = scale(flow, sid, "supernode", 3, force=None)  # force missing -> JSON parse error
    assert status == 500 and json.loads(text) == {
        "message": "Internal server error",
        "reason": "unexpected token at '}'",
    }
    assert (
        body_of(flow, sid)["log"][-1]["message"] == "New state: RUNNING"
    )  # failed attempts leave no trace
    emu.timings.cooldown_scale = 1000  # keep COOLDOWN until the cooldown is shortened below
    assert scale(flow, sid, "supernode", "3") == (204, "")  # numeric strings are accepted (.to_i)
    body = body_of(flow, sid)
    assert body["state"] in (8, 10)  # SCALING, or already COOLDOWN
    assert scale(flow, sid, "supernode", 2)[0] == 500
    emu.wait_service_state(sid, "COOLDOWN")
    assert scale(flow, sid, "supernode", 2) == (500, "Service cannot be scaled in state: COOLDOWN")
    with emu.lock:  # let the pending cooldown expire now
        for wait in emu.engine.waits:
            wait.due = 0
    emu.wait_service_state(sid, "RUNNING")
    emu.timings.cooldown_scale = 0.01
    log = [e["message"] for e in body_of(flow, sid)["log"]][-4:]
    assert log == [
        "Role supernode scaling up from 2 to 3 nodes",
        "New state: SCALING",
        "New state: COOLDOWN",
        "New state: RUNNING",
    ]
    assert scale(flow, sid, "supernode", 6, force=True) == (204, "")  # force ignores max_vms
    emu.wait_service_state(sid, "RUNNING")
    assert body_of(flow, sid)["roles"][1]["cardinality"] == 6


def test_scale_down_terminates_the_first_nodes(emu: Emulator, flow: Flow, running: int) -> None:
    assert scale(flow, running, "supernode", 1) == (204, "")
    role = body_of(flow, running)["roles"][1]
    assert role["state"] == 8 and role["scale_way"] == 1  # transient key while SCALING
    emu.wait_service_state(running, "RUNNING")
    role = body_of(flow, running)["roles"][1]
    assert [n["deploy_id"] for n in role["nodes"]] == [2] and "scale_way" not in role
    assert emu.vm(1).state == 6


def test_recover_ends_cooldown(emu: Emulator, flow: Flow, running: int) -> None:
    emu.timings.cooldown_scale = 1000
    recover = {"action": {"perform": "recover"}}
    assert flow.call("POST", f"/service/{running}/action", recover)[::2] == (
        500,
        "Service cannot be recovered in state: RUNNING",
    )
    scale(flow, running, "supernode", 3)
    emu.wait_service_state(running, "COOLDOWN")
    assert flow.call("POST", f"/service/{running}/action", recover)[0] == 204
    assert body_of(flow, running)["state"] == 2
    assert flow.call("POST", f"/service/{running}/action", {"action": {"perform": "shutdown"}})[
        ::2
    ] == (
        500,
        "Action shutdown not supported",
    )


def test_recover_delete_removes_a_service_in_any_state(emu: Emulator, flow: Flow) -> None:
    emu.timings.vm_step = 10
    sid = instantiate(flow, emu.add_service_template(SIMPLE))
    emu.wait_service_state(sid, "DEPLOYING")
    assert (
        flow.call(
            "POST",
            f"/service/{sid}/action",
            {"action": {"perform": "recover", "params": {"delete": True}}},
        )[0]
        == 204
    )
    emu.timings.vm_step = 0.01
    emu.wait_service_state(sid, None)


# ------------------------------------------------------------------------------ watchdog
def test_watchdog_warning_and_external_termination(emu: Emulator, flow: Flow, running: int) -> None:
    emu.set_vm_state(1, "POWEROFF")
    emu.wait_service_state(running, "WARNING")
    assert body_of(flow, running)["roles"][1]["state"] == 4
    emu.set_vm_state(1, "ACTIVE", "RUNNING")
    emu.wait_service_state(running, "RUNNING")
    assert body_of(flow, running)["roles"][1]["state"] == 2
    emu.set_vm_state(2, "DONE")
    emu.wait_for(lambda: emu.service(running)["roles"][1]["cardinality"] == 1)
    body = body_of(flow, running)
    assert [n["deploy_id"] for n in body["roles"][1]["nodes"]] == [1]
    assert body["log"][-1]["message"] == "Role supernode scaling down from 2 to 1 nodes"


def test_vm_poweroff_and_resume_through_oned_move_the_service(
    emu: Emulator, flow: Flow, running: int, one: Any
) -> None:
    """ServiceWatchDog (6.10.5/7.0.2): a VM in POWEROFF, UNKNOWN or a *_FAILURE state puts its
    role and the service in WARNING (error_wd_cb); a VM back in RUNNING puts its role in RUNNING
    and the service too once every role is (running_wd_cb). OneFlow refuses recover and scale in
    WARNING (LifeCycleManager#recover_action has no WARNING branch, can_scale? is RUNNING only):
    only a VM action through oned (resume) brings it back."""
    one.vm.action("poweroff", 1)
    emu.wait_service_state(running, "WARNING")
    body = body_of(flow, running)
    assert [r["state"] for r in body["roles"]] == [2, 4]
    recover = {"action": {"perform": "recover"}}
    assert flow.call("POST", f"/service/{running}/action", recover)[::2] == (
        500,
        "Service cannot be recovered in state: WARNING",
    )
    assert scale(flow, running, "supernode", 3) == (
        500,
        "Service cannot be scaled in state: WARNING",
    )
    assert emu.service_state(running) == "WARNING"
    one.vm.action("resume", 1)
    assert (one.vm.info(1).STATE, one.vm.info(1).LCM_STATE) == (3, 20)  # BOOT_POWEROFF
    emu.wait_service_state(running, "RUNNING")
    assert [r["state"] for r in body_of(flow, running)["roles"]] == [2, 2]

    # a host that stops answering: UNKNOWN, which resume restarts (BOOT_UNKNOWN -> RUNNING)
    emu.set_vm_state(2, "ACTIVE", "UNKNOWN")
    emu.wait_service_state(running, "WARNING")
    one.vm.action("resume", 2)
    assert one.vm.info(2).LCM_STATE == 19  # BOOT_UNKNOWN
    emu.wait_service_state(running, "RUNNING")

    # running_wd_cb sets the role RUNNING when one of its VMs runs, whatever its siblings do
    one.vm.action("poweroff", 1)
    one.vm.action("poweroff", 2)
    emu.wait_for(lambda: one.vm.info(1).STATE == 8 and one.vm.info(2).STATE == 8)
    emu.wait_service_state(running, "WARNING")
    one.vm.action("resume", 2)
    emu.wait_service_state(running, "RUNNING")
    assert one.vm.info(1).STATE == 8


def test_automatic_deletion(emu: Emulator, flow: Flow) -> None:
    template = {
        "name": "auto",
        "automatic_deletion": True,
        "roles": [{"name": "one", "type": "vm", "template_id": 0, "cardinality": 1}],
    }
    sid = instantiate(flow, emu.add_service_template(template))
    emu.wait_service_state(sid, "RUNNING")
    emu.set_vm_state(0, "DONE")
    emu.wait_service_state(sid, None)


# ------------------------------------------------------------------------- hooks / boot
def test_hooks_and_manual_boot() -> None:
    created: list[int] = []
    deleted: list[int] = []
    hooks = Hooks(
        on_vm_create=lambda vm: created.append(vm.id), on_vm_delete=lambda vm: deleted.append(vm.id)
    )
    with Emulator(timings=fast_timings(), seed=1, hooks=hooks, auto_boot=False) as emu:
        flow = Flow(emu.oneflow_url)
        sid = instantiate(flow, emu.add_service_template(SIMPLE))
        emu.wait_for(lambda: created == [0])
        time.sleep(0.1)
        assert emu.vm(0).state == 1 and emu.service_state(sid) == "DEPLOYING"  # waits for boot_vm
        emu.boot_vm(0)
        emu.wait_for(lambda: sorted(created) == [0, 1, 2])
        emu.boot_vm(1)
        emu.boot_vm(2)
        emu.wait_service_state(sid, "RUNNING")
        assert flow.call("DELETE", f"/service/{sid}")[0] == 204
        emu.wait_service_state(sid, None)
        emu.wait_for(lambda: sorted(deleted) == [0, 1, 2])


# ------------------------------------------------------------------------------ schemas
MISSING_TYPE = (
    "Mandatory document key 'type (string)' is missing from "
    '{"name":"superlink","template_id":0,"cardinality":1}'
)
MISSING_ROLES = (
    "Mandatory document key 'roles (array)' is missing from "
    '{"name":"simple","deployment":"straight","description":""}'
)
BAD_BOOLEAN = "KEY: 'ready_status_gate' is not allowed in {:type=>:boolean, :required=>false};"
MIN_VMS = "Role 'supernode' 'cardinality' must be greater than or equal to 'min_vms'"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t["roles"][0].pop("type"), MISSING_TYPE),
        (
            lambda t: t["roles"][0].update(name="super-link"),
            "KEY: 'name' must match regexp /^\\w+$/;",
        ),
        (
            lambda t: t["roles"][0].update(template_id="abc"),
            "KEY: 'template_id' must be an Integer;",
        ),
        (
            lambda t: t["roles"][0].update(cardinality=-1),
            "KEY: 'cardinality' must be greater than or equal to 0;",
        ),
        (lambda t: t["roles"][1].update(cardinality=0), MIN_VMS),
        (lambda t: t["roles"][1].update(name="superlink"), "Role name 'superlink' is repeated"),
        (lambda t: t.update(deployment="fast"), "KEY: 'deployment' must be one of none, straight;"),
        (lambda t: t.update(ready_status_gate="yes"), BAD_BOOLEAN),
        (lambda t: t.pop("roles"), MISSING_ROLES),
        (lambda t: t["roles"][0].update(type="lxc"), 'Unsupported role type "lxc"'),
    ],
)
def test_template_validation_errors(flow: Flow, mutate: Any, message: str) -> None:
    template = copy.deepcopy(SIMPLE)
    mutate(template)
    assert flow.call("POST", "/service_template", template)[::2] == (400, message)


def test_template_defaults_and_coercion(flow: Flow) -> None:
    template = {
        "name": "d",
        "roles": [{"name": "a", "type": "vm", "template_id": "0", "min_vms": "0"}],
    }
    body = flow.json("POST", "/service_template", template)["DOCUMENT"]["TEMPLATE"]["BODY"]
    assert list(body) == ["name", "roles", "deployment", "description", "registration_time"]
    assert body["roles"] == [
        {"name": "a", "type": "vm", "template_id": 0, "min_vms": 0, "cardinality": 0}
    ]
    assert flow.call("POST", "/service_template", raw="{oops")[0] == 400


def test_610_body_is_converted_by_70(flow: Flow) -> None:
    old = template_610("old", "web", 'X = "1"\nNIC = [ NETWORK_ID = "$Private" ]')
    old["custom_attrs"] = {"A": "M|text|a| |"}
    body = flow.json("POST", "/service_template", old)["DOCUMENT"]["TEMPLATE"]["BODY"]
    role = body["roles"][0]
    assert (role["template_id"], role["type"]) == (0, "vm") and "vm_template" not in role
    assert role["template_contents"] == {"X": "1", "NIC": [{"NETWORK_ID": "$Private"}]}
    assert body["user_inputs"] == {"A": "M|text|a| |"} and "custom_attrs" not in body


def test_template_update_delete_clone(emu: Emulator, flow: Flow) -> None:
    created = flow.json("POST", "/service_template", SIMPLE)["DOCUMENT"]
    tid, reg = int(created["ID"]), created["TEMPLATE"]["BODY"]["registration_time"]
    changed = copy.deepcopy(SIMPLE) | {"description": "new"}
    updated = flow.json("PUT", f"/service_template/{tid}", changed)["DOCUMENT"]["TEMPLATE"]["BODY"]
    assert updated["description"] == "new" and updated["registration_time"] == reg
    changed["registration_time"] = reg + 1
    assert flow.call("PUT", f"/service_template/{tid}", changed)[::2] == (
        500,
        "Immutable value: `service_template/registration_time` can not be changed",
    )
    status, _, text = flow.call(
        "POST",
        f"/service_template/{tid}/action",
        {"action": {"perform": "clone", "params": {"name": "copy"}}},
    )
    assert status == 201 and json.loads(text)["DOCUMENT"]["NAME"] == "copy"
    assert flow.call("POST", f"/service_template/{tid}/action", {"action": {"perform": "fly"}})[
        ::2
    ] == (200, "")
    assert flow.call("DELETE", f"/service_template/{tid}")[::2] == (204, "")
    assert flow.call("GET", f"/service_template/{tid}")[0] == 404


def test_service_update(emu: Emulator, flow: Flow, running: int) -> None:
    append = {"append": True, "template": json.dumps({"description": "appended"})}
    assert flow.call("PUT", f"/service/{running}", append)[0] == 204
    assert body_of(flow, running)["description"] == "appended"
    bad = {"append": True, "template": json.dumps({"name": "x"})}
    assert flow.call("PUT", f"/service/{running}", bad)[::2] == (
        500,
        "Immutable value: `service/name` can not be changed",
    )
    assert flow.call("PUT", f"/service/{running}", {"append": True})[::2] == (
        400,
        "Missing template to append",
    )


# ------------------------------------------------------------------------ instantiation
def test_user_inputs_checks(emu: Emulator, flow: Flow) -> None:
    tid = emu.add_service_template(FLOWER_TEMPLATE)

    def inst(merge: dict[str, Any]) -> tuple[int, str]:
        body = {"action": {"perform": "instantiate", "params": {"merge_template": merge}}}
        status, _, text = flow.call("POST", f"/service_template/{tid}/action", body)
        return status, text

    assert inst({}) == (
        400,
        "The Service template specifies User Inputs but no values have been found",
    )
    assert inst({"user_inputs_values": {"FL_ROUNDS": "1"}}) == (
        400,
        "Verify that every User Input have its corresponding value defined",
    )
    values = {"FL_ROUNDS": "1", "FL_STRATEGY": "FedAvg"}
    assert inst({"user_inputs_values": values}) == (
        400,
        "The Service template specifies user inputs for the role supernode but no values have "
        "been found",
    )
    assert (
        inst({"user_inputs_values": values, "roles": []})[1]
        == "The role user inputs are empty or do not have a valid format"
    )
    status, text = inst(
        {
            "custom_attrs_values": values,
            "roles": [{"name": "supernode", "custom_attrs_values": {"FL_NODE_LABEL": "q"}}],
        }
    )
    assert status == 201
    body = json.loads(text)["DOCUMENT"]["TEMPLATE"]["BODY"]
    assert body["user_inputs_values"] == values and "custom_attrs_values" not in body


def test_community_general_one_service_request(emu: Emulator, flow: Flow) -> None:
    """one_service sends JSON with open_url's default form Content-Type and ``name: ""``."""
    tid = emu.add_service_template(
        {
            "name": "plain",
            "roles": [{"name": "a", "type": "vm", "template_id": 0, "cardinality": 1}],
        }
    )
    request = {
        "action": {
            "perform": "instantiate",
            "params": {"merge_template": {"custom_attrs_values": {"FOO": "bar"}, "name": ""}},
        }
    }
    form = "application/x-www-form-urlencoded"
    status, _, text = flow.call("POST", f"/service_template/{tid}/action", request, ctype=form)
    assert status == 201
    doc = json.loads(text)["DOCUMENT"]
    assert doc["NAME"] == f"document-{doc['ID']}" and doc["TEMPLATE"]["BODY"]["name"] == ""
    emu.wait_service_state(int(doc["ID"]), "RUNNING")
    assert emu.vm(0).user_template["FOO"] == "bar" and emu.vm(0).template["CONTEXT"]["FOO"] == "bar"
    emu.options["rack3_form_body_bug"] = True  # Rack 3 builds of 7.0 (OpenNebula/one#7954 twin)
    status, _, text = flow.call("POST", f"/service_template/{tid}/action", request, ctype=form)
    assert status == 500 and json.loads(text) == {
        "message": "Internal server error",
        "reason": "unexpected token at ''",
    }
    assert (
        flow.call("POST", f"/service_template/{tid}/action", request)[0] == 201
    )  # application/json is fine


def test_merge_by_name_in_70(emu: Emulator, flow: Flow) -> None:
    tid = emu.add_service_template(SIMPLE)
    sid = instantiate(
        flow,
        tid,
        {"roles": [{"name": "supernode", "cardinality": 3}, {"name": "ghost", "cardinality": 9}]},
    )
    body = body_of(flow, sid)
    assert [r["name"] for r in body["roles"]] == ["superlink", "supernode"]
    assert body["roles"][1]["cardinality"] == 3


def test_networks_values_and_parent_attributes(emu: Emulator, flow: Flow) -> None:
    template = copy.deepcopy(SIMPLE)
    template["networks"] = {"Private": "M|network|private net| |id:0"}
    template["roles"][0]["template_contents"] = {"NIC": [{"NETWORK_ID": "$Private"}]}
    template["roles"][1]["template_contents"] = {"LINK_IP": "${superlink.TEMPLATE.NIC.IP}"}
    tid = emu.add_service_template(template)
    sid = instantiate(flow, tid)
    emu.wait_service_state(sid, "RUNNING")
    body = body_of(flow, sid)
    assert body["networks_values"] == [{"Private": {"id": "0"}}]
    assert body["roles"][0]["template_contents"]["NIC"] == [{"NETWORK_ID": "0"}]
    assert emu.vm(1).user_template["LINK_IP"] == emu.vm(0).nics()[0]["IP"]
    bad = copy.deepcopy(template)
    bad["networks"] = {"Private": "nonsense"}
    tid2 = emu.add_service_template(bad)
    status, _, text = flow.call(
        "POST", f"/service_template/{tid2}/action", {"action": {"perform": "instantiate"}}
    )
    assert (status, text) == (400, "Wrong networks format")


# --------------------------------------------------------------------------------- 6.10
@pytest.fixture
def emu610() -> Iterator[Emulator]:
    with Emulator(version="6.10", timings=fast_timings(), seed=4) as emulator:
        yield emulator


def test_610_schema_and_merge_by_index(emu610: Emulator) -> None:
    flow = Flow(emu610.oneflow_url)
    assert flow.call("POST", "/service_template", SIMPLE)[::2] == (
        400,
        "Mandatory document key 'vm_template (integer)' is missing from "
        '{"name":"superlink","type":"vm","template_id":0,"cardinality":1}',
    )
    template = {
        "name": "t610",
        "deployment": "straight",
        "custom_attrs": {"ROUNDS": "M|text|rounds| |"},
        "roles": [
            {
                "name": "superlink",
                "vm_template": 0,
                "cardinality": 1,
                "vm_template_contents": 'ROUNDS = "$ROUNDS"',
            },
            {"name": "supernode", "vm_template": 0, "cardinality": 1, "parents": ["superlink"]},
        ],
    }
    tid = int(flow.json("POST", "/service_template", template)["DOCUMENT"]["ID"])
    assert flow.call(
        "POST", f"/service_template/{tid}/action", {"action": {"perform": "instantiate"}}
    )[::2] == (
        400,
        "The Service template specifies custom attributes but no values have been found",
    )
    sid = instantiate(
        flow, tid, {"custom_attrs_values": {"ROUNDS": "7"}, "roles": [{}, {"cardinality": 3}]}
    )
    emu610.wait_service_state(sid, "RUNNING")
    body = body_of(flow, sid)
    assert [r["cardinality"] for r in body["roles"]] == [1, 3]  # by index
    assert body["roles"][0]["vm_template_contents"] == 'ROUNDS = "7"'
    assert list(body["roles"][1])[-4:] == [
        "cooldown",
        "nodes",
        "on_hold",
        "last_vmname",
    ]  # 6.10 key order
    assert emu610.vm(0).user_template["ROUNDS"] == "7"
    assert "template_contents" not in body["roles"][0]


def test_610_network_input_reaches_the_nic(emu610: Emulator) -> None:
    """Service#resolve_networks (6.10): the role text's $Private becomes the network's id."""
    flow = Flow(emu610.oneflow_url)
    template = template_610(
        "nets610", "superlink", 'NIC = [ NETWORK_ID = "$Private" ]\nX = "$Unknown"'
    )
    template["networks"] = {"Private": "M|network|private| |id:"}
    tid = int(flow.json("POST", "/service_template", template)["DOCUMENT"]["ID"])
    sid = instantiate(flow, tid, {"networks_values": [{"Private": {"id": "0"}}]})
    emu610.wait_service_state(sid, "RUNNING")
    contents = body_of(flow, sid)["roles"][0]["vm_template_contents"]
    assert contents == 'NIC = [ NETWORK_ID = "0" ]\nX = "$Unknown"'
    assert [nic["NETWORK_ID"] for nic in emu610.vm(0).nics()] == ["0"]


# ------------------------------------------------------------------------------ counters
def test_counters_and_debug_endpoint(emu: Emulator, flow: Flow, running: int) -> None:
    emu.reset_counters()
    body_of(flow, running)
    flow.call("GET", "/service")
    flow.call("GET", "/nowhere")
    counts = emu.counters()
    assert counts["oneflow"] == {"GET /service": 1, "GET /service/:id": 1, "GET <no route>": 1}
    status, _, text = flow.call("GET", "/_emulator/counters", auth=None)
    assert status == 200 and json.loads(text)["total"]["oneflow"] == 3
    assert flow.call("POST", "/_emulator/counters/reset", auth=None)[0] == 200
    assert emu.counters()["total"]["oneflow"] == 0
