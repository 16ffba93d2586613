"""ansible-playbook on the scenario's inventory, as an operator runs it (shared by the tests)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])


def run_playbook(playbook, *args, timeout=600):
    """``playbook``: a path, relative to the project root or absolute."""
    proc = subprocess.run(
        [
            "ansible-playbook", str(playbook),
            "-i", f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory", *args,
        ],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc
