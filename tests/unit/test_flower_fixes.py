"""roles/flower_container/files/flower_fixes.py on the message handler of a real Flower 1.25
(the flwr venv of that release, made by scripts/bootstrap.sh) and on one without the race."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXES = ROOT / "roles" / "flower_container" / "files" / "flower_fixes.py"
HANDLER = "flwr/server/superlink/fleet/message_handler/message_handler.py"
FLWR_125 = sorted(ROOT.glob(f".venv-flwr-1.25.0/lib/python3*/site-packages/{HANDLER}"))


def fixes(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIXES), *args],
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )


def fake_flwr(site: Path, handler_text: str) -> Path:
    """A package tree with only the message handler (its parents are namespace packages)."""
    path = site / HANDLER
    path.parent.mkdir(parents=True)
    path.write_text(handler_text)
    return path


def load_module():
    spec = importlib.util.spec_from_file_location("flower_fixes", FIXES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flower_125_race_is_found_fixed_and_then_absent(tmp_path):
    assert FLWR_125, "scripts/bootstrap.sh makes .venv-flwr-1.25.0 (the oldest supported Flower)"
    handler = fake_flwr(tmp_path, FLWR_125[0].read_text())
    assert fixes(tmp_path, "--check").returncode == 1
    applied = fixes(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "PullObject race fixed" in applied.stdout
    text = handler.read_text()
    assert "        if object_available:\n            state.store_traffic(" in text
    compile(text, str(handler), "exec")
    assert fixes(tmp_path, "--check").returncode == 0
    again = fixes(tmp_path)
    assert again.returncode == 0 and "fixed" not in again.stdout  # nothing left to do


def test_race_pattern_is_recognised_and_replaced(tmp_path):
    module = load_module()
    handler = fake_flwr(tmp_path, "def pull_object():\n" + module.RACE_CODE)
    assert fixes(tmp_path, "--check").returncode == 1
    assert fixes(tmp_path).returncode == 0
    assert handler.read_text() == "def pull_object():\n" + module.RACE_FIXED


def test_release_without_the_race_is_left_alone(tmp_path):
    handler = fake_flwr(tmp_path, "def pull_object():\n    return None\n")
    assert fixes(tmp_path, "--check").returncode == 0
    assert fixes(tmp_path).returncode == 0
    assert handler.read_text() == "def pull_object():\n    return None\n"
    shutil.rmtree(tmp_path / "flwr")
    assert fixes(tmp_path, "--check").returncode == 0  # no flwr at all: nothing to fix
