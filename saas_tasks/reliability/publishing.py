"""Turn a dead broker into one clear, bounded error at ``.delay()`` time.

Celery's own retry settings (``task_publish_retry_policy`` and the transport's connect
timeouts, in :mod:`saas_tasks.celery_config`) bound how long a publish may wait; this guard
gives whatever they raise one name, :class:`~saas_tasks.exceptions.BrokerUnavailable`, with the
broker's address (password redacted) and the fix.
"""

from __future__ import annotations

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
        unreachable = isinstance(exc, _BROKER_ERRORS) or (
            isinstance(exc, RuntimeError) and "result store" in str(exc)
        )
        if unreachable:
            broker = redact_url(str(self.app.conf.broker_url))
            raise BrokerUnavailable(
                f"could not enqueue {self.task_name}: the broker at {broker} did not answer "
                f"({type(exc).__name__}: {str(exc).strip()}). Is it running? Check REDIS_URL / "
                "BROKER_URL; nothing was enqueued."
            ) from exc
