"""Chaos: poison messages published straight to the broker, as a foreign producer or an attacker
would, to a real ``celery worker`` subprocess: each is refused, none runs, each is recorded as
a dead letter once, and the worker keeps consuming (a good task sent after them runs).

The integration tier covers each kind against an in-process worker
(tests/integration/test_poison_messages.py, whose message-building helpers these reuse); here
they arrive back to back at a prefork worker on the system queue.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from saas_tasks import app
from saas_tasks.reliability import deadletter
from tests import sample_tasks
from tests.conftest import wait_for
from tests.integration import test_poison_messages as poison
from tests.integration.test_poison_messages import EMBED, _Canary, protocol2_headers
from tests.system.conftest import QUEUE, CeleryProcess

HUGE = 5 * 1024 * 1024


def publish_raw(
    body: bytes, content_type: str, headers: dict[str, Any], content_encoding: str = "utf-8"
) -> None:
    """Publish ``body`` as is (no serializer) to the system queue."""
    poison.publish_raw(app, body, content_type, headers, content_encoding, queue_name=QUEUE)


def envelope_without_task(client: Any) -> None:
    """A kombu envelope (valid JSON, as kombu's Redis transport stores it) whose message has no
    headers at all, so no task name: pushed onto the queue's list with redis-py itself."""
    envelope = {
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
    client.lpush(QUEUE, json.dumps(envelope))


def entries_by_task_id() -> dict[str, Any]:
    return {entry.task_id: entry for entry in deadletter.list_entries(deadletter.Filters())}


def assert_still_consuming(worker: CeleryProcess) -> None:
    """A good task sent after the poison runs on ``worker``, which is still alive."""
    marker = uuid.uuid4().hex
    good = sample_tasks.echo.apply_async((marker,), queue=QUEUE)
    wait_for(
        lambda: good.ready() or not worker.alive(),
        timeout=30,
        message="the good task to run, or the worker to stop",
    )
    assert worker.alive(), worker.log()[-3000:]
    assert good.get(timeout=5) == marker


@pytest.mark.timeout(120)
def test_poison_messages_are_each_refused_and_dead_lettered_and_the_worker_keeps_consuming(
    system_worker: CeleryProcess, redis_client: Any, tmp_path: Path
) -> None:
    canary = tmp_path / "unpickled"
    ids = {kind: str(uuid.uuid4()) for kind in ("not_json", "unknown", "pickle", "huge")}
    publish_raw(
        b"{this is not json: \xff\xfe",
        "application/json",
        protocol2_headers("tests.mark", ids["not_json"]),
    )
    publish_raw(
        json.dumps([["payload"], {"key": "value"}, EMBED]).encode(),
        "application/json",
        protocol2_headers("nope.missing", ids["unknown"]),
    )
    publish_raw(
        pickle.dumps((("pickled", _Canary(canary)), {}, EMBED)),
        "application/x-python-serialize",
        protocol2_headers("tests.mark", ids["pickle"]),
        content_encoding="binary",
    )
    publish_raw(
        b"[" + b"y" * HUGE, "application/json", protocol2_headers("tests.mark", ids["huge"])
    )
    envelope_without_task(redis_client)
    marker = uuid.uuid4().hex
    good = sample_tasks.echo.apply_async((marker,), queue=QUEUE)

    assert good.get(timeout=30) == marker  # the worker kept consuming, after all five
    stored = wait_for(
        lambda: (found := entries_by_task_id()) and len(found) > len(ids) and found,
        timeout=30,
        message="the five dead letters",
    )
    [headerless] = [entry for task_id, entry in stored.items() if task_id not in ids.values()]
    by_kind = {kind: stored[task_id] for kind, task_id in ids.items()}
    assert by_kind["not_json"].reason == "decode_error"
    assert by_kind["not_json"].exception_type == "kombu.exceptions.DecodeError"
    assert "this is not json" in by_kind["not_json"].headers["body"]
    assert by_kind["unknown"].reason == "unknown_task"
    assert by_kind["unknown"].task_name == "nope.missing"
    assert by_kind["unknown"].args == ["payload"] and by_kind["unknown"].kwargs == {"key": "value"}
    assert by_kind["pickle"].reason == "rejected"
    assert by_kind["pickle"].exception_type == "kombu.exceptions.ContentDisallowed"
    assert by_kind["huge"].reason == "decode_error"
    assert len(by_kind["huge"].headers["body"]) <= 10_100  # kept small: the middle is cut
    assert headerless.reason == "rejected" and headerless.task_name == "unknown"
    assert '{"no": "task"}' in headerless.headers["body"]
    for entry in [*by_kind.values(), headerless]:
        assert entry.queue == QUEUE and entry.failure_count == 1
    assert len(stored) == len(ids) + 1  # nothing else failed: the good task did not
    assert not canary.exists()  # the pickle was never unpickled
    assert redis_client.llen("test:mark") == 0  # and no poison ran as tests.mark
    assert redis_client.llen(QUEUE) == 0  # acked or rejected, none left to come back
    assert system_worker.alive()


@pytest.mark.timeout(120)
def test_a_queue_entry_that_is_not_a_kombu_envelope_is_dead_lettered_and_the_worker_goes_on(
    system_worker: CeleryProcess, redis_client: Any
) -> None:
    raw = b"\x00\xffnot an envelope at all"
    redis_client.lpush(QUEUE, raw)
    redis_client.lpush(QUEUE, json.dumps({"body": "no properties", "headers": {}}))
    assert_still_consuming(system_worker)
    stored = wait_for(
        lambda: len(found := entries_by_task_id()) >= 2 and found,
        timeout=30,
        message="the two dead letters",
    )
    assert len(stored) == 2  # the good task did not fail
    [garbage] = [e for e in stored.values() if "not an envelope" in e.headers["body"]]
    [no_properties] = [e for e in stored.values() if "no properties" in e.headers["body"]]
    for entry in (garbage, no_properties):
        assert entry.reason == "decode_error" and entry.queue == QUEUE
        assert entry.exception_type == "saas_tasks.exceptions.MalformedQueueEntry"
        assert entry.failure_count == 1
    assert "not JSON" in garbage.exception_message
    assert base64.b64decode(garbage.headers["body_base64"]) == raw  # the exact bytes kept
    assert "'properties'" in no_properties.exception_message
    assert redis_client.llen(QUEUE) == 0
    system_worker.wait_for_log("an entry that is not a kombu message", timeout=5)


@pytest.mark.timeout(120)
def test_a_message_for_a_known_task_with_a_body_that_is_not_args_kwargs_embed_is_dead_lettered(
    system_worker: CeleryProcess, redis_client: Any
) -> None:
    bad_bodies = [{"not": "args, kwargs, embed"}, [1, 2, 3], [[], ["kwargs"], None], "args"]
    task_ids = [str(uuid.uuid4()) for _ in bad_bodies]
    for body, task_id in zip(bad_bodies, task_ids, strict=True):
        publish_raw(
            json.dumps(body).encode(), "application/json", protocol2_headers("tests.mark", task_id)
        )
    assert_still_consuming(system_worker)
    entries = wait_for(
        lambda: all(t in entries_by_task_id() for t in task_ids) and entries_by_task_id(),
        timeout=30,
        message="a dead letter for each bad body",
    )
    for task_id in task_ids:
        assert entries[task_id].task_name == "tests.mark"
        assert "[args, kwargs, embed]" in (entries[task_id].exception_message or "")
    assert redis_client.llen("test:mark") == 0
