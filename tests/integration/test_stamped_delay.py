"""A plain ``.delay(**kwargs)`` from a web process: the first two go through Celery, the rest
are stamped from them. Read back from a Redis no worker consumes, every message and its
``task-sent`` event equal Celery's but for ids, tags, clock and time; a call with options, or
with a publish signal handler connected, goes through Celery. A fresh interpreter plays the
web app."""

from __future__ import annotations

from pathlib import Path

from tests.web_process import run_against_private_redis, without_ids

SCRIPT = """
import base64, json, sys, time
import redis
from celery import signals
from saas_tasks.reliability import stamped_delay
from tests.sample_tasks import charge
client = redis.Redis.from_url(sys.argv[1])
events = client.pubsub()
events.psubscribe("*celeryev*")
events.get_message(timeout=1)
payload = {"invoice_id": 5, "amount": 700, "currency": "eur", "api_token": "tok_secret"}
ids = [charge.delay(**payload).id for _ in range(5)]
after_five = dict(stamped_delay.STATS)
ids.append(charge.apply_async(kwargs=payload, countdown=60).id)  # an option: Celery's path
seen = []
signals.before_task_publish.connect(lambda headers, **kw: seen.append(headers["id"]), weak=False)
ids.append(charge.delay(**payload).id)  # a handler connected: Celery's path
(queue,) = [key for key in client.keys() if client.type(key) == b"list"]
messages = [json.loads(m) for m in reversed(client.lrange(queue, 0, -1))]
for m in messages:
    m["body"] = json.loads(base64.b64decode(m["body"]))
sent, deadline = [], time.monotonic() + 10
while len(sent) < 7 and time.monotonic() < deadline:
    got = events.get_message(timeout=1)
    if got and got["type"] == "pmessage":
        body = json.loads(base64.b64decode(json.loads(got["data"])["body"]))
        sent += body if isinstance(body, list) else [body]
print(json.dumps({"ids": ids, "messages": messages, "events": sent, "after_five": after_five,
                  "stats": stamped_delay.STATS, "seen": seen}))
"""


def test_plain_delays_are_stamped_field_for_field_like_celerys_and_the_rest_are_not(
    tmp_path: Path,
) -> None:
    out = run_against_private_redis(SCRIPT, tmp_path / "redis")
    messages, ids = out["messages"], out["ids"]
    # Two through Celery, one stamp learned from them, three stamped; then none stamped.
    assert out["after_five"] == {"stamped": 3, "learned": 1, "refused": 0}
    assert out["stats"]["stamped"] == 3
    assert out["seen"] == [ids[6]]  # the handler saw the call made after it was connected
    assert [m["headers"]["id"] for m in messages] == ids
    assert [e["uuid"] for e in out["events"]] == ids
    for message in messages[:5]:
        assert without_ids(message) == without_ids(messages[0])
        assert message["headers"]["root_id"] == message["headers"]["id"]
        assert "tok_secret" not in message["headers"]["kwargsrepr"]
        assert message["body"][1]["api_token"] == "tok_secret"
    assert messages[5]["headers"]["eta"] is not None  # the countdown went through Celery
    assert without_ids(messages[6]) == without_ids(messages[0])
    clocks = [e["clock"] for e in out["events"]]
    assert clocks == sorted(set(clocks))
