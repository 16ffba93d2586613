"""Fixes for Flower releases with known defects, applied to the installed flwr at image build.

PullObject race (Flower up to 1.25): a SuperNode that pulls an object the ServerApp has not
finished pushing gets "object not available yet", and the SuperLink records the traffic of that
empty answer, which its state refuses ("Both bytes_sent and bytes_recv cannot be zero"). The
PullObject fails, the SuperNode drops the message and the run waits for a reply that never
comes. Upstream records traffic only for available objects (fleet_handlers.py in later
releases); this makes the same change where the old code is found.

    python3 flower_fixes.py          apply what applies, then check
    python3 flower_fixes.py --check  exit 1 if a known defect is present (nothing changed)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RACE_MODULE = "flwr.server.superlink.fleet.message_handler.message_handler"
RACE_CODE = """        object_available = content != b""
        # Record bytes traffic pulled by SuperNode
        state.store_traffic(request.run_id, bytes_sent=len(content), bytes_recv=0)
"""
RACE_FIXED = """        object_available = content != b""
        # Record bytes traffic pulled by SuperNode (only for available objects, as upstream)
        if object_available:
            state.store_traffic(request.run_id, bytes_sent=len(content), bytes_recv=0)
"""


def module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    return Path(spec.origin) if spec and spec.origin else None


def pull_object_race() -> Path | None:
    """The file with the PullObject race, or None when this flwr does not have it."""
    path = module_file(RACE_MODULE)
    if path is None or RACE_CODE not in path.read_text():
        return None
    return path


def main(argv: list[str]) -> int:
    if "--check" not in argv and (path := pull_object_race()) is not None:
        path.write_text(path.read_text().replace(RACE_CODE, RACE_FIXED))
        for cached in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
            cached.unlink()
        print(f"flower_fixes: PullObject race fixed in {path}")
    if (path := pull_object_race()) is not None:
        print(f"flower_fixes: {path} has Flower's PullObject race", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
