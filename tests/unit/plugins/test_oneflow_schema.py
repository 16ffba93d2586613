"""Service template schemas 6.10 <-> 7.0, template text, normalised comparison."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    SCHEMA_70,
    SCHEMA_610,
    OneFlowError,
    body_schema,
    detect_schema,
    document_body,
    dump_template_text,
    normalize_template,
    parse_template_text,
    pool_documents,
    template_differences,
    to_v7,
    to_v610,
)

TEMPLATE_SAMPLES = [
    "oneflow-service_template-show.json",
    "oneflow-service_template-create-response.json",
    "oneflow-service_template-instantiate-response.json",
    "oneflow-service-show-running.json",
    "oneflow-service-show-cooldown-after-scale.json",
    "oneflow-service-show-after-scale-up.json",
    "oneflow-service-show-after-scale-down.json",
]


def recorded_bodies(sample):
    bodies = [sample("oneflow-service_template-create-request.json")]
    bodies += [document_body(sample(name)["DOCUMENT"]) for name in TEMPLATE_SAMPLES]
    for name in ("oneflow-service_template-list.json", "oneflow-service-list.json"):
        bodies += [document_body(d) for d in pool_documents(sample(name))]
    return bodies


def test_recorded_bodies_are_7_0(sample):
    bodies = recorded_bodies(sample)
    assert len(bodies) >= 10
    assert {body_schema(b) for b in bodies} == {SCHEMA_70}
    assert detect_schema(pool_documents(sample("oneflow-service_template-list.json"))) == SCHEMA_70
    assert detect_schema([]) is None
    assert pool_documents({"DOCUMENT_POOL": {}}) == []


def test_round_trip_7_to_610_to_7_on_recorded_bodies(sample):
    for body in recorded_bodies(sample):
        original = copy.deepcopy(body)
        old = to_v610(body)
        assert body == original  # inputs are not modified
        assert body_schema(old) == SCHEMA_610
        for role in old["roles"]:
            assert "type" not in role and "template_id" not in role
            assert isinstance(role["vm_template"], int)
            assert isinstance(role.get("vm_template_contents", ""), str)
        if "user_inputs" in body:
            assert old["custom_attrs"] == body["user_inputs"]
        back = to_v7(old)
        assert normalize_template(back) == normalize_template(body)
        # role inputs survive by name
        for new_role, orig_role in zip(back["roles"], body["roles"], strict=True):
            assert new_role.get("user_inputs") == orig_role.get("user_inputs")
            assert new_role.get("user_inputs_values") == orig_role.get("user_inputs_values")


def test_template_contents_round_trip_keeps_context_and_values(sample):
    body = document_body(sample("oneflow-service-show-running.json")["DOCUMENT"])
    old = to_v610(body)
    text = old["roles"][1]["vm_template_contents"]
    assert "CONTEXT=[" in text and 'FL_NODE_LABEL="lab-a"' in text
    assert to_v7(old)["roles"][1]["template_contents"] == body["roles"][1]["template_contents"]


def test_610_body_to_7_0():
    old = {
        "name": "svc",
        "custom_attrs": {"A": "M|text|a"},
        "custom_attrs_values": {"A": "1"},
        "roles": [
            {
                "name": "web",
                "vm_template": "3",
                "cardinality": "2",
                "custom_attrs": {"R": "O|text|r||x"},
                "vm_template_contents": 'NIC = [ NETWORK_ID = "$Private", NAME = "eth0" ]\n'
                'MEMORY = "1024"\n# comment\nTAG = plain value',
            }
        ],
    }
    new = to_v7(old)
    assert body_schema(new) == SCHEMA_70
    assert new["user_inputs"] == {"A": "M|text|a"}
    assert new["user_inputs_values"] == {"A": "1"}
    role = new["roles"][0]
    assert role["type"] == "vm" and role["template_id"] == 3
    assert role["user_inputs"] == {"R": "O|text|r||x"}
    assert role["template_contents"] == {
        "NIC": {"NETWORK_ID": "$Private", "NAME": "eth0"},
        "MEMORY": "1024",
        "TAG": "plain value",
    }
    assert "vm_template" not in role and "custom_attrs" not in role


def test_template_text_parse_and_dump():
    text = 'A = "x \\"q\\" y"\nNIC=[ IP="1.2.3.4", NETWORK = "n1" ]\nNIC = [NETWORK="n2"]\nB=1'
    parsed = parse_template_text(text)
    assert parsed == {
        "A": 'x "q" y',
        "NIC": [{"IP": "1.2.3.4", "NETWORK": "n1"}, {"NETWORK": "n2"}],
        "B": "1",
    }
    assert parse_template_text(dump_template_text(parsed)) == parsed
    assert parse_template_text(dump_template_text({"CONTEXT": {"A": "a,b", "C": 'say "x"'}})) == {
        "CONTEXT": {"A": "a,b", "C": 'say "x"'}
    }
    with pytest.raises(OneFlowError, match="line 1"):
        parse_template_text('A = "unterminated')
    with pytest.raises(OneFlowError, match="nest"):
        dump_template_text({"V": {"W": {"X": "1"}}})


def test_vr_roles_cannot_go_to_610():
    with pytest.raises(OneFlowError, match="only 'vm' roles"):
        to_v610({"name": "x", "roles": [{"name": "vr", "type": "vr", "template_id": 1}]})


def test_request_and_stored_template_do_not_differ(sample):
    request = sample("oneflow-service_template-create-request.json")
    stored = document_body(sample("oneflow-service_template-create-response.json")["DOCUMENT"])
    assert template_differences(stored, request) == []
    # the same request written for 6.10 does not differ from the stored 7.0 body either
    assert template_differences(stored, to_v610(request), SCHEMA_70) == []
    # server defaults and string numbers are not differences
    lean = copy.deepcopy(request)
    del lean["description"]
    stored_default = copy.deepcopy(stored)
    stored_default["description"] = ""
    lean["roles"][1]["max_vms"] = "5"
    assert template_differences(stored_default, lean) == []


def test_real_differences_are_found(sample):
    request = sample("oneflow-service_template-create-request.json")
    stored = document_body(sample("oneflow-service_template-create-response.json")["DOCUMENT"])
    changed = copy.deepcopy(request)
    changed["roles"][1]["max_vms"] = 10
    changed["ready_status_gate"] = True
    assert template_differences(stored, changed) == ["ready_status_gate", "roles[1].max_vms"]
    fewer = copy.deepcopy(request)
    fewer["roles"].pop()
    assert template_differences(stored, fewer) == ["roles"]
    removed = copy.deepcopy(request)
    del removed["user_inputs"]
    assert template_differences(stored, removed) == ["user_inputs"]
