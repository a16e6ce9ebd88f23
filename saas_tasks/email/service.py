"""The email family's work as plain functions: the tasks call these, and so do tests.

* :func:`send_one`: one message to one recipient, once per key.
* :func:`plan_batch`: check a batch before anything is sent, and cut it into chunks.
* :func:`send_chunk`: a chunk of one batch over one connection, once per recipient.

Keys: a single message's key is the caller's ``idempotency_key``, else its task id (so a
redelivered message is recognised); a batch recipient's key is the batch key plus the address,
so a retried chunk, a redelivered batch or the same address twice in a batch sends once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from saas_tasks.email import delivery, message, transports
from saas_tasks.email.delivery import Outgoing, Report
from saas_tasks.email.lease import Lease
from saas_tasks.email.ratelimit import TokenBucket
from saas_tasks.email.rendering import get_renderer
from saas_tasks.exceptions import InvalidPayload
from saas_tasks.reliability.idempotency import normalise_key
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.email")

SEND = "saas_tasks.email.send"
BATCH = "saas_tasks.email.send_batch"


def _valid_address(value: str) -> str:
    message.check_address(value)
    return value


Address = Annotated[str, AfterValidator(_valid_address)]
Headers = Annotated[dict[str, str], AfterValidator(message.check_headers)]


class Common(BaseModel):
    """What every message of a send or a batch shares."""

    template: str = Field(min_length=1, max_length=100)
    subject: str | None = Field(None, max_length=998)
    reply_to: Address | None = None
    headers: Headers = Field(default_factory=dict)


class SendRequest(Common):
    to: Address
    context: dict[str, Any] = Field(default_factory=dict)


class Recipient(BaseModel):
    to: Address
    context: dict[str, Any] = Field(default_factory=dict)


class BatchRequest(Common):
    recipients: list[Recipient] = Field(min_length=1)
    chunk_size: int = Field(100, ge=1, le=1000)


class ChunkRequest(Common):
    batch_key: str = Field(min_length=1, max_length=200)
    recipients: list[Recipient] = Field(min_length=1)


def send_key(caller_key: str | None, task_id: str) -> str:
    return normalise_key(SEND, str(caller_key) if caller_key is not None else task_id)


def recipient_key(batch_key: str, to: str) -> str:
    return normalise_key(BATCH, f"{batch_key}:{message.bare(to).lower()}")


def compose(
    key: str,
    to: str,
    common: Common,
    context: Mapping[str, Any],
    *,
    batch_key: str | None = None,
    strict: bool = True,
) -> Outgoing:
    """Render and build one message; invalid input raises, or with ``strict=False`` returns
    an unsendable item that the log records as skipped."""
    sender = get_settings().email_from
    message_id = message.message_id_for(key, sender)
    try:
        rendered = get_renderer().render(common.template, context, common.subject)
    except InvalidPayload as exc:
        if strict:
            raise
        return Outgoing(key, to, common.template, message_id, None, str(exc), batch_key)
    built = message.build(
        rendered,
        sender=sender,
        to=to,
        message_id=message_id,
        reply_to=common.reply_to,
        headers=common.headers,
    )
    return Outgoing(key, message.bare(to), common.template, message_id, built, None, batch_key)


def _deliver(items: list[Outgoing], task_id: str, ttl: float, final_attempt: bool) -> Report:
    settings = get_settings()
    report = Report()
    lease = Lease(ttl)
    todo = delivery.claim(items, task_id, lease, report)
    if todo:
        transport = transports.from_url(settings.email_url, settings.email_timeout)
        bucket = TokenBucket(
            transport.rate_key, settings.email_rate_limit, settings.email_rate_burst
        )
        envelope_from = message.bare(settings.email_from)
        with lease.kept([item.key for item in todo]):
            delivery.send_claimed(
                todo, transport, bucket, envelope_from, report, lease, final_attempt=final_attempt
            )
    return report


def deliver(items: list[Outgoing], task_id: str, ttl: float, final_attempt: bool = False) -> Report:
    """Send messages already composed under their own keys over one connection, each once per
    key: for families that key their messages by business identity (subscription notices)."""
    return _deliver(items, task_id, ttl, final_attempt)


def send_one(
    request: SendRequest, key: str, task_id: str, ttl: float, final_attempt: bool = False
) -> dict[str, Any]:
    """Send ``request`` once per ``key``; a duplicate returns the first run's outcome."""
    item = compose(key, request.to, request, request.context)
    report = _deliver([item], task_id, ttl, final_attempt)
    delivery.raise_for_retry_later(report)
    if key in report.errors:
        raise report.errors[key]
    row = delivery.lookup([key])[key]
    if key in report.done_before:
        log.info(
            "email %s to %s: duplicate of a message already %s", key, row.recipient, row.status
        )
    else:
        log.info("email %s to %s sent as %s", key, row.recipient, row.message_id)
    return {"key": key, "to": row.recipient, "message_id": row.message_id, "status": row.status}


def plan_batch(request: BatchRequest, batch_key: str) -> list[ChunkRequest]:
    """Check the batch before anything is sent, and cut it into chunks.

    The template must exist and each distinct shape of context (its keys, recursively) must
    render: a batch whose contexts lack a variable fails as a whole, naming the recipient and
    the variable, instead of sending half of it. Repeated addresses are sent to once.
    """
    renderer = get_renderer()
    renderer.check_name(request.template)
    shapes: set[Any] = set()
    unique: list[Recipient] = []
    seen: set[str] = set()
    for index, recipient in enumerate(request.recipients):
        address = message.bare(recipient.to).lower()
        if address in seen:
            continue
        seen.add(address)
        unique.append(recipient)
        shape = _shape(recipient.context)
        if shape not in shapes:
            shapes.add(shape)
            try:
                renderer.render(request.template, recipient.context, request.subject)
            except InvalidPayload as exc:
                raise InvalidPayload(f"recipients.{index}.{exc}") from None
    common = request.model_dump(include={"template", "subject", "reply_to", "headers"})
    return [
        ChunkRequest(**common, batch_key=batch_key, recipients=unique[i : i + request.chunk_size])
        for i in range(0, len(unique), request.chunk_size)
    ]


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _shape(v)) for k, v in value.items()))
    return None


def send_chunk(
    request: ChunkRequest, task_id: str, ttl: float, final_attempt: bool = False
) -> dict[str, Any]:
    """Send one chunk over one connection; each recipient once per batch key."""
    items = [
        compose(
            recipient_key(request.batch_key, r.to),
            r.to,
            request,
            r.context,
            batch_key=request.batch_key,
            strict=False,
        )
        for r in request.recipients
    ]
    report = _deliver(items, task_id, ttl, final_attempt)
    summary = report.summary()
    log.info(
        "email chunk of batch %s: %d sent, %d failed, %d skipped, %d already done, %d to retry",
        request.batch_key,
        summary["sent"],
        summary["failed"],
        summary["skipped"],
        summary["already_done"],
        summary["retry_later"],
    )
    delivery.raise_for_retry_later(report)
    return {"batch_key": request.batch_key, **summary}


def send_alert(to: str, alert: Mapping[str, Any]) -> None:
    """Email a dead-letter alert (already redacted) with the ``dead_letter_alert`` template.

    Straight to the transport, outside the email log and the rate limit: an alert must go out
    even when what failed is the email pipeline's own bookkeeping.
    """
    settings = get_settings()
    key = normalise_key("saas_tasks.deadletter.alert", f"{alert.get('id')}:{alert.get('task_id')}")
    item = compose(key, to, Common(template="dead_letter_alert"), {"alert": dict(alert)})
    assert item.message is not None  # compose(strict=True) raises instead
    transport = transports.from_url(settings.email_url, settings.email_timeout)
    with transport:
        envelope = transports.Envelope(message.bare(settings.email_from), item.to, item.message_id)
        transport.send(envelope, item.message)
