"""Cleanup under SIGKILL: a worker killed mid-purge loses nothing that should stay, and the
next run finishes the job. Each batch is its own transaction, so the kill rolls back at most
the batch in flight."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from saas_tasks import OverlapLock
from saas_tasks.cleanup.tasks import purge_audit_logs
from saas_tasks.models import AuditLog
from tests.conftest import wait_for
from tests.integration.cleanup_data import add_audit_logs, cleanup_log_lines, count
from tests.system.conftest import QUEUE, SystemProcesses, forget_messages

EXPIRED, LIVE = 3000, 300
#: Small, paced batches so the kill lands mid-purge; the visibility timeout is raised only to
#: pass the start-up check against other families' long time limits (no redelivery is awaited).
SLOW_PURGE = {
    "SAAS_TASKS_CLEANUP_BATCH_SIZE": "50",
    "SAAS_TASKS_CLEANUP_BATCH_PAUSE": "0.05",
    "SAAS_TASKS_VISIBILITY_TIMEOUT": "7300",
}
#: Follow-up runs are routed by name to ``maintenance``: the workers here consume it too.
QUEUES = (QUEUE, "maintenance")


@pytest.fixture()
def maintenance_queue(redis_client: Any) -> Iterator[None]:
    forget_messages(redis_client, "maintenance")
    yield
    forget_messages(redis_client, "maintenance")


def test_a_worker_killed_mid_purge_loses_no_live_row_and_the_next_run_finishes(
    system_processes: SystemProcesses, maintenance_queue: None
) -> None:
    add_audit_logs(expired=EXPIRED, live=LIVE)
    first = system_processes.worker("cleanup-1", concurrency=1, queues=QUEUES, **SLOW_PURGE)

    purge_audit_logs.apply_async(queue=QUEUE)
    wait_for(lambda: count(AuditLog) < EXPIRED + LIVE - 200, message="a few batches committed")
    first.kill()

    left = count(AuditLog, AuditLog.action == "old")
    assert 0 < left < EXPIRED  # killed mid-purge
    assert count(AuditLog, AuditLog.action == "new") == LIVE
    lock = OverlapLock(purge_audit_logs.name, ttl=1)
    wait_for(lambda: lock.held_for() is None, timeout=15, message="the dead run's lock to lapse")

    system_processes.worker("cleanup-2", concurrency=1, queues=QUEUES, **SLOW_PURGE)
    purge_audit_logs.apply_async(queue=QUEUE)

    wait_for(
        lambda: any(line[2]["finished"] for line in cleanup_log_lines()),
        timeout=60,
        message="a run (or its follow-up) that finishes",
    )
    assert count(AuditLog, AuditLog.action == "old") == 0
    assert count(AuditLog, AuditLog.action == "new") == LIVE
