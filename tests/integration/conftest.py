"""Integration tier: a real Celery worker, in this process (celery.contrib.testing), on the
real Redis and database. Never eager mode: messages cross the broker both ways.

The fixture is named ``inproc_worker`` so it cannot be confused with pytest-celery's
container-backed ``celery_worker`` (whose plugin is disabled outside tests/smoke).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def celery_app(redis_url: str, database_url: str) -> Any:
    import tests.sample_tasks  # noqa: F401 - registers the host-app style tasks
    from saas_tasks import app

    app.loader.import_default_modules()
    return app


@pytest.fixture(scope="session")
def inproc_worker(celery_app: Any) -> Iterator[Any]:
    from saas_tasks.testing import running_worker  # the same worker host apps get

    with running_worker(celery_app, "inproc@tests") as worker:
        yield worker


@pytest.fixture()
def worker(inproc_worker: Any, clean_state: None) -> Any:
    """A running in-process worker and a clean database and Redis around the test."""
    inproc_worker.app.control.purge()
    return inproc_worker
