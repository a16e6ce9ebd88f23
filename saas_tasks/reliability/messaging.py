"""The app's messaging layer (Celery's ``app.amqp``): how messages are built, and which
connection class carries them. Each part lives in its own module; this only composes them.

- arguments shown in headers and events are redacted (:mod:`~saas_tasks.reliability.shown_args`);
- connections use the poison-safe Redis transport wherever kombu would use its Redis one, so a
  queue entry that is not a kombu message is dead-lettered instead of stopping the worker
  (:mod:`~saas_tasks.reliability.redis_transport`). Every other transport is kombu's own.
"""

from __future__ import annotations

from saas_tasks.reliability.redis_transport import PoisonSafeConnection
from saas_tasks.reliability.shown_args import RedactingAMQP


class PackAMQP(RedactingAMQP):
    """Celery's AMQP layer with the pack's message factory and connection class."""

    Connection = PoisonSafeConnection
