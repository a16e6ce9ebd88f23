"""A worker's broker connection lost with a message in hand closes cleanly, so the worker
reconnects instead of stopping.

On a lost connection Celery's consumer first collects the connection (the transport forgets
its client) and then closes it; closing the channel restores the messages it had delivered but
not acked, and kombu's Redis channel builds a new connection pool for that. Without a client
there is no address to build it from: kombu raised ``AttributeError`` out of the close, which
Celery does not ignore, and the worker stopped with "Unrecoverable error" (seen in the Redis
restart chaos test). The pack's channel says what happened instead, a connection error, which
Celery's close ignores before it reconnects. Real Redis on a port of its own, killed.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from kombu import Consumer, Exchange, Queue
from kombu.common import ignore_errors

from saas_tasks.app import app
from tests.services import PrivateRedis


def test_closing_a_collected_connection_with_an_unacked_message_raises_no_attribute_error(
    tmp_path: Path,
) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
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
