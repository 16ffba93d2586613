"""What the generators of files from meta/context_variables.yml share (tools/context_docs.py,
tools/oneflow_template.py): loading the spec through the collection's own parser, reporting a
check, and writing a file only when its text changed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC = REPO_ROOT / "meta" / "context_variables.yml"


def load_module(name: str, path: Path) -> ModuleType:
    """A module of the collection, loaded from its file (no Ansible import path needed)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


context = load_module("flower_context_spec", REPO_ROOT / "plugins" / "module_utils" / "_context.py")


class SpecUnreadable(Exception):
    pass


def load_variables(spec_path: Path) -> list[dict[str, Any]]:
    """The checked variables of the spec; SpecUnreadable says why not."""
    try:
        return context.load_spec(yaml.safe_load(spec_path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, context.SpecError) as exc:
        raise SpecUnreadable(f"{spec_path}: {exc}") from exc


def report(tool: str, found: list[str], in_sync: str) -> int:
    """Print the problems of a check (exit 1) or the in-sync line (exit 0)."""
    for problem in found:
        print(problem)
    if found:
        print(f"{tool}: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(f"{tool}: {in_sync}")
    return 0


def write_if_changed(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"{path}: {'unchanged' if old == text else 'updated'}")
