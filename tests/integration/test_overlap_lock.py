"""The overlap lock: one run of a job at a time, never held past its TTL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from saas_tasks import LockHeld, OverlapLock
from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun
from tests import sample_tasks
from tests.conftest import wait_for


def test_a_held_lock_refuses_a_second_holder_with_a_named_error(
    redis_url: str, clean_state: None
) -> None:
    held = pytest.raises(LockHeld, match=r"'job\.a' is still running")
    with OverlapLock("job.a", ttl=30), held, OverlapLock("job.a", ttl=30):
        pass
    with OverlapLock("job.a", ttl=30):  # released on exit, free again
        pass


def test_only_the_holder_releases_the_lock(redis_url: str, clean_state: None) -> None:
    first = OverlapLock("job.b", ttl=0.3)
    assert first.acquire()
    time.sleep(0.4)  # the TTL ran out: the holder is presumed dead
    second = OverlapLock("job.b", ttl=30)
    assert second.acquire()
    assert first.release() is False  # a late holder cannot free someone else's lock
    assert second.held_for() is not None
    assert second.release() is True


def test_the_lock_works_as_a_decorator(redis_url: str, clean_state: None) -> None:
    @OverlapLock("job.c", ttl=30)
    def job() -> str:
        with pytest.raises(LockHeld):
            OverlapLock("job.c", ttl=30).__enter__()
        return "ran"

    assert job() == "ran"
    assert OverlapLock("job.c", ttl=30).held_for() is None


def test_a_scheduled_job_run_while_the_previous_run_goes_on_is_skipped_and_recorded(
    worker: Any, redis_client: Any
) -> None:
    first = sample_tasks.exclusive.delay(1.5, "first")
    wait_for(lambda: redis_client.lrange("test:exclusive-started", 0, -1), message="first run")
    second = sample_tasks.exclusive.delay(0, "second")
    assert second.get(timeout=20) == {"skipped": True, "reason": "overlap"}
    assert first.get(timeout=20) == {"marker": "first"}
    assert redis_client.lrange("test:exclusive-started", 0, -1) == [b"first"]
    with session_scope() as session:
        runs = session.execute(select(TaskRun.status, TaskRun.error).order_by(TaskRun.id)).all()
    statuses = sorted(status for status, _ in runs)
    assert statuses == ["skipped", "succeeded"]
    assert any(error and error.startswith("overlap") for _, error in runs)
    # the lock is free again: the next run goes ahead
    assert sample_tasks.exclusive.delay(0, "third").get(timeout=20) == {"marker": "third"}
