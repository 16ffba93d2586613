#!/usr/bin/env python3
"""Generate the OneFlow service template of a Flower federation from meta/context_variables.yml.

Usage::

    tools/oneflow_template.py render   # (re)write the four oneflow/flower-service*.yaml
    tools/oneflow_template.py check    # exit 1 when a file is stale or OneFlow would refuse it

Four files come out of one description (``ROLES``, ``VARIANTS``, ``template_70`` below) and the
spec, two variants (``cpu``: ``flower-service*.yaml``; ``gpu``: ``flower-service-gpu*.yaml``, whose
supernode role is meant for the GPU SuperNode VM template that ``roles/deploy`` registers with
``flower_supernode_gpu=true``, with ``ONEAPP_FL_GPU_ENABLED`` defaulting to ``YES``) in two schemas:

* ``oneflow/flower-service.yaml`` (``-gpu.yaml``): OpenNebula 7.0 schema. Variables read by
  both appliances are service-level ``user_inputs``; variables of one appliance are
  ``user_inputs`` of its role. OneFlow 7.0 copies every value into the VM template and its CONTEXT.
* ``oneflow/flower-service-6.10.yaml`` (``-gpu-6.10.yaml``): the 6.10 schema (``vm_template``,
  ``custom_attrs`` at service and role level, ``vm_template_contents`` text). OneFlow 6.10 only
  substitutes ``$NAME`` inside ``vm_template_contents``, so each role's text carries
  ``NAME = "$NAME"`` for every input it reads (the VM templates' CONTEXT then passes ``$NAME``
  on to the guest).

The GPU devices themselves (``PCI``) are in the GPU VM template, not here: OneFlow 7.0 does not
substitute user input values inside a role's ``template_contents`` (only ``NETWORK_ID`` and
``${role.xpath}``), and oned refuses a ``PCI`` whose ``VENDOR``/``DEVICE``/``CLASS`` is not hex
(``$NAME`` is substituted in ``CONTEXT`` and ``SCHED_REQUIREMENTS`` only), so the PCI selection is
a deploy-time choice (``flower_gpu_pci_devices``); the GPU user inputs are the context variables
the SuperNode reads (which of its GPUs the ClientApps use, memory share, DCGM).

``check`` also validates every body with the OneFlow schema code of the emulator
(``opennebula_emulator/flow_schema.py``, a transcription of ``service_template.rb``). The
``template_id``/``vm_template`` values are placeholders (0 and 1): ``playbooks/deploy.yml``
replaces them with the ids of the VM templates it registers. Options ``--spec`` and
``--output-dir`` point at other files (tests).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from spec_tool import (
    REPO_ROOT,
    SPEC,
    SpecUnreadable,
    context,
    load_variables,
    report,
    write_if_changed,
)

OUTPUT_DIR = REPO_ROOT / "oneflow"
VERSIONS = ("7.0", "6.10")
# variant -> (file name stem, service template name, description, changed input defaults)
VARIANTS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "cpu": (
        "flower-service",
        "flower-federation",
        "Flower federated learning: one SuperLink, SuperNodes that discover it through OneGate",
        {},
    ),
    "gpu": (
        "flower-service-gpu",
        "flower-federation-gpu",
        "Flower federated learning: one SuperLink, GPU SuperNodes (PCI passthrough) that "
        "discover it through OneGate",
        {"ONEAPP_FL_GPU_ENABLED": "YES"},
    ),
}
FILES = {
    (variant, version): f"{stem}{'' if version == '7.0' else '-' + version}.yaml"
    for variant, (stem, *_) in VARIANTS.items()
    for version in VERSIONS
}
NETWORK = "Private"
NETWORK_INPUT = "M|network|Network of the SuperLink and the SuperNodes| |id:0"
# name, placeholder VM template id, cardinality, min_vms, max_vms, parents
ROLES = (
    ("superlink", 0, 1, 1, 1, []),
    ("supernode", 1, 2, 2, 10, ["superlink"]),
)


def inputs(variables: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(service-level inputs, {role: role-level inputs}) in spec order."""
    service: dict[str, str] = {}
    per_role: dict[str, dict[str, str]] = {role: {} for role, *_ in ROLES}
    for var in variables:
        roles = [r for r in context.oneflow_roles(var) if r in per_role]
        if set(roles) == set(per_role):
            service[var["name"]] = context.user_input(var)
        for role in roles if len(roles) == 1 else []:
            per_role[role][var["name"]] = context.user_input(var)
    return service, per_role


def with_defaults(variables: list[dict[str, Any]], variant: str) -> list[dict[str, Any]]:
    """The spec's variables with the variant's own defaults."""
    defaults = VARIANTS[variant][3]
    return [dict(v, default=defaults[v["name"]]) if v["name"] in defaults else v for v in variables]


def template_70(variables: list[dict[str, Any]], variant: str = "cpu") -> dict[str, Any]:
    _, name, description, _ = VARIANTS[variant]
    service, per_role = inputs(with_defaults(variables, variant))
    roles = []
    for role_name, tid, cardinality, low, high, parents in ROLES:
        role: dict[str, Any] = {
            "name": role_name,
            "type": "vm",
            "template_id": tid,
            "cardinality": cardinality,
            "min_vms": low,
            "max_vms": high,
        }
        if parents:
            role["parents"] = list(parents)
        role["template_contents"] = {"NIC": [{"NETWORK_ID": f"${NETWORK}"}]}
        if per_role[role_name]:
            role["user_inputs"] = per_role[role_name]
        roles.append(role)
    return {
        "name": name,
        "description": description,
        "deployment": "straight",
        "ready_status_gate": True,
        "networks": {NETWORK: NETWORK_INPUT},
        "user_inputs": service,
        "roles": roles,
    }


def template_610(variables: list[dict[str, Any]], variant: str = "cpu") -> dict[str, Any]:
    service, per_role = inputs(with_defaults(variables, variant))
    body = template_70(variables, variant)
    out = {k: v for k, v in body.items() if k not in ("user_inputs", "roles")}
    out["custom_attrs"] = service
    out["roles"] = []
    for role in body["roles"]:
        names = [*service, *per_role[role["name"]]]
        lines = [f'NIC = [ NETWORK_ID = "${NETWORK}" ]'] + [f'{n} = "${n}"' for n in names]
        new = {
            k: v
            for k, v in role.items()
            if k not in ("type", "template_id", "template_contents", "user_inputs")
        }
        new["vm_template"] = role["template_id"]
        new["vm_template_contents"] = "\n".join(lines) + "\n"
        if per_role[role["name"]]:
            new["custom_attrs"] = per_role[role["name"]]
        out["roles"].append(new)
    return out


HEADER = (
    "# Generated from meta/context_variables.yml by tools/oneflow_template.py render;\n"
    "# do not edit.\n"
    "# OneFlow service template of a Flower federation, OpenNebula {version} schema.\n"
    "{gpu}"
    "# {ids} are placeholders: playbooks/deploy.yml fills in the ids of the\n"
    "# VM templates it registers (or edit them before `oneflow-template create`).\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style that yamllint --strict accepts: indented sequences, folded long strings."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


GPU_HEADER = (
    "# GPU variant: the supernode role is meant for the GPU SuperNode VM template\n"
    "# (PCI passthrough, q35, UEFI) that playbooks/deploy.yml registers with\n"
    "# flower_supernode_gpu=true.\n"
)


def render(variables: list[dict[str, Any]], version: str, variant: str = "cpu") -> str:
    if version == "7.0":
        body = template_70(variables, variant)
    else:
        body = template_610(variables, variant)
    ids = "template_id" if version == "7.0" else "vm_template"
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=90, allow_unicode=True)
    gpu = GPU_HEADER if variant == "gpu" else ""
    return HEADER.format(version=version, gpu=gpu, ids=f"The role {ids} values") + "---\n" + text


def schema_problems(body: dict[str, Any], version: str) -> list[str]:
    """What OneFlow ``version`` says about ``body`` (the emulator's transcription)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from opennebula_emulator import flow_schema

    try:
        flow_schema.validate_template(copy.deepcopy(body), version)
    except flow_schema.ParseException as exc:
        return [f"OneFlow {version} refuses it: {exc}"]
    return []


def problems(spec_path: Path, output_dir: Path) -> list[str]:
    try:
        variables = load_variables(spec_path)
    except SpecUnreadable as exc:
        return [str(exc)]
    found = []
    for (variant, version), name in FILES.items():
        path = output_dir / name
        text = render(variables, version, variant)
        found += [f"{path}: {p}" for p in schema_problems(yaml.safe_load(text), version)]
        if not path.is_file():
            found.append(f"{path}: missing (run tools/oneflow_template.py render)")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{path}: stale (run tools/oneflow_template.py render)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "check"])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    if args.command == "check":
        in_sync = f"{', '.join(FILES.values())} in sync with {args.spec.name}"
        return report("oneflow_template", problems(args.spec, args.output_dir), in_sync)
    try:
        variables = load_variables(args.spec)
    except SpecUnreadable as exc:
        print(exc, file=sys.stderr)
        return 2
    status = 0
    for (variant, version), name in FILES.items():
        path = args.output_dir / name
        text = render(variables, version, variant)
        for problem in schema_problems(yaml.safe_load(text), version):
            print(f"{path}: {problem}", file=sys.stderr)
            status = 2
        write_if_changed(path, text)
    return status


if __name__ == "__main__":
    sys.exit(main())
