"""The overlap lock on real prefork workers: a concurrent second run of ``tests.exclusive``
(``Singleton(ttl=3)``) is skipped and recorded as skipped; a run SIGKILLed while holding the
lock blocks the job no longer than the lock's TTL, max(3, the hard time limit)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select

from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun
from tests import sample_tasks
from tests.conftest import wait_for
from tests.system.conftest import (
    QUEUE,
    TIME_LIMIT,
    CeleryProcess,
    SystemProcesses,
    forget_messages,
    redis_list,
    wait_for_list,
)

LOCK_KEY = "saas_tasks:lock:tests.exclusive"
LOCK_TTL = max(3, TIME_LIMIT)  # Singleton(ttl=3), never below the hard time limit
SKIPPED = {"skipped": True, "reason": "overlap"}


def runs_of(task_id: str) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.execute(select(TaskRun).where(TaskRun.task_id == task_id)).scalars()
        return [(row.status, row.error) for row in rows]


def test_overlap_lock_skips_a_concurrent_second_run_and_records_it_as_skipped(
    system_worker: CeleryProcess, redis_client: Any
) -> None:
    first = sample_tasks.exclusive.apply_async((2.0, "first"), queue=QUEUE)
    wait_for_list(redis_client, "test:exclusive-started", 1)
    second = sample_tasks.exclusive.apply_async((2.0, "second"), queue=QUEUE)

    assert second.get(timeout=20) == SKIPPED
    assert first.get(timeout=20) == {"marker": "first"}
    assert redis_list(redis_client, "test:exclusive-started") == ["first"]  # never ran twice
    [(status, error)] = runs_of(second.id)
    assert status == "skipped" and error is not None and error.startswith("overlap")
    assert runs_of(first.id)[0][0] == "succeeded"
    assert not redis_client.exists(LOCK_KEY)  # released by its holder at the end


def test_overlap_lock_of_a_sigkilled_run_frees_itself_within_its_ttl_and_a_new_run_proceeds(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    holder = system_processes.worker("holder")
    held = sample_tasks.exclusive.apply_async((2.5, "held"), queue=QUEUE)
    wait_for_list(redis_client, "test:exclusive-started", 1)

    holder.kill()  # main process and children: nothing runs the lock's release
    killed_at = time.monotonic()
    remaining = redis_client.pttl(LOCK_KEY) / 1000
    assert 0 < remaining <= LOCK_TTL  # still held by the dead run, and bounded

    wait_for(
        lambda: not redis_client.exists(LOCK_KEY),
        timeout=LOCK_TTL + 2,
        interval=0.05,
        message="the dead run's lock to expire",
    )
    assert time.monotonic() - killed_at <= remaining + 1.0
    assert redis_list(redis_client, "test:exclusive-finished") == []
    assert held.state != "SUCCESS"

    # The dead run's own message comes back after the visibility timeout (at-least-once);
    # drop it so the run observed below is the new one.
    forget_messages(redis_client)
    system_processes.worker("after")
    after = sample_tasks.exclusive.apply_async((0.1, f"after-{uuid.uuid4().hex[:6]}"), queue=QUEUE)
    result = after.get(timeout=20)
    assert result != SKIPPED and result["marker"].startswith("after-")
    assert runs_of(after.id)[0][0] == "succeeded"
