"""Two ``celery beat`` processes at once (a deploy's overlap, one replica too many) never fire
one slot twice: RedBeat's Redis lock lets one of them fire while the other waits, and the
waiting one takes over when the first dies. The system tier's schedule fires ``tests.mark``
every second (tests/system/celeryconfig.py)."""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime
from typing import Any

from tests.conftest import wait_for
from tests.system.conftest import CeleryProcess, SystemProcesses, redis_list

SENT = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/\w+\] Scheduler: Sending due task system-tick"
)
ACQUIRED = "beat: Acquired lock"
#: A short lock, so the standby takes over within seconds of the holder's death.
FAST_FAILOVER = {"SAAS_TASKS_BEAT_LOCK_TIMEOUT": "3"}


def sends(beat: CeleryProcess) -> list[datetime]:
    """When ``beat`` sent the one-second entry, from its log."""
    return [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for m in SENT.finditer(beat.log())]


def acquired_at(beat: CeleryProcess) -> datetime:
    line = next(line for line in beat.log().splitlines() if ACQUIRED in line)
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")


def test_two_beats_fire_every_slot_once_and_the_standby_takes_over_when_the_holder_dies(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    system_processes.worker("worker")
    beats = [system_processes.beat(f"beat-{n}", **FAST_FAILOVER) for n in (1, 2)]
    holder = wait_for(
        lambda: next((b for b in beats if ACQUIRED in b.log()), None), message="a beat's lock"
    )
    standby = beats[1] if holder is beats[0] else beats[0]
    wait_for(lambda: len(sends(holder)) >= 6, timeout=15, message="six slots from the holder")
    # Celery beat logs "Sending due task" just before it publishes, so a SIGKILL right after
    # that line can cut the publish short. Kill only once every send so far has run; then at
    # most the one send logged in the instant before the kill can be lost.
    wait_for(
        lambda: len(redis_list(redis_client, "test:beat-tick")) >= len(sends(holder)),
        timeout=15,
        message="the holder's sends to run",
    )
    confirmed = len(sends(holder))
    holder.kill()
    standby.wait_for_log(ACQUIRED, timeout=15)
    wait_for(lambda: len(sends(standby)) >= 4, timeout=15, message="four slots from the standby")
    standby.kill()

    fired = sorted(sends(holder) + sends(standby))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fired)]
    assert min(gaps) >= 0.5, f"two sends of one slot: {fired}"
    assert len({round(moment.timestamp()) for moment in fired}) == len(fired)
    assert all(moment >= acquired_at(standby) for moment in sends(standby))
    assert "SAAS_TASKS_DISABLE_SCHEDULES" not in standby.log()
    assert "taking the lock saas_tasks:beat:lock" in standby.log()
    # Every slot sent ran exactly once: as many marks in Redis as sends in the beat logs,
    # less the holder's send cut short by its SIGKILL, if it logged one after `confirmed`.
    cut_short = len(sends(holder)) - confirmed
    assert cut_short <= 1, f"the holder logged {cut_short} sends while it was being killed"
    expected = len(fired) - cut_short
    wait_for(lambda: len(redis_list(redis_client, "test:beat-tick")) >= expected, timeout=20)
    assert len(redis_list(redis_client, "test:beat-tick")) in (expected, len(fired))


def test_beat_with_schedules_disabled_says_so_at_start_and_fires_nothing(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    # The deployed schedule (the system tier's own config always adds its one-second entry).
    beat = system_processes.beat(
        "beat", SAAS_TASKS_DISABLE_SCHEDULES="true", SAAS_TASKS_CELERY_CONFIG="config.celeryconfig"
    )
    beat.wait_for_log(ACQUIRED)
    time.sleep(2)

    assert "SAAS_TASKS_DISABLE_SCHEDULES=true: the schedule is empty" in beat.log()
    assert "Sending due task" not in beat.log()
    assert redis_client.zcard("saas_tasks:beat::schedule") == 0
