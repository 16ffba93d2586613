"""End to end: the demo trains on the federation site.yml deployed, driven from the controller."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

testinfra_hosts = ["ansible://superlink"]

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
VERSION = os.environ.get("FLOWER_VERSION", "1.25.0")
FLWR_PYTHON = ROOT / f".venv-flwr-{VERSION}" / "bin" / "python"


def test_both_supernodes_activated(host):
    log = host.check_output("journalctl -u flower-superlink --no-pager -o cat")
    nodes = set(re.findall(r"Activated node_id=(\d+)", log))
    assert len(nodes) >= 2, f"SuperNodes seen by the SuperLink: {sorted(nodes)}"


def vm_address(host):
    """The VM's address on its network (not the inner Docker bridge's)."""
    facts = host.ansible("setup", "filter=ansible_default_ipv4", check=False)
    return facts["ansible_facts"]["ansible_default_ipv4"]["address"]


def test_demo_trains_to_completion(host, tmp_path):
    ip = vm_address(host)
    result_file = tmp_path / "run.json"
    cmd = [
        str(FLWR_PYTHON),
        str(ROOT / "scripts" / "flwr_run_check.py"),
        str(ROOT / "demo" / "sklearn"),
        "local",
        "--address",
        f"{ip}:9093",
        "--min-rounds",
        "3",
        "--min-accuracy",
        "0.85",
        "--timeout",
        "600",
        "--json-out",
        str(result_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=660, check=False)
    sys.stdout.write(proc.stdout + proc.stderr)
    assert proc.returncode == 0, "the demo run did not pass its checks"
    result = json.loads(result_file.read_text())
    assert result["status"] == "finished:completed"
    assert len(result["rounds"]) >= 3
    first, last = result["rounds"][0], result["rounds"][-1]
    assert last["accuracy"] > 0.85
    assert last["accuracy"] > first["accuracy"]
