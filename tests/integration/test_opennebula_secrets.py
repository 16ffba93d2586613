"""The values of a template's password user inputs stay out of the task results (module
arguments and returned data, which -vvv and AWX show); tests/appliance checks deploy.yml's
-vvv output for the OpenNebula password."""

from __future__ import annotations

SECRET = "pw-input-4f7c1e"


def test_password_inputs_never_shown(emu, ansible, flower, helpers):
    body = flower["7.0"]("with-password")
    body["user_inputs"]["DB_PASSWORD"] = "M|password|Database password"
    emu.add_service_template(body)
    run = ansible.playbook(
        "opennebula_password_input.yml",
        {
            "svc_name": "svc-secret",
            "tmpl_name": "with-password",
            "svc_inputs": {"DB_PASSWORD": SECRET, "FL_ROUNDS": 3},
        },
    )
    assert run.rc == 0, run.output
    service_id = helpers.find_service(emu, "svc-secret")
    assert service_id is not None  # the value was sent: OneFlow has it in the service
    with emu.lock:
        body = emu.store.documents[service_id].body
    assert body["user_inputs_values"]["DB_PASSWORD"] == SECRET
    (deploy,) = run.results("Deploy")
    assert deploy["invocation"]["module_args"]["user_inputs"]["DB_PASSWORD"] == (
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    )
    assert SECRET not in run.output
