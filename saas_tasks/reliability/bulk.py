"""Enqueue many messages of one task over one broker connection: :func:`enqueue_many`.

A web app that fans out (a newsletter's recipients, a re-index, one task per tenant) with a
loop of ``.delay()`` pays, for every message, Celery's per-call set-up, its message factory and
a broker round trip. Here the per-call work is done once, and each chunk of messages goes out
in one Redis pipeline, one round trip.

The first two messages of a call are built and published by Celery itself
(``app.amqp.create_task_message`` and ``send_task_message``, the pack's redacting factory
included). On Redis, the rest are stamped from the first (:mod:`.message_stamp`), which must
first reproduce the second exactly; otherwise, and on other brokers, Celery builds every one.
Either way each message is what ``.delay()`` would publish: JSON, the same headers, the same
route and ``task-sent`` event. The worker cannot tell them apart, and runs them with their
retry policy, idempotency and dead-lettering unchanged.

Every payload is checked before anything is published, with the rules the worker applies at
the task boundary (the task's declared schema or signature, its idempotency key) and the
serializer ``.delay()`` uses. One bad payload raises :class:`InvalidPayload` naming its index,
and nothing is enqueued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from celery.utils.saferepr import saferepr
from kombu.exceptions import EncodeError
from kombu.serialization import dumps

from saas_tasks.exceptions import BrokerUnavailable, InvalidPayload
from saas_tasks.reliability.arguments import check_call
from saas_tasks.reliability.message_stamp import Item, MessageStamp, fast_uuid4s, stampable
from saas_tasks.reliability.message_stamp import dumps as json_dumps
from saas_tasks.reliability.publishing import PublishGuard, one_round_trip
from saas_tasks.reliability.redaction import redact_url
from saas_tasks.reliability.task_base import ReliableTask

#: Messages buffered for one round trip. Bigger chunks gain little past a few hundred and
#: hold more memory. A stamped chunk is one MULTI/EXEC, enqueued whole or not at all; a chunk
#: built by Celery is one pipeline, which a connection lost mid-reply may leave uncertain.
DEFAULT_CHUNK_SIZE = 500
#: At most three commands a message: the push, a queue expiry, the ``task-sent`` event.
COMMANDS_PER_MESSAGE = 3


def enqueue_many(
    task: Any, payloads: Iterable[Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Results:
    """Enqueue ``task`` once per mapping of keyword arguments; return their ``AsyncResult``\\ s
    (a :class:`Results` sequence, read like a list; ``.ids`` holds the task ids).

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
    task = getattr(task, "_get_current_object", lambda: task)()  # a shared_task proxy
    serializer = task.serializer or task.app.conf.task_serializer
    checked = [_checked(task, serializer, i, payload) for i, payload in enumerate(payloads)]
    ids = fast_uuid4s(len(checked))
    items = [Item(task_id, *call) for task_id, call in zip(ids, checked, strict=True)]
    if not items:
        return Results(task, [])
    sender = _Sender(task)
    done = 0
    try:
        with PublishGuard(task.name, task.app), task.app.producer_or_acquire() as producer:
            stamp = None
            if len(items) > 2 and stampable(task, producer.channel):
                # Celery publishes the first two; the stamp of the first must remake the second.
                _publish(sender, producer, items[:2])
                done = 2
                recorded = getattr(producer.channel.last_batch, "published", [])
                stamp = MessageStamp.learn(task.app, items[0], items[1], recorded)
            for start in range(done, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                if stamp is None:
                    _publish(sender, producer, chunk)
                else:
                    _publish_stamped(stamp, producer.channel, chunk)
                    sender.trail(chunk)
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
    return Results(task, [item.task_id for item in items])


class Results(Sequence[Any]):
    """The ``AsyncResult`` of each enqueued message, in order: a list's reads (index, slice,
    iteration, ``len``, ``==``), each result made when first read. Ten thousand result
    objects (each registers with the result backend) cost a web request more than the
    enqueueing does, and most callers keep only a few, or just the ids."""

    def __init__(self, task: Any, ids: list[str]) -> None:
        self.task = task
        self.ids = ids
        self._made: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.ids)))]
        position = range(len(self.ids))[index]  # IndexError as a list raises it
        if position not in self._made:
            self._made[position] = self.task.AsyncResult(self.ids[position])
        return self._made[position]

    def __eq__(self, other: object) -> bool:
        return list(self) == other if isinstance(other, list | Results) else NotImplemented

    def __repr__(self) -> str:
        return f"<Results of {len(self.ids)} {self.task.name}>"


def _publish(sender: _Sender, producer: Any, chunk: Sequence[Item]) -> None:
    """Through Celery, message by message, buffered in one transport batch."""
    with one_round_trip(producer, commands=len(chunk) * COMMANDS_PER_MESSAGE + 1):
        for item in chunk:
            sender.send(producer, item.task_id, item.kwargs)


def _publish_stamped(stamp: MessageStamp, channel: Any, chunk: Sequence[Item]) -> None:
    """One transaction (MULTI/EXEC): the chunk is enqueued whole or not at all."""
    with channel.pipeline(transaction=True) as pipe:
        for name, args in stamp.commands_for(chunk):
            getattr(pipe, name)(*args)
        pipe.execute()


def _checked(task: Any, serializer: str, index: int, payload: Any) -> tuple[dict[str, Any], str]:
    """The keyword arguments of a payload the worker would accept, and their JSON (empty for
    another serializer); or InvalidPayload."""
    where = f"payloads[{index}]"
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise InvalidPayload(
            f"{where} for {task.name}: a mapping of keyword arguments with str keys, "
            f"not {type(payload).__name__}"
        )
    kwargs = dict(payload)
    try:
        kwargs_json = json_dumps(kwargs) if serializer == "json" else ""
        if serializer != "json":
            dumps(kwargs, serializer=serializer)
    except (EncodeError, TypeError, ValueError) as exc:
        raise InvalidPayload(f"{where} for {task.name}: not serializable: {exc}") from None
    if isinstance(task, ReliableTask):
        try:
            check_call(task, kwargs)
        except InvalidPayload as exc:
            raise InvalidPayload(f"{where}: {exc}") from None
    return kwargs, kwargs_json


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

    def trail(self, items: Sequence[Item]) -> None:
        """Inside a worker, the stamped messages join the parent task's children too."""
        if self.parent is not None:
            for item in items:
                self.parent.add_trail(self.task.AsyncResult(item.task_id))

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
