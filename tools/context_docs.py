#!/usr/bin/env python3
"""Generate docs/context-variables.md from meta/context_variables.yml.

Usage::

    tools/context_docs.py render   # (re)write docs/context-variables.md
    tools/context_docs.py check    # exit 1 when the spec is malformed or the file is stale

Options ``--spec`` and ``--output`` point at other files (tests). Only the standard library,
PyYAML and the collection's ``plugins/module_utils/_context.py`` (loaded by path) are needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spec_tool import (
    REPO_ROOT,
    SPEC,
    SpecUnreadable,
    context,
    load_variables,
    report,
    write_if_changed,
)

OUTPUT = REPO_ROOT / "docs" / "context-variables.md"

CATEGORIES = {
    "core": "Core",
    "tls": "TLS and SuperNode authentication",
    "firewall": "Firewall",
    "discovery": "SuperLink discovery and reconnection",
    "client": "Client (ClientApp, framework, GPU)",
    "training": "Training (strategy, clients, checkpointing)",
}
ROLE_TITLES = {"superlink": "SuperLink", "supernode": "SuperNode"}


def _cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return f"`{text}`" if text != "" else "*(empty)*"


def _allowed(var: dict[str, Any]) -> str:
    if var["type"] == "enum":
        return ", ".join(_code(str(c)) for c in var["choices"])
    return _cell(context.allowed_text(var))


def _maps_to(var: dict[str, Any], role: str) -> str:
    target = (var.get("maps_to") or {}).get(role)
    if target:
        return _code(target)
    return _cell(var.get("note") or "-")


def _row(var: dict[str, Any], role: str) -> str:
    name = _code(var["name"])
    if var.get("aliases"):
        name += " (alias " + ", ".join(_code(a) for a in var["aliases"]) + ")"
    kind = var["type"] + (" (secret)" if var.get("secret") else "")
    if role not in context.oneflow_roles(var):
        kind += " (not a OneFlow user input)"
    cells = [
        name,
        kind,
        _code(var["default"]),
        _allowed(var),
        _maps_to(var, role),
        _cell(var["description"]),
    ]
    return "| " + " | ".join(cells) + " |"


def render(variables: list[dict[str, Any]]) -> str:
    lines = [
        "# Context variables",
        "",
        "<!-- Generated from meta/context_variables.yml by tools/context_docs.py render;"
        " do not edit. -->",
        "",
        "The Flower appliances are configured through these contextualization variables (OneFlow"
        " user inputs). `opennebula.flower.flower_context` checks them all at once before"
        " anything starts and maps them to the role variables in *Maps to*. Unset or empty"
        " variables take the default; booleans are `YES`/`NO`; unknown `ONEAPP_FL_*` names are"
        " refused. With `ONEAPP_FL_TLS_ENABLED=YES` the action also sets `tls_side` (`server`"
        " or `client`), and operator certificates set `tls_ca_mode: provided` on the SuperLink."
        " Any VM of a OneFlow service can read its siblings' CONTEXT through OneGate, so a"
        " variable marked *not a OneFlow user input* is for standalone VMs only"
        " (`docs/security.md`).",
        "",
    ]
    for role in context.ROLES:
        mine = context.for_role(variables, role)
        lines += [f"## {ROLE_TITLES[role]} ({len(mine)} variables)", ""]
        for category, title in CATEGORIES.items():
            rows = [_row(var, role) for var in mine if var.get("category") == category]
            if not rows:
                continue
            lines += [
                f"### {title}",
                "",
                "| Variable | Type | Default | Allowed | Maps to | Description |",
                "|---|---|---|---|---|---|",
                *rows,
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def problems(spec_path: Path, output: Path) -> list[str]:
    try:
        variables = load_variables(spec_path)
    except SpecUnreadable as exc:
        return [str(exc)]
    found = []
    unknown = sorted({v.get("category") for v in variables} - set(CATEGORIES), key=str)
    if unknown:
        found.append(f"{spec_path}: unknown categories {unknown}")
    if not output.is_file():
        found.append(f"{output}: missing (run tools/context_docs.py render)")
    elif output.read_text(encoding="utf-8") != render(variables):
        found.append(f"{output}: stale (run tools/context_docs.py render)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "check"])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.command == "check":
        in_sync = f"{args.output.name} is in sync with {args.spec.name}"
        return report("context_docs", problems(args.spec, args.output), in_sync)
    try:
        variables = load_variables(args.spec)
    except SpecUnreadable as exc:
        print(exc, file=sys.stderr)
        return 2
    write_if_changed(args.output, render(variables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
