"""A test kit for host apps: a real worker on the real Redis, assertions on dead letters and
idempotency, and a schedule checker. Load it in the host's ``conftest.py``::

    pytest_plugins = ["saas_tasks.testing"]

    def test_welcome_email_is_sent_once(saas_tasks_worker):
        first = send_welcome.delay(user_id=7).get(timeout=10)
        assert_idempotent(send_welcome, kwargs={"user_id": 7}, first=first)

It needs the services the pack needs (``REDIS_URL``, ``DATABASE_URL``), set before the test
session imports ``saas_tasks``. Never eager mode: messages cross the broker both ways, on a
real worker (threads, in this process). The fixtures are named ``saas_tasks_*`` so they do
not collide with Celery's own ``celery_worker`` fixtures or pytest-celery's.

Fixtures:
    saas_tasks_app      the pack's app, tasks imported, database migrated (session)
    saas_tasks_worker   a running in-process worker, state clean around each test
    saas_tasks_clean    empty pack tables, pack Redis keys and queues around a test

Functions: :func:`dead_letters`, :func:`assert_dead_lettered`, :func:`assert_no_dead_letters`,
:func:`assert_idempotent`, :func:`schedule_runs`, :func:`wait_for`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from saas_tasks.schedules.calendar import next_runs


def wait_for(predicate: Callable[[], Any], timeout: float = 10, message: str = "it") -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


# --- dead letters and idempotency -------------------------------------------------------


def dead_letters(task: str | None = None) -> list[Any]:
    """Stored dead letters (``saas_tasks.models.DeadLetter``), newest first."""
    from saas_tasks.reliability.deadletter import Filters, list_entries

    return list_entries(Filters(task=task), limit=1000)


def assert_dead_lettered(task: str, exception: str | None = None, timeout: float = 10) -> Any:
    """Wait for ``task``'s dead letter (optionally of ``exception``, e.g. "ValueError")."""

    def found() -> Any:
        for row in dead_letters(task):
            if exception is None or row.exception_type.rsplit(".", 1)[-1] == exception:
                return row
        return None

    return wait_for(found, timeout, f"a dead letter for {task} ({exception or 'any error'})")


def assert_no_dead_letters() -> None:
    rows = dead_letters()
    assert not rows, "dead letters: " + ", ".join(
        f"{r.task_name}[{r.task_id}] {r.exception_type}: {r.exception_message}" for r in rows
    )


def assert_idempotent(
    task: Any,
    kwargs: dict[str, Any],
    first: Any = None,
    idempotency_key: str | None = None,
    timeout: float = 10,
) -> Any:
    """Run ``task`` with ``kwargs`` again (twice if ``first`` is None) on the worker and
    assert the repeat returns the first result: the side effect happened once."""
    extra = {"idempotency_key": idempotency_key} if idempotency_key else {}
    if first is None:
        first = task.apply_async(kwargs={**kwargs, **extra}).get(timeout=timeout)
    again = task.apply_async(kwargs={**kwargs, **extra}).get(timeout=timeout)
    assert again == first, f"{task.name} is not idempotent: {first!r} then {again!r}"
    return again


# --- schedules ----------------------------------------------------------------------------


def schedule_runs(
    start: datetime, count: int = 3, beat_schedule: dict[str, Any] | None = None
) -> dict[str, list[datetime]]:
    """Each beat entry's next ``count`` runs after ``start`` (a fixed clock, UTC), by name."""
    if beat_schedule is None:
        from saas_tasks import app

        beat_schedule = dict(app.conf.beat_schedule or {})
    return {name: next_runs(e["schedule"], start, count) for name, e in beat_schedule.items()}


# --- fixtures -----------------------------------------------------------------------------


def _clean() -> None:
    from sqlalchemy import delete

    from saas_tasks import app
    from saas_tasks.db import session_scope
    from saas_tasks.models import Base
    from saas_tasks.redis_client import get_redis

    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    client = get_redis()
    keys = list(client.scan_iter("saas_tasks:*", count=1000))
    if keys:
        client.delete(*keys)
    app.control.purge()


@pytest.fixture(scope="session")
def saas_tasks_app() -> Any:
    """The pack's app with every task module imported and the database migrated."""
    from saas_tasks import app, migrate
    from saas_tasks.redis_client import get_redis

    try:
        get_redis().ping()
    except Exception as exc:
        pytest.skip(f"saas_tasks.testing: Redis does not answer ({exc}); set REDIS_URL")
    migrate.upgrade()
    app.loader.import_default_modules()
    return app


@contextmanager
def running_worker(app: Any, hostname: str) -> Iterator[Any]:
    """A real worker in this process (threads, every queue), never eager mode."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="INFO",
        shutdown_timeout=30,
        hostname=hostname,
    ) as worker:
        yield worker


@pytest.fixture(scope="session")
def _saas_tasks_running_worker(saas_tasks_app: Any) -> Iterator[Any]:
    with running_worker(saas_tasks_app, "saas-tasks-testing@localhost") as worker:
        yield worker


@pytest.fixture()
def saas_tasks_clean(saas_tasks_app: Any) -> Iterator[None]:
    """Empty pack tables (``saas_tasks.models.Base``), ``saas_tasks:*`` keys and the queues,
    before and after the test. Only the pack's tables: the host's are its own business."""
    _clean()
    yield
    _clean()


@pytest.fixture()
def saas_tasks_worker(_saas_tasks_running_worker: Any, saas_tasks_clean: None) -> Any:
    """A running worker (in this process, threads) consuming every queue, clean state."""
    return _saas_tasks_running_worker
