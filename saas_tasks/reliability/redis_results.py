"""Celery's Redis result backend, without a subscription per ``.delay()``.

Celery's Redis backend subscribes to a task's result channel the moment the task is sent
(``on_task_call``), in case the caller waits for it. A web view that enqueues and returns
never does, and pays a round trip on a second connection at every ``.delay()`` for nothing,
while the process's subscription set grows by one channel per task sent until each result
arrives. ``AsyncResult.get()`` subscribes on its own before it reads the stored result, so a
caller that does wait still gets it, however early the task finished. (``result.then()``
callbacks, which Celery runs from the subscription, fire only for results that arrive after
``then`` is called.)
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend

#: Result-backend schemes served by :class:`RedisResults`, by ``app.loader.override_backends``.
SCHEMES = ("redis", "rediss")


class RedisResults(RedisBackend):  # type: ignore[misc]
    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Nothing to do until someone waits: :meth:`AsyncResult.get` subscribes then."""


class SentinelResults(SentinelBackend):  # type: ignore[misc]
    def on_task_call(self, producer: Any, task_id: str) -> None:
        """As :meth:`RedisResults.on_task_call`."""


def overrides() -> dict[str, str]:
    """Result-backend aliases for ``app.loader.override_backends``."""
    return {
        **{scheme: f"{__name__}:RedisResults" for scheme in SCHEMES},
        "sentinel": f"{__name__}:SentinelResults",
    }
