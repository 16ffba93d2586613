"""Each documented error path of the modules, through ansible-playbook against the emulator:
the message carries the server's status and text (or names what is wrong, before sending)."""

from __future__ import annotations


def test_error_paths(emu, ansible, flower, helpers):
    alice = emu.add_user("alice", "alice-secret")
    # a supernode cooldown of 60000 s (600 s here) keeps a scaled service in COOLDOWN
    template_id = emu.add_service_template(flower["7.0"]("flower-fl", cooldown=60000))
    inputs = {
        "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
        "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
    }
    service_id = emu.instantiate_service(0, {"name": "fl-err", **inputs}, wait_running=True)
    busy_id = emu.instantiate_service(0, {"name": "fl-busy", **inputs}, wait_running=True)
    # others may USE the template (not MANAGE it); fl-busy goes to COOLDOWN for 600 s
    chmod = {"action": {"perform": "chmod", "params": {"octet": "604"}}}
    path = f"/service_template/{template_id}/action"
    assert helpers.oneflow_call(emu, "POST", path, chmod)[0] == 204
    scale = {"role_name": "supernode", "cardinality": 3, "force": False}
    assert helpers.oneflow_call(emu, "POST", f"/service/{busy_id}/scale", scale)[0] == 204
    emu.wait_service_state(busy_id, "COOLDOWN")
    vms = helpers.service_vm_ids(emu, service_id)
    vm_id, other_vm = vms["superlink"][0], vms["supernode"][0]
    emu.set_onegate_permission("vm", "update_by_id", False)

    run = ansible.playbook(
        "opennebula_errors.yml",
        {
            "service_id": service_id,
            "busy_service_id": busy_id,
            "vm_id": vm_id,
            "other_vm": other_vm,
            "token": emu.vm_token(vm_id),
            "tmpl_name": "flower-fl",
            "alice_password": "alice-secret",
            "changed_template": flower["7.0"]("flower-fl", cooldown=60000, max_vms=9),
        },
    )
    assert run.rc == 0, run.output
    flow, gate = emu.oneflow_url, emu.onegate_url

    def failed(task, status=None):
        result = run[task]
        assert result["failed"] is True, result
        assert result["changed"] is False, result
        if status is not None:
            assert result["status"] == status, result
        return result

    # 401: OneFlow's answer to wrong credentials
    result = failed("OneFlow with a wrong password", 401)
    assert result["msg"] == f"GET {flow}/service failed: HTTP 401: Invalid credentials"
    assert "not-the-password" not in run.stdout  # the secret stays out of the output
    # 401 from oned (XML-RPC): OneFlow's credentials are right, oned's are not
    result = failed("The oned password is wrong")
    assert "one.vmpool.infoset" in result["msg"], result["msg"]
    assert "User couldn't be authenticated, aborting call." in result["msg"], result["msg"]
    # no permission: oned's EAUTHORIZATION, which OneFlow maps to 401 (its 401/403 are swapped)
    result = failed("A service alice may not use", 401)
    assert result["msg"] == (
        f"GET {flow}/service/{busy_id} failed: HTTP 401: [one.document.info] User "
        f"[{alice.id}] : Not authorized to perform USE DOCUMENT [{busy_id}]."
    )
    result = failed("A template alice may use but not manage", 401)
    assert result["msg"] == (
        f"PUT {flow}/service_template/{template_id} failed: HTTP 401: [one.document.update] "
        f"User [{alice.id}] : Not authorized to perform MANAGE DOCUMENT [{template_id}]."
    )
    assert result["id"] == template_id
    assert emu.service(template_id)["roles"][1]["max_vms"] == 5  # unchanged
    # 404 with OneFlow's text
    result = failed("An unknown service", 404)
    assert result["msg"] == (
        f"GET {flow}/service/999 failed: HTTP 404: [one.document.info] Error getting document "
        "[999]."
    )
    assert result["server_message"] == "[one.document.info] Error getting document [999]."
    # OneGate: 401 for a token that is not the VM's, 403 for what its configuration forbids
    result = failed("OneGate with a wrong token", 401)
    assert result["msg"] == f"GET {gate}/vm failed: HTTP 401: Not authorized"
    result = failed("OneGate refuses updates of other VMs", 403)
    assert result["msg"] == (
        f"PUT {gate}/vms/{other_vm} failed: HTTP 403: Action (update_by_id) on resource (vm) "
        "not supported"
    )
    result = failed("OneGate refuses a restricted attribute", 403)
    assert result["msg"] == (
        f"PUT {gate}/vm failed: HTTP 403: Attribute (SERVICE_ID) cannot be modified"
    )

    # min/max at instantiation: refused before anything is sent
    result = failed("Instantiate beyond max_vms")
    assert result["msg"] == (
        "role 'supernode': requested cardinality 9 is outside the allowed range 1..5 "
        "(min_vms..max_vms)"
    )
    sent = helpers.delta(run.facts["counters_before"], run.facts["counters_after"], "oneflow")
    assert helpers.writes(sent) == {}, sent
    assert helpers.find_service(emu, "fl-too-big") is None

    # timeouts: a state that does not come, a key that does not come
    result = failed("Scale a service that stays in COOLDOWN")
    assert result["msg"].startswith(
        "waiting for RUNNING before scaling supernode: timed out after 2s ("
    ), result["msg"]
    assert result["msg"].endswith(f"service {busy_id} is COOLDOWN (10)"), result["msg"]
    assert result["service"]["state"] == "COOLDOWN"
    result = run["Wait for a key that never comes"]
    assert result["failed"] is True and result["changed"] is True  # it did instantiate
    assert result["msg"].startswith(
        "waiting for the VMs ({'FL_NEVER': None}): timed out after 3s ("
    ), result["msg"]
    assert "VMs not there yet: {" in result["msg"] and "'FL_NEVER': None" in result["msg"]
    assert result["service"]["state"] == "RUNNING"
