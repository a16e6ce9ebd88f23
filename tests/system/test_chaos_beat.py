"""Chaos: two ``celery beat`` processes over a hundred slots of a one-second schedule (the
system tier's ``system-tick``, tests/system/celeryconfig.py), with the standby SIGKILLed and a
fresh beat started halfway: every slot fires exactly once.

Each beat logs "Sending due task system-tick" just before it publishes, and each publish runs
``tests.mark``, which appends one entry to ``test:beat-tick``. So: sends from both logs, merged,
never two for one slot (no two within half a second) and never a slot left out (no gap of two
seconds); and as many marks as sends.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.system.conftest import (
    CELERY,
    CeleryProcess,
    SystemProcesses,
    redis_list,
    subprocess_env,
)
from tests.system.test_beat_lock import ACQUIRED, sends

SLOTS = 100
BEATS = ("beat-1", "beat-2")
BEAT_ARGV = [CELERY, "--app=saas_tasks", "beat", "--loglevel=INFO", "--max-interval=1"]


def start_beat(processes: SystemProcesses, name: str) -> CeleryProcess:
    """``SystemProcesses.beat`` without its wait, so that two start at the same moment."""
    argv = [*BEAT_ARGV, f"--schedule={processes.directory / f'{name}-schedule'}"]
    argv += [f"--pidfile={processes.directory / f'{name}.pid'}"]
    return processes.start(name, argv, subprocess_env())


def all_sends(beats: list[CeleryProcess]) -> list[Any]:
    return sorted(moment for beat in beats for moment in sends(beat))


@pytest.mark.timeout(150)
def test_two_beats_over_a_hundred_one_second_slots_fire_every_slot_exactly_once(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    system_processes.worker("worker", wait=False)
    beats = [start_beat(system_processes, name) for name in BEATS]
    for beat in beats:
        beat.wait_for_log("beat: Starting...")
    holder = wait_for(
        lambda: next((b for b in beats if ACQUIRED in b.log()), None), message="a beat's lock"
    )
    standby = next(beat for beat in beats if beat is not holder)

    wait_for(lambda: len(sends(holder)) >= SLOTS // 2, timeout=70, message="half the slots")
    standby.kill()  # a replica that dies, and the one that replaces it, while slots fire
    replacement = start_beat(system_processes, "beat-3")
    beats.append(replacement)
    replacement.wait_for_log("taking the lock saas_tasks:beat:lock", timeout=30)

    wait_for(lambda: len(all_sends(beats)) >= SLOTS, timeout=80, message=f"{SLOTS} slots")
    # Stop the beats only once every send so far has run: a SIGKILL right after the log line
    # may cut that one publish short, and no other.
    wait_for(
        lambda: len(redis_list(redis_client, "test:beat-tick")) >= len(all_sends(beats)),
        timeout=20,
        message="every send to have run",
    )
    confirmed = len(all_sends(beats))
    for beat in beats:
        beat.kill()
    fired = all_sends(beats)
    cut_short = len(fired) - confirmed
    expected = len(fired) - cut_short
    wait_for(
        lambda: len(redis_list(redis_client, "test:beat-tick")) >= expected,
        timeout=20,
        message="the last sends to run",
    )
    marks = len(redis_list(redis_client, "test:beat-tick"))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fired)]
    print(
        f"\nchaos beat: {len(fired)} sends ({[len(sends(b)) for b in beats]} by "
        f"{[b.name for b in beats]}), {marks} marks, gaps {min(gaps):.3f}s..{max(gaps):.3f}s"
    )

    assert len(fired) >= SLOTS
    assert cut_short <= 1
    assert min(gaps) >= 0.5, f"a slot fired twice: {fired}"
    assert max(gaps) < 2.0, f"a slot was left out: {fired}"
    assert marks in (expected, len(fired))  # each send ran exactly once
    # one beat fired at a time: the holder alone, the others waited on the lock
    assert sends(standby) == [] and sends(replacement) == []
    assert ACQUIRED not in standby.log() and ACQUIRED not in replacement.log()
