"""Nothing a VM publishes is templated on the controller.

A SuperNode, with its own OneGate token, writes values that create a file on the controller if
Ansible ever templates them into its own USER_TEMPLATE (``PUT /vm``) and into the SuperLink's
(``PUT /vms/<id>``); the service's name carries one too. Then ``ansible-inventory --list`` with
``compose``, ``groups`` and ``keyed_groups`` on those values, a playbook using the host vars as
``site.yml`` does, and a playbook using registered results of ``onegate_info``,
``oneflow_service_info`` and ``oneflow_service`` as the roles do: no file appears, and the values
arrive unchanged. All of it under the lowest ansible-core ``meta/runtime.yml`` allows and under
the newest the project supports (this venv).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The venvs whose ansible-core runs the tests: the oldest release meta/runtime.yml allows (made by
# scripts/bootstrap.sh) and this one, the newest the project supports.
TOOLCHAINS = {"oldest": ROOT / ".venv-ansible-2.17" / "bin", "newest": Path(sys.executable).parent}
INPUTS = {
    "user_inputs_values": {"FL_ROUNDS": "3", "FL_STRATEGY": "FedAvg"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "edge"}}],
}


def core_version(bin_dir: Path) -> str:
    return subprocess.run(
        [str(bin_dir / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(params=list(TOOLCHAINS))
def toolchain(request: pytest.FixtureRequest) -> Path:
    """The ``bin`` directory of the venv whose ansible-core runs the test."""
    bin_dir = TOOLCHAINS[request.param]
    if not (bin_dir / "ansible-playbook").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{bin_dir.parent} is missing: run scripts/bootstrap.sh")
        pytest.skip(f"{bin_dir.parent} is missing (scripts/bootstrap.sh makes it)")
    if request.param == "oldest":
        runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
        lowest = runtime["requires_ansible"].removeprefix(">=").rsplit(".", 1)[0]
        assert core_version(bin_dir).startswith(f"{lowest}."), "not the oldest allowed release"
    return bin_dir


def payload(markers: Path, name: str, kind: str = "expression") -> str:
    """A value OneGate accepts (no comma, bracket, backslash or double quote) that creates
    ``markers/name`` when templated."""
    command = f"touch {markers}/{name}"
    if kind == "statement":
        return f"{{% if lipsum.__globals__.os.system('{command}') %}}{{% endif %}}"
    if kind == "lookup":  # lookup('pipe', command) without a comma
        return f"{{{{ lookup(*'pipe:{command}'.split(':')) }}}}"
    return f"{{{{ lipsum.__globals__.os.system('{command}') }}}}"


@pytest.fixture
def markers() -> Iterator[Path]:
    """Where the payloads create their files: a short path, names have at most 128 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jinja-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def planted(emu, flower, helpers, markers):
    """A RUNNING service whose name and whose VMs' published keys are payloads."""
    name = f"fl {payload(markers, 'service-name')}"
    template_id = emu.add_service_template(flower["7.0"]("flower-fl"))
    service_id = emu.instantiate_service(template_id, {"name": name, **INPUTS}, wait_running=True)
    vms = helpers.service_vm_ids(emu, service_id)
    superlink, node = vms["superlink"][0], vms["supernode"][0]
    values = {
        "FL_READY": "YES",
        "FL_ENDPOINT": payload(markers, "endpoint"),
        "FL_CA_CERT": payload(markers, "ca-cert", "statement"),
        "FL_LOOKUP": payload(markers, "lookup", "lookup"),
    }
    # the SuperNode writes the SuperLink's USER_TEMPLATE with its own token, and its own
    assert helpers.onegate_put(emu, node, values, target=superlink) == 200
    assert helpers.onegate_put(emu, node, {"FL_NOTE": payload(markers, "note")}) == 200
    # Jinja in a VM name or an attribute name: OpenNebula refuses both (no '{' allowed)
    with pytest.raises(urllib.error.HTTPError):
        helpers.onegate_put(emu, node, {"FL_{{ 1 }}": "x"})
    oned = xmlrpc.client.ServerProxy(emu.oned_url)
    ok, message, *_ = oned.one.vm.rename("oneadmin:password", node, payload(markers, "vm-name"))
    assert not ok and "Invalid NAME, char '{' is not allowed" in message
    return {
        "markers": markers,
        "service_id": service_id,
        "service_name": name,
        "superlink": superlink,
        "node": node,
        "values": values,
    }


def assert_nothing_ran(planted: dict[str, Any], step: str) -> None:
    fired = sorted(p.name for p in planted["markers"].iterdir())
    assert not fired, f"{step}: templated on the controller: {fired}"


def debug_messages(run, task: str) -> dict[str, str]:
    """``msg`` of a debug task, per host."""
    return {
        host: result["msg"]
        for play in run.data.get("plays", [])
        for item in play.get("tasks", [])
        if item["task"]["name"] == task
        for host, result in item["hosts"].items()
    }


def source(path: Path, **config: Any) -> Path:
    path.write_text(json.dumps({"plugin": "opennebula.flower.oneflow", **config}))
    return path


def test_inventory_values_are_not_templated(
    emu, planted, toolchain, ansible_for, helpers, tmp_path
):
    """ansible-inventory --list (compose, groups, keyed_groups) and a playbook using the host vars
    as site.yml does: no payload runs, the values arrive as they were published."""
    ansible = ansible_for(emu, toolchain)
    values, name = planted["values"], planted["service_name"]
    path = source(
        tmp_path / "trust.oneflow.yml",
        services=[planted["service_id"]],
        hostname_format="{service}-{id}",  # host names carry the service's name
        strict=True,
        compose={"flower_endpoint": "FL_ENDPOINT | default('')", "label": "one_service_name"},
        groups={"published_ca": "FL_CA_CERT | default('') | length > 0"},
        keyed_groups=[
            {"key": "FL_LOOKUP | default('none')", "prefix": "lookup"},
            {"key": "one_service_name", "prefix": "service"},
        ],
    )
    strict = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    proc, data = ansible.inventory(path, "--list", env=strict)
    assert_nothing_ran(planted, "ansible-inventory --list")
    assert proc.returncode == 0 and data is not None, proc.stderr
    superlink = f"{name}-{planted['superlink']}"
    hostvars = data["_meta"]["hostvars"][superlink]
    assert {k: hostvars[k] for k in values} == values
    assert hostvars["flower_endpoint"] == values["FL_ENDPOINT"]
    assert hostvars["label"] == hostvars["one_service_name"] == name
    assert data["published_ca"]["hosts"] == [superlink]
    assert any(group.startswith("lookup_") for group in data)

    run = ansible.playbook("trust_inventory.yml", {}, inventory=str(path), env=strict)
    assert_nothing_ran(planted, "the site.yml pattern")
    assert run.rc == 0, run.output
    shown = debug_messages(run, "Show what the SuperLink published")[superlink]
    published = [values["FL_ENDPOINT"], values["FL_CA_CERT"], values["FL_LOOKUP"]]
    assert shown == " ".join([*published, name, superlink])
    endpoint = values["FL_ENDPOINT"]
    assert debug_messages(run, "Show the facts")[superlink] == f"{endpoint} {endpoint}"
    for msg in debug_messages(run, "Show the SuperLink's published endpoint").values():
        assert msg == values["FL_ENDPOINT"]
    address = f"{helpers.vm_ip(emu, planted['superlink'])}:9092"  # supernode/tasks/inventory.yml
    shown = debug_messages(run, "Show the fact")
    assert list(shown.values()) == [f"{values['FL_CA_CERT']} {address}"] * 2  # both SuperNodes


def test_module_results_are_not_templated(emu, planted, toolchain, ansible_for):
    """Registered results of onegate_info, oneflow_service_info and oneflow_service used as the
    roles use them: no payload runs. ansible-core marks every registered module result unsafe
    (2.17: TaskExecutor wraps it with wrap_var; 2.19: module output is never trusted as a
    template), so the modules need no action plugin of their own; this test is the proof."""
    ansible = ansible_for(emu, toolchain)
    node = planted["node"]
    og = {
        "onegate_endpoint": emu.onegate_url,
        "onegate_vmid": node,
        "onegate_token": emu.vm_token(node),
    }
    run = ansible.playbook("trust_results.yml", {"og": og, "service_id": planted["service_id"]})
    assert_nothing_ran(planted, "registered results")
    assert run.rc == 0, run.output
    values, name = planted["values"], planted["service_name"]
    discovered = " ".join(run["Show what was discovered"]["msg"].split())
    assert discovered.startswith(f"{values['FL_ENDPOINT']} {values['FL_CA_CERT']} ")
    assert name in discovered
    assert values["FL_ENDPOINT"] in run["Show the service read by the operator"]["msg"]
    shown = run["Show the SuperLink of the service"]["msg"]
    assert shown == f"{name} {values['FL_CA_CERT']}"


def documented_example() -> dict[str, Any]:
    """The first EXAMPLES document of the inventory plugin, as written."""
    code = (ROOT / "plugins" / "inventory" / "oneflow.py").read_text()
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES":
            return yaml.safe_load(ast.literal_eval(node.value))
    raise AssertionError("no EXAMPLES")


def test_documented_example_with_strict(emu, planted, toolchain, ansible_for, tmp_path):
    """The plugin's own example, with strict: true, lists hosts with and without FL_ENDPOINT."""
    example = documented_example()
    assert "flower_endpoint" in example["compose"]
    ansible = ansible_for(emu, toolchain)
    example.update(
        services=[planted["service_id"]],
        strict=True,
        cache_connection=str(tmp_path / "cache"),  # not the user's ~/.cache
    )
    path = tmp_path / "flower.oneflow.yml"
    path.write_text(yaml.safe_dump(example))
    proc, data = ansible.inventory(
        path, "--list", env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    )
    assert proc.returncode == 0 and data is not None, proc.stderr
    hostvars = data["_meta"]["hostvars"]
    assert (
        hostvars[f"superlink-{planted['superlink']}"]["flower_endpoint"]
        == (planted["values"]["FL_ENDPOINT"])
    )
    assert len(hostvars) == 3
    assert_nothing_ran(planted, "the documented example")
