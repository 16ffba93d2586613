#!/usr/bin/env python3
"""Appliance figures on the emulator's container VMs (the path of ``make demo``).

Measures, in one run:
  * boot-to-FL_READY of the SuperLink and boot-to-FL_NODE_READY of each SuperNode (from the
    moment the VM was created), against the baseline of the same VM: boot-to-one_env (the bare
    VM with one-context done, nothing of Flower yet) -> ratio = appliance boot / bare boot;
  * discovery latency: from the SuperLink's FL_READY to each SuperNode's FL_NODE_READY (the
    prior-art appliance polls OneGate every 10 s);
  * time from the end of deploy.yml to the first finished round of the demo;
  * the sizes of the appliance images.

    .venv/bin/python bench/appliance.py [--id bench] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("appliance_demo", ROOT / "scripts/appliance_demo.py")
appliance_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(appliance_demo)


class Watcher(threading.Thread):
    """Polls the emulator: when each VM appeared, got one_env, and published its keys."""

    def __init__(self, demo) -> None:
        super().__init__(daemon=True)
        self.demo = demo
        self.seen: dict[int, dict[str, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                vms = self.demo.emulator("/_emulator/state")["vms"]
            except OSError:
                vms = []
            for vm in vms:
                marks = self.seen.setdefault(vm["id"], {"created": now})
                role = vm["user_template"].get("ROLE_NAME", "")
                marks.setdefault("role", role)
                for key in ("FL_READY", "FL_NODE_READY"):
                    if vm["user_template"].get(key) == "YES":
                        marks.setdefault(key, now)
                if "one_env" not in marks and self.has_one_env(vm["id"]):
                    marks["one_env"] = now
            time.sleep(0.5)

    def has_one_env(self, vm_id: int) -> bool:
        try:
            name = self.demo.container(vm_id)
        except OSError:
            return False
        probe = ["docker", "exec", name, "test", "-s", "/run/one-context/one_env"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def image_size(image: str) -> float:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return round(int(out) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", default="bench")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    demo = appliance_demo.Demo(args.id)
    demo.start()
    watcher = Watcher(demo)
    watcher.start()
    try:
        demo.deploy()
        deployed = time.monotonic()
        result = demo.train(1)
        first_round = time.monotonic() - deployed
        time.sleep(1)
    finally:
        watcher.stop.set()
        demo.down()
    marks = watcher.seen
    superlink = next(m for m in marks.values() if m["role"] == "superlink")
    nodes = [m for m in marks.values() if m["role"] == "supernode"]
    report = {
        "superlink_boot_to_fl_ready_s": round(superlink["FL_READY"] - superlink["created"], 1),
        "superlink_bare_boot_s": round(superlink["one_env"] - superlink["created"], 1),
        "supernode_boot_to_fl_node_ready_s": [
            round(m["FL_NODE_READY"] - m["created"], 1) for m in nodes
        ],
        "supernode_bare_boot_s": [round(m["one_env"] - m["created"], 1) for m in nodes],
        "discovery_latency_s": [
            round(m["FL_NODE_READY"] - superlink["FL_READY"], 1) for m in nodes
        ],
        "deploy_end_to_first_round_s": round(first_round, 1),
        "run_status": result["status"],
        "images_mib": {
            name: image_size(image) for name, image in appliance_demo.APPLIANCES.items()
        },
    }
    report["superlink_boot_ratio"] = round(
        report["superlink_boot_to_fl_ready_s"] / report["superlink_bare_boot_s"], 2
    )
    print(json.dumps(report, indent=1))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
