"""``enqueue_many``: many messages of one task over one connection, each what ``.delay()`` would
publish, so the real worker runs them with retries, idempotency and dead-lettering unchanged;
a bad payload anywhere publishes nothing; a dead broker fails as ``.delay()`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import signals

from saas_tasks import BrokerUnavailable, InvalidPayload
from saas_tasks.reliability.bulk import enqueue_many
from saas_tasks.testing import assert_dead_lettered
from tests import sample_tasks
from tests.services import free_port
from tests.web_process import run_against_private_redis, without_ids

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def published() -> Iterator[list[dict[str, Any]]]:
    """Every task message this process publishes during the test, as Celery hands it to kombu
    (the ``before_task_publish`` signal: body, headers, properties, route)."""
    seen: list[dict[str, Any]] = []

    def record(body: Any, exchange: Any, routing_key: str, headers: Any, **kw: Any) -> None:
        seen.append(
            {
                "body": json.loads(json.dumps(body)),
                "exchange": exchange,
                "routing_key": routing_key,
                "headers": dict(headers),
                "properties": dict(kw.get("properties") or {}),
            }
        )

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def test_every_bulk_enqueued_task_runs_on_the_worker(worker: Any, redis_client: Any) -> None:
    payloads = [{"kind": "bulk", "value": str(i)} for i in range(40)]
    results = enqueue_many(sample_tasks.mark, payloads, chunk_size=7)  # 6 round trips
    assert len(results) == 40
    for result in results:
        result.get(timeout=30)
    ran = sorted(int(v) for v in redis_client.lrange("test:bulk", 0, -1))
    assert ran == list(range(40))


def test_bulk_messages_are_what_delay_publishes_but_their_ids(
    worker: Any, published: list[dict[str, Any]]
) -> None:
    kwargs = {"invoice_id": 5, "amount": 700, "currency": "eur", "api_token": "tok_secret"}
    sample_tasks.charge.delay(**kwargs).get(timeout=20)
    enqueue_many(sample_tasks.charge, [kwargs])[0].get(timeout=20)
    by_delay, by_bulk = published
    for message in (by_delay, by_bulk):
        message["headers"].pop("id")
        message["headers"].pop("root_id")
        message["properties"].pop("correlation_id")
    assert by_bulk == by_delay
    assert "tok_secret" not in by_bulk["headers"]["kwargsrepr"]  # redacted like .delay()'s


def test_bulk_enqueued_tasks_keep_their_idempotency(worker: Any, redis_client: Any) -> None:
    same = {"invoice_id": 77, "amount": 100, "currency": "usd"}
    other = {"invoice_id": 78, "amount": 100, "currency": "usd"}
    first, second, third = (
        result.get(timeout=30) for result in enqueue_many(sample_tasks.charge, [same, same, other])
    )
    assert sorted(redis_client.lrange("test:charges", 0, -1)) == [b"77", b"78"]
    assert first == second  # the duplicate got the first run's result
    assert third["invoice_id"] == 78


def test_bulk_enqueued_tasks_keep_their_retries_and_dead_letters(
    worker: Any, redis_client: Any
) -> None:
    flaky, broken = (
        enqueue_many(sample_tasks.flaky, [{"key": "bulk-flaky", "failures": 1}])[0],
        enqueue_many(sample_tasks.broken, [{"reason": "bulk"}])[0],
    )
    assert flaky.get(timeout=30) == {"key": "bulk-flaky", "attempts": 2}
    letter = assert_dead_lettered("tests.broken", "ValueError", timeout=20)
    assert letter.retries == 0
    assert broken.id == letter.task_id


def test_a_bad_payload_anywhere_raises_invalid_payload_naming_it_and_publishes_nothing(
    worker: Any, redis_client: Any, published: list[dict[str, Any]]
) -> None:
    good = {"invoice_id": 1, "amount": 100, "currency": "eur"}
    with pytest.raises(InvalidPayload, match=r"payloads\[2\]: .*amount"):
        enqueue_many(sample_tasks.charge, [good, {**good, "invoice_id": 2}, {**good, "amount": 0}])
    with pytest.raises(InvalidPayload, match=r"payloads\[1\] for tests.echo: not serializable"):
        enqueue_many(sample_tasks.echo, [{"value": 1}, {"value": object()}])
    with pytest.raises(InvalidPayload, match=r"payloads\[0\]: .*unexpected keyword argument"):
        enqueue_many(sample_tasks.echo, [{"valeu": 1}])
    with pytest.raises(InvalidPayload, match=r"payloads\[1\]: .*idempotency_key"):
        enqueue_many(
            sample_tasks.by_caller_key, [{"value": "a", "idempotency_key": "k"}, {"value": "b"}]
        )
    time.sleep(0.5)  # anything published would have run by now
    assert published == []
    assert redis_client.lrange("test:charges", 0, -1) == []


def test_nothing_to_enqueue_publishes_nothing(published: list[dict[str, Any]]) -> None:
    assert enqueue_many(sample_tasks.echo, []) == []
    assert published == []


SCRIPT = """
import json, time
from tests.sample_tasks import echo
from saas_tasks.reliability.bulk import enqueue_many
outcomes = {}
for how, call in (("delay", lambda: echo.delay("hello")),
                  ("bulk", lambda: enqueue_many(echo, [{"value": i} for i in range(1000)]))):
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        outcomes[how] = {"type": f"{type(exc).__module__}.{type(exc).__name__}",
                         "message": str(exc)}
    else:
        outcomes[how] = {"type": None, "message": "enqueued"}
    outcomes[how]["elapsed"] = time.monotonic() - started
print(json.dumps(outcomes))
"""


def test_a_dead_broker_raises_the_same_broker_unavailable_as_delay(redis_url: str) -> None:
    """In a fresh interpreter: the app reads REDIS_URL once, at import, as a web app would."""
    closed = free_port()  # bound and released: nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env.update(REDIS_URL=f"redis://127.0.0.1:{closed}/0", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    delay, bulk = outcomes["delay"], outcomes["bulk"]
    assert bulk["type"] == delay["type"] == f"saas_tasks.exceptions.{BrokerUnavailable.__name__}"
    # The same wording, address and fix; only the low-level cause in brackets may differ
    # (.delay() may first fail on the result store's subscription, which bulk does not make).
    assert bulk["message"].split(" (")[0] == delay["message"].split(" (")[0]
    assert bulk["message"].split(").")[-1] == delay["message"].split(").")[-1]
    assert f"127.0.0.1:{closed}" in bulk["message"]
    assert "nothing was enqueued" in bulk["message"]
    assert bulk["elapsed"] < 2.5


def test_chunk_size_must_be_a_positive_integer() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            enqueue_many(sample_tasks.echo, [{"value": 1}], chunk_size=bad)  # type: ignore[arg-type]


STAMP_SCRIPT = """
import base64, json, sys, time
import redis
from saas_tasks.reliability import bulk
from tests.sample_tasks import charge
client = redis.Redis.from_url(sys.argv[1])
events = client.pubsub()
events.psubscribe("*celeryev*")
events.get_message(timeout=1)
payload = {"invoice_id": 5, "amount": 700, "currency": "eur", "api_token": "tok_secret"}
by_delay = charge.delay(**payload).id
by_bulk = [r.id for r in bulk.enqueue_many(charge, [payload] * 7, chunk_size=3)]
(queue,) = [key for key in client.keys() if client.type(key) == b"list"]
messages = [json.loads(m) for m in reversed(client.lrange(queue, 0, -1))]
for m in messages:
    m["body"] = json.loads(base64.b64decode(m["body"]))
# Celery's event receiver (Flower's) reads a message's body as one event, or a list of them.
sent, keys, deadline = [], [], time.monotonic() + 10
while len(sent) < 8 and time.monotonic() < deadline:
    got = events.get_message(timeout=1)
    if got and got["type"] == "pmessage":
        envelope = json.loads(got["data"])
        body = json.loads(base64.b64decode(envelope["body"]))
        keys.append(envelope["properties"]["delivery_info"]["routing_key"])
        sent += body if isinstance(body, list) else [body]
stats = client.info("commandstats")
calls = {"lpush": stats.get("cmdstat_lpush", {}).get("calls", 0)}
out = {"ids": [by_delay, *by_bulk], "messages": messages, "events": sent, "calls": calls,
       "keys": keys}
print(json.dumps(out))
"""


def _event_without_ids(event: dict[str, Any]) -> dict[str, Any]:
    varying = ("uuid", "root_id", "clock", "timestamp")
    return {k: v for k, v in event.items() if k not in varying}


def test_stamped_messages_are_field_for_field_what_delay_pushes_but_their_ids(
    tmp_path: Path,
) -> None:
    """Past the first two, a bulk call's messages are stamped from the first (on Redis, with no
    publish signal handlers): read back from a Redis no worker consumes, each message and its
    task-sent event equal ``.delay()``'s but for the ids, tags, clock and time; the stamped
    events come a chunk per message, as a list, the form Celery's event receiver reads."""

    out = run_against_private_redis(STAMP_SCRIPT, tmp_path / "redis")
    messages, events, ids = out["messages"], out["events"], out["ids"]
    # .delay() 1 LPUSH; bulk: Celery 2 (one pipeline), then 3 + 2 stamped, one LPUSH a chunk
    # (each in its MULTI/EXEC). Had the stamp been refused, there would be 8 LPUSHes.
    assert out["calls"]["lpush"] == 5
    assert [m["headers"]["id"] for m in messages] == ids  # all 8, in the order enqueued
    assert [e["uuid"] for e in events] == ids
    # .delay()'s and the two Celery-built ones: one task.sent each; the stamped chunks of 3 and
    # 2: one task.multi each, the event group a worker's buffered events also use.
    assert out["keys"] == ["task.sent"] * 3 + ["task.multi"] * 2
    for message in messages:
        assert message["headers"]["root_id"] == message["headers"]["id"]
        assert message["properties"]["correlation_id"] == message["headers"]["id"]
        assert without_ids(message) == without_ids(messages[0])
    assert len({m["properties"]["delivery_tag"] for m in messages}) == 8
    assert "tok_secret" not in messages[-1]["headers"]["kwargsrepr"]
    assert messages[-1]["body"][1]["api_token"] == "tok_secret"  # the body keeps the real value
    clocks = [e["clock"] for e in events]
    assert clocks == sorted(set(clocks))  # each sent event ticks the app's clock
    for event in events:
        assert _event_without_ids(event) == _event_without_ids(events[0])


def test_publish_signal_handlers_see_every_bulk_message(
    worker: Any, published: list[dict[str, Any]]
) -> None:
    """A ``before_task_publish`` handler (tracing, say, adding headers) sees each message: with
    one connected, the messages are not stamped but built by Celery, one by one."""
    results = enqueue_many(sample_tasks.echo, [{"value": i} for i in range(6)])
    assert [m["headers"]["id"] for m in published] == [r.id for r in results]
    assert [r.get(timeout=20) for r in results] == list(range(6))
