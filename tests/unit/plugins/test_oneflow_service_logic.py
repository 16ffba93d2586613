"""Instantiate bodies, user inputs, min/max validation, and the oneflow_service state machine."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    OpenNebulaHTTPError,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    OneFlowError,
    build_instantiate_merge,
    check_cardinalities,
    document_body,
    instantiate_body,
    parse_user_input_spec,
    resolve_user_inputs,
    to_v610,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow_service import (
    ServiceFailure,
    ServiceRunner,
)


def template_body(sample):
    return document_body(sample("oneflow-service_template-show.json")["DOCUMENT"])


# ------------------------------------------------------------------------------ instantiate
def test_merge_reproduces_the_recorded_instantiate_request(sample):
    merge, schema = build_instantiate_merge(
        template_body(sample),
        name="flower-svc-1",
        user_inputs={"FL_ROUNDS": 5, "FL_STRATEGY": "FedProx"},
        role_user_inputs={"supernode": {"FL_NODE_LABEL": "lab-a"}},
    )
    assert schema == "7.0"
    assert instantiate_body(merge) == sample("oneflow-service_template-instantiate-request.json")


def test_defaults_fill_inputs_that_are_not_given(sample):
    merge, _ = build_instantiate_merge(template_body(sample), name="svc")
    assert merge["user_inputs_values"] == {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"}
    assert merge["roles"] == [
        {"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}
    ]


def test_mandatory_inputs_without_value_fail_before_sending():
    body = {
        "name": "t",
        "user_inputs": {"TOKEN": "M|password|API token", "OPT": "O|text|x"},
        "roles": [
            {"name": "a", "type": "vm", "template_id": 0, "user_inputs": {"R": "M|text|r"}},
        ],
    }
    with pytest.raises(OneFlowError) as info:
        build_instantiate_merge(body, name="s")
    assert "service: TOKEN" in str(info.value) and "role a: R" in str(info.value)
    merge, _ = build_instantiate_merge(
        body, name="s", user_inputs={"TOKEN": "x", "EXTRA": True}, role_user_inputs={"a": {"R": 1}}
    )
    assert merge["user_inputs_values"] == {"TOKEN": "x", "OPT": "", "EXTRA": "YES"}
    assert merge["roles"] == [{"name": "a", "user_inputs_values": {"R": "1"}}]


def test_610_merge_uses_custom_attrs_and_role_positions(sample):
    old = to_v610(template_body(sample))
    merge, schema = build_instantiate_merge(
        old,
        name="svc",
        user_inputs={"FL_ROUNDS": 7},
        role_user_inputs={"supernode": {"FL_NODE_LABEL": "b"}},
        cardinalities={"supernode": 4},
    )
    assert schema == "6.10"
    assert merge["custom_attrs_values"] == {"FL_ROUNDS": "7", "FL_STRATEGY": "FedAvg"}
    assert merge["roles"] == [
        {"name": "superlink"},
        {"name": "supernode", "cardinality": 4, "custom_attrs_values": {"FL_NODE_LABEL": "b"}},
    ]
    assert "user_inputs_values" not in merge


def test_networks_and_cardinalities_in_merge():
    body = {
        "name": "t",
        "networks": {"Public": "M|network||id:0"},
        "roles": [{"name": "w", "type": "vm", "template_id": 0, "min_vms": 1, "max_vms": 3}],
    }
    merge, _ = build_instantiate_merge(body, networks={"Public": {"id": 4}}, cardinalities={"w": 2})
    assert merge["networks_values"] == [{"Public": {"id": "4"}}]
    assert merge["roles"] == [{"name": "w", "cardinality": 2}]
    with pytest.raises(OneFlowError, match="not declared"):
        build_instantiate_merge(body, networks={"Private": {"id": 1}})
    with pytest.raises(OneFlowError, match=r"role 'w': requested cardinality 9 .* 1\.\.3"):
        build_instantiate_merge(body, cardinalities={"w": 9})
    with pytest.raises(OneFlowError, match="role 'x' does not exist"):
        build_instantiate_merge(body, role_user_inputs={"x": {}}, cardinalities={"x": 1})


def test_user_input_spec_parsing():
    assert parse_user_input_spec("O|list|Aggregation strategy|FedAvg,FedProx|FedAvg") == {
        "mandatory": False, "type": "list", "description": "Aggregation strategy",
        "params": "FedAvg,FedProx", "default": "FedAvg",
    }  # fmt: skip
    assert parse_user_input_spec("M|text|desc")["default"] is None
    values, missing = resolve_user_inputs({"A": "M|text|a"}, {})
    assert (values, missing) == ({}, ["service: A"])


# --------------------------------------------------------------------------------- min/max
def test_check_cardinalities_messages(sample):
    roles = document_body(sample("oneflow-service-show-running.json")["DOCUMENT"])["roles"]
    assert check_cardinalities(roles, {"supernode": 5, "superlink": 1}) == []
    problems = check_cardinalities(roles, {"supernode": 6, "superlink": 0, "ghost": 1, "x": -1})
    assert (
        "role 'supernode': requested cardinality 6 is outside the allowed range 1..5" in problems[0]
    )
    assert (
        "role 'superlink': requested cardinality 0 is outside the allowed range 1..1" in problems[1]
    )
    assert "role 'ghost' does not exist (roles: superlink, supernode)" in problems[2]
    assert len(problems) == 4
    assert check_cardinalities(roles, {"supernode": 6}, force=True) == []
    assert check_cardinalities([{"name": "free"}], {"free": 100}) == []


# ------------------------------------------------------------------------------ fake OneFlow
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def with_state(doc, state, cardinality=None, node_ids=None):
    doc = copy.deepcopy(doc)
    body = doc["TEMPLATE"]["BODY"]
    body["state"] = state
    if cardinality is not None:
        role = next(r for r in body["roles"] if r["name"] == "supernode")
        role["cardinality"] = cardinality
        role["nodes"] = [
            {"deploy_id": i, "vm_info": {"VM": {"ID": str(i), "NAME": f"supernode_{i}"}}}
            for i in node_ids
        ]
    return doc


class FakeFlow:
    """OneFlow double: a service whose GET answers follow a script of documents."""

    def __init__(self, templates=(), services=None):
        self.templates = list(templates)
        self.services = services or {}  # id -> list of docs (the last one repeats); None = 404
        self.calls = []

    def _next(self, service_id):
        queue = self.services.get(service_id)
        if not queue:
            return None
        return queue[0] if len(queue) == 1 else queue.pop(0)

    def list_services(self):
        self.calls.append(("list_services",))
        return [q[0] for q in self.services.values() if q and q[0] is not None]

    def get_service(self, service_id, missing_ok=False):
        self.calls.append(("get_service", service_id))
        doc = self._next(service_id)
        if doc is None:
            if missing_ok:
                return None
            raise OpenNebulaHTTPError("GET", f"/service/{service_id}", 404, "not found")
        return doc

    def list_templates(self):
        self.calls.append(("list_templates",))
        return self.templates

    def get_template(self, template_id):
        self.calls.append(("get_template", template_id))
        return next(t for t in self.templates if int(t["ID"]) == int(template_id))

    def instantiate(self, template_id, merge):
        self.calls.append(("instantiate", template_id, merge))
        return self.on_instantiate

    def scale(self, service_id, role, cardinality, force=False):
        self.calls.append(("scale", service_id, role, cardinality, force))

    def recover(self, service_id, delete=False):
        self.calls.append(("recover", service_id, delete))

    def delete_service(self, service_id):
        self.calls.append(("delete_service", service_id))

    def writes(self):
        return [
            c for c in self.calls if c[0] in ("instantiate", "scale", "recover", "delete_service")
        ]


def params(**kw):
    base = {
        "state": "present", "name": "flower-svc-1", "service_id": None, "template_id": None,
        "template_name": "flower-fl", "user_inputs": {}, "role_user_inputs": {}, "networks": {},
        "roles": {}, "force": False, "skip_cooldown": False, "on_failed": "fail",
        "recover": False, "force_delete": False, "wait": True, "wait_timeout": 600,
        "poll_interval": 5, "wait_ready": False, "wait_for": None, "wait_for_roles": None,
        "published_prefix": "FL_",
    }  # fmt: skip
    base.update(kw)
    return base


def runner(flow, check_mode=False, oned=None, **kw):
    clock = Clock()
    return ServiceRunner(
        flow, params(**kw), check_mode=check_mode, oned=oned, sleep=clock.sleep, clock=clock
    )


@pytest.fixture
def running(sample):
    return sample("oneflow-service-show-running.json")["DOCUMENT"]


@pytest.fixture
def template_doc(sample):
    return sample("oneflow-service_template-show.json")["DOCUMENT"]


def test_instantiate_waits_through_deploying_nets(sample, running, template_doc):
    created = sample("oneflow-service_template-instantiate-response.json")["DOCUMENT"]
    flow = FakeFlow(templates=[template_doc])
    flow.on_instantiate = created
    flow.services = {
        1: [with_state(running, 0), with_state(running, 11), with_state(running, 1), running]
    }
    # the service does not exist yet when listed
    flow.list_services = lambda: []
    result = runner(
        flow,
        user_inputs={"FL_ROUNDS": 5, "FL_STRATEGY": "FedProx"},
        role_user_inputs={"supernode": {"FL_NODE_LABEL": "lab-a"}},
    ).run()
    assert result["changed"] is True
    assert result["service"]["state"] == "RUNNING"
    (instantiate,) = [c for c in flow.calls if c[0] == "instantiate"]
    assert instantiate_body(instantiate[2]) == sample(
        "oneflow-service_template-instantiate-request.json"
    )
    assert result["diff"]["before"] == {"state": "absent"}
    assert result["diff"]["after"]["roles"] == {"superlink": 1, "supernode": 2}


def test_existing_service_is_not_instantiated_again(running, template_doc):
    flow = FakeFlow(templates=[template_doc], services={1: [running]})
    result = runner(flow).run()
    assert result["changed"] is False and flow.writes() == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_done_services_are_ignored_when_matching_by_name(running, template_doc, sample):
    flow = FakeFlow(templates=[template_doc], services={1: [with_state(running, 5)]})
    flow.on_instantiate = sample("oneflow-service_template-instantiate-response.json")["DOCUMENT"]
    result = runner(flow, check_mode=True).run()
    assert result["changed"] is True and result["service"] is None
    assert flow.writes() == []  # check mode sends nothing


def test_scale_out_of_range_fails_before_sending(running):
    flow = FakeFlow(services={1: [running]})
    with pytest.raises(ServiceFailure) as info:
        runner(flow, roles={"supernode": 9}).run()
    message = str(info.value)
    assert "supernode" in message and "9" in message and "1..5" in message
    assert flow.writes() == []


def test_scale_waits_through_scaling_and_cooldown(running):
    flow = FakeFlow(
        services={
            1: [
                running,  # list / find
                with_state(running, 2),  # RUNNING, still old cardinality (request not taken yet)
                with_state(running, 8, 4, [2, 3]),  # SCALING
                with_state(running, 10, 4, [2, 3, 6, 7]),  # COOLDOWN
                with_state(running, 2, 4, [2, 3, 6, 7]),  # RUNNING
            ]
        }
    )
    result = runner(flow, roles={"supernode": 4}).run()
    assert ("scale", 1, "supernode", 4, False) in flow.calls
    assert result["changed"] is True
    assert result["actions"] == ["scale supernode 2 -> 4"]
    assert result["diff"]["before"]["roles"]["supernode"] == 2
    assert result["diff"]["after"]["roles"]["supernode"] == 4
    assert result["service"]["roles"]["supernode"]["vm_ids"] == [2, 3, 6, 7]


def test_skip_cooldown_sends_recover(running):
    flow = FakeFlow(
        services={
            1: [
                running,
                with_state(running, 10, 3, [2, 3, 4]),
                with_state(running, 2, 3, [2, 3, 4]),
            ]
        }
    )
    result = runner(flow, roles={"supernode": 3}, skip_cooldown=True).run()
    assert ("recover", 1, False) in flow.calls
    assert "recover (skip cooldown)" in result["actions"]


def test_scale_is_idempotent(running):
    flow = FakeFlow(services={1: [running]})
    result = runner(flow, roles={"supernode": 2, "superlink": 1}).run()
    assert result["changed"] is False and flow.writes() == []


def test_failed_service_policies(running, template_doc, sample):
    failed = with_state(running, 7)
    failed["TEMPLATE"]["BODY"]["log"] = [
        {"timestamp": 1, "severity": "E", "message": "Error deploying VM: quota exceeded"}
    ]
    flow = FakeFlow(templates=[template_doc], services={1: [failed]})
    with pytest.raises(ServiceFailure) as info:
        runner(flow).run()
    assert "FAILED_DEPLOYING (7)" in str(info.value) and "quota exceeded" in str(info.value)
    assert flow.writes() == []

    flow = FakeFlow(templates=[template_doc], services={1: [failed, failed, running]})
    result = runner(flow, on_failed="recover").run()
    assert ("recover", 1, False) in flow.calls and result["service"]["state"] == "RUNNING"

    # recreate: forced delete (the FAILED state may still show once), then a new service
    flow = FakeFlow(templates=[template_doc], services={1: [failed, failed, None]})
    created = copy.deepcopy(running)
    created["ID"] = "2"
    flow.on_instantiate = created
    original = flow.instantiate

    def instantiate(template_id, merge):
        flow.services[2] = [with_state(created, 11), created]
        return original(template_id, merge)

    flow.instantiate = instantiate
    result = runner(flow, on_failed="recreate").run()
    assert [c[0] for c in flow.writes()] == ["recover", "instantiate"]
    assert ("recover", 1, True) in flow.calls
    assert result["service"]["id"] == 2 and result["service"]["state"] == "RUNNING"


def test_absent_deletes_and_waits_until_gone(running):
    flow = FakeFlow(services={1: [running, with_state(running, 3), with_state(running, 12), None]})
    result = runner(flow, state="absent").run()
    assert ("delete_service", 1) in flow.calls
    assert result["changed"] is True and result["service"] is None
    assert result["diff"] == {
        "before": {
            "name": "flower-svc-1",
            "state": "RUNNING",
            "roles": {"superlink": 1, "supernode": 2},
        },
        "after": {"state": "absent"},
    }
    flow = FakeFlow(services={})
    assert runner(flow, state="absent").run()["changed"] is False


def test_absent_on_failed_service_needs_force_delete(running):
    failed = with_state(running, 9)
    flow = FakeFlow(services={1: [failed]})
    with pytest.raises(ServiceFailure, match="force_delete"):
        runner(flow, state="absent").run()
    flow = FakeFlow(services={1: [failed, None]})
    runner(flow, state="absent", force_delete=True).run()
    assert flow.writes() == [("recover", 1, True)]


def test_wait_timeout_names_the_state(running):
    flow = FakeFlow(services={1: [with_state(running, 1)]})
    with pytest.raises(ServiceFailure) as info:
        runner(flow, wait_timeout=30).run()
    assert "DEPLOYING (1)" in str(info.value) and "timed out" in str(info.value)


class FakeOned:
    def __init__(self, rounds):
        self.rounds = list(rounds)
        self.calls = 0

    def vms(self, ids):
        self.calls += 1
        ready = self.rounds[0] if len(self.rounds) == 1 else self.rounds.pop(0)
        return {
            i: {"ID": str(i), "NAME": f"vm{i}", "STATE": "3", "LCM_STATE": "3",
                "TEMPLATE": {"NIC": {"IP": f"10.0.0.{i}"}},
                "USER_TEMPLATE": dict(ready.get(i, {}))}
            for i in ids
        }  # fmt: skip


def test_wait_ready_and_app_key_on_selected_roles(running):
    flow = FakeFlow(services={1: [running]})
    oned = FakeOned(
        [
            {1: {"READY": "YES"}},
            {1: {"READY": "YES", "FL_READY": "NO"}},
            {1: {"READY": "YES", "FL_READY": "YES"}},
        ]
    )
    result = runner(
        flow, oned=oned, wait_ready=True, wait_for={"FL_READY": True}, wait_for_roles=["superlink"]
    ).run()
    assert oned.calls == 4  # three polls (one call each, all VMs at once) + the final read
    superlink = result["service"]["roles"]["superlink"]["vms"][0]
    assert superlink["published"] == {"FL_READY": "YES"} and superlink["ips"] == ["10.0.0.1"]


def test_wait_fails_at_once_on_a_published_error(running):
    """fail_on: a VM that publishes FL_ERROR before what is waited for ends the wait there."""
    flow = FakeFlow(services={1: [running]})
    error = "The SuperLink at 10.0.0.1:9092 did not accept this node within 120 s"
    oned = FakeOned([{2: {"READY": "YES"}}, {2: {"READY": "YES", "FL_ERROR": error}, 3: {}}])
    with pytest.raises(ServiceFailure) as info:
        runner(
            flow, oned=oned, wait_for={"FL_NODE_READY": "YES"}, wait_for_roles=["supernode"],
            fail_on=["FL_ERROR"],
        ).run()  # fmt: skip
    assert oned.calls == 3  # two polls (not the timeout's 121) and the read for the result
    assert "vm2 (VM 2, RUNNING) published {'FL_ERROR': '" + error in str(info.value)


def test_wait_ignores_an_error_left_by_an_earlier_boot(running):
    flow = FakeFlow(services={1: [running]})
    oned = FakeOned(
        [
            {
                2: {"FL_NODE_READY": "YES", "FL_ERROR": "from the first boot"},
                3: {"FL_NODE_READY": "YES"},
            }
        ]
    )
    result = runner(
        flow, oned=oned, wait_for={"FL_NODE_READY": "YES"}, wait_for_roles=["supernode"],
        fail_on=["FL_ERROR"],
    ).run()  # fmt: skip
    assert result["service"]["roles"]["supernode"]["vms"][0]["published"]["FL_NODE_READY"] == "YES"


# ------------------------------------------------------------------------------- WARNING
def warning_doc(running, warning_roles=("supernode",)):
    """The recorded RUNNING service as OneFlow's watchdog leaves it when a VM stops running."""
    doc = with_state(running, 4)
    for role in doc["TEMPLATE"]["BODY"]["roles"]:
        if role["name"] in warning_roles:
            role["state"] = 4
    return doc


class StateOned:
    """oned double with VM states: ``states`` maps id -> (STATE, LCM_STATE); ``resume`` of a
    POWEROFF or UNKNOWN VM makes it RUNNING after ``boot_reads`` more reads."""

    def __init__(self, states, boot_reads=1, fail_reads=False):
        self.states = dict(states)
        self.boot_reads = boot_reads
        self.fail_reads = fail_reads
        self.booting = {}
        self.actions = []
        self.reads = 0

    def vms(self, ids):
        self.reads += 1
        if self.fail_reads:
            raise OpenNebulaError("one.vmpool.infoset failed: connection refused")
        for vm_id, left in list(self.booting.items()):
            if left <= 0:
                self.states[vm_id] = (3, 3)
                del self.booting[vm_id]
            else:
                self.booting[vm_id] = left - 1
        return {
            i: {"ID": str(i), "NAME": f"vm{i}", "STATE": str(self.states.get(i, (3, 3))[0]),
                "LCM_STATE": str(self.states.get(i, (3, 3))[1]),
                "TEMPLATE": {"NIC": {"IP": f"10.0.0.{i}"}},
                "USER_TEMPLATE": {"READY": "YES"} if self.states.get(i, (3, 3)) == (3, 3) else {}}
            for i in ids
        }  # fmt: skip

    def vm_action(self, action, vm_id):
        self.actions.append((action, vm_id))
        state = self.states[vm_id]
        assert state[0] == 8 or state == (3, 16), f"resume of VM {vm_id} in {state}"
        self.states[vm_id] = (3, 20 if state[0] == 8 else 19)  # BOOT_POWEROFF / BOOT_UNKNOWN
        self.booting[vm_id] = self.boot_reads


def warn_runner(flow, oned=None, check_mode=False, **kw):
    clock, warnings = Clock(), []
    run = ServiceRunner(
        flow,
        params(**kw),
        check_mode=check_mode,
        oned=oned,
        sleep=clock.sleep,
        clock=clock,
        warn=warnings.append,
    )
    return run, clock, warnings


def test_present_takes_a_warning_service_at_once_naming_the_vms(running):
    """on_warning=warn (default): no wait for RUNNING (OneFlow would not get there by itself),
    a warning with the VMs that are not running, their details in the result."""
    flow = FakeFlow(services={1: [warning_doc(running)]})
    oned = StateOned({3: (8, 0)})
    run, clock, warnings = warn_runner(flow, oned)
    result = run.run()
    assert result["changed"] is False and flow.writes() == [] and oned.actions == []
    assert clock.now == 0  # nothing waited for
    assert result["service"]["state"] == "WARNING"
    off = result["service"]["roles"]["supernode"]["vms"][1]
    assert (off["state"], off["ips"]) == ("POWEROFF", ["10.0.0.3"])
    (warning,) = warnings
    assert "service 1 (flower-svc-1) is WARNING: VMs not running: vm3 (VM 3, POWEROFF)" in warning
    assert "of role supernode" in warning and "on_warning=resume" in warning
    assert "vm2" not in warning  # the running sibling is not named

    # without oned only OneFlow's roles can be named
    run, _, warnings = warn_runner(FakeFlow(services={1: [warning_doc(running)]}))
    run.run()
    assert "roles in WARNING: supernode (VMs 2, 3) (oned, with one_url, would tell" in warnings[0]


def test_scale_of_a_warning_service_fails_at_once(running):
    flow = FakeFlow(services={1: [warning_doc(running)]})
    run, clock, _ = warn_runner(flow, StateOned({3: (3, 16)}), roles={"supernode": 3})
    with pytest.raises(ServiceFailure) as info:
        run.run()
    message = str(info.value)
    assert message.startswith("cannot scale service 1: it is WARNING and OneFlow scales only a ")
    assert "vm3 (VM 3, UNKNOWN) of role supernode" in message and "on_warning=wait" in message
    assert flow.writes() == [] and clock.now == 0
    assert info.value.result["changed"] is False
    vms = info.value.result["service"]["roles"]["supernode"]["vms"]
    assert [vm["lcm_state"] for vm in vms] == ["RUNNING", "UNKNOWN"]  # details on failure too


def test_on_warning_fail_names_the_vms(running):
    flow = FakeFlow(services={1: [warning_doc(running)]})
    run, _, _ = warn_runner(flow, StateOned({2: (8, 0), 3: (3, 36)}), on_warning="fail")
    with pytest.raises(ServiceFailure) as info:
        run.run()
    assert str(info.value).startswith(
        "service 1 (flower-svc-1) is WARNING: VMs not running: vm2 (VM 2, POWEROFF) of role "
        "supernode, vm3 (VM 3, BOOT_FAILURE) of role supernode. OneFlow neither recovers nor "
    )


@pytest.mark.parametrize("how", [{"on_warning": "resume"}, {"recover": True}])
def test_resume_sends_vm_resume_through_oned_and_waits(running, how):
    """OneFlow answers recover in WARNING with 500: the VMs are resumed through oned instead, and
    the wait lasts until they and the service run."""
    docs = [warning_doc(running)] * 3 + [running]
    flow = FakeFlow(services={1: list(docs)})
    oned = StateOned({3: (8, 0)}, boot_reads=3)
    run, clock, warnings = warn_runner(flow, oned, **how)
    result = run.run()
    assert oned.actions == [("resume", 3)]
    assert flow.writes() == []  # no OneFlow recover
    assert result["changed"] is True
    assert result["actions"] == ["resume VM vm3 (VM 3, POWEROFF)"]
    assert result["service"]["state"] == "RUNNING" and warnings == []
    assert result["service"]["roles"]["supernode"]["vms"][1]["lcm_state"] == "RUNNING"
    assert oned.states[3] == (3, 3) and clock.now > 0

    # check mode: said, not sent
    flow = FakeFlow(services={1: [warning_doc(running)]})
    oned = StateOned({3: (8, 0)})
    run, _, _ = warn_runner(flow, oned, check_mode=True, **how)
    result = run.run()
    assert result["changed"] is True and oned.actions == [] and flow.writes() == []
    assert result["actions"] == ["resume VM vm3 (VM 3, POWEROFF)"]
    assert result["diff"]["after"]["state"] == "RUNNING"


def test_resume_waits_for_the_vms_not_only_the_service(running):
    """OneFlow's running_wd_cb sets a role RUNNING as soon as one of its VMs runs: a RUNNING
    service is not enough while a resumed VM still boots."""
    flow = FakeFlow(services={1: [warning_doc(running), running]})
    oned = StateOned({2: (8, 0), 3: (8, 0)}, boot_reads=4)
    run, _, _ = warn_runner(flow, oned, on_warning="resume")
    result = run.run()
    assert oned.actions == [("resume", 2), ("resume", 3)]
    assert [vm["lcm_state"] for vm in result["service"]["roles"]["supernode"]["vms"]] == [
        "RUNNING",
        "RUNNING",
    ]


def test_resume_then_scale(running):
    flow = FakeFlow(
        services={
            1: [
                warning_doc(running),  # find
                warning_doc(running),  # before scaling: still WARNING
                running,  # RUNNING again
                with_state(running, 8, 3, [2, 3]),  # SCALING
                with_state(running, 2, 3, [2, 3, 4]),
            ]
        }
    )
    oned = StateOned({3: (8, 0)})
    run, _, _ = warn_runner(flow, oned, on_warning="resume", roles={"supernode": 3})
    result = run.run()
    assert oned.actions == [("resume", 3)]
    assert flow.writes() == [("scale", 1, "supernode", 3, False)]
    assert result["actions"] == ["resume VM vm3 (VM 3, POWEROFF)", "scale supernode 2 -> 3"]


def test_resume_refuses_vms_in_a_failure_state(running):
    flow = FakeFlow(services={1: [warning_doc(running)]})
    oned = StateOned({2: (8, 0), 3: (3, 36)})
    run, _, _ = warn_runner(flow, oned, recover=True)
    with pytest.raises(ServiceFailure) as info:
        run.run()
    message = str(info.value)
    assert "vm3 (VM 3, BOOT_FAILURE) in a failure state, which resume does not fix" in message
    assert "onevm recover --retry <id>" in message
    assert oned.actions == [] and flow.writes() == []


def test_resume_needs_oned(running):
    flow = FakeFlow(services={1: [warning_doc(running)]})
    run, _, _ = warn_runner(flow, None, on_warning="resume")
    with pytest.raises(ServiceFailure, match=r"set one_url \(or \$ONE_URL\) and install pyone"):
        run.run()


def test_on_warning_wait_waits_for_running(running):
    flow = FakeFlow(services={1: [warning_doc(running)] * 4 + [running]})
    run, clock, warnings = warn_runner(flow, StateOned({}), on_warning="wait")
    result = run.run()
    assert result["service"]["state"] == "RUNNING" and result["changed"] is False
    assert clock.now == 20 and warnings == []  # four polls in WARNING, 5 s apart

    # a timeout says which VMs kept it in WARNING
    flow = FakeFlow(services={1: [warning_doc(running)]})
    run, _, _ = warn_runner(flow, StateOned({3: (8, 0)}), on_warning="wait", wait_timeout=20)
    with pytest.raises(ServiceFailure) as info:
        run.run()
    assert "timed out" in str(info.value) and "vm3 (VM 3, POWEROFF)" in str(info.value)


def test_waiting_for_keys_of_a_vm_that_cannot_report_fails_at_once(running):
    flow = FakeFlow(services={1: [running]})
    run, clock, _ = warn_runner(flow, StateOned({3: (8, 0)}), wait_ready=True)
    with pytest.raises(ServiceFailure) as info:
        run.run()
    assert "vm3 (VM 3, POWEROFF) cannot report while not running" in str(info.value)
    assert clock.now == 0


def test_failures_return_the_vm_details(running):
    """The service of a failed task carries what oned says about its VMs, as on success."""
    flow = FakeFlow(services={1: [with_state(running, 1)]})
    run, _, warnings = warn_runner(flow, StateOned({}), wait_timeout=30)
    with pytest.raises(ServiceFailure) as info:
        run.run()
    vm = info.value.result["service"]["roles"]["superlink"]["vms"][0]
    assert (vm["state"], vm["lcm_state"], vm["ips"], vm["ready"]) == (
        "ACTIVE",
        "RUNNING",
        ["10.0.0.1"],
        True,
    )
    assert vm["user_template"] == {"READY": "YES"} and warnings == []

    # oned failing as well: the original error stays, with a warning about the details
    flow = FakeFlow(services={1: [with_state(running, 1)]})
    run, _, warnings = warn_runner(flow, StateOned({}, fail_reads=True), wait_timeout=30)
    with pytest.raises(ServiceFailure, match=r"DEPLOYING \(1\)"):
        run.run()
    assert warnings == ["VM details could not be read from oned: one.vmpool.infoset failed: "
                        "connection refused"]  # fmt: skip
