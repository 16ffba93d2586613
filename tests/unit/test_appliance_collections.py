"""The roles that run on the VMs use only collections the appliance image carries.

An appliance's boot runs the configure phase with the collections the appliance role packs
(`appliance_collections`); a module of another collection fails the boot when the task is
parsed, before any rescue can publish FL_ERROR. The deploy role runs on the controller.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTROLLER_ROLES = {"deploy"}
BUILTIN = {"ansible.builtin", "opennebula.flower"}
# A task's module: an FQCN key at the start of a task mapping entry.
MODULE_RE = re.compile(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_0-9]+:(?:\s|$)", re.MULTILINE)


def _carried():
    defaults = yaml.safe_load((REPO / "roles/appliance/defaults/main.yml").read_text())
    return set(defaults["appliance_collections"]) | BUILTIN


def _used(paths):
    used = {}
    for path in paths:
        for match in MODULE_RE.finditer(path.read_text()):
            used.setdefault(match.group(1), []).append(str(path.relative_to(REPO)))
    return used


def test_vm_roles_use_only_carried_collections():
    paths = [
        path
        for role in sorted((REPO / "roles").iterdir())
        if role.name not in CONTROLLER_ROLES
        for path in sorted(role.glob("tasks/*.yml")) + sorted(role.glob("handlers/*.yml"))
    ] + [REPO / "playbooks" / "boot.yml"]
    missing = {name: where for name, where in _used(paths).items() if name not in _carried()}
    assert missing == {}, f"collections the appliance image lacks: {missing}"


def test_the_check_sees_modules():
    used = _used([REPO / "roles" / "gpu" / "tasks" / "dcgm.yml"])
    assert "community.docker" in used and "ansible.builtin" in used
