"""wait_until: deadlines, the unbounded wait of edge nodes, backoff delays."""

from __future__ import annotations

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    Backoff,
    WaitTimeout,
    wait_until,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


def checks_done_after(n):
    calls = []

    def check():
        calls.append(1)
        return len(calls) >= n, len(calls)

    return check


def test_timeout_none_waits_past_any_deadline():
    clock = FakeClock()
    backoff = Backoff(policy="exponential", initial=10, factor=2, cap=300)
    value, attempts, elapsed = wait_until(
        checks_done_after(12), None, backoff, sleep=clock.sleep, clock=clock.clock
    )
    assert (value, attempts) == (12, 12)
    assert clock.sleeps[:6] == [10, 20, 40, 80, 160, 300]
    assert set(clock.sleeps[5:]) == {300}
    assert elapsed == sum(clock.sleeps) == 2110  # far past the default 300 s


def test_fixed_schedule_gives_up_at_the_deadline():
    clock = FakeClock()
    backoff = Backoff(policy="fixed", interval=10)
    with pytest.raises(WaitTimeout) as info:
        wait_until(checks_done_after(100), 300, backoff, sleep=clock.sleep, clock=clock.clock)
    # 30 waits of 10 s, then one last check at the deadline.
    assert info.value.attempts == 31
    assert clock.now == 300
