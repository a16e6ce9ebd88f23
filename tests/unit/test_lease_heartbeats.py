"""Lease heartbeats: every run's beats share one thread, each beats every third of its lease,
and a run's beats stop when its block ends or its renewal says it holds nothing any more."""

from __future__ import annotations

import threading
import time

from saas_tasks.reliability.lease import Lease


def beating_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "lease-heartbeats")


def test_many_runs_beat_on_one_thread_and_stop_with_their_block() -> None:
    counts = [0] * 5
    leases = [Lease(hard_time_limit=60, seconds=1.0) for _ in counts]  # a beat every 1/3 s

    def renewer(index: int):  # type: ignore[no-untyped-def]
        def renew() -> bool:
            counts[index] += 1
            return True

        return renew

    blocks = [lease.heartbeat(renewer(i), "test") for i, lease in enumerate(leases)]
    for block in blocks:
        block.__enter__()
    try:
        time.sleep(1.2)
        assert beating_threads() == 1
    finally:
        for block in blocks:
            block.__exit__(None, None, None)
    beats = list(counts)
    assert all(2 <= count <= 4 for count in beats), beats
    time.sleep(0.7)
    assert counts == beats  # no beat after the block ended


def test_a_renewal_that_holds_nothing_ends_that_runs_beats_only() -> None:
    lost, kept = [0], [0]

    def lose() -> bool:
        lost[0] += 1
        return False  # taken over, or recorded

    def keep() -> bool:
        kept[0] += 1
        return True

    with (
        Lease(hard_time_limit=60, seconds=1.0).heartbeat(lose, "test"),
        Lease(hard_time_limit=60, seconds=1.0).heartbeat(keep, "test"),
    ):
        time.sleep(1.2)
    assert lost == [1]
    assert kept[0] >= 2


def test_a_failing_renewal_is_tried_again_at_the_next_beat() -> None:
    calls = [0]

    def flaky() -> bool:
        calls[0] += 1
        raise ConnectionError("database unreachable")

    with Lease(hard_time_limit=60, seconds=1.0).heartbeat(flaky, "test"):
        time.sleep(1.2)
    assert calls[0] >= 2
