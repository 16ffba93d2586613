"""No duplicate side effects: oneflow_template and oneflow_service when the answer of a POST is
lost (502/503/504 or a closed connection, from the emulator's faults). The HTTP layer does not
repeat a POST that may have reached the server; the modules look before they send it again."""

from __future__ import annotations

import pytest

TEMPLATE = "flower-fl"
CREATE = "POST /service_template"
INSTANTIATE = "POST /service_template/:id/action"
SCALE = "POST /service/:id/scale"
POSTS = (CREATE, INSTANTIATE, SCALE)


def named(emu, doc_type, name):
    """Ids of the documents of ``doc_type`` (100 services, 101 templates) named ``name``."""
    with emu.lock:
        return [d.id for d in emu.store.documents.values() if d.type == doc_type and d.name == name]


def play(ansible, flower, retries=3):
    body = flower["7.0"](TEMPLATE, cooldown=100)
    extra = {
        "tmpl_name": TEMPLATE,
        "tmpl_body": body,
        "svc_name": "fl-once",
        "flow_retries": retries,
    }
    return ansible.playbook("opennebula_lost_answers.yml", extra)


def warnings(run, task):
    return " ".join(run[task].get("warnings", []))


@pytest.mark.parametrize("kind", ["502", "drop"])
def test_done_but_answer_lost(kind, emu, ansible, flower):
    """Each POST is done, then answered 502 or cut: each is sent once, the modules find what it
    did (the template, the service by name, the new cardinality) and carry on."""
    faults = [emu.add_fault("oneflow", route, kind) for route in POSTS]
    run = play(ansible, flower)
    assert run.rc == 0, run.output
    assert [f.fired for f in faults] == [1, 1, 1]
    counts = emu.counters()["oneflow"]
    assert {route: counts[route] for route in POSTS} == dict.fromkeys(POSTS, 1)
    assert len(named(emu, 101, TEMPLATE)) == 1 and len(named(emu, 100, "fl-once")) == 1
    assert run["Service template"]["changed"] is True
    assert run["Service template"]["id"] == named(emu, 101, TEMPLATE)[0]
    deployed, scaled = run["Deploy"], run["Scale"]
    assert deployed["changed"] is True and deployed["service"]["state"] == "RUNNING"
    assert deployed["service"]["id"] == named(emu, 100, "fl-once")[0]
    assert scaled["service"]["roles"]["supernode"]["cardinality"] == 3
    for task, what in (
        ("Service template", f"create '{TEMPLATE}'"),
        ("Deploy", "instantiate 'fl-once'"),
        ("Scale", "scale supernode to 3"),
    ):
        assert f"{what}: POST " in warnings(run, task), run[task]
        assert "it was done all the same" in warnings(run, task)


def test_not_done_is_sent_again(emu, ansible, flower):
    """Each POST is answered 503 without being done (a proxy that cannot reach OneFlow): the
    modules find nothing, send it again, and end with one template and one service."""
    faults = [emu.add_fault("oneflow", route, "503", after=False) for route in POSTS]
    run = play(ansible, flower)
    assert run.rc == 0, run.output
    assert [f.fired for f in faults] == [1, 1, 1]
    counts = emu.counters()["oneflow"]
    assert {route: counts[route] for route in POSTS} == dict.fromkeys(POSTS, 1)  # reached OneFlow
    assert len(named(emu, 101, TEMPLATE)) == 1 and len(named(emu, 100, "fl-once")) == 1
    assert run["Scale"]["service"]["roles"]["supernode"]["cardinality"] == 3
    for task in ("Service template", "Deploy", "Scale"):
        assert "HTTP 503" in warnings(run, task) and "sending it again" in warnings(run, task)


def test_instantiate_gives_up_after_retries(emu, ansible, flower):
    """A OneFlow that never takes the instantiate: retries + 1 attempts, a failure naming the
    server's answer, no service."""
    fault = emu.add_fault("oneflow", INSTANTIATE, "504", times=10, after=False)
    run = play(ansible, flower, retries=1)
    assert run.rc != 0
    failed = run["Deploy"]
    assert failed["failed"] is True and failed["status"] == 504
    assert "504 Gateway Timeout" in failed["msg"], failed["msg"]
    assert fault.fired == 2 and named(emu, 100, "fl-once") == []
