"""Enqueue many messages of one task over one broker connection: :func:`enqueue_many`.

A web app that fans out (a newsletter's recipients, a re-index, one task per tenant) with a
loop of ``.delay()`` pays, for every message, Celery's per-call set-up and a broker round trip
for the message and another for its ``task-sent`` event. Here the per-call work is done once,
and each chunk of messages is buffered in one kombu producer batch: on Redis, one pipeline,
one round trip.

The messages are built and published by Celery's own message factory and sender
(``app.amqp.create_task_message`` and ``send_task_message``, the pack's redacting factory
included), so each is what ``.delay()`` would publish: JSON, the same headers, the same route
and ``task-sent`` event. The worker cannot tell them apart, and runs them with their retry
policy, idempotency and dead-lettering unchanged.

Every payload is checked before anything is published, with the rules the worker applies at
the task boundary (the task's declared schema or signature, its idempotency key) and the
serializer ``.delay()`` uses. One bad payload raises :class:`InvalidPayload` naming its index,
and nothing is enqueued.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from celery.utils import uuid
from celery.utils.saferepr import saferepr
from kombu.exceptions import EncodeError
from kombu.serialization import dumps

from saas_tasks.exceptions import BrokerUnavailable, InvalidPayload
from saas_tasks.reliability.publishing import PublishGuard
from saas_tasks.reliability.redaction import redact_url
from saas_tasks.reliability.task import ReliableTask, _bind_call, _key

#: Messages buffered for one round trip. Bigger chunks gain little past a few hundred and
#: hold more memory; a broker failure half-way leaves whole chunks enqueued, never half one.
DEFAULT_CHUNK_SIZE = 500


def enqueue_many(
    task: Any, payloads: Iterable[Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[Any]:
    """Enqueue ``task`` once per mapping of keyword arguments; return their ``AsyncResult``\\ s.

    Same as ``[task.delay(**kwargs) for kwargs in payloads]``, message for message, only
    faster: validation first (an :class:`InvalidPayload` naming ``payloads[i]``, nothing
    enqueued), then one connection and one round trip per ``chunk_size`` messages. A broker
    that does not answer raises :class:`BrokerUnavailable` as ``.delay()`` does; if it fails
    after some chunks went out, the message says which payloads were enqueued.

    Unlike ``.delay()``, the results are not subscribed to at enqueue time (thousands of
    subscriptions in a web process only cost memory); ``result.get()`` still waits for one.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    items = [_checked(task, index, payload) for index, payload in enumerate(payloads)]
    if not items:
        return []
    sender = _Sender(task)
    done = 0
    try:
        with PublishGuard(task.name, task.app), task.app.producer_or_acquire() as producer:
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                with _batch(producer, len(chunk)):
                    for task_id, kwargs in chunk:
                        sender.send(producer, task_id, kwargs)
                done += len(chunk)
    except BrokerUnavailable as exc:
        if done == 0:
            raise
        broker = redact_url(str(task.app.conf.broker_url))
        raise BrokerUnavailable(
            f"could not enqueue all of {len(items)} {task.name}: the broker at {broker} failed "
            f"after payloads[:{done}] were enqueued ({exc.__cause__!r}). Is it running? Check "
            f"REDIS_URL / BROKER_URL, then call enqueue_many again with payloads[{done}:]."
        ) from exc.__cause__
    return [task.AsyncResult(task_id) for task_id, _ in items]


def _checked(task: Any, index: int, payload: Any) -> tuple[str, dict[str, Any]]:
    """``(task_id, kwargs)`` for a payload that the worker would accept, or InvalidPayload."""
    where = f"payloads[{index}]"
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise InvalidPayload(
            f"{where} for {task.name}: a mapping of keyword arguments with str keys, "
            f"not {type(payload).__name__}"
        )
    kwargs = dict(payload)
    try:
        dumps(kwargs, serializer=task.serializer or task.app.conf.task_serializer)
    except EncodeError as exc:
        raise InvalidPayload(f"{where} for {task.name}: not serializable: {exc}") from None
    if isinstance(task, ReliableTask):
        # The worker's own boundary check (task.execute): schema or signature, then the key.
        named = dict(kwargs)
        caller_key = named.pop("idempotency_key", None)
        try:
            _bind_call(task, task.spec, (), named)
            if task.spec.idempotent is not None:
                _key(task.spec, named, caller_key)
        except InvalidPayload as exc:
            raise InvalidPayload(f"{where}: {exc}") from None
    return uuid(), kwargs


@contextlib.contextmanager
def _batch(producer: Any, messages: int) -> Iterator[None]:
    """One transport batch for a chunk (kombu >= 5.7: a Redis pipeline), flushed at exit and
    discarded on error. Sized so that it never flushes half a chunk on its own: a message is
    at most three commands (the push, a queue expiry, the ``task-sent`` event)."""
    batch = getattr(producer, "batch", None)
    if batch is None:  # kombu < 5.7: one connection, one publish (and round trip) a message
        yield
        return
    with batch(max_size=messages * 4):
        yield


class _Sender:
    """What ``Task.apply_async`` and ``Celery.send_task`` work out once per task (and, inside
    a worker, once per parent task), applied to each message; the router, the message factory
    and the sender are Celery's own, called as ``send_task`` calls them."""

    def __init__(self, task: Any) -> None:
        app = task.app
        self.app = app
        self.name = task.name
        self.task = task
        # apply_async: the task's execution options, ignore_result defaulting to the task's.
        options = dict(task._get_exec_options())
        options.setdefault("ignore_result", task.ignore_result)
        # send_task: these go to the message factory, the rest to the router.
        self.time_limit = options.pop("time_limit", None)
        self.soft_time_limit = options.pop("soft_time_limit", None)
        self.expires = options.pop("expires", None)
        self.ignore_result = options.pop("ignore_result", None)
        if isinstance(self.expires, int | float):
            options["expiration"] = max(self.expires, 0)
        self.root_id = self.parent_id = None
        self.parent = app.current_worker_task
        if self.parent is not None:
            request = self.parent.request
            self.root_id, self.parent_id = request.root_id or request.id, request.id
            if app.conf.task_inherit_parent_priority:
                options.setdefault("priority", request.delivery_info.get("priority"))
        self.options = options
        self.sent_event = app.conf.task_send_sent_event
        self.reply_to = app.thread_oid
        # Keyword-only calls: the positional repr is "()" for every message; built once, as
        # the app's message factory builds it (saas_tasks.reliability.shown_args).
        self.argsrepr = saferepr(
            (), app.amqp.argsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels
        )
        self.declared: set[str] = set()

    def send(self, producer: Any, task_id: str, kwargs: dict[str, Any]) -> None:
        amqp = self.app.amqp
        options = dict(self.options)
        shadow = self.task.shadow_name((), kwargs, options)
        options = amqp.router.route(options, self.name, (), kwargs, self.task)
        message = amqp.create_task_message(
            task_id,
            self.name,
            (),
            kwargs,
            expires=self.expires,
            reply_to=self.reply_to,
            time_limit=self.time_limit,
            soft_time_limit=self.soft_time_limit,
            create_sent_event=self.sent_event,
            root_id=self.root_id,
            parent_id=self.parent_id,
            shadow=shadow,
            ignore_result=self.ignore_result,
            argsrepr=self.argsrepr,
            **options,
        )
        for stamp in options.pop("stamped_headers", []):
            options.pop(stamp)
        self._declare(producer, options.get("queue"))
        # The batch does the I/O at its flush, so there is nothing to retry here, and each
        # queue is declared once a call above rather than once a message.
        amqp.send_task_message(producer, self.name, message, retry=False, declare=[], **options)
        if self.parent is not None:
            self.parent.add_trail(self.task.AsyncResult(task_id))

    def _declare(self, producer: Any, queue: Any) -> None:
        """Declare the route's queue once a call (on Redis, its binding), with the bounded
        retry policy of ``.delay()``. It is the call's first round trip, so a dead broker
        fails here, before any message is buffered."""
        if queue is None:
            queue = self.app.amqp.default_queue
        if isinstance(queue, str):
            queue = self.app.amqp.queues[queue]
        if queue.name in self.declared:
            return
        policy = self.app.conf.task_publish_retry_policy
        producer.maybe_declare(queue, retry=bool(self.app.conf.task_publish_retry), **policy)
        self.declared.add(queue.name)
