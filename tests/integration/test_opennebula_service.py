"""oneflow_service and oneflow_service_info through ansible-playbook against the emulator."""

from __future__ import annotations

import time

TEMPLATE = "flower-fl"
INPUTS = {
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


def states_of(emu, helpers, name):
    """A thread recording every state the service named ``name`` goes through, with times."""

    def record(stop):
        seen, service_id = [], None
        while not stop.is_set():
            if service_id is None:
                service_id = helpers.find_service(emu, name)
            state = emu.service_state(service_id) if service_id is not None else "not yet"
            if not seen or seen[-1][1] != state:
                seen.append((time.time(), state))
            time.sleep(0.002)
        return seen

    return helpers.Background(record)


def guests_of(emu, helpers, name, delay=1.0):
    """The guests of service ``name``: once it is RUNNING and ``delay`` seconds later, every VM
    reports READY=YES (as one-context does) and the SuperLink publishes FL_READY and FL_ENDPOINT
    through OneGate with its token."""

    def play(stop):
        while not stop.is_set():
            service_id = helpers.find_service(emu, name)
            if service_id is not None and emu.service_state(service_id) == "RUNNING":
                break
            time.sleep(0.01)
        else:
            return None
        time.sleep(delay)
        vms = helpers.service_vm_ids(emu, service_id)
        for vm_id in [i for ids in vms.values() for i in ids]:
            emu.set_vm_ready(vm_id)
        superlink = vms["superlink"][0]
        endpoint = f"{helpers.vm_ip(emu, superlink)}:9092"
        assert helpers.onegate_put(emu, superlink, {"FL_READY": "YES", "FL_ENDPOINT": endpoint})
        return {"service_id": service_id, "at": time.time(), "endpoint": endpoint}

    return helpers.Background(play)


def test_service_lifecycle(make_emulator, ansible_for, flower, helpers):
    """Instantiate (inputs, cardinalities) and wait for RUNNING, READY=YES and FL_* keys;
    idempotence; scale 2 -> 3 through SCALING/COOLDOWN; min/max refused before any write; check
    mode; info by id, name and all; delete waits until gone; a second delete is unchanged."""
    # VM steps of 0.1 s: deleting takes a measurable time, so waiting for it can be told apart.
    timings = helpers.Timings(tick=0.01, vm_step=0.1, nets=0.01, cooldown_scale=0.01)
    emu = make_emulator(timings=timings)
    ansible = ansible_for(emu)
    body = flower["7.0"](TEMPLATE, cardinality=1, cooldown=100)  # cooldown 1 s here
    other_template = emu.add_service_template(flower["7.0"]("other-template"))
    other = emu.instantiate_service(other_template, {"name": "other", **INPUTS}, wait_running=True)

    states = states_of(emu, helpers, "fl-lab")
    guests = guests_of(emu, helpers, "fl-lab")
    run = ansible.playbook(
        "opennebula_service.yml", {"tmpl_name": TEMPLATE, "tmpl_body": body, "svc_name": "fl-lab"}
    )
    published = guests.join()
    seen = states.join()
    assert run.rc == 0, run.output
    facts = run.facts
    d = helpers.delta

    # -- instantiate with user inputs and cardinalities, wait for RUNNING, READY and FL_READY
    deployed = run["Deploy and wait until the SuperLink is ready"]
    service_id = deployed["service"]["id"]
    assert published and published["service_id"] == service_id
    assert deployed["changed"] is True
    assert deployed["actions"] == [f"instantiate template {run['Service template']['id']}"]
    service = deployed["service"]
    assert service["name"] == "fl-lab" and service["state"] == "RUNNING"
    assert service["user_inputs_values"] == {"FL_ROUNDS": "5", "FL_STRATEGY": "FedProx"}
    assert service["roles"]["superlink"]["cardinality"] == 1
    assert service["roles"]["supernode"]["cardinality"] == 2  # the template says 1
    assert len(service["roles"]["supernode"]["vm_ids"]) == 2
    superlink = service["roles"]["superlink"]["vms"][0]
    assert superlink["ready"] is True
    assert superlink["published"] == {  # user inputs become VM attributes too (7.0)
        "FL_READY": "YES",
        "FL_ENDPOINT": published["endpoint"],
        "FL_ROUNDS": "5",
        "FL_STRATEGY": "FedProx",
    }
    assert superlink["ips"] == [helpers.vm_ip(emu, superlink["id"])]
    for vm in service["roles"]["supernode"]["vms"]:
        assert vm["state"] == "ACTIVE" and vm["lcm_state"] == "RUNNING"
        # service and role inputs reached the VM (7.0: USER_TEMPLATE and CONTEXT)
        assert vm["published"]["FL_NODE_LABEL"] == "lab-a" and vm["published"]["FL_ROUNDS"] == "5"
        with emu.lock:
            context = dict(emu.vm(vm["id"]).template["CONTEXT"])
        assert context["FL_NODE_LABEL"] == "lab-a" and context["FL_STRATEGY"] == "FedProx"
    # it returned only after the guests published (1 s after RUNNING), polling oned meanwhile
    assert run.ended("Deploy and wait until the SuperLink is ready") >= published["at"]
    assert d({}, facts["counters_deployed"], "oned")["one.vmpool.infoset"] >= 3
    assert d({}, facts["counters_deployed"], "oneflow")["POST /service_template/:id/action"] == 1

    # -- idempotent: unique by name, nothing instantiated again
    again = run["Deploy again"]
    assert again["changed"] is False and again["actions"] == []
    assert again["service"]["id"] == service_id
    assert (
        helpers.writes(d(facts["counters_deployed"], facts["counters_deploy_again"], "oneflow"))
        == {}
    )

    # -- scale 2 -> 3 through SCALING and COOLDOWN back to RUNNING
    scaled = run["Scale the SuperNodes to 3"]
    assert scaled["changed"] is True and scaled["actions"] == ["scale supernode 2 -> 3"]
    assert scaled["service"]["state"] == "RUNNING"
    assert scaled["service"]["roles"]["supernode"]["cardinality"] == 3
    assert len(scaled["service"]["roles"]["supernode"]["vm_ids"]) == 3
    assert scaled["diff"]["before"]["roles"] == {"superlink": 1, "supernode": 2}
    assert scaled["diff"]["after"]["roles"] == {"superlink": 1, "supernode": 3}
    names = [state for _, state in seen]
    assert names.index("SCALING") < names.index("COOLDOWN") < len(names) - 1
    after_cooldown = names[names.index("COOLDOWN") + 1]
    assert after_cooldown == "RUNNING", names
    assert run["Scale the SuperNodes to 3 again"]["changed"] is False

    # -- out of range: refused by the module, naming role, request and range; nothing sent
    for task, number in (("Scale beyond max_vms", 6), ("Scale below min_vms", 0)):
        result = run[task]
        assert result["failed"] is True and result["changed"] is False
        assert (
            f"role 'supernode': requested cardinality {number} is outside the allowed range "
            "1..5 (min_vms..max_vms)"
        ) in result["msg"], result["msg"]
    check = run["Scale in check mode"]
    assert check["changed"] is True and check["actions"] == ["scale supernode 3 -> 4"]
    assert check["diff"]["after"]["roles"]["supernode"] == 4
    refused = d(facts["counters_before_refused"], facts["counters_after_refused"], "oneflow")
    assert helpers.writes(refused) == {}, refused

    # -- info by id, by name and all
    by_id = run["Read the service by id"]["services"]
    by_name = run["Read the service by name"]["services"]
    assert [s["id"] for s in by_id] == [service_id] == [s["id"] for s in by_name]
    info = by_id[0]["roles"]
    assert info["superlink"]["vms"][0]["published"]["FL_ENDPOINT"] == published["endpoint"]
    assert len(info["supernode"]["vms"]) == 3
    assert all(vm["ips"] for vm in info["supernode"]["vms"])
    every = run["Read every service, without oned"]["services"]
    assert sorted(s["id"] for s in every) == sorted([service_id, other])
    assert all(vm["ips"] == [] for s in every for r in s["roles"].values() for vm in r["vms"])

    # -- delete waits until the service is gone; a second delete changes nothing
    deleted = run["Delete the service"]
    assert deleted["changed"] is True and deleted["actions"] == [f"delete service {service_id}"]
    assert deleted["service"] is None and deleted["diff"]["after"] == {"state": "absent"}
    gone_at = next(t for t, state in seen if state is None)
    assert gone_at <= run.ended("Delete the service")
    assert "UNDEPLOYING" in names[names.index(None) - 3 :]
    assert run["Delete the service again"]["changed"] is False
    assert emu.service(service_id) is None and emu.service_state(other) == "RUNNING"


def test_service_on_610(make_emulator, ansible_for, flower, helpers):
    """The 6.10 server: custom_attrs_values, roles merged by position, scale and delete."""
    emu = make_emulator(version="6.10")
    ansible = ansible_for(emu)
    # 6.10 substitutes the input values into vm_template_contents
    contents = 'FL_NODE_LABEL = "$FL_NODE_LABEL"\nFL_ROUNDS = "$FL_ROUNDS"'
    body = flower["6.10"](TEMPLATE, vm_template_contents=contents)
    run = ansible.playbook(
        "opennebula_service_small.yml",
        {"tmpl_name": TEMPLATE, "tmpl_body": body, "svc_name": "fl-610"},
    )
    assert run.rc == 0, run.output
    deployed = run["Deploy"]
    assert deployed["changed"] is True
    service = deployed["service"]
    assert service["state"] == "RUNNING" and service["schema"] == "6.10"
    assert service["roles"]["supernode"]["cardinality"] == 3
    assert service["user_inputs_values"] == {"FL_ROUNDS": "7", "FL_STRATEGY": "FedAvg"}
    for vm in service["roles"]["supernode"]["vms"]:  # role input, merged by position
        assert vm["published"] == {"FL_NODE_LABEL": "lab-b", "FL_ROUNDS": "7"}, vm
    assert run["Deploy again"]["changed"] is False
    assert run["Scale"]["service"]["roles"]["supernode"]["cardinality"] == 2
    assert run["Delete"]["changed"] is True and emu.service(service["id"]) is None


def test_wrong_state_and_recover(emu, ansible, flower, helpers):
    """The server's wrong-state error is reported as it is; then waiting, skip_cooldown, recover.

    Between the module's read (RUNNING) and its scale request another client scales the same
    role (as a OneGate ``PUT /service/role/supernode`` from a VM would), so OneFlow answers
    ``Service cannot be scaled in state: SCALING``.
    """
    # cooldown 3000 s (30 s here): longer than wait_timeout, so only recover gets past it
    template_id = emu.add_service_template(flower["7.0"](TEMPLATE, cooldown=3000))
    service_id = emu.instantiate_service(
        template_id, {"name": "fl-race", **INPUTS}, wait_running=True
    )
    route = next(r for r in emu.oneflow.routes if r.key == "POST /service/:id/scale")
    original, raced = route.handler, []

    def scale_first(req, user):
        if not raced:  # the other client comes first, once
            raced.append(emu.service_state(service_id))
            emu.engine.scale_action(user, req.params["id"], "supernode", 4, False)
        return original(req, user)

    route.handler = scale_first
    run = ansible.playbook("opennebula_service_recover.yml", {"svc_name": "fl-race"})
    assert run.rc == 0, run.output
    assert raced == ["RUNNING"]  # the module saw RUNNING and sent its request

    failed = run["Scale while another client scales"]
    assert failed["failed"] is True and failed["status"] == 500
    assert failed["msg"] == (
        f"POST {emu.oneflow_url}/service/{service_id}/scale failed: HTTP 500: "
        "Service cannot be scaled in state: SCALING"
    )
    assert failed["server_message"] == "Service cannot be scaled in state: SCALING"
    assert failed["actions"] == ["scale supernode 2 -> 3"]
    assert failed["changed"] is False  # the request was refused: nothing changed

    scaled = run["Scale once RUNNING again, skipping the cooldown"]
    assert scaled["changed"] is True
    # the other client's cooldown ended with recover, then its own
    assert scaled["actions"] == [
        "scale supernode 4 -> 3",
        "recover (skip cooldown)",
        "recover (skip cooldown)",
    ]
    assert scaled["service"]["state"] == "RUNNING"
    assert scaled["service"]["roles"]["supernode"]["cardinality"] == 3

    unwaited = run["Scale without waiting"]
    assert unwaited["changed"] is True and unwaited["actions"] == ["scale supernode 3 -> 2"]
    recovered = run["Recover from the cooldown"]
    assert recovered["changed"] is True
    assert any(a.startswith("recover") for a in recovered["actions"]), recovered["actions"]
    assert recovered["service"]["state"] == "RUNNING"
    assert recovered["service"]["roles"]["supernode"]["cardinality"] == 2
    assert emu.service_state(service_id) == "RUNNING"


def test_failed_service_per_on_failed(make_emulator, ansible_for, flower, helpers):
    """FAILED_DEPLOYING / FAILED_SCALING met with on_failed fail, recover, recreate; delete."""
    created, fail_at = [], {2, 4, 8}  # VMs (in creation order) whose boot fails
    emulator = {}

    def on_vm_create(vm):
        created.append(vm.name)
        emu = emulator["emu"]
        if len(created) not in fail_at:
            emu.boot_vm(vm.id)
            return
        emu.set_vm_state(vm.id, "ACTIVE", "BOOT_FAILURE")

        def repair(stop):  # later the admin runs `onevm recover --success`; the service
            time.sleep(0.3)  # stays failed until OneFlow is told to recover
            emu.set_vm_state(vm.id, "ACTIVE", "RUNNING")

        helpers.Background(repair)

    emu = emulator["emu"] = make_emulator(
        hooks=helpers.Hooks(on_vm_create=on_vm_create), auto_boot=False
    )
    ansible = ansible_for(emu)
    emu.add_service_template(flower["7.0"](TEMPLATE, cooldown=0))
    run = ansible.playbook(
        "opennebula_service_failed.yml", {"tmpl_name": TEMPLATE, "svc_name": "fl-fail"}
    )
    assert run.rc == 0, f"{created}\n{run.output}"
    d = helpers.delta

    deploy = run["Deploy (a SuperNode fails to boot)"]
    assert deploy["failed"] is True and deploy["changed"] is True, created
    first = deploy["service"]["id"]
    assert f"service {first} is FAILED_DEPLOYING (7) while waiting for RUNNING" in deploy["msg"]
    assert deploy["service"]["state"] == "FAILED_DEPLOYING"

    refused = run["Present again (on_failed=fail)"]
    assert refused["failed"] is True and refused["changed"] is False
    assert f"service {first} (fl-fail) is FAILED_DEPLOYING (7)" in refused["msg"]
    assert "Set on_failed=recover or on_failed=recreate" in refused["msg"]
    check = run["Recover in check mode"]
    assert check["changed"] is True and check["actions"] == [f"recover service {first}"]
    checked = d(run.facts["counters_failed"], run.facts["counters_checked"], "oneflow")
    assert helpers.writes(checked) == {}, checked

    recovered = run["Recover"]
    assert recovered["changed"] is True and recovered["actions"] == [f"recover service {first}"]
    assert recovered["service"]["id"] == first and recovered["service"]["state"] == "RUNNING"

    scale = run["Scale (the new SuperNode fails to boot)"]
    assert scale["failed"] is True
    assert f"service {first} is FAILED_SCALING (9)" in scale["msg"]
    recreated = run["Recreate"]
    second = recreated["service"]["id"]
    assert recreated["changed"] is True and second != first
    assert recreated["actions"][0] == f"delete failed service {first} (recover with delete)"
    assert recreated["actions"][1].startswith("instantiate template")
    assert recreated["service"]["state"] == "RUNNING"
    assert emu.service(first) is None

    assert "FAILED_SCALING" in run["Scale the new service (the new SuperNode fails to boot)"]["msg"]
    refused = run["Delete without force_delete"]
    assert refused["failed"] is True
    assert "OneFlow refuses to delete it in this state. Set force_delete=true." in refused["msg"]
    deleted = run["Delete with force_delete"]
    assert deleted["changed"] is True
    assert deleted["actions"] == [f"delete service {second} (recover with delete)"]
    assert emu.service(second) is None
    assert len(created) == 8, created
