#!/usr/bin/env python3
"""Generate the PyTorch demo's copy of the training settings shared with the sklearn demo.

Usage::

    tools/demo_shared.py render   # (re)write demo/pytorch/flower_pytorch_cifar/settings.py
    tools/demo_shared.py check    # exit 1 when that copy is stale or missing

``demo/sklearn/flower_sklearn_digits/settings.py`` is the one source of the training settings
(run config, else the SuperLink appliance's ``FL_*`` environment, else built-ins) and of the
strategy they name (``make_strategy``). Both demos' ServerApps read them, and each Flower App
must hold its own regular file: ``flwr build`` leaves symbolic links out of a FAB, and the
collection tarball holds no links. So the PyTorch demo's ``settings.py`` is that text under a
two-line header saying where it comes from. Options ``--source`` and ``--output`` point at other
files (tests).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spec_tool import REPO_ROOT, report, write_if_changed

SOURCE = REPO_ROOT / "demo" / "sklearn" / "flower_sklearn_digits" / "settings.py"
OUTPUT = REPO_ROOT / "demo" / "pytorch" / "flower_pytorch_cifar" / "settings.py"
TOOL = "tools/demo_shared.py"


def _shown(path: Path) -> str:
    """The path relative to the repository when it is inside it (the header, messages)."""
    try:
        return path.absolute().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def render(source: Path) -> str:
    """The generated copy's text: the header, then the source's text unchanged."""
    header = (
        f"# Generated from {_shown(source)} by {TOOL}.\n"
        f"# Do not edit: change that file, then run `python {TOOL} render`.\n"
    )
    return header + source.read_text(encoding="utf-8")


def problems(source: Path, output: Path) -> list[str]:
    """What is wrong with the generated copy: missing, a link, or not the rendered text."""
    text = render(source)
    if output.is_symlink():
        return [f"{_shown(output)}: a symbolic link, not the generated file (run {TOOL} render)"]
    if not output.is_file():
        return [f"{_shown(output)}: missing (run {TOOL} render)"]
    if output.read_text(encoding="utf-8") != text:
        return [f"{_shown(output)}: stale (run {TOOL} render)"]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "check"])
    for option, default in (("--source", SOURCE), ("--output", OUTPUT)):  # other files: tests
        parser.add_argument(option, type=Path, default=default)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"{args.source}: no such file", file=sys.stderr)
        return 2
    if args.command == "check":
        in_sync = f"{_shown(args.output)} in sync with {_shown(args.source)}"
        return report("demo_shared", problems(args.source, args.output), in_sync)
    if args.output.is_symlink():
        args.output.unlink()  # write the file itself, not through the link into the source
    write_if_changed(args.output, render(args.source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
