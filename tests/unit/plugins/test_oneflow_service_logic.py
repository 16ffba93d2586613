"""Instantiate bodies, user inputs, min/max validation, and the oneflow_service state machine."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
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
