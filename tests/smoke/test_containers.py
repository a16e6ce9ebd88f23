"""pytest-celery's own containers: a broker, a result backend and a worker, over the network."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pytest_celery")


def test_a_containerised_worker_runs_a_task_sent_over_the_broker(celery_setup: Any) -> None:
    from pytest_celery import RESULT_TIMEOUT, ping

    result = ping.s().apply_async(queue=celery_setup.worker.worker_queue)

    assert result.get(timeout=RESULT_TIMEOUT) == "pong"
