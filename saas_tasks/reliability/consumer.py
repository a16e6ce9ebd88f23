"""The worker's consumer, with poison messages dead-lettered instead of only logged, or fatal.

Celery acks a message it cannot decode (bad JSON, a broken encoding) and writes a CRITICAL log
line, and no signal tells anyone; this subclass records it too, so "nothing is lost" holds for
poison messages as well.

A message for a registered task whose body decodes but is not Celery's ``[args, kwargs,
embed]`` is worse: Celery unpacks it while building the request, in the consumer's own loop,
and the ``ValueError`` stops the worker ("Unrecoverable error"). Each task's strategy is
wrapped here to check the body's shape first and refuse it as an invalid task, which Celery
rejects and the ``task_rejected`` hook dead-letters; the worker goes on.

On a lost broker connection, Celery stops the late-acked tasks that were running
(``worker_cancel_long_running_tasks_on_connection_loss``), leaving their messages to be
delivered again. It records that it did so only after storing a RETRY state in the result
backend; when that backend is the Redis that just went away, the store fails, the flag is never
set, and the stopped task's end is taken for a revoke: its message is *acked*, and the task is
lost (seen in the Redis restart chaos test). Here the flag is set before Celery cancels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer import Consumer
from celery.worker.state import active_requests


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        super().on_decode_error(message, exc)
        from saas_tasks.reliability.hooks import entry_from_message, publish_entry

        publish_entry(self.app, entry_from_message(message, "decode_error", exc))

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        if self.app.conf.worker_cancel_long_running_tasks_on_connection_loss:
            keep_for_redelivery(tuple(active_requests))
        super().on_connection_error_after_connected(exc)

    def update_strategies(self) -> None:
        super().update_strategies()
        for name, strategy in list(self.strategies.items()):
            self.strategies[name] = shape_checked(strategy)


def keep_for_redelivery(requests: Iterable[Any]) -> None:
    """Mark the late-acked ``requests`` not acked yet as cancelled, the mark Celery sets only
    once the result backend took its RETRY state: whatever the backend says, the end of a task
    Celery is about to stop must not ack its message, which is to be delivered again."""
    for request in requests:
        if request.task.acks_late and not request.acknowledged:
            request._already_cancelled = True


def shape_checked(strategy: Callable[..., Any]) -> Callable[..., Any]:
    """``strategy``, refusing a protocol-2 message whose body is not ``[args, kwargs, embed]``
    with :class:`InvalidTaskError` before Celery unpacks it."""

    @functools.wraps(strategy)
    def checked(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        if body is None and isinstance(message.headers, dict) and "task" in message.headers:
            problem = body_shape_problem(message.payload)  # decoded once, kept by kombu
            if problem:
                raise InvalidTaskError(f"the message body is not [args, kwargs, embed]: {problem}")
        return strategy(message, body, *args, **kwargs)

    return checked


def body_shape_problem(payload: Any) -> str | None:
    """What is wrong with a protocol-2 body, or None (Celery's "hybrid" dict form included)."""
    if isinstance(payload, dict) and "args" in payload:
        return None
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        size = f" of {len(payload)}" if isinstance(payload, list | tuple) else ""
        return f"a {type(payload).__name__}{size}"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return f"args is a {type(args).__name__}"
    if not isinstance(kwargs, dict):
        return f"kwargs is a {type(kwargs).__name__}"
    if embed is not None and not isinstance(embed, dict):
        return f"embed is a {type(embed).__name__}"
    return None
