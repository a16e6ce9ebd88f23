"""``celery beat`` fires the schedule and a worker runs what it sends: the system tier's config
(tests/system/celeryconfig.py) schedules ``tests.mark`` every second on the system queue."""

from __future__ import annotations

from typing import Any

from tests.system.conftest import SystemProcesses, wait_for_list


def test_beat_sends_the_scheduled_task_every_second_and_a_worker_runs_it(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    system_processes.worker("worker")
    beat = system_processes.beat()

    ticks = wait_for_list(redis_client, "test:beat-tick", 2, timeout=20)

    assert len(ticks) >= 2
    assert "Scheduler: Sending due task system-tick (tests.mark)" in beat.log()
