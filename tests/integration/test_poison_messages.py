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

import base64
import json
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Queue

from saas_tasks.reliability import deadletter
from saas_tasks.reliability.redis_transport import PoisonSafeChannel, PoisonSafeConnection
from saas_tasks.settings import get_settings
from tests import sample_tasks
from tests.conftest import wait_for
from tests.services import PrivateRedis

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


# --- queue entries that are not kombu messages at all ------------------------------------------


DROP = object()


def envelope(path: str = "", value: Any = DROP) -> bytes:
    """A kombu envelope as its Redis transport stores it (a task with no headers), with the
    field at the dotted ``path`` set to ``value``, or dropped."""
    found: dict[str, Any] = {
        "body": base64.b64encode(b'{"no": "task"}').decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": QUEUE, "routing_key": QUEUE},
            "priority": 0,
        },
    }
    *parents, name = path.split(".")
    where = found
    for parent in parents:
        where = where[parent]
    if value is DROP:
        where.pop(name)
    else:
        where[name] = value
    return json.dumps(found).encode()


MALFORMED = {
    "not JSON": b"\x00\xffnot an envelope at all",
    "JSON text": b'"garbage"',
    "JSON list": b"[1, 2, 3]",
    "JSON number": b"42",
    "JSON null": b"null",
    "kombu type marker": b'{"__type__": "nope", "__value__": 1}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "no properties": envelope("properties"),
    "properties a string": envelope("properties", "x"),
    "no delivery tag": envelope("properties.delivery_tag"),
    "delivery tag a list": envelope("properties.delivery_tag", [1]),
    "delivery tag a boolean": envelope("properties.delivery_tag", True),
    "no delivery info": envelope("properties.delivery_info"),
    "delivery info a list": envelope("properties.delivery_info", [QUEUE]),
    "no routing key": envelope("properties.delivery_info.routing_key"),
    "exchange a number": envelope("properties.delivery_info.exchange", 5),
    "body not base64": envelope("body", "%%% not base64 %%%"),
    "body a number": envelope("body", 5),
    "no body": envelope("body"),
    "body null": envelope("body", None),
    "unknown body encoding": envelope("properties.body_encoding", "rot13"),
}


@pytest.fixture()
def redis_broker() -> None:
    """These tests write to a Redis queue list; with ``BROKER_URL=amqp://`` there is none."""
    if not get_settings().broker_is_redis:
        pytest.skip("the broker is not Redis: no queue list to push a raw entry onto")


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_queue_entry_that_is_not_a_kombu_message_is_dead_lettered_and_the_worker_goes_on(
    worker: Any, redis_client: Any, redis_broker: None, kind: str
) -> None:
    raw = MALFORMED[kind]
    redis_client.lpush(QUEUE, raw)

    assert_worker_keeps_consuming()
    [entry] = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters()), timeout=20, message="a dead letter"
    )
    assert entry.reason == "decode_error" and entry.task_name == "unknown"
    assert entry.exception_type == "saas_tasks.exceptions.MalformedQueueEntry"
    assert entry.queue == QUEUE
    text = raw.decode("utf-8", "replace")
    assert entry.headers["body"].replace("\\x00", "\x00")[:50] == text[:50]
    assert redis_client.llen(QUEUE) == 0


def test_the_worker_reads_its_queues_through_the_poison_safe_channel(
    worker: Any, redis_broker: None
) -> None:
    channel = worker.consumer.task_consumer.channel
    assert isinstance(channel, PoisonSafeChannel)
    assert channel.handlers["BRPOP"].__func__ is PoisonSafeChannel._brpop_read


def test_over_a_unix_socket_a_bad_entry_is_dead_lettered_and_the_next_message_arrives(
    worker: Any, redis_broker: None
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="saas-tasks-sock-"))  # Unix socket paths are short
    socket_path = directory / "redis.sock"
    server = PrivateRedis(directory, unixsocket=socket_path).start()
    queue = Queue("socket-tests", routing_key="socket-tests")
    received: list[Any] = []
    try:
        with PoisonSafeConnection(f"redis+socket://{socket_path}") as connection:
            queue(connection.default_channel).declare()
            client = redis.Redis(unix_socket_path=str(socket_path))
            client.lpush(queue.name, b"not an envelope, over a socket")
            connection.Producer().publish({"hello": "socket"}, routing_key=queue.name)

            def on_message(body: Any, message: Any) -> None:
                received.append(body)
                message.ack()

            with connection.Consumer([queue], callbacks=[on_message], accept=["json"]):
                wait_for(lambda: received or connection.drain_events(timeout=5), timeout=20)
            assert client.llen(queue.name) == 0
            client.close()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    assert received == [{"hello": "socket"}]
    [entry] = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters()), timeout=20, message="a dead letter"
    )
    assert entry.queue == queue.name and entry.reason == "decode_error"
    assert entry.headers["body"] == "not an envelope, over a socket"


def test_a_broadcast_that_is_not_a_kombu_message_is_dropped_and_remote_control_still_answers(
    worker: Any, redis_client: Any, redis_broker: None, caplog: pytest.LogCaptureFixture
) -> None:
    channel = worker.consumer.task_consumer.channel
    pidbox = f"{channel.keyprefix_fanout}{worker.app.control.mailbox.namespace}.pidbox"

    assert redis_client.publish(pidbox, json.dumps({"not": "a kombu message"})) >= 1

    assert_worker_keeps_consuming()
    assert worker.app.control.ping(destination=[worker.hostname], timeout=5)
    assert "dropped a broadcast that is not a kombu message" in caplog.text
    assert deadletter.list_entries(deadletter.Filters()) == []
