"""How dead letters look: aligned tables for people, JSON for machines.

Everything shown passes through :func:`~saas_tasks.reliability.redaction.redact` unless the
operator asks for ``--reveal``: the store keeps the real payload (a replay needs it), the
terminal and its scrollback should not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from saas_tasks.models import DeadLetter
from saas_tasks.reliability.redaction import redact, redact_url


def count(number: int, noun: str = "dead letter") -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def short_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def short_type(qualified: str) -> str:
    """``saas_tasks.exceptions.TransientError`` → ``TransientError``, which ``--exception``
    accepts too: the table stays narrow and the name can be pasted back."""
    return qualified.rsplit(".", 1)[-1]


def summary(row: DeadLetter) -> dict[str, Any]:
    """What ``dlq list --json`` gives per entry: enough to pick one, no payload."""
    return {
        "id": row.id,
        "task_id": row.task_id,
        "task_name": row.task_name,
        "reason": row.reason,
        "exception_type": row.exception_type,
        "exception_message": redact_url(row.exception_message),
        "retries": row.retries,
        "failure_count": row.failure_count,
        "status": row.status,
        "first_failed_at": iso(row.first_failed_at),
        "last_failed_at": iso(row.last_failed_at),
        "replay_task_id": row.replay_task_id,
    }


def detail(row: DeadLetter, reveal: bool) -> dict[str, Any]:
    """Everything stored about the entry, secrets redacted unless ``reveal``."""
    hide: Any = (lambda value: value) if reveal else redact
    return {
        **summary(row),
        "exception_message": row.exception_message if reveal else redact_url(row.exception_message),
        "queue": row.queue,
        "worker": row.worker,
        "args": hide(row.args or []),
        "kwargs": hide(row.kwargs or {}),
        "headers": hide(row.headers or {}),
        "traceback": row.traceback if reveal else redact_url(row.traceback),
        "replayed_at": iso(row.replayed_at),
        "replay_count": row.replay_count,
    }


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            click.echo("  ".join("-" * w for w in widths))


def entries_table(rows: Sequence[DeadLetter]) -> None:
    echo_table(
        ["ID", "LAST FAILURE", "TASK", "EXCEPTION", "RETRIES", "STATUS", "MESSAGE"],
        [
            [
                r.id,
                short_time(r.last_failed_at),
                r.task_name,
                short_type(r.exception_type),
                r.retries,
                r.status,
                one_line(redact_url(r.exception_message), 60),
            ]
            for r in rows
        ],
    )


def entry_text(data: dict[str, Any]) -> None:
    """``dlq show`` for people: the fields, then the payload, then the traceback last."""
    fields = [
        "id",
        "task_id",
        "task_name",
        "reason",
        "status",
        "queue",
        "worker",
        "exception_type",
        "retries",
        "failure_count",
        "first_failed_at",
        "last_failed_at",
        "replay_count",
        "replayed_at",
        "replay_task_id",
    ]
    width = max(len(f) for f in fields) + 1
    for name in fields:
        value = data[name]
        click.echo(f"{name + ':':<{width}} {'-' if value is None else value}")
    click.echo(f"{'message:':<{width}} {data['exception_message']}")
    for name in ("args", "kwargs", "headers"):
        rendered = json.dumps(data[name], indent=2, default=str).replace("\n", "\n  ")
        click.echo(f"{name}:\n  {rendered}")
    click.echo("traceback:")
    click.echo(data["traceback"].rstrip() or "  (none)")
