"""Stamp out more messages of one call like the first: :class:`MessageStamp`, for bulk enqueue.

Celery builds every message from scratch: routing, the headers, the ``task-sent`` event,
kombu's envelope, each a few dozen Python calls. Of a bulk call's messages to one task (same
route, options and parent), only the task id, the arguments, their shown repr, kombu's delivery
tags and the event's clock and time differ. So the first message of a call is published by
Celery itself, its Redis commands are kept, and the rest are copies with those fields replaced.

Nothing is taken on trust. The second message is also published by Celery, and the stamp must
reproduce it exactly (every header, property, body and event field) from the first, or the call
goes on through Celery for every message. A Celery upgrade, a router that looks at arguments, a
signal handler that edits headers, an ``expires`` computed per message: each either rules the
stamp out beforehand (:func:`stampable`) or makes that check fail.
"""

from __future__ import annotations

import base64
import json
import json.encoder
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from celery import Task, signals
from celery.app.routes import MapRoute
from kombu.utils.json import dumps as kombu_dumps

from saas_tasks.celery_config import route_by_name
from saas_tasks.reliability.redis_publish import Channel
from saas_tasks.reliability.shown_args import RedactingAMQP, bounded_repr, shown

Commands = list[tuple[str, tuple[Any, ...]]]

#: The standard library's encoder, made once: the envelopes hold only str, int, float, None,
#: lists and dicts, which it writes exactly as kombu's ``dumps`` does (that one builds a new
#: encoder on every call).
_ENCODE = json.JSONEncoder().encode
#: A str as JSON (quoted, escaped, ASCII), as the encoder writes one, without its dispatch.
_STR = encode_basestring_ascii
#: The C encoder that ``JSONEncoder.encode`` builds afresh on every call, built once, with the
#: same settings (ASCII, ", " and ": " separators, NaN allowed). Without the circular-reference
#: marks, which a shared encoder cannot keep across threads: a cycle ends in RecursionError, and
#: the standard encoder is then asked, to say what is wrong.
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_C_ENCODE = (
    _C_MAKE_ENCODER(None, None, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    if _C_MAKE_ENCODER is not None
    else None
)


def dumps(value: Any) -> str:
    """``value`` as JSON, as kombu writes it (kombu's encoder only for types JSON lacks)."""
    try:
        if _C_ENCODE is not None and type(value) is dict:
            return "".join(_C_ENCODE(value, 0))
        return _ENCODE(value)
    except (TypeError, RecursionError):
        return str(kombu_dumps(value))


def stampable(task: Any, channel: Any) -> bool:
    """Whether a call's messages may be stamped at all: the pack's Redis channel (it keeps
    the commands), no publish signal handlers (they see and may edit each message), routes by
    task name only, no per-message shadow name, the pack's shown-arguments factory, JSON."""
    app = task.app
    task = getattr(task, "_get_current_object", lambda: task)()  # a shared_task proxy
    return (
        isinstance(channel, Channel)
        and not signals.before_task_publish.receivers
        and not signals.after_task_publish.receivers
        and all(isinstance(r, MapRoute) or r is route_by_name for r in app.amqp.routes)
        and type(task).shadow_name is Task.shadow_name
        and isinstance(app.amqp, RedactingAMQP)
        and (task.serializer or app.conf.task_serializer) == "json"
    )


@dataclass(frozen=True)
class Item:
    """One validated payload: its task id, keyword arguments and their JSON."""

    task_id: str
    kwargs: dict[str, Any]
    kwargs_json: str


class Template:
    """A JSON text with holes: the text of a dict encoded with marker values, split at them.
    Filling the holes (already JSON-encoded values) is one join, not a walk of the dict."""

    def __init__(self, value: dict[str, Any], holes: Sequence[str]) -> None:
        self.holes = tuple(holes)
        text = dumps(value)
        parts = [text]
        for hole in self.holes:
            head, marker, tail = parts[-1].partition(_ENCODE(_marker(hole)))
            if not marker or _ENCODE(_marker(hole)) in tail:
                raise ValueError(f"field {hole!r} is not in the message once")
            parts[-1:] = [head, tail]
        self.parts = parts
        # The same text as a %-format, so filling is one C call (every message fills two).
        self.format = "%s".join(part.replace("%", "%%") for part in parts)

    @classmethod
    def of(cls, value: dict[str, Any], holes: Sequence[str]) -> Template:
        """``value``'s template, where each hole is a dotted path to a field."""
        marked = json.loads(dumps(value))
        for hole in holes:
            *path, last = hole.split(".")
            node = marked
            for key in path:
                node = node[key]
            node[last] = _marker(hole)
        return cls(marked, sorted(holes, key=lambda hole: dumps(marked).index(_marker(hole))))

    def fill(self, values: dict[str, str]) -> str:
        """The text with each hole replaced by ``values[hole]`` (JSON text)."""
        return self.format % tuple(map(values.__getitem__, self.holes))


def _marker(hole: str) -> str:
    return f"@@saas-tasks-hole:{hole}@@"


_TASK_HOLES = ("body", "headers.id", "headers.kwargsrepr", "properties.correlation_id")
_TAG = "properties.delivery_tag"
_EVENT_HOLES = ("uuid", "kwargs", "clock", "timestamp")


@dataclass
class MessageStamp:
    """The first message's commands, and what changes from one message to the next."""

    app: Any
    shown_kwargs: Any  # kwargs -> the kwargsrepr header (the app's redacting factory)
    commands: Commands  # the task message's (LPUSH, maybe PEXPIREs)
    envelope: Template
    embed_json: str
    root_is_id: bool
    event_commands: Commands | None  # the task-sent event's (PUBLISH), if sent
    event_envelope: Template | None
    event: Template | None

    @classmethod
    def learn(
        cls, app: Any, first: Item, second: Item, published: Sequence[Commands]
    ) -> MessageStamp | None:
        """The stamp of ``first``, if it reproduces ``second`` exactly; else None."""
        if len(published) not in (2, 4):
            return None
        with_events = len(published) == 4
        try:
            stamp = cls._of(app, first, published[0], published[1] if with_events else None)
        except (KeyError, TypeError, ValueError):
            return None
        if stamp is None:
            return None
        message, event = (published[2], published[3]) if with_events else (published[1], None)
        tag, event_tag, clock, now = _varying(message, event)
        push, sent = stamp._stamped(second, tag, clock, float.__repr__(now))
        again = _replace(stamp.commands, "lpush", push)
        if sent is not None and stamp.event_commands:
            again += _replace(stamp.event_commands, "publish", stamp._sent(sent, event_tag))
        expected = [*message, *(event or [])]
        return stamp if _same(again, expected) else None

    @classmethod
    def _of(
        cls, app: Any, first: Item, message: Commands, event: Commands | None
    ) -> MessageStamp | None:
        envelope = _payload(message, "lpush")
        if envelope is None or envelope.get("properties", {}).get("body_encoding") != "base64":
            return None
        headers = envelope.get("headers", {})
        body = json.loads(base64.b64decode(envelope["body"]))
        if headers.get("id") != first.task_id or body[:2] != [[], first.kwargs]:
            return None
        root_is_id = headers.get("root_id") == first.task_id
        task_holes = [*_TASK_HOLES, _TAG, *(["headers.root_id"] if root_is_id else [])]
        event_envelope = _payload(event, "publish") if event is not None else None
        event_holes = [*_EVENT_HOLES, *(["root_id"] if root_is_id else [])]
        levels, maxsize = app.conf.task_repr_maxlevels, app.amqp.kwargsrepr_maxsize
        return cls(
            app=app,
            shown_kwargs=lambda kwargs: bounded_repr(shown(kwargs, levels), maxsize),
            commands=message,
            envelope=Template.of(envelope, task_holes),
            embed_json=dumps(body[2]),
            root_is_id=root_is_id,
            event_commands=event,
            event_envelope=Template.of(event_envelope, ["body", _TAG]) if event_envelope else None,
            event=Template.of(json.loads(base64.b64decode(event_envelope["body"])), event_holes)
            if event_envelope
            else None,
        )

    def commands_for(self, items: Sequence[Item]) -> Commands:
        """The Redis commands that publish ``items`` as Celery would (fresh tags, clock, time):
        the pushes of a queue in one LPUSH (the same list order as one LPUSH each), and their
        ``task-sent`` events as one Celery event group (a ``task.multi`` message whose body is
        the list of events, as a worker's buffered events are sent; Celery's event receiver,
        and so Flower, reads each), or one message each where no group can be formed."""
        pushes: list[str] = []
        events: list[str] = []
        forward, now = self.app.clock.forward, float.__repr__(time.time())
        tags = fast_uuid4s(len(items))
        for item, tag in zip(items, tags, strict=True):
            clock = forward() if self.event is not None else None
            push, event = self._stamped(item, tag, clock, now)
            pushes.append(push)
            if event is not None:
                events.append(event)
        merged: Commands = [
            (name, (args[0], *pushes)) if name == "lpush" else (name, args)
            for name, args in self.commands
        ]
        if not events or self.event_envelope is None or self.event_commands is None:
            return merged
        group = self.event_group() if len(events) > 1 else None
        if group is None:
            return merged + [
                command
                for event in events
                for command in _replace(
                    self.event_commands, "publish", self._sent(event, fast_uuid4())
                )
            ]
        topic, envelope = group
        body = _ENCODE(_b64(f"[{', '.join(events)}]"))
        return [
            *merged,
            ("publish", (topic, envelope.fill({"body": body, _TAG: _ENCODE(fast_uuid4())}))),
        ]

    def event_group(self) -> tuple[str, Template] | None:
        """Where a group of ``task-sent`` events goes (the topic of ``task.multi``), and its
        envelope; None unless the first event went to ``…/task.sent`` with that routing key."""
        if self.event_commands is None or self.event_envelope is None:
            return None
        topics = [args[0] for name, args in self.event_commands if name == "publish"]
        envelope = json.loads(self.event_envelope.fill({"body": '""', _TAG: '""'}))
        info = envelope.get("properties", {}).get("delivery_info", {})
        if len(topics) != 1 or not str(topics[0]).endswith("/task.sent"):
            return None
        if info.get("routing_key") != "task.sent":
            return None
        info["routing_key"] = "task.multi"
        topic = str(topics[0])[: -len("task.sent")] + "task.multi"
        return topic, Template.of(envelope, ["body", _TAG])

    def _sent(self, event: str, tag: str) -> str:
        """The envelope of one ``task-sent`` event message (its JSON text)."""
        assert self.event_envelope is not None
        return self.event_envelope.fill({"body": _STR(_b64(event)), _TAG: _STR(tag)})

    def _stamped(self, item: Item, tag: str, clock: int | None, now: str) -> tuple[str, str | None]:
        """The task message's envelope text and its event's text (None: no event sent);
        ``now`` is the event's timestamp as JSON text."""
        kwargsrepr = _STR(self.shown_kwargs(item.kwargs))
        task_id = _STR(item.task_id)
        body = f"[[], {item.kwargs_json}, {self.embed_json}]"
        envelope = self.envelope.fill(
            {
                "body": f'"{_b64(body)}"',  # base64 text needs no escaping
                "headers.id": task_id,
                "headers.root_id": task_id,
                "headers.kwargsrepr": kwargsrepr,
                "properties.correlation_id": task_id,
                _TAG: _STR(tag),
            }
        )
        if self.event is None:
            return envelope, None
        event = self.event.fill(
            {
                "uuid": task_id,
                "root_id": task_id,
                "kwargs": kwargsrepr,
                "clock": str(clock) if type(clock) is int else _ENCODE(clock),
                "timestamp": now,
            }
        )
        return envelope, event


def fast_uuid4() -> str:
    """A random (version 4) UUID's text, as ``str(uuid.uuid4())``, without the UUID object."""
    return _uuid4_text(os.urandom(16).hex())


def fast_uuid4s(count: int) -> list[str]:
    """``count`` of :func:`fast_uuid4`, from one read of the system's random source."""
    h = os.urandom(16 * count).hex()
    return [_uuid4_text(h[i : i + 32]) for i in range(0, 32 * count, 32)]


def _uuid4_text(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: The variant's first hex digit (RFC 4122: binary 10xx) for each random one.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _payload(commands: Commands, name: str) -> dict[str, Any] | None:
    """The decoded envelope of the one ``name`` command (LPUSH or PUBLISH) in ``commands``."""
    found = [args for command, args in commands if command == name]
    if len(found) != 1 or len(found[0]) != 2:
        return None
    decoded = json.loads(found[0][1])
    return decoded if isinstance(decoded, dict) else None


def _replace(commands: Commands, name: str, payload: str) -> Commands:
    return [(c, (args[0], payload) if c == name else args) for c, args in commands]


def _varying(message: Commands, event: Commands | None) -> tuple[str, str, int | None, float]:
    """What Celery chose afresh for the second message: tags, the event's clock and time."""
    envelope = _payload(message, "lpush") or {}
    tag = envelope.get("properties", {}).get("delivery_tag", "")
    if event is None:
        return tag, "", None, 0.0
    event_envelope = _payload(event, "publish") or {}
    fields = json.loads(base64.b64decode(event_envelope.get("body", "") or "e30="))
    event_tag = event_envelope.get("properties", {}).get("delivery_tag", "")
    return tag, event_tag, fields.get("clock"), fields.get("timestamp", 0.0)


def _same(stamped: Commands, published: Commands) -> bool:
    """Command for command, payloads compared decoded (bodies included), not as text."""
    if [c for c, _ in stamped] != [c for c, _ in published]:
        return False
    for (name, ours), (_, theirs) in zip(stamped, published, strict=True):
        if name in ("lpush", "publish"):
            if ours[0] != theirs[0] or _decoded(ours[1]) != _decoded(theirs[1]):
                return False
        elif ours != theirs:
            return False
    return True


def _decoded(payload: Any) -> Any:
    envelope = json.loads(payload)
    if isinstance(envelope, dict) and "body" in envelope:
        envelope = {**envelope, "body": json.loads(base64.b64decode(envelope["body"]))}
    return envelope


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
