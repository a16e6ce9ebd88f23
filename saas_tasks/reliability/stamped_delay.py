"""``.delay(**kwargs)`` from a web process, stamped from that task's earlier messages.

Celery spends most of a ``.delay()`` building the message (routing, headers, the ``task-sent``
event, kombu's envelope), and that work is the same for every plain call of one task from one
thread of one process. So the first two plain calls of a task go through Celery as usual, and
their Redis commands are kept; if the stamp of the first reproduces the second exactly
(:class:`~saas_tasks.reliability.message_stamp.MessageStamp`), later calls push a stamped copy:
the same message and event, in one pipeline, a fraction of the time.

Only a *plain* call is stamped: keyword arguments and no options (no countdown, queue, headers,
link...), outside a running task (whose children carry its ids), with no publish signal
handler connected, on the pack's Redis channel. Everything else, and any call whose stamp was
refused, goes through Celery. Stamps are kept per task, process (a fork's pid is in the
``origin`` header) and thread (each has its own ``reply_to``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from celery import signals

from saas_tasks.reliability.message_stamp import (
    Commands,
    Item,
    MessageStamp,
    dumps,
    fast_uuid4,
    stampable,
)

#: How many stamps (task x process x thread) are kept before starting afresh.
MAX_STAMPS = 4096
#: Counts, for tests and curiosity: messages stamped, stamps learned and refused.
STATS = {"stamped": 0, "learned": 0, "refused": 0}
_REFUSED = "refused"


@dataclass(frozen=True)
class _First:
    item: Item
    published: list[Commands]


_stamps: dict[tuple[str, int, str], Any] = {}


def plain_call(task: Any, args: tuple[Any, ...], options: dict[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments of a plain ``.delay(**kwargs)`` (see the module docstring)."""
    if options or len(args) != 2:
        return None
    positional, named = args
    if positional or not isinstance(named, dict) or task.app.current_worker_task is not None:
        return None
    return named


def publish(task: Any, named: dict[str, Any]) -> Any:
    """Push a stamped message for ``named`` and return its ``AsyncResult``; or None when this
    task has no stamp here (yet, or ever), and Celery must publish it."""
    stamp = _stamps.get(_key(task))
    if not isinstance(stamp, MessageStamp) or _signal_handlers():
        return None
    try:
        item = Item(fast_uuid4(), named, dumps(named))
    except (TypeError, ValueError):  # Celery raises its own error for it
        return None
    with task.app.producer_or_acquire() as producer, producer.channel.pipeline() as pipe:
        for name, args in stamp.commands_for([item]):
            getattr(pipe, name)(*args)
        pipe.execute()
    STATS["stamped"] += 1
    return task.AsyncResult(item.task_id)


def learn(task: Any, named: dict[str, Any], task_id: str, producer: Any) -> None:
    """After Celery published ``named`` as ``task_id`` in one recorded batch of ``producer``'s
    channel: keep it as the first, or learn the stamp from the first and this second."""
    key = _key(task)
    state = _stamps.get(key)
    if state == _REFUSED or isinstance(state, MessageStamp):
        return
    batch = getattr(producer.channel, "last_batch", None)
    published = list(getattr(batch, "published", None) or [])
    try:
        item = Item(task_id, named, dumps(named))
    except (TypeError, ValueError):
        return
    if not published or not stampable(task, producer.channel):
        _remember(key, _REFUSED)
        return
    if not isinstance(state, _First):
        _remember(key, _First(item, published))
        return
    stamp = MessageStamp.learn(task.app, state.item, item, [*state.published, *published])
    _remember(key, stamp if stamp is not None else _REFUSED)


def _remember(key: tuple[str, int, str], state: Any) -> None:
    if len(_stamps) >= MAX_STAMPS:
        _stamps.clear()
    _stamps[key] = state
    if isinstance(state, MessageStamp):
        STATS["learned"] += 1
    elif state == _REFUSED:
        STATS["refused"] += 1


def _key(task: Any) -> tuple[str, int, str]:
    return (task.name, os.getpid(), task.app.thread_oid)


def _signal_handlers() -> bool:
    return bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)
