"""The app's messaging layer (Celery's ``app.amqp``): how messages are built, and which
connection class carries them. Each part lives in its own module; this only composes them.

- arguments shown in headers and events are redacted (:mod:`~saas_tasks.reliability.shown_args`);
- connections use the poison-safe Redis transport wherever kombu would use its Redis one, so a
  queue entry that is not a kombu message is dead-lettered instead of stopping the worker
  (:mod:`~saas_tasks.reliability.redis_transport`). Every other transport is kombu's own;
- a worker or beat that lost the broker tries again every 2 s at most, not kombu's up to 30 s
  (:mod:`~saas_tasks.reliability.reconnect`), whatever the transport.
"""

from __future__ import annotations

from saas_tasks.reliability.reconnect import QuickReconnect
from saas_tasks.reliability.redis_transport import (
    PoisonSafeConnection,
    PoisonSafeConnectionPool,
    PoisonSafePooledConnection,
)
from saas_tasks.reliability.shown_args import RedactingAMQP


class PackPooledConnection(QuickReconnect, PoisonSafePooledConnection):
    """A connection of the producer pool (every ``.delay()``), built as :class:`PackConnection`."""


class PackConnectionPool(PoisonSafeConnectionPool):
    connection_class = PackPooledConnection


class PackConnection(QuickReconnect, PoisonSafeConnection):
    """The app's broker connection: poison-safe on Redis, quick to reconnect on any transport."""

    pool_class = PackConnectionPool


class PackAMQP(RedactingAMQP):
    """Celery's AMQP layer with the pack's message factory and connection class."""

    Connection = PackConnection
