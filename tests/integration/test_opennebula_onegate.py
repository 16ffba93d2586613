"""onegate and onegate_info through ansible-playbook, as modules running inside a VM of a
service would use them: with the VM's token, VM id and endpoint from the emulator."""

from __future__ import annotations

import time

import pytest

INPUTS = {
    "name": "fl-gate",
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


@pytest.fixture
def service(emu, flower, helpers):
    """A RUNNING Flower service: ``{"id", "superlink", "supernodes"}``."""
    template_id = emu.add_service_template(flower["7.0"]("flower-fl"))
    service_id = emu.instantiate_service(template_id, INPUTS, wait_running=True)
    vms = helpers.service_vm_ids(emu, service_id)
    return {"id": service_id, "superlink": vms["superlink"][0], "supernodes": vms["supernode"]}


def one_env(emu, vm_id, with_token):
    """``/run/one-context/one_env`` as one-context writes it (export lines, among others)."""
    env = emu.vm_context_env(vm_id)
    lines = [
        'export ETH0_IP="10.0.0.99"',
        f'export ONEGATE_ENDPOINT="{env["ONEGATE_ENDPOINT"]}"',
        f'export VMID="{env["VMID"]}"',
        'export SSH_PUBLIC_KEY="ssh-ed25519 AAAA test"',
    ]
    if with_token:
        lines.append(f'export TOKENTXT="{env["TOKENTXT"]}"')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("source", ["options", "one_env"])
def test_onegate_publish(source, emu, ansible, service, helpers, tmp_path):
    """Set (changed), again (ok), check mode + diff (nothing sent), change/remove, read."""
    if source == "options":  # the superlink, with the three values given as options
        vm_id, other_vm = service["superlink"], service["supernodes"][0]
        og = {
            "onegate_endpoint": emu.onegate_url,
            "onegate_vmid": vm_id,
            "onegate_token": emu.vm_token(vm_id),
        }
    else:  # a supernode, with one_env (endpoint, VMID) and token.txt in a directory of ours
        vm_id, other_vm = service["supernodes"][1], service["superlink"]
        context = tmp_path / "one-context"
        context.mkdir()
        (context / "one_env").write_text(one_env(emu, vm_id, with_token=False))
        (context / "token.txt").write_text(emu.vm_token(vm_id) + "\n")
        og = {
            "one_env_file": str(context / "one_env"),
            "onegate_token_file": str(context / "token.txt"),
        }
    endpoint = f"{helpers.vm_ip(emu, vm_id)}:9092"
    run = ansible.playbook(
        "opennebula_onegate.yml", {"og": og, "endpoint": endpoint, "other_vm": other_vm}
    )
    assert run.rc == 0, run.output

    def user_template(i):
        with emu.lock:
            return dict(emu.vm(i).user_template)

    published = run["Publish keys"]
    assert published["changed"] is True
    expected = {"FL_READY": "YES", "FL_ENDPOINT": endpoint, "FL_ROUND": "3"}
    assert published["changes"] == {"set": expected, "remove": []}
    assert published["vm"]["id"] == vm_id
    assert expected.items() <= published["vm"]["published"].items()

    again = run["Publish the same keys again"]
    assert again["changed"] is False and again["changes"] == {"set": {}, "remove": []}

    check = run["Change and remove in check mode, with diff"]
    assert check["changed"] is True
    assert check["changes"] == {"set": {"FL_ROUND": "4"}, "remove": ["FL_ENDPOINT"]}
    assert check["diff"]["before"] == {"FL_ROUND": "3", "FL_ENDPOINT": endpoint}
    assert check["diff"]["after"] == {"FL_ROUND": "4"}
    assert "FL_ENDPOINT" not in check["vm"]["published"]  # as it would be
    assert helpers.delta(
        run.facts["counters_before_check"], run.facts["counters_after_check"], "onegate"
    ) == {"GET /vm": 1}

    change = run["Change and remove, with diff"]
    assert change["changed"] is True and change["diff"] == check["diff"]
    assert run["Change and remove again"]["changed"] is False
    stored = user_template(vm_id)
    assert stored["FL_ROUND"] == "4" and stored["FL_READY"] == "YES"
    assert "FL_ENDPOINT" not in stored

    this_vm = run["Read this VM and the service"]
    assert this_vm["vm"]["id"] == vm_id
    assert this_vm["vm"]["published"]["FL_ROUND"] == "4"
    assert this_vm["vm"]["ips"] == [helpers.vm_ip(emu, vm_id)]
    roles = this_vm["service"]["roles"]
    assert this_vm["service"]["id"] == service["id"]
    assert roles["superlink"]["vm_ids"] == [service["superlink"]]
    assert roles["supernode"]["vm_ids"] == service["supernodes"]
    assert all(vm["ips"] for role in roles.values() for vm in role["vms"])  # extended

    marked = run["Mark another VM of the service"]
    assert marked["changed"] is True and marked["vm"]["id"] == other_vm
    assert user_template(other_vm)["FL_NODE_READY"] == "NO"
    assert run["Read the other VM"]["vm"]["published"]["FL_NODE_READY"] == "NO"


def test_onegate_info_waits(emu, ansible, service, helpers, tmp_path):
    """Waits with backoff until keys appear (published from a thread), times out clearly."""
    vm_id, superlink = service["supernodes"][0], service["superlink"]
    (tmp_path / "one_env").write_text(one_env(emu, vm_id, with_token=True))
    emu.reset_counters()

    def publish(stop):
        times = {}
        for route, vm, attrs in (
            ("GET /vm", vm_id, {"FL_LATE": "YES"}),
            ("GET /service", superlink, {"FL_READY": "YES", "FL_ENDPOINT": "10.0.0.10:9092"}),
        ):
            while emu.counters()["onegate"].get(route, 0) < 1:  # the module is polling
                if stop.wait(0.01):
                    return times
            time.sleep(1.0)
            times[route] = time.time()
            assert helpers.onegate_put(emu, vm, attrs) == 200
        return times

    publisher = helpers.Background(publish)
    run = ansible.playbook(
        "opennebula_onegate_wait.yml", {"one_env_file": str(tmp_path / "one_env")}
    )
    published = publisher.join()
    assert run.rc == 0, run.output

    late = run["Wait for a key of this VM"]
    assert late["changed"] is False
    assert late["vm"]["id"] == vm_id and late["vm"]["published"]["FL_LATE"] == "YES"
    assert late["wait"]["attempts"] >= 2 and late["wait"]["elapsed"] >= 0.9
    assert run.ended("Wait for a key of this VM") >= published["GET /vm"]

    found = run["Wait for the SuperLink"]
    assert found["wait"]["attempts"] >= 2
    assert [vm["id"] for vm in found["role_vms"]] == [superlink]
    assert found["role_vms"][0]["published"]["FL_ENDPOINT"] == "10.0.0.10:9092"
    assert run.ended("Wait for the SuperLink") >= published["GET /service"]

    never = run["Wait for a key that never comes"]
    assert never["failed"] is True
    assert never["msg"].startswith(
        "waiting for the VM to have {'FL_NEVER': None}: timed out after 2s ("
    ), never["msg"]
    assert never["unmet"] == {emu.vm(vm_id).name: {"FL_NEVER": None}}  # per VM: what is missing
    assert 2 <= never["wait"]["elapsed"] < 10 and never["wait"]["attempts"] >= 3
