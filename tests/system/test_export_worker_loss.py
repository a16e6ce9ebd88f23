"""A worker SIGKILLed mid-export leaves no half-published file, and the redelivered message
completes the export: one file, complete, under its final name."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert

from saas_tasks.db import session_scope
from saas_tasks.exports import service
from saas_tasks.exports.storage import LocalStorage, get_storage
from saas_tasks.exports.tasks import export
from saas_tasks.models import AuditLog, Export
from tests.conftest import wait_for
from tests.system.conftest import QUEUE, VISIBILITY_TIMEOUT, SystemProcesses

ROWS = 600
SLOW = {
    "SAAS_TASKS_TEST_SLOW_ROW_MS": "4",
    "SAAS_TASKS_EXPORT_CHUNK_ROWS": "20",
    "SAAS_TASKS_EXPORT_TIME_LIMIT": "5",
    "SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT": "4",
}


def row_of(export_id: str) -> Export:
    with session_scope() as session:
        found = session.get(Export, export_id)
        assert found is not None
        return found


def test_a_worker_killed_mid_export_publishes_nothing_and_the_redelivery_completes_it(
    system_processes: SystemProcesses, clean_state: None, redis_client: Any
) -> None:
    with session_scope() as session:
        session.execute(insert(AuditLog), [{"action": f"act-{i}"} for i in range(ROWS)])
    export_id = service.create_export("test_slow_audit", "jsonl", {})
    first = system_processes.worker("first", **SLOW)
    export.apply_async(kwargs={"export_id": export_id}, queue=QUEUE)
    wait_for(lambda: row_of(export_id).rows_done > 0, message="the export to be under way")

    first.kill()

    killed = row_of(export_id)
    assert killed.status == "running" and 0 < killed.rows_done < ROWS
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    folder = storage.root / export_id
    assert [p for p in folder.iterdir() if not p.name.endswith(".partial")] == []

    system_processes.worker("second", **SLOW)
    done = wait_for(
        lambda: row_of(export_id).status == "succeeded" and row_of(export_id),
        timeout=VISIBILITY_TIMEOUT + 25,
        message="the redelivered export to succeed",
    )
    assert done.attempts == 2 and done.rows_done == ROWS
    assert [p.name for p in folder.iterdir()] == [done.filename]  # the partial is gone too
    lines = (folder / str(done.filename)).read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == [f"act-{i}" for i in range(ROWS)]
