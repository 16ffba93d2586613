"""Fixtures for the emulator tests: a running emulator on ephemeral ports and clients for it.
Helpers live in emu_support.py (a module name of its own: test directories share one namespace)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from emu_support import Flow, fast_timings

from opennebula_emulator import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(timings=fast_timings(), seed=7) as emulator:
        yield emulator


@pytest.fixture
def flow(emu: Emulator) -> Flow:
    return Flow(emu.oneflow_url)


@pytest.fixture
def one(emu: Emulator) -> Any:
    pyone = pytest.importorskip("pyone")
    return pyone.OneServer(emu.oned_url, session="oneadmin:password")
