"""Shared fixtures: the real services, a fresh schema, clean state around every test.

The environment is settled in ``pytest_configure``, before any test module imports
``saas_tasks`` (whose app reads its settings at import).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import PrivateRedis, database_answers, in_ci, redis_answers

RUN_DIR = Path(tempfile.mkdtemp(prefix="saas-tasks-tests-"))
_private_redis: PrivateRedis | None = None
_service_problems: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    global _private_redis
    os.environ["SAAS_TASKS_ENV"] = "test"
    os.environ.setdefault("SAAS_TASKS_SPOOL_DIR", str(RUN_DIR / "spool"))
    os.environ.setdefault("EMAIL_URL", f"file://{RUN_DIR / 'outbox'}")
    os.environ.setdefault("SAAS_TASKS_TASK_TIME_LIMIT", "60")
    os.environ.setdefault("SAAS_TASKS_TASK_SOFT_TIME_LIMIT", "50")
    os.environ.setdefault("SAAS_TASKS_EXPORT_TIME_LIMIT", "60")
    os.environ.setdefault("SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT", "50")
    os.environ.setdefault("SAAS_TASKS_EXPORT_STORAGE_URL", f"file://{RUN_DIR / 'exports'}")
    if not os.environ.get("REDIS_URL"):
        try:
            _private_redis = PrivateRedis(RUN_DIR / "redis").start()
            os.environ["REDIS_URL"] = _private_redis.url
            atexit.register(_private_redis.stop)
        except RuntimeError as exc:
            _service_problems["redis"] = str(exc)
    elif not redis_answers(os.environ["REDIS_URL"]):
        _service_problems["redis"] = f"REDIS_URL={os.environ['REDIS_URL']} does not answer"
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{RUN_DIR / 'test.db'}"
    problem = database_answers(os.environ["DATABASE_URL"])
    if problem:
        _service_problems["database"] = problem
    if in_ci() and _service_problems:
        raise pytest.UsageError(f"CI=true and a service is missing: {_service_problems}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_redis is not None:
        _private_redis.stop()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from saas_tasks.reliability.redaction import redact_url

    return [
        f"saas-tasks services: REDIS_URL={redact_url(os.environ.get('REDIS_URL', '?'))} "
        f"({'private' if _private_redis else 'given'}), "
        f"DATABASE_URL={redact_url(os.environ.get('DATABASE_URL', '?'))}",
        *(f"service problem: {name}: {why}" for name, why in _service_problems.items()),
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in {"unit", "integration", "system", "smoke"}:
            item.add_marker(getattr(pytest.mark, tier))


def require(service: str) -> None:
    if service in _service_problems:
        pytest.skip(f"{service} unavailable: {_service_problems[service]}")
    problem = services_mismatch()
    if problem:
        pytest.fail(f"saas_tasks was imported before the test environment was set: {problem}")


def services_mismatch() -> str | None:
    """Why this process's app would not talk to the session's services, or None.

    ``saas_tasks`` reads its settings once, at import: imported before ``pytest_configure``
    settled ``REDIS_URL``/``DATABASE_URL``, the tests would purge, publish to and drop tables in
    the defaults (a shared Redis on 6379, ./var/saas_tasks.db). Checked before any fixture
    touches a service.
    """
    from saas_tasks import app
    from saas_tasks.db import database_url, normalise_url

    broker = os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL")
    if broker and app.conf.broker_url != broker:
        return f"the app's broker is {app.conf.broker_url}, the session's is {broker}"
    wanted = os.environ.get("DATABASE_URL")
    if wanted and database_url() != normalise_url(wanted):
        return f"the app's database is {database_url()}, the session's is {wanted}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis of this run, with kombu's exchange bindings reset: a worker declares its own
    at start, and bindings left by an older queue layout would copy messages into stale queues."""
    require("redis")
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    stale = list(client.scan_iter("_kombu.binding.*"))
    if stale:
        client.delete(*stale)
    client.close()
    return os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A freshly migrated database for the session."""
    require("database")
    from sqlalchemy import text

    from saas_tasks import db, migrate
    from saas_tasks.models import Base

    engine = db.get_engine()
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    migrate.upgrade()
    yield os.environ["DATABASE_URL"]
    db.dispose()


@pytest.fixture()
def redis_client(redis_url: str) -> Any:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def truncate_all() -> None:
    from sqlalchemy import delete

    from saas_tasks.db import session_scope
    from saas_tasks.models import Base

    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))


def clear_redis(client: Any) -> None:
    """Delete the pack's and the tests' keys; never kombu's bindings, a live worker needs them."""
    for pattern in ("saas_tasks:*", "celery-task-meta-*", "test:*"):
        keys = list(client.scan_iter(pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture()
def clean_state(database_url: str, redis_client: Any) -> Iterator[None]:
    """Empty tables and the pack's Redis keys before and after the test."""
    from saas_tasks.reliability.deadletter import spool_path

    truncate_all()
    clear_redis(redis_client)
    spool_path().unlink(missing_ok=True)
    yield
    truncate_all()
    clear_redis(redis_client)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
