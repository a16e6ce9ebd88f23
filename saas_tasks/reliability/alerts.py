"""Tell a person when a task lands in the dead-letter queue.

Always one ERROR log line; optionally a JSON POST to ``SAAS_TASKS_ALERT_WEBHOOK_URL`` and an
email to ``SAAS_TASKS_ALERT_EMAIL``. Payloads are redacted first. An alert channel that fails
is logged and never loses the dead letter, which is already stored when alerts go out.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from celery import current_app

from saas_tasks.reliability.deadletter import DeadLetterEntry
from saas_tasks.reliability.redaction import cut_middle, redact
from saas_tasks.reliability.shown_args import redacted_args
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.deadletter")


def alert_payload(entry: DeadLetterEntry, entry_id: int) -> dict[str, Any]:
    return {
        "event": "dead_letter.recorded",
        "id": entry_id,
        "task_name": entry.task_name,
        "task_id": entry.task_id,
        "reason": entry.reason,
        "exception_type": entry.exception_type,
        "exception_message": cut_middle(entry.exception_message, 1000),
        "retries": entry.retries,
        "worker": entry.worker,
        "queue": entry.queue,
        "failed_at": entry.failed_at.isoformat(),
        # By parameter name too: a password passed positionally is hidden like a keyword one.
        "args": list(redacted_args(current_app, entry.task_name, entry.args)),
        "kwargs": redact(entry.kwargs),
    }


def raise_alert(entry: DeadLetterEntry, entry_id: int) -> None:
    payload = alert_payload(entry, entry_id)
    log.error(
        "dead letter %s: %s[%s] %s: %s (reason=%s retries=%s args=%s kwargs=%s)",
        entry_id,
        entry.task_name,
        entry.task_id,
        entry.exception_type,
        payload["exception_message"],
        entry.reason,
        entry.retries,
        payload["args"],
        payload["kwargs"],
    )
    settings = get_settings()
    if settings.alert_webhook_url:
        _safely(_post_webhook, settings.alert_webhook_url, payload)
    if settings.alert_email:
        _safely(_send_email, settings.alert_email, payload)


def _safely(channel: Any, target: str, payload: dict[str, Any]) -> None:
    try:
        channel(target, payload)
    except Exception as exc:
        log.warning(
            "dead-letter alert via %s failed: %s: %s",
            channel.__name__.strip("_"),
            type(exc).__name__,
            exc,
        )


def _post_webhook(url: str, payload: dict[str, Any]) -> None:
    if urlsplit(url).scheme not in {"http", "https"}:
        raise ValueError("SAAS_TASKS_ALERT_WEBHOOK_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "saas-tasks-alerts"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        response.read(1024)


def _send_email(to: str, payload: dict[str, Any]) -> None:
    # Imported here, not at the top: the reliability core must not load a task family (and
    # its templates) at import time; only an alert that is actually emailed needs it.
    from saas_tasks.email.service import send_alert

    send_alert(to, payload)
