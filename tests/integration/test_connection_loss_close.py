"""A worker's broker connection lost with a message in hand closes cleanly, so the worker
reconnects instead of stopping.

On a lost connection Celery's consumer first collects the connection (the transport forgets
its client) and then closes it; closing the channel restores the messages it had delivered but
not acked, and kombu's Redis channel builds a new connection pool for that. Without a client
there is no address to build it from: kombu raised ``AttributeError`` out of the close, which
Celery does not ignore, and the worker stopped with "Unrecoverable error" (seen in the Redis
restart chaos test). The pack's channel says what happened instead, a connection error, which
Celery's close ignores before it reconnects. Real Redis on a port of its own, killed.

The message could not go back on its queue then (Redis was down): kombu leaves it in the
``unacked`` hash for the visibility timeout, two hours. The pack remembers it, and the first
channel the process opens once Redis is back puts it back on its queue.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest
import redis
from kombu import Consumer, Exchange, Queue
from kombu.common import ignore_errors
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from saas_tasks.app import app
from saas_tasks.reliability.unacked_restore import STRANDED
from tests.services import PrivateRedis


def test_a_message_unacked_when_redis_died_closes_cleanly_and_goes_back_once_redis_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ``always``: the SIGKILL must not take the unacked record with it (the AOF holds it).
    server = PrivateRedis(tmp_path / "redis", appendfsync="always").start()
    queue = Queue("close-after-loss", routing_key="close-after-loss")
    # A broadcast queue deleted on close, as a worker's remote-control (pidbox) queue is: with
    # the broker gone, deleting it fails first and leaves the channel half closed.
    broadcast = Queue(
        "close-after-loss-bc", Exchange("close-after-loss-bc", type="fanout"), auto_delete=True
    )
    received: list[object] = []
    try:
        connection = app.connection_for_read(server.url)
        with app.connection_for_write(server.url) as producer_connection:
            producer_connection.default_channel.basic_publish(
                producer_connection.default_channel.prepare_message("{}"),
                exchange="",
                routing_key="close-after-loss",
            )
        channel = connection.default_channel
        consumer = Consumer(
            channel,
            [queue, broadcast],
            callbacks=[lambda body, message: received.append(message)],
            accept=["json", "text/plain", "application/data"],
        )
        consumer.consume()
        connection.drain_events(timeout=5)
        assert len(received) == 1  # delivered, not acked: the channel's QoS holds it
        with contextlib.suppress(socket.timeout):
            connection.drain_events(timeout=0.3)  # a BRPOP left waiting, as a worker's is
        assert channel._in_poll is not None
    finally:
        server.process.kill()  # SIGKILL, as the chaos test does: nothing answers any more
        server.process.wait(10)
        server.stop()
    # What Celery's consumer does on a lost connection (on_connection_error_after_connected).
    connection.collect()
    # Celery ignores connection errors here; anything else stops the worker.
    ignore_errors(connection, connection.close)
    assert channel.closed
    assert "1 unacknowledged message(s) could not be put back" in caplog.text
    assert len(STRANDED) == 1

    again = PrivateRedis(server.directory, port=server.port, appendfsync="always").start()
    try:
        direct = redis.Redis.from_url(again.url)
        assert direct.hlen("unacked") == 1  # kombu's record survived the kill ...
        assert direct.llen("close-after-loss") == 0  # ... and the queue does not have it
        with app.connection_for_read(again.url) as reconnected:
            channel = reconnected.default_channel  # opening a channel puts it back
            assert direct.hlen("unacked") == 0
            assert direct.llen("close-after-loss") == 1
            assert len(STRANDED) == 0
            redelivered = channel.basic_get("close-after-loss", no_ack=True)
            assert redelivered is not None and redelivered.body == b"{}"
            assert redelivered.delivery_info["redelivered"] is True
        assert "any acked since were skipped" in caplog.text
    finally:
        again.stop()


def test_a_message_popped_but_not_yet_recorded_when_redis_died_goes_back_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kombu takes a message in two steps: BRPOP takes it off the queue, then a second command
    records it as unacked. Redis dying between the two left the message only in the worker's
    memory, and kombu dropped it with the failed record. The first step is done here as BRPOP
    does it (the entry leaves the list), the second by the channel's own QoS."""
    server = PrivateRedis(tmp_path / "redis", appendfsync="always").start()
    queue = "popped-not-recorded"
    with app.connection_for_write(server.url) as producer_connection:
        channel = producer_connection.default_channel
        channel.basic_publish(channel.prepare_message("{}"), exchange="", routing_key=queue)
    connection = app.connection_for_read(server.url)
    channel = connection.default_channel
    direct = redis.Redis.from_url(server.url)
    try:
        raw = direct.rpop(queue)
        assert raw is not None and direct.llen(queue) == 0  # off the queue: held here only
        message = channel.Message(loads(bytes_to_str(raw)), channel=channel)
    finally:
        server.process.kill()
        server.process.wait(10)
        server.stop()
    with pytest.raises(channel.connection_errors):
        channel.qos.append(message, message.delivery_tag)  # the record fails: Redis is gone
    assert "could not be recorded as unacknowledged" in caplog.text
    ignore_errors(connection, connection.close)

    again = PrivateRedis(server.directory, port=server.port, appendfsync="always").start()
    try:
        direct = redis.Redis.from_url(again.url)
        assert direct.llen(queue) == 0 and direct.hlen("unacked") == 0  # nowhere in Redis
        with app.connection_for_read(again.url) as reconnected:
            back = reconnected.default_channel.basic_get(queue, no_ack=True)
            assert back is not None and back.body == b"{}"
            assert back.delivery_info["redelivered"] is True
            assert len(STRANDED) == 0
    finally:
        again.stop()
