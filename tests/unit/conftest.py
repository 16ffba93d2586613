"""Make the collection's plugins importable as plain modules in unit tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
# Helpers the unit and scenario tests share (tests/prometheus_server.py).
sys.path.insert(0, str(ROOT / "tests"))
