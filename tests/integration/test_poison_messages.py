"""Poison messages, published straight to the broker with kombu as a foreign producer or an
attacker would: each is recorded as a dead letter, none runs, and the worker keeps consuming.

What Celery does with each, and so which hook records it:

=========================  =================================  ===============================
message                    Celery                             dead letter ``reason``
=========================  =================================  ===============================
unknown task name          ``task_unknown``; result FAILURE   ``unknown_task``
not JSON, claims JSON      decode error, message acked        ``decode_error`` (our consumer)
pickle                     ``ContentDisallowed``, rejected    ``rejected`` (``task_rejected``)
=========================  =================================  ===============================
"""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from saas_tasks.reliability import deadletter
from tests import sample_tasks
from tests.conftest import wait_for

QUEUE = "default"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def protocol2_headers(task: str, task_id: str) -> dict[str, Any]:
    """The headers Celery's own producer sends (task message protocol 2)."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "shadow": None,
        "eta": None,
        "expires": None,
        "retries": 0,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "poison@tests",
        "ignore_result": False,
    }


def publish_raw(
    app: Any,
    body: bytes,
    content_type: str,
    headers: dict[str, Any],
    content_encoding: str = "utf-8",
    queue_name: str = QUEUE,
) -> None:
    """Publish ``body`` as is (no serializer) to ``queue_name`` (the ``default`` queue)."""
    queue = app.amqp.queues[queue_name]
    with app.connection_for_write() as connection:
        connection.Producer().publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            content_type=content_type,
            content_encoding=content_encoding,
            headers=headers,
            correlation_id=headers.get("id"),
            retry=False,
        )


def dead_letter_of(task_id: str) -> Any:
    def stored() -> Any:
        entries = [e for e in deadletter.list_entries(deadletter.Filters()) if e.task_id == task_id]
        return entries[0] if entries else None

    return wait_for(stored, timeout=20, message=f"the dead letter of {task_id}")


def assert_worker_keeps_consuming() -> None:
    marker = uuid.uuid4().hex
    assert sample_tasks.echo.delay(marker).get(timeout=20) == marker


def test_unknown_task_name_is_dead_lettered_and_the_worker_keeps_consuming(
    worker: Any, redis_client: Any
) -> None:
    task_id = str(uuid.uuid4())
    body = json.dumps([["payload"], {"key": "value"}, EMBED]).encode()
    publish_raw(worker.app, body, "application/json", protocol2_headers("nope.missing", task_id))

    entry = dead_letter_of(task_id)
    assert entry.reason == "unknown_task"
    assert entry.task_name == "nope.missing"
    assert "no task named 'nope.missing'" in entry.exception_message
    assert entry.args == ["payload"] and entry.kwargs == {"key": "value"}  # replayable later
    assert entry.queue == QUEUE
    assert worker.app.AsyncResult(task_id).state == "FAILURE"  # a waiting caller is told
    assert_worker_keeps_consuming()


def test_non_json_body_claiming_json_is_dead_lettered_unrun_and_the_worker_keeps_consuming(
    worker: Any, redis_client: Any
) -> None:
    task_id = str(uuid.uuid4())
    body = b"{this is not json: \xff\xfe"
    publish_raw(worker.app, body, "application/json", protocol2_headers("tests.mark", task_id))

    entry = dead_letter_of(task_id)
    assert entry.reason == "decode_error"
    assert entry.task_name == "tests.mark"
    assert entry.exception_type == "kombu.exceptions.DecodeError"
    assert "this is not json" in entry.headers["body"]
    assert entry.headers["content_type"] == "application/json"
    assert_worker_keeps_consuming()
    assert redis_client.llen("test:mark") == 0  # the task never ran


class _Canary:
    """Unpickling this creates ``path``: proof that the worker deserialised the pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_pickle_serialized_message_is_refused_never_unpickled_and_dead_lettered(
    worker: Any, redis_client: Any, tmp_path: Path
) -> None:
    canary = tmp_path / "unpickled"
    task_id = str(uuid.uuid4())
    body = pickle.dumps((("pickled", _Canary(canary)), {}, EMBED))
    publish_raw(
        worker.app,
        body,
        "application/x-python-serialize",
        protocol2_headers("tests.mark", task_id),
        content_encoding="binary",
    )

    entry = dead_letter_of(task_id)
    assert entry.reason == "rejected"
    assert entry.task_name == "tests.mark"
    assert entry.exception_type == "kombu.exceptions.ContentDisallowed"
    assert "application/x-python-serialize" in entry.exception_message
    assert_worker_keeps_consuming()
    assert not canary.exists()  # the body was never unpickled
    assert redis_client.llen("test:mark") == 0  # and the task never ran
    assert worker.app.AsyncResult(task_id).state == "PENDING"


def test_five_megabyte_payload_runs_and_the_worker_keeps_consuming(worker: Any) -> None:
    blob = "x" * (5 * 1024 * 1024)
    assert sample_tasks.size.delay(blob).get(timeout=30) == len(blob)
    assert_worker_keeps_consuming()


def test_five_megabyte_undecodable_message_is_dead_lettered_with_its_body_cut(
    worker: Any,
) -> None:
    task_id = str(uuid.uuid4())
    body = b"[" + b"y" * (5 * 1024 * 1024)
    publish_raw(worker.app, body, "application/json", protocol2_headers("tests.mark", task_id))

    entry = dead_letter_of(task_id)
    assert entry.reason == "decode_error"
    assert len(entry.headers["body"]) <= 10_100  # kept small: the middle is cut
    assert_worker_keeps_consuming()


@pytest.mark.parametrize("content_type", ["application/json", "application/x-python-serialize"])
def test_poison_message_is_recorded_once_not_redelivered(
    worker: Any, redis_client: Any, content_type: str
) -> None:
    task_id = str(uuid.uuid4())
    publish_raw(
        worker.app,
        b"\x80garbage",
        content_type,
        protocol2_headers("tests.mark", task_id),
        content_encoding="binary",
    )
    dead_letter_of(task_id)
    assert_worker_keeps_consuming()
    [entry] = [e for e in deadletter.list_entries(deadletter.Filters()) if e.task_id == task_id]
    assert entry.failure_count == 1
    assert redis_client.llen(QUEUE) == 0  # acked or rejected, not back in the queue
