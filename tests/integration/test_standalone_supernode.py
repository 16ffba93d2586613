"""A SuperNode VM in no OneFlow service (instantiated from a VM template, the quick start): with
the SuperLink's address, its CA (TLS on) and the node config in its context, the configure
phase asks OneGate about the VM itself only (``GET /vm``), never for a service (OneGate answers
400 there); without them it fails naming the context variables to set, still without asking for
a service. A VM of a service given nothing discovers the SuperLink through ``GET /service``.

The part of the configure phase that decides (``roles/supernode/tasks/locate.yml``) runs on this
host against the emulator's OneGate, with the VM's one_env as one-context writes it.
"""

from __future__ import annotations

import pytest

ADDRESS = "192.0.2.10:9092"
CA_BASE64 = "__CA__"  # never parsed by this phase (the tls role reads it later)
NODE_CONFIG = {"partition-id": 0, "num-partitions": 2}
ROLE = "opennebula.flower.supernode : "
INPUTS = {
    "name": "fl-locate",
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


def write_one_env(emu, vm_id, path):
    env = emu.vm_context_env(vm_id)
    path.write_text("".join(f'export {k}="{v}"\n' for k, v in env.items()))
    return str(path)


def locate(ansible, one_env, **settings):
    return ansible.playbook(
        "phase.yml",
        {
            "role": "supernode",
            "phase": "locate",
            "supernode_one_env_file": one_env,
            "supernode_discovery_interval": 1,
            "supernode_discovery_retries": 5,
            **settings,
        },
    )


def onegate_requests(emu, run_it):
    before = emu.counters()
    run = run_it()
    return run, {
        k: v for k, v in emu.counters()["onegate"].items() if v > before["onegate"].get(k, 0)
    }


@pytest.mark.parametrize(
    "settings",
    [
        {
            "supernode_superlink_address": ADDRESS,
            "supernode_tls_ca_cert": CA_BASE64,
            "supernode_node_config": NODE_CONFIG,
        },
        {
            "supernode_superlink_address": ADDRESS,
            "supernode_tls_enabled": False,
            "supernode_node_config": NODE_CONFIG,
        },
    ],
    ids=["tls", "plain-text"],
)
def test_given_settings_ask_for_no_service(emu, ansible, tmp_path, settings):
    vm_id = emu.add_vm("flower-supernode-1")
    one_env = write_one_env(emu, vm_id, tmp_path / "one_env")

    run, requests = onegate_requests(emu, lambda: locate(ansible, one_env, **settings))

    assert run.rc == 0, run.output
    assert requests == {"GET /vm": 1}, requests
    assert not run.results(ROLE + "Wait for the SuperLink to publish FL_READY")
    facts = run[ROLE + "Note this VM's OneFlow service and what it was not given"]["ansible_facts"]
    assert facts["supernode_onegate_service_id"] == ""
    assert facts["__supernode_not_given"] == []


def test_missing_settings_are_named_without_asking_for_a_service(emu, ansible, tmp_path):
    """The seeds' quick start as first written: the address alone (TLS on by default)."""
    vm_id = emu.add_vm("flower-supernode-1")
    one_env = write_one_env(emu, vm_id, tmp_path / "one_env")

    run, requests = onegate_requests(
        emu, lambda: locate(ansible, one_env, supernode_superlink_address=ADDRESS)
    )

    assert run.rc != 0, run.output
    assert requests == {"GET /vm": 1}, requests
    message = run[ROLE + "Refuse a VM outside a OneFlow service that lacks its settings"]["msg"]
    assert "in no OneFlow service" in message
    assert "ONEAPP_FL_SSL_CA_CERTFILE" in message and "ONEAPP_FL_NODE_CONFIG" in message
    assert "ONEAPP_FL_TLS_ENABLED=NO" in message
    assert "ONEAPP_FL_SUPERLINK_ADDRESS" not in message  # it was given


def test_a_vm_of_a_service_discovers_what_is_not_given(emu, ansible, flower, helpers, tmp_path):
    template_id = emu.add_service_template(flower["7.0"]("flower-fl"))
    service_id = emu.instantiate_service(template_id, INPUTS, wait_running=True)
    vms = helpers.service_vm_ids(emu, service_id)
    superlink, node = vms["superlink"][0], vms["supernode"][1]
    endpoint = f"{helpers.vm_ip(emu, superlink)}:9092"
    assert helpers.onegate_put(emu, superlink, {"FL_READY": "YES", "FL_ENDPOINT": endpoint}) == 200
    one_env = write_one_env(emu, node, tmp_path / "one_env")

    run, requests = onegate_requests(
        emu, lambda: locate(ansible, one_env, supernode_tls_enabled=False)
    )

    assert run.rc == 0, run.output
    assert requests.get("GET /service", 0) >= 1, requests
    facts = run[ROLE + "Take the SuperLink address, CA and partition from the service"][
        "ansible_facts"
    ]
    assert facts["supernode_superlink_address"] == endpoint
    assert facts["supernode_node_config"] == {"partition-id": 1, "num-partitions": 2}
