"""oneflow_template through ansible-playbook against the emulator (OpenNebula 7.0 and 6.10)."""

from __future__ import annotations

import pytest

NAME = "flower-fl"


@pytest.mark.parametrize("version", ["7.0", "6.10"])
def test_template_lifecycle(version, make_emulator, ansible_for, flower, helpers):
    """Create, idempotence (no write), the other schema, check mode, diff, update, absent.

    7.0 gets the body in the 6.10 schema first (the server converts and stores 7.0); 6.10 gets
    it in the 7.0 schema (refused with 400, then sent converted by the module).
    """
    emu = make_emulator(version=version)
    ansible = ansible_for(emu)
    other = "6.10" if version == "7.0" else "7.0"
    run = ansible.playbook(
        "opennebula_template.yml",
        {
            "tmpl_name": NAME,
            "body": flower[other](NAME),
            "body_other_schema": flower[version](NAME),
            "body_changed": flower[version](NAME, max_vms=8),
        },
    )
    assert run.rc == 0, run.output
    facts = {}
    for task in run.data["plays"][0]["tasks"]:
        facts.update(task["hosts"]["localhost"].get("ansible_facts", {}))
    d = helpers.delta

    created = run["Create the template"]
    assert created["changed"] is True
    assert isinstance(created["id"], int)
    stored = created["template"]  # the body the server answered with (what it stores)
    node = stored["roles"][1]
    if version == "7.0":
        assert node["type"] == "vm" and node["template_id"] == 0 and "vm_template" not in node
        assert stored["user_inputs"]["FL_ROUNDS"].startswith("O|number")
        assert d(facts["counters_start"], facts["counters_created"], "oneflow") == {
            "GET /service": 1,  # empty server: the schema is looked for in the services too
            "GET /service_template": 1,
            "POST /service_template": 1,
        }
    else:
        assert node["vm_template"] == 0 and "template_id" not in node and "type" not in node
        assert stored["custom_attrs"]["FL_ROUNDS"].startswith("O|number")
        assert created["schema"] == "6.10"
        # the 7.0 body is refused by 6.10 (vm_template missing), then sent converted
        assert d(facts["counters_start"], facts["counters_created"], "oneflow") == {
            "GET /service": 1,
            "GET /service_template": 1,
            "POST /service_template": 2,
        }
    assert created["template"]["roles"][1]["max_vms"] == 5

    for task in ("The same template again", "The same template written in the other schema"):
        result = run[task]
        assert result["changed"] is False, task
        assert result["differences"] == [], task
        assert result["id"] == created["id"], task
        assert result["schema"] == version, task
    unchanged = d(facts["counters_created"], facts["counters_unchanged"], "oneflow")
    assert unchanged == {"GET /service_template": 2}  # read only: no POST, PUT or DELETE

    check = run["Change in check mode, with diff"]
    assert check["changed"] is True
    assert check["differences"] == ["roles[1].max_vms"]
    assert check["diff"]["before"]["roles"][1]["max_vms"] == 5
    assert check["diff"]["after"]["roles"][1]["max_vms"] == 8
    assert check["template"]["roles"][1]["max_vms"] == 8  # as it would be sent
    checked = d(facts["counters_unchanged"], facts["counters_checked"], "oneflow")
    assert helpers.writes(checked) == {}, checked

    change = run["Change, with diff"]
    assert change["changed"] is True and change["id"] == created["id"]
    assert change["differences"] == ["roles[1].max_vms"]
    assert change["diff"]["before"] != change["diff"]["after"]
    assert change["template"]["roles"][1]["max_vms"] == 8
    assert helpers.writes(d(facts["counters_checked"], facts["counters_changed"], "oneflow")) == {
        "PUT /service_template/:id": 1
    }
    again = run["The change again"]
    assert again["changed"] is False and again["differences"] == []

    assert run["Delete in check mode"]["changed"] is True
    assert run["Delete in check mode"]["id"] == created["id"]
    assert "DELETE /service_template/:id" not in d(
        facts["counters_changed"], facts["counters_check_delete"], "oneflow"
    )
    deleted = run["Delete"]
    assert deleted["changed"] is True and deleted["id"] == created["id"]
    assert emu.service(created["id"]) is None  # gone from the server
    assert run["Delete again"]["changed"] is False and run["Delete again"]["id"] is None
    assert helpers.writes(d(facts["counters_check_delete"], facts["counters_end"], "oneflow")) == {
        "DELETE /service_template/:id": 1
    }
    assert run.stats["failures"] == 0 and run.stats["changed"] == 5


def test_template_check_and_diff_flags(emu, ansible, flower, helpers):
    """``--check --diff`` on the command line: changed, the difference shown, nothing written."""
    template_id = emu.add_service_template(flower["7.0"](NAME))
    changed_body = flower["7.0"](NAME, max_vms=4, cardinality=3)
    changed_body["description"] = "four at most"

    before = emu.counters()
    run = ansible.playbook(
        "opennebula_template_apply.yml",
        {"tmpl_name": NAME, "body": changed_body},
        "--check",
        "--diff",
    )
    assert run.rc == 0, run.output
    result = run["Apply the template"]
    assert result["changed"] is True and result["id"] == template_id
    assert sorted(result["differences"]) == [
        "description",
        "roles[1].cardinality",
        "roles[1].max_vms",
    ]
    assert result["diff"]["before"]["description"].startswith("Flower superlink")
    assert result["diff"]["after"]["description"] == "four at most"
    assert helpers.writes(helpers.delta(before, emu.counters(), "oneflow")) == {}
    assert emu.service(template_id)["roles"][1]["max_vms"] == 5  # stored template untouched

    run = ansible.playbook(
        "opennebula_template_apply.yml", {"tmpl_name": NAME, "tmpl_state": "absent"}, "--check"
    )
    assert run.rc == 0, run.output
    assert run["Apply the template"]["changed"] is True
    assert emu.service(template_id) is not None  # not deleted in check mode

    run = ansible.playbook(
        "opennebula_template_apply.yml", {"tmpl_name": NAME, "body": changed_body}
    )
    assert run.rc == 0, run.output
    assert run["Apply the template"]["changed"] is True
    assert emu.service(template_id)["roles"][1]["max_vms"] == 4
    assert emu.service(template_id)["description"] == "four at most"
