"""The login backoff on a fake clock: free failures, then locks doubling from 1 s to
the 15-minute cap, forgotten a day after the last failure, memory bounded."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the labeling app needs the `label` extra: pip install -e .[label]")

from rlhf.label.throttle import FORGET_SECONDS, MAX_LOCK_SECONDS, Backoff  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_free_failures_then_locks_double_up_to_the_cap():
    clock = Clock()
    backoff = Backoff(clock)
    # free=2: failures 1 and 2 lock nothing, 3 locks 1 s, 4 locks 2 s, 5 locks 4 s.
    assert [backoff.failed("user:ann", free=2) for _ in range(2)] == [0, 0]
    assert backoff.wait("user:ann") == 0
    assert backoff.failed("user:ann", free=2) == 1
    assert backoff.wait("user:ann") == 1
    clock.now += 0.25
    assert backoff.wait("user:ann") == 0.75
    clock.now += 0.75
    assert backoff.wait("user:ann") == 0
    assert backoff.failed("user:ann", free=2) == 2
    assert backoff.failed("user:ann", free=2) == 4
    assert backoff.wait("user:bob") == 0  # keys are independent
    for _ in range(20):  # 2**20 s would be 12 days; the cap holds it at 15 minutes
        lock = backoff.failed("user:ann", free=2)
    assert lock == MAX_LOCK_SECONDS == 900


def test_failures_are_forgotten_a_day_after_the_last_one_or_when_cleared():
    clock = Clock()
    backoff = Backoff(clock)
    for _ in range(4):
        backoff.failed("address:10.0.0.1", free=2)
    assert backoff.wait("address:10.0.0.1") == 2
    clock.now += FORGET_SECONDS + 1
    assert backoff.wait("address:10.0.0.1") == 0
    assert backoff.failed("address:10.0.0.1", free=2) == 0  # counting starts again
    backoff.failed("user:ann", free=0)
    backoff.forget("user:ann")
    assert backoff.wait("user:ann") == 0


def test_memory_is_bounded_by_evicting_the_least_recently_failed_key():
    backoff = Backoff(Clock(), max_keys=2)
    for key in ("a", "b", "a", "c"):  # "b" failed least recently when "c" arrives
        backoff.failed(key, free=0)
    assert backoff.wait("a") == 2 and backoff.wait("c") == 1
    assert backoff.wait("b") == 0
