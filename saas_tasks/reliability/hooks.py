"""Signal hooks: every task that fails for good, and every message the worker refuses, becomes
a dead letter; and the worker refuses to start on an unsafe configuration.

The hook does not write the database itself (it may be the very thing that is down): it
publishes the entry to the ``dead_letter`` queue, where ``saas_tasks.deadletter.record`` stores
it with retries. If the broker refuses too, the entry goes to a local spool file, forwarded
again when a worker starts.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback as tb_module
import uuid
from typing import Any

from celery import Celery, signals
from pydantic import ValidationError

from saas_tasks.exceptions import ConfigurationError, InvalidPayload
from saas_tasks.reliability.deadletter import DeadLetterEntry, drain_spool, spool
from saas_tasks.reliability.redaction import cut_middle
from saas_tasks.reliability.startup_checks import check_worker_configuration

log = logging.getLogger("saas_tasks.deadletter")

RECORD_TASK = "saas_tasks.deadletter.record"
DEAD_LETTER_QUEUE = "dead_letter"


def send_entry(app: Celery, entry: DeadLetterEntry) -> None:
    """Send the entry to the dead-letter queue, raising if the broker refuses."""
    app.send_task(
        RECORD_TASK,
        kwargs={"entry": entry.model_dump(mode="json")},
        queue=DEAD_LETTER_QUEUE,
        retry=True,
        retry_policy={
            "max_retries": 3,
            "interval_start": 0.5,
            "interval_step": 1,
            "interval_max": 2,
        },
    )


def publish_entry(app: Celery, entry: DeadLetterEntry) -> bool:
    """Send the entry to the dead-letter queue; spool it locally if the broker refuses.

    Returns False when the entry went to the spool instead."""
    try:
        send_entry(app, entry)
    except Exception as exc:
        path = spool(entry)
        log.critical(
            "dead letter for %s[%s] could not be published (%s: %s); spooled to %s",
            entry.task_name,
            entry.task_id,
            type(exc).__name__,
            exc,
            path,
        )
        return False
    return True


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


@signals.task_failure.connect
def on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    traceback: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    request = getattr(sender, "request", None)
    exception = exception or RuntimeError("unknown failure")
    entry = DeadLetterEntry(
        task_id=str(task_id or getattr(request, "id", "") or "unknown"),
        task_name=getattr(sender, "name", None) or "unknown",
        reason="invalid_payload" if isinstance(exception, InvalidPayload) else "failure",
        queue=((getattr(request, "delivery_info", None) or {}).get("routing_key")),
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        headers=_request_headers(request),
        exception_type=_qualified(exception),
        exception_message=str(exception),
        traceback=str(einfo)
        if einfo
        else "".join(tb_module.format_tb(traceback))
        if traceback
        else "",
        retries=int(getattr(request, "retries", 0) or 0),
        worker=getattr(request, "hostname", None),
    )
    if entry.task_name == RECORD_TASK and not isinstance(exception, InvalidPayload):
        # Storing a dead letter failed for good (a very long database outage): keep the
        # original entry on disk rather than loop through the queue again.
        original = (kwargs or {}).get("entry")
        try:
            kept = DeadLetterEntry.model_validate(original)
        except ValidationError:
            kept = None  # not an entry after all: record the call itself, below
        if kept is not None:
            path = spool(kept)
            log.critical("could not store dead letter %s; spooled to %s", kept.task_id, path)
            return
    # A malformed call of the record task itself is recorded like any invalid payload: the
    # entry describing it is valid, so storing it cannot fail the same way again.
    publish_entry(sender.app, entry)


def _request_headers(request: Any) -> dict[str, Any]:
    if request is None:
        return {}
    keep = (
        "root_id",
        "parent_id",
        "group",
        "origin",
        "eta",
        "expires",
        "correlation_id",
        "reply_to",
        "priority",
    )
    headers = {name: getattr(request, name, None) for name in keep}
    custom = getattr(request, "headers", None) or {}
    if isinstance(custom, dict):
        headers.update({k: v for k, v in custom.items() if _json_safe(v)})
    return {k: v for k, v in headers.items() if v is not None and _json_safe(v)}


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def entry_from_message(
    message: Any,
    reason: str,
    exc: BaseException | None,
    name: str | None = None,
    task_id: str | None = None,
) -> DeadLetterEntry:
    """A dead letter for a message the worker could not run (unknown, refused, undecodable)."""
    headers = dict(getattr(message, "headers", None) or {})
    properties = dict(getattr(message, "properties", None) or {})
    body = getattr(message, "body", b"")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if getattr(message, "content_type", None) == "application/json":
        try:
            decoded = json.loads(text)
            if isinstance(decoded, list) and len(decoded) >= 2:
                args, kwargs = list(decoded[0]), dict(decoded[1])
        except (ValueError, TypeError):
            pass
    safe_headers = {k: v for k, v in headers.items() if _json_safe(v)}
    safe_headers.update(
        {
            "content_type": getattr(message, "content_type", None),
            "content_encoding": getattr(message, "content_encoding", None),
            "body": cut_middle(text, 10_000),
        }
    )
    delivery = dict(getattr(message, "delivery_info", None) or {})
    return DeadLetterEntry(
        task_id=str(
            task_id
            or headers.get("id")
            or properties.get("correlation_id")
            or f"message-{id(message)}"
        ),
        task_name=str(name or headers.get("task") or "unknown"),
        reason=reason,
        queue=delivery.get("routing_key"),
        args=args,
        kwargs=kwargs,
        headers=safe_headers,
        exception_type=_qualified(exc) if exc else reason,
        exception_message=str(exc) if exc else f"message refused: {reason}",
    )


#: Raw bytes up to this size are also kept as base64 when they are not UTF-8 (the text loses
#: them); the text itself is cut in the middle at 10,000 characters like every poison body.
RAW_BASE64_LIMIT = 7_500


def dead_letter_queue_entry(app: Celery, raw: bytes, queue: str, exc: BaseException) -> None:
    """Record a Redis queue entry that is not a kombu message (see ``redis_transport``).

    There is no message, so no task id or name: the entry gets an id of its own, is never
    replayable (``decode_error``), and keeps the raw bytes for an operator to inspect."""
    text = raw.decode("utf-8", "replace")
    headers: dict[str, Any] = {"body": cut_middle(text, 10_000), "body_bytes": len(raw)}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        if len(raw) <= RAW_BASE64_LIMIT:
            headers["body_base64"] = base64.b64encode(raw).decode("ascii")
    entry = DeadLetterEntry(
        task_id=f"queue-entry-{uuid.uuid4()}",
        task_name="unknown",
        reason="decode_error",
        queue=queue,
        headers=headers,
        exception_type=_qualified(exc),
        exception_message=str(exc),
    )
    log.error(
        "queue %s: an entry that is not a kombu message (%s) was taken off the queue and "
        "dead-lettered as %s",
        queue,
        exc,
        entry.task_id,
    )
    publish_entry(app, entry)


@signals.task_unknown.connect
def on_task_unknown(
    sender: Any = None,
    message: Any = None,
    exc: BaseException | None = None,
    name: str | None = None,
    id: str | None = None,
    **_: Any,
) -> None:
    entry = entry_from_message(message, "unknown_task", exc, name=name, task_id=id)
    entry.exception_message = f"no task named {name!r} is registered on this worker"
    publish_entry(sender.app, entry)


@signals.task_rejected.connect
def on_task_rejected(
    sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any
) -> None:
    publish_entry(sender.app, entry_from_message(message, "rejected", exc))


@signals.worker_init.connect
def on_worker_init(sender: Any = None, **_: Any) -> None:
    app = sender.app
    app.loader.import_default_modules()
    try:
        check_worker_configuration(app)
    except ConfigurationError as exc:
        raise SystemExit(f"saas-tasks: refusing to start the worker: {exc}") from None


@signals.worker_ready.connect
def on_worker_ready(sender: Any = None, **_: Any) -> None:
    app = sender.app
    forwarded = drain_spool(lambda entry: send_entry(app, entry))
    if forwarded:
        log.warning("forwarded %d spooled dead letters to the dead-letter queue", forwarded)
