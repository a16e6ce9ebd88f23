"""A task Celery stops because the broker connection was lost keeps its message.

With ``worker_cancel_long_running_tasks_on_connection_loss`` (set in config/celeryconfig.py)
Celery stops the running late-acked tasks when it loses the broker, for their messages to be
delivered again. It marks such a request as cancelled only after storing its RETRY state in the
result backend; when the backend is the Redis that went away, that store fails, the mark is never
set, and the stopped child's ``Terminated`` is taken for a revoke, which *acks* the message: the
task is gone (seen in the Redis restart chaos test). The pack's consumer sets the mark first
(:func:`saas_tasks.reliability.consumer.keep_for_redelivery`).

Real parts: a task message published to and fetched from a Redis of the test's own, a real
Celery request for it, and the failure Celery's pool reports for a stopped child.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
import redis
from billiard.einfo import ExceptionInfo
from billiard.exceptions import Terminated
from celery.worker.request import Request

from saas_tasks.app import app
from saas_tasks.reliability.consumer import keep_for_redelivery
from tests.sample_tasks import slow
from tests.services import PrivateRedis


def stopped_child() -> ExceptionInfo:
    """What the prefork pool reports for a child stopped with SIGTERM."""
    try:
        raise Terminated(signal.SIGTERM)
    except Terminated:
        return ExceptionInfo()


@pytest.mark.parametrize("kept", [True, False], ids=["marked-by-the-pack", "celery-alone"])
def test_a_task_stopped_on_connection_loss_leaves_its_message_unacked(
    tmp_path: Path, kept: bool
) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    try:
        with app.connection_for_write(server.url) as connection:
            slow.apply_async(
                kwargs={"seconds": 1, "marker": queue}, queue=queue, connection=connection
            )
        with app.connection_for_read(server.url) as connection:
            message = connection.default_channel.basic_get(queue, no_ack=False)
            assert message is not None
            request = Request(message, on_ack=message.ack_log_error, app=app, task=slow)
            tag = message.delivery_tag
            direct = redis.Redis.from_url(server.url)
            assert direct.hexists("unacked", tag)  # delivered, held until acked

            if kept:
                keep_for_redelivery([request])
            request.on_failure(stopped_child())

            # Kept: no ack, so the message goes back on the queue (close or visibility timeout).
            # Celery alone: the stop is taken for a revoke and the message is acked, for good.
            assert direct.hexists("unacked", tag) is kept
            assert request.acknowledged is not kept
    finally:
        server.stop()


def test_a_request_acked_already_is_not_marked(tmp_path: Path) -> None:
    """An acked message has nothing left to keep: marking its request would only hide its end
    from Celery's bookkeeping."""
    server = PrivateRedis(tmp_path / "redis").start()
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    try:
        with app.connection_for_write(server.url) as connection:
            for _ in range(2):
                slow.apply_async(
                    kwargs={"seconds": 1, "marker": queue}, queue=queue, connection=connection
                )
        with app.connection_for_read(server.url) as connection:
            channel = connection.default_channel
            late, acked = (channel.basic_get(queue, no_ack=False) for _ in range(2))
            late_request = Request(late, on_ack=late.ack_log_error, app=app, task=slow)
            acked_request = Request(acked, on_ack=acked.ack_log_error, app=app, task=slow)
            acked_request.acknowledge()
            keep_for_redelivery([late_request, acked_request])
            assert late_request._already_cancelled is True
            assert acked_request._already_cancelled is False
    finally:
        server.stop()
