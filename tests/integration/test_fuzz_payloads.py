"""Proof, item 2, on the worker: the bad payloads hypothesis drew for each public task (see
tests/unit/test_fuzz_validation.py and tests/payload_fuzz.py) are published with
``apply_async`` to the real in-process worker. Each one is refused with InvalidPayload,
dead-lettered exactly once, never retried, and the worker keeps running good tasks.

Every other distinct payload of the in-process run is kept, and up to :data:`PUBLISH` of those
are published per task, nested at most :data:`SHALLOW` deep; deeper ones have their own test.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from saas_tasks import app
from saas_tasks.reliability import deadletter
from tests import payload_fuzz, sample_tasks
from tests.conftest import wait_for

TASKS = payload_fuzz.public_tasks(app)
PUBLISH = 300
#: Nesting depth of ``{"args": ..., "kwargs": ...}`` up to which payloads are published in
#: the main test; beyond DEEP, pydantic's serializer (255 levels) meets the dead-letter entry.
SHALLOW, DEEP = 200, 300


def _params() -> list[Any]:
    return sorted(TASKS)


def shallow(task: Any) -> list[payload_fuzz.Bad]:
    kept = payload_fuzz.fuzz(task).kept
    return [b for b in kept if payload_fuzz.depth(b.as_json()) <= SHALLOW][:PUBLISH]


def publish(
    task: Any, bads: list[payload_fuzz.Bad], results: bool = False
) -> dict[str, payload_fuzz.Bad]:
    """Send each bad payload. Without ``results`` no result is stored or subscribed to:
    thousands of failure results (tracebacks and all) pushed to a pub/sub client that never
    reads them overflow Redis's pub/sub output buffer, and Redis drops the connection."""
    sent = {}
    for bad in bads:
        call = bad.as_json()
        message = task.apply_async(
            args=call["args"], kwargs=call["kwargs"], ignore_result=not results
        )
        sent[message.id] = bad
    return sent


def dead_letters_of(name: str, expected: int, timeout: float) -> dict[str, Any]:
    """Wait for ``expected`` dead letters of ``name`` (or the timeout), then read them all."""

    def stored() -> int:
        return sum(count for _, _, count in deadletter.stats(deadletter.Filters(task=name)))

    deadline_hit = False
    try:
        wait_for(lambda: stored() >= expected, timeout=timeout, interval=0.25)
    except pytest.fail.Exception:
        deadline_hit = True
    rows = deadletter.list_entries(deadletter.Filters(task=name), limit=expected + 100)
    assert not deadline_hit or len(rows) < expected
    return {row.task_id: row for row in rows}


def assert_refused_once_each(name: str, sent: dict[str, payload_fuzz.Bad], timeout: float) -> None:
    rows = dead_letters_of(name, len(sent), timeout)
    lost = [sent[task_id] for task_id in sent if task_id not in rows]
    assert not lost, f"{len(lost)} of {len(sent)} bad payloads have no dead letter, e.g. {lost[0]}"
    assert set(rows) == set(sent), "dead letters of tasks this test did not send"
    for task_id, row in rows.items():
        what = f"{name}[{task_id}] {sent[task_id].kinds} {sent[task_id].named}"
        assert row.exception_type == "saas_tasks.exceptions.InvalidPayload", what
        assert row.reason == "invalid_payload", what
        assert row.retries == 0, what
        assert row.failure_count == 1, what
    assert not deadletter.spool_path().exists(), "a dead letter went to the local spool"


def assert_worker_runs_good_tasks() -> None:
    marker = uuid.uuid4().hex
    assert sample_tasks.echo.delay(marker).get(timeout=20) == marker
    purge = TASKS["saas_tasks.cleanup.purge_expired_sessions"]
    assert purge.apply_async(kwargs={"batch_size": 10}).get(timeout=30)["finished"] is True


@pytest.mark.parametrize("name", _params())
def test_bad_payloads_on_the_worker_are_each_dead_lettered_once_and_never_retried(
    worker: Any, name: str
) -> None:
    task = TASKS[name]
    bads = shallow(task)
    assert len(bads) >= PUBLISH, f"only {len(bads)} payloads to publish for {name}"
    sent = publish(task, bads)
    assert_refused_once_each(name, sent, timeout=60)
    assert_worker_runs_good_tasks()


def deep_payloads(worker: Any) -> dict[str, dict[str, payload_fuzz.Bad]]:
    """Publish up to 5 bad payloads nested deeper than DEEP for each task."""
    sent: dict[str, dict[str, payload_fuzz.Bad]] = {}
    for name, task in TASKS.items():
        kept = payload_fuzz.fuzz(task).kept
        deep = [b for b in kept if payload_fuzz.depth(b.as_json()) > DEEP][:5]
        sent[name] = publish(task, deep, results=True)
    assert sum(map(len, sent.values())) >= 20
    return sent


@pytest.mark.timeout(300)  # run alone, this test draws every task's payloads first
def test_deeply_nested_bad_payloads_are_refused_unretried_dead_lettered_and_the_worker_goes_on(
    worker: Any,
) -> None:
    # Deeper than pydantic serializes (255 levels): the dead letter keeps the payload's
    # first levels and a marker below them (DeadLetterEntry.MAX_DEPTH).
    sent = deep_payloads(worker)
    for ids in sent.values():
        for task_id in ids:
            result = worker.app.AsyncResult(task_id)
            wait_for(lambda result=result: result.ready(), timeout=30)
            assert result.state == "FAILURE"
            assert type(result.result).__name__ == "InvalidPayload", result.result
            result.forget()
    for name, ids in sent.items():
        if ids:
            assert_refused_once_each(name, ids, timeout=15)
    assert_worker_runs_good_tasks()
