"""Context variables: the spec, validation, role variables, user inputs, the action, the docs.

The per-variable tests are parametrized from meta/context_variables.yml itself: a variable
without ``examples`` (one valid and one invalid value at least) fails ``load_spec``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from ansible_collections.opennebula.flower.plugins.module_utils._context import (
    USER_INPUTS_FIELD,
    SpecError,
    load_spec,
    mask,
    to_role_vars,
    user_input,
    user_inputs,
    user_inputs_section,
    validate,
)

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
SPEC_FILE = ROOT / "meta" / "context_variables.yml"
RAW = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
SPEC = load_spec(RAW)
BY_NAME = {var["name"]: var for var in SPEC}

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbc\n-----END EC PRIVATE KEY-----\n"
PLACEHOLDERS = {
    "__CA_PEM__": CA_PEM,
    "__CA_PEM_BASE64__": base64.b64encode(CA_PEM.encode()).decode(),
    "__KEY_PEM__": KEY_PEM,
    "__KEY_PEM_BASE64__": base64.b64encode(KEY_PEM.encode()).decode(),
}
# What a valid value of a variable needs from the others (rules between variables).
COMPANIONS = {
    "ONEAPP_FL_SSL_CA_CERTFILE": {"ONEAPP_FL_TLS_ENABLED": "YES"},
    "ONEAPP_FL_SSL_CERTFILE": {"ONEAPP_FL_TLS_ENABLED": "YES"},
    "ONEAPP_FL_SSL_KEYFILE": {"ONEAPP_FL_TLS_ENABLED": "YES"},
    "ONEAPP_FL_CHECKPOINT_RESUME": {"ONEAPP_FL_CHECKPOINT_ENABLED": "YES"},
    "ONEAPP_FL_MIN_FIT_CLIENTS": {"ONEAPP_FL_MIN_AVAILABLE_CLIENTS": "100"},
    "ONEAPP_FL_MIN_EVALUATE_CLIENTS": {"ONEAPP_FL_MIN_AVAILABLE_CLIENTS": "100"},
    "ONEAPP_FL_MIN_AVAILABLE_CLIENTS": {
        "ONEAPP_FL_MIN_FIT_CLIENTS": "1",
        "ONEAPP_FL_MIN_EVALUATE_CLIENTS": "1",
    },
}
OPERATOR_CERTS = {
    "ONEAPP_FL_TLS_ENABLED": "YES",
    "ONEAPP_FL_SSL_CA_CERTFILE": PLACEHOLDERS["__CA_PEM_BASE64__"],
    "ONEAPP_FL_SSL_CERTFILE": PLACEHOLDERS["__CA_PEM_BASE64__"],
    "ONEAPP_FL_SSL_KEYFILE": PLACEHOLDERS["__KEY_PEM_BASE64__"],
}


def example(text):
    return PLACEHOLDERS.get(text, text)


def cases(kind):
    for var in SPEC:
        for text in var["examples"][kind]:
            for role in var["roles"]:
                yield pytest.param(var["name"], example(text), role, id=f"{var['name']}-{role}")


def env_for(name, text, role):
    env = dict(COMPANIONS.get(name, {}))
    if role == "superlink" and name.startswith("ONEAPP_FL_SSL_"):
        env.update(OPERATOR_CERTS)  # the three come together
    env[name] = text
    return env


# ------------------------------------------------------------------------------- the spec
def test_spec_counts_and_names():
    names = [var["name"] for var in SPEC]
    assert len(names) == len(set(names))
    assert all(n == "ONEAPP_FLOWER_VERSION" or n.startswith("ONEAPP_FL_") for n in names)
    for seed_name in (
        "ONEAPP_FLOWER_VERSION",
        "ONEAPP_FL_TLS_ENABLED",
        "ONEAPP_FL_LOG_LEVEL",
        "ONEAPP_FL_LOG_FORMAT",
        "ONEAPP_FL_NUM_ROUNDS",
        "ONEAPP_FL_STRATEGY",
        "ONEAPP_FL_MIN_FIT_CLIENTS",
        "ONEAPP_FL_MIN_EVALUATE_CLIENTS",
        "ONEAPP_FL_MIN_AVAILABLE_CLIENTS",
        "ONEAPP_FL_CHECKPOINT_ENABLED",
        "ONEAPP_FL_METRICS_ENABLED",
        "ONEAPP_FL_NODE_CONFIG",
        "ONEAPP_FL_GPU_ENABLED",
        "ONEAPP_FL_CUDA_VISIBLE_DEVICES",
        "ONEAPP_FL_DCGM_ENABLED",
        "ONEAPP_FL_SSL_CA_CERTFILE",
        "ONEAPP_FL_SSL_CERTFILE",
        "ONEAPP_FL_SSL_KEYFILE",
        "ONEAPP_FL_GPU_MEMORY_FRACTION",
        "ONEAPP_FL_METRICS_PORT",
        "ONEAPP_FL_SUPERLINK_ADDRESS",
        "ONEAPP_FL_FRAMEWORK",
        "ONEAPP_FL_CERT_EXTRA_SAN",
        "ONEAPP_FL_FEDPROX_MU",
        "ONEAPP_FL_FEDADAM_TAU",
        "ONEAPP_FL_BYZANTINE_CLIENTS",
        "ONEAPP_FL_TRIM_RATIO",
        "ONEAPP_FL_CHECKPOINT_INTERVAL",
        "ONEAPP_FL_CHECKPOINT_RESUME",
        "ONEAPP_FL_USE_CASE",
    ):
        assert seed_name in names


def test_variable_without_examples_is_refused():
    raw = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    del raw["variables"][0]["examples"]
    with pytest.raises(SpecError, match="examples"):
        load_spec(raw)


def test_spec_typo_and_missing_note_are_refused():
    raw = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    raw["variables"][0]["defualt"] = "x"
    next(var for var in raw["variables"] if var["maps_to"] is None).pop("note")
    with pytest.raises(SpecError) as info:
        load_spec(raw)
    assert "defualt" in str(info.value) and "note" in str(info.value)


@pytest.mark.parametrize("role", ["superlink", "supernode"])
def test_defaults_are_valid(role):
    values, errors = validate(SPEC, {}, role)
    assert errors == []
    assert values["ONEAPP_FLOWER_VERSION"] == "1.42.0"
    assert values["ONEAPP_FL_TLS_ENABLED"] is True


# Roles a superlink or supernode configure includes: their variables may be context targets.
INCLUDED_ROLES = ("tls", "firewall", "gpu")


def test_maps_to_names_role_variables_of_the_roles():
    for var in SPEC:
        for role, target in (var.get("maps_to") or {}).items():
            included = [r for r in INCLUDED_ROLES if target.startswith(f"{r}_")]
            if included:
                defaults = ROOT / "roles" / included[0] / "defaults" / "main.yml"
            else:
                assert target.startswith(f"{role}_"), (var["name"], target)
                defaults = ROOT / "roles" / role / "defaults" / "main.yml"
            name, _, key = target.partition(".")
            assert name in yaml.safe_load(defaults.read_text()), (var["name"], target)
            if key:  # a key of a dict variable: the role must know it
                known = yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())
                assert key in known[f"__{name}_keys"], (var["name"], target)


# ------------------------------------------------------------------------ every variable
@pytest.mark.parametrize(("name", "text", "role"), list(cases("valid")))
def test_valid_example(name, text, role):
    values, errors = validate(SPEC, env_for(name, text, role), role)
    assert errors == []
    assert values[name] is not None


@pytest.mark.parametrize(("name", "text", "role"), list(cases("invalid")))
def test_invalid_example(name, text, role):
    values, errors = validate(SPEC, env_for(name, text, role), role)
    mine = [e for e in errors if e.startswith(f"{name}=")]
    assert len(mine) == 1, errors
    assert "allowed:" in mine[0]
    if BY_NAME[name].get("secret"):
        assert text not in mine[0] and "<secret," in mine[0]
    else:
        assert repr(text if len(text) <= 80 else text[:77] + "...") in mine[0]
    assert values[name] is None


# ---------------------------------------------------------------------------- validation
def test_all_errors_at_once():
    env = {
        "ONEAPP_FL_NUM_ROUNDS": "three",
        "ONEAPP_FL_STRATEGY": "fedavg",
        "ONEAPP_FL_TLS_ENABLED": "maybe",
        "ONEAPP_FL_LOG_LEVEL": "LOUD",
        "ONEAPP_FL_NUM_ROUND": "3",
    }
    _, errors = validate(SPEC, env, "superlink")
    assert len(errors) == 5, errors
    text = "\n".join(errors)
    assert "ONEAPP_FL_NUM_ROUNDS='three': not an integer; allowed: an integer from 1 to" in text
    assert "did you mean FedAvg?" in text and "FedProx" in text
    assert "ONEAPP_FL_TLS_ENABLED='maybe'" in text and "YES or NO" in text
    assert "ONEAPP_FL_NUM_ROUND: unknown context variable; did you mean ONEAPP_FL_NUM_ROUNDS?" in (
        text
    )


def test_other_role_variables_are_ignored():
    values, errors = validate(SPEC, {"ONEAPP_FL_NUM_ROUNDS": "x"}, "supernode")
    assert errors == [] and "ONEAPP_FL_NUM_ROUNDS" not in values


def test_empty_is_default_and_alias_is_read():
    values, errors = validate(
        SPEC, {"ONEAPP_FL_LOG_LEVEL": "", "ONEAPP_FL_ML_FRAMEWORK": "pytorch"}, "supernode"
    )
    assert errors == []
    assert values["ONEAPP_FL_LOG_LEVEL"] == "INFO"
    assert values["ONEAPP_FL_FRAMEWORK"] == "pytorch"
    _, errors = validate(SPEC, {"ONEAPP_FL_ML_FRAMEWORK": "jax"}, "supernode")
    assert errors and errors[0].startswith("ONEAPP_FL_ML_FRAMEWORK (alias of ONEAPP_FL_FRAMEWORK)")


def test_conversions():
    env = {
        "ONEAPP_FL_NODE_CONFIG": 'partition-id=0 ratio=0.5 site="h 1" gpu=true name=abc',
        "ONEAPP_FL_GPU_MEMORY_FRACTION": "0.8",
        "ONEAPP_FL_MAX_RETRIES": "5",
    }
    values, errors = validate(SPEC, env, "supernode")
    assert errors == []
    assert values["ONEAPP_FL_NODE_CONFIG"] == {
        "partition-id": 0,
        "ratio": 0.5,
        "site": "h 1",
        "gpu": True,
        "name": "abc",
    }
    assert values["ONEAPP_FL_GPU_MEMORY_FRACTION"] == 0.8
    assert values["ONEAPP_FL_MAX_RETRIES"] == 5
    assert values["ONEAPP_FL_GPU_MEMORY_FRACTION"] is not None
    values, _ = validate(SPEC, {"ONEAPP_FL_CERT_EXTRA_SAN": "IP:1.2.3.4, DNS:a.b"}, "superlink")
    assert values["ONEAPP_FL_CERT_EXTRA_SAN"] == ["IP:1.2.3.4", "DNS:a.b"]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"ONEAPP_FL_MIN_FIT_CLIENTS": "5", "ONEAPP_FL_MIN_AVAILABLE_CLIENTS": "3"},
            "ONEAPP_FL_MIN_AVAILABLE_CLIENTS=3: smaller than ONEAPP_FL_MIN_FIT_CLIENTS=5",
        ),
        (
            {"ONEAPP_FL_STRATEGY": "Bulyan", "ONEAPP_FL_BYZANTINE_CLIENTS": "1"},
            "needs at least 7",
        ),
        ({"ONEAPP_FL_CHECKPOINT_RESUME": "YES"}, "needs ONEAPP_FL_CHECKPOINT_ENABLED=YES"),
        (
            {"ONEAPP_FL_TLS_ENABLED": "YES", "ONEAPP_FL_SSL_CERTFILE": CA_PEM},
            "ONEAPP_FL_SSL_CA_CERTFILE, ONEAPP_FL_SSL_KEYFILE missing",
        ),
        ({**OPERATOR_CERTS, "ONEAPP_FL_TLS_ENABLED": "NO"}, "ONEAPP_FL_TLS_ENABLED=NO"),
    ],
)
def test_rules_between_variables(env, fragment):
    _, errors = validate(SPEC, env, "superlink")
    assert len(errors) == 1 and fragment in errors[0], errors


def test_secret_never_echoed():
    key = "my-very-secret-private-key-material"
    values, errors = validate(SPEC, {**OPERATOR_CERTS, "ONEAPP_FL_SSL_KEYFILE": key}, "superlink")
    assert errors and all(key not in e for e in errors)
    assert f"<secret, {len(key)} characters>" in errors[0]
    values, errors = validate(SPEC, OPERATOR_CERTS, "superlink")
    assert errors == []
    assert mask(SPEC, values)["ONEAPP_FL_SSL_KEYFILE"] == "********"
    assert mask(SPEC, values)["ONEAPP_FL_SSL_CERTFILE"] == OPERATOR_CERTS["ONEAPP_FL_SSL_CERTFILE"]


# ------------------------------------------------------------------------ role variables
def test_to_role_vars_superlink():
    values, errors = validate(
        SPEC, {**OPERATOR_CERTS, "ONEAPP_FL_ISOLATION": "process"}, "superlink"
    )
    assert errors == []
    role_vars = to_role_vars(SPEC, values, "superlink")
    assert role_vars == {
        "superlink_flower_version": "1.42.0",
        "superlink_log_level": "INFO",
        "superlink_log_format": "text",
        "superlink_metrics_enabled": False,
        "superlink_metrics_port": 9101,
        "superlink_isolation": "process",
        "superlink_database_enabled": True,
        "superlink_tls_enabled": True,
        "superlink_training": {
            "num_rounds": 3,
            "strategy": "FedAvg",
            "min_fit_clients": 2,
            "min_evaluate_clients": 2,
            "min_available_clients": 2,
            "fedprox_mu": 1.0,
            "fedadam_tau": 1e-9,
            "byzantine_clients": 0,
            "trim_ratio": 0.2,
            "checkpoint_enabled": False,
            "checkpoint_interval": 1,
            "checkpoint_resume": False,
        },
        "tls_provided_ca": OPERATOR_CERTS["ONEAPP_FL_SSL_CA_CERTFILE"],
        "tls_provided_cert": OPERATOR_CERTS["ONEAPP_FL_SSL_CERTFILE"],
        "tls_provided_key": OPERATOR_CERTS["ONEAPP_FL_SSL_KEYFILE"],
        "tls_side": "server",
        "tls_ca_mode": "provided",
        "firewall_enabled": True,
    }


def test_to_role_vars_supernode():
    env = {
        "ONEAPP_FL_SUPERLINK_ADDRESS": "10.0.0.5:9092",
        "ONEAPP_FL_NODE_CONFIG": "partition-id=1 num-partitions=2",
        "ONEAPP_FL_FRAMEWORK": "pytorch",
        "ONEAPP_FL_MAX_WAIT_TIME": "60",
        "ONEAPP_FL_TLS_ENABLED": "NO",
        "ONEAPP_FL_GPU_ENABLED": "YES",
        "ONEAPP_FL_CUDA_VISIBLE_DEVICES": "0,1",
        "ONEAPP_FL_GPU_MEMORY_FRACTION": "0.5",
    }
    values, errors = validate(SPEC, env, "supernode")
    assert errors == []
    assert to_role_vars(SPEC, values, "supernode") == {
        "supernode_flower_version": "1.42.0",
        "supernode_log_level": "INFO",
        "supernode_log_format": "text",
        "supernode_tls_enabled": False,
        "supernode_discovery_backoff": "fixed",
        "supernode_superlink_address": "10.0.0.5:9092",
        "supernode_max_retries": 0,
        "supernode_max_wait_time": 60,
        "supernode_node_config": {"partition-id": 1, "num-partitions": 2},
        "supernode_framework": "pytorch",
        "firewall_enabled": True,
        "gpu_enabled": True,
        "gpu_cuda_visible_devices": "0,1",
        "gpu_memory_fraction": 0.5,
        "gpu_dcgm_enabled": False,
    }


# --------------------------------------------------------------------------- user inputs
@pytest.mark.parametrize("schema", ["7.0", "6.10"])
def test_user_inputs_format(schema):
    inputs = user_inputs(SPEC, "superlink", schema)
    assert set(inputs) == {
        v["name"] for v in SPEC if "superlink" in v.get("oneflow_roles", v["roles"])
    }
    # Every VM of a service reads its siblings' CONTEXT: no key, no certificate without its key.
    assert {
        "ONEAPP_FL_SSL_KEYFILE",
        "ONEAPP_FL_SSL_CERTFILE",
        "ONEAPP_FL_SSL_CA_CERTFILE",
    }.isdisjoint(inputs)
    assert inputs["ONEAPP_FL_STRATEGY"] == (
        "O|list|Aggregation strategy.|FedAvg,FedProx,FedAdam,Krum,Bulyan,FedTrimmedAvg|FedAvg"
    )
    assert (
        inputs["ONEAPP_FL_NUM_ROUNDS"] == "O|range|Number of federated training rounds.|1..100000|3"
    )
    assert inputs["ONEAPP_FL_TLS_ENABLED"].startswith(
        "O|boolean|Encrypt the Fleet and Control APIs"
    )
    assert inputs["ONEAPP_FL_TLS_ENABLED"].endswith("| |YES")
    assert inputs["ONEAPP_FLOWER_VERSION"].startswith("O|text|Flower version")
    assert inputs["ONEAPP_FL_TRIM_RATIO"].split("|")[1:4:2] == ["range-float", "0.0..0.49"]
    assert inputs["ONEAPP_FL_FEDPROX_MU"].split("|")[1] == "number-float"
    for text in inputs.values():
        parts = text.split("|")
        assert len(parts) == 5 and parts[0] in ("M", "O") and "\n" not in text
    section = user_inputs_section(SPEC, "supernode", schema)
    assert list(section) == [USER_INPUTS_FIELD[schema]]
    assert "ONEAPP_FL_SUPERLINK_ADDRESS" in section[USER_INPUTS_FIELD[schema]]
    assert "ONEAPP_FL_NUM_ROUNDS" not in section[USER_INPUTS_FIELD[schema]]
    assert section[USER_INPUTS_FIELD[schema]]["ONEAPP_FL_SSL_CA_CERTFILE"].split("|")[1] == "text64"


def test_user_input_mandatory_and_all_roles():
    assert user_input({**BY_NAME["ONEAPP_FL_NUM_ROUNDS"], "mandatory": True}).startswith("M|")
    assert len(user_inputs(SPEC)) == len([v for v in SPEC if v.get("oneflow_roles", v["roles"])])
    assert not any(BY_NAME[name].get("secret") for name in user_inputs(SPEC))
    with pytest.raises(ValueError, match="schema"):
        user_inputs(SPEC, schema="5.12")


# --------------------------------------------------------------------------------- action
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Validate
      opennebula.flower.flower_context:
        role: "{{ ctx_role }}"
        one_env: "{{ ctx_one_env }}"
        variables: "{{ ctx_variables }}"
        fail_on_error: "{{ ctx_fail }}"
      register: ctx
    - name: Save the result
      ansible.builtin.copy:
        content: "{{ ctx | to_json }}"
        dest: "{{ ctx_out }}"
        mode: "0600"
"""


def run_playbook(tmp_path, one_env, variables=None, role="supernode", fail=True):
    env_file = tmp_path / "one_env"
    env_file.write_text(one_env, encoding="utf-8")
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(PLAYBOOK), encoding="utf-8")
    extra = {
        "ctx_role": role,
        "ctx_one_env": str(env_file),
        "ctx_variables": variables or {},
        "ctx_fail": fail,
        "ctx_out": str(tmp_path / "result.json"),
        "ansible_python_interpreter": sys.executable,
    }
    proc = subprocess.run(
        [
            str(PLAYBOOK_BIN) if PLAYBOOK_BIN.exists() else "ansible-playbook",
            str(playbook),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            json.dumps(extra),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_STDOUT_CALLBACK": "default"},
        check=False,
    )
    return proc, proc.stdout + proc.stderr


def test_action_plugin_through_ansible_playbook(tmp_path):
    one_env = textwrap.dedent(
        """\
        export VMID="7"
        export ONEAPP_FL_SUPERLINK_ADDRESS="10.0.0.5:9092"
        export ONEAPP_FL_NODE_CONFIG="partition-id=0 num-partitions=2"
        export ONEAPP_FL_TLS_ENABLED="YES"
        """
    )
    proc, output = run_playbook(tmp_path, one_env, {"ONEAPP_FL_MAX_RETRIES": 3})
    assert proc.returncode == 0, output
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["errors"] == []
    assert result["role_vars"]["supernode_superlink_address"] == "10.0.0.5:9092"
    assert result["role_vars"]["supernode_node_config"] == {"partition-id": 0, "num-partitions": 2}
    assert result["role_vars"]["supernode_max_retries"] == 3
    assert result["role_vars"]["tls_side"] == "client"


def test_action_plugin_lists_every_error(tmp_path):
    key = "not-a-key-but-secret"
    one_env = textwrap.dedent(
        f"""\
        export ONEAPP_FL_NUM_ROUNDS="zero"
        export ONEAPP_FL_STRATEGY="FedSGD"
        export ONEAPP_FL_TLS_ENABLED="YES"
        export ONEAPP_FL_SSL_KEYFILE="{key}"
        """
    )
    proc, output = run_playbook(tmp_path, one_env, role="superlink")
    assert proc.returncode != 0, output
    flat = " ".join(output.split())
    assert "invalid context variable(s) for the superlink" in flat
    for fragment in ("ONEAPP_FL_NUM_ROUNDS='zero'", "ONEAPP_FL_STRATEGY='FedSGD'", "<secret,"):
        assert fragment in flat, flat
    assert key not in output


# ---------------------------------------------------------------------------------- docs
def test_context_docs_in_sync():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "context_docs.py"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_context_docs_detects_stale(tmp_path):
    stale = tmp_path / "context-variables.md"
    stale.write_text("# old\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "context_docs.py"), "check", "--output", str(stale)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "stale" in proc.stdout
