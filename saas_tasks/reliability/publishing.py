"""Publishing: one clear, bounded error for a dead broker, and one round trip a message.

Celery's own retry settings (``task_publish_retry_policy`` and the transport's connect
timeouts, in :mod:`saas_tasks.celery_config`) bound how long a publish may wait;
:class:`PublishGuard` gives whatever they raise one name,
:class:`~saas_tasks.exceptions.BrokerUnavailable`, with the broker's address (password
redacted) and the fix.

:func:`one_round_trip` buffers what one call publishes (the message, and its ``task-sent``
event) in a kombu producer batch, on Redis one pipeline: ``.delay()`` waits for the broker
once instead of twice, and a web request's p99 pays one round trip's scheduling delay instead
of two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import kombu.exceptions
import redis.exceptions

from saas_tasks.exceptions import BrokerUnavailable
from saas_tasks.reliability.redaction import redact_url

_BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class PublishGuard:
    def __init__(self, task_name: str, app: Any) -> None:
        self.task_name = task_name
        self.app = app

    def __enter__(self) -> PublishGuard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        broker = redact_url(str(self.app.conf.broker_url))
        if isinstance(exc, kombu.exceptions.BatchPublishError):
            cause = exc.__cause__ or exc
            raise BrokerUnavailable(
                f"could not confirm {self.task_name} was enqueued: the connection to the broker at "
                f"{broker} failed while publishing ({type(cause).__name__}: {str(cause).strip()}). "
                "The message may or may not have reached the queue; its idempotency key makes "
                "a retry safe. Is the broker running? Check REDIS_URL / BROKER_URL."
            ) from exc
        unreachable = isinstance(exc, _BROKER_ERRORS) or (
            isinstance(exc, RuntimeError) and "result store" in str(exc)
        )
        if unreachable:
            raise BrokerUnavailable(
                f"could not enqueue {self.task_name}: the broker at {broker} did not answer "
                f"({type(exc).__name__}: {str(exc).strip()}). Is it running? Check REDIS_URL / "
                "BROKER_URL; nothing was enqueued."
            ) from exc


@contextlib.contextmanager
def one_round_trip(producer: Any, commands: int = 4) -> Iterator[bool]:
    """Buffer ``producer``'s publishes in one transport batch (kombu >= 5.7 on Redis: one
    pipeline), flushed at exit, discarded on error; yields whether they are buffered.
    ``commands`` bounds the buffer so that it never flushes part of it on its own: a message
    is at most three (the push, a queue expiry, the ``task-sent`` event). The messages are
    published as without it; only the I/O is grouped, so a publish retry has nothing to retry
    and a failed flush raises at exit."""
    batch = getattr(producer, "batch", None)
    channel = producer.channel
    if (
        batch is None
        or getattr(channel, "create_publish_batch", None) is None
        or not getattr(channel, "supports_batch_publish", True)
    ):  # kombu < 5.7, or a transport without batches (AMQP): one publish, one round trip each
        yield False
        return
    with batch(max_size=commands):
        yield True
