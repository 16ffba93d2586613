"""playbooks/boot.yml with a bad context: every context variable of the appliance, each with
an invalid value from the spec's examples, is refused (all named at once) before anything is
changed on the VM, and the failure reaches OneGate as FL_ERROR (FL_READY=NO).

The playbook runs on this host, as the boot hook runs it on a VM; the context check is its
first step, so a bad context stops it before any role touches the host."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOT = ROOT / "playbooks" / "boot.yml"
SPEC = yaml.safe_load((ROOT / "meta" / "context_variables.yml").read_text())["variables"]


def invalid_context(role):
    """Each variable of the role with its first invalid example (placeholders need others)."""
    return {
        var["name"]: next(t for t in var["examples"]["invalid"] if not t.startswith("__"))
        for var in SPEC
        if role in var["roles"]
    }


def shell_quoted(value):
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    )
    return f'"{escaped}"'


def boot(emu, ansible, tmp_path, vm_id, context, settings):
    """boot.yml as the VM's boot hook runs it: ``context`` on top of the VM's own (one_env),
    ``settings`` the baked appliance.yml."""
    env = {**emu.vm_context_env(vm_id), **context}
    one_env = tmp_path / "one_env"
    one_env.write_text("".join(f"export {k}={shell_quoted(v)}\n" for k, v in env.items()))
    baked = tmp_path / "appliance.yml"
    baked.write_text(settings)
    return ansible.playbook(
        str(BOOT),
        {"flower_appliance_settings": str(baked), "flower_one_env_file": str(one_env)},
    )


@pytest.mark.parametrize("role", ["superlink", "supernode"])
def test_every_bad_variable_is_refused_before_anything_changes(emu, ansible, tmp_path, role):
    vm_id = emu.add_vm(f"flower-{role}")
    bad = invalid_context(role)
    run = boot(emu, ansible, tmp_path, vm_id, bad, f"flower_appliance_role: {role}\n")

    assert run.rc != 0, run.output
    check = run["Read and check the context variables"]
    assert check["failed"]
    errors = check["errors"]
    assert len(errors) >= len(bad)
    for name in bad:
        assert any(e.startswith(name) for e in errors), f"{name} was not refused: {errors}"
    # Nothing after the check ran; the one change is the report to OneGate.
    assert not run.results("Docker engine settings")
    changed = [
        task["task"]["name"]
        for play in run.data["plays"]
        for task in play["tasks"]
        if task["hosts"]["localhost"].get("changed")
    ]
    assert changed == ["Publish the failure through OneGate (FL_ERROR)"]
    published = emu.vm(vm_id).user_template
    assert published["FL_READY"] == "NO"
    for name in bad:
        assert name in published["FL_ERROR"]


def test_a_release_or_framework_the_image_does_not_hold_is_refused(emu, ansible, tmp_path):
    """A baked SuperNode (image loaded from an archive the bake removed) booted with a context
    asking for another Flower release and framework."""
    vm_id = emu.add_vm("flower-supernode")
    asked = {"ONEAPP_FLOWER_VERSION": "1.41.0", "ONEAPP_FL_FRAMEWORK": "pytorch"}
    settings = (
        "flower_appliance_role: supernode\n"
        "supernode_image_source: load\n"
        f"supernode_image_archive: {tmp_path / 'removed-at-bake.tar'}\n"
    )
    run = boot(emu, ansible, tmp_path, vm_id, asked, settings)

    assert run.rc != 0, run.output
    refusal = run["Refuse a Flower release or framework the image does not hold"]
    assert refusal["failed"]
    message = refusal["msg"]
    assert "ONEAPP_FLOWER_VERSION=1.41.0 with ONEAPP_FL_FRAMEWORK=pytorch" in message
    assert "localhost/flower-supernode:1.41.0-pytorch" in message
    assert "this appliance image holds" in message
    assert not run.results("Docker engine settings")
    published = emu.vm(vm_id).user_template
    assert published["FL_READY"] == "NO"
    assert "ONEAPP_FLOWER_VERSION=1.41.0" in published["FL_ERROR"]
