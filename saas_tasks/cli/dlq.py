"""``saas-tasks dlq …``: list, show, count, replay and purge dead letters.

The filters (task, exception type, since, status, reason) are shared by every command that
selects entries, so what ``dlq list`` shows is exactly what ``replay --all`` or ``purge`` with
the same options touch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from saas_tasks.cli import output
from saas_tasks.exceptions import BrokerUnavailable
from saas_tasks.models import DeadLetter
from saas_tasks.reliability import deadletter
from saas_tasks.reliability.deadletter import Filters, Sender

F = TypeVar("F", bound=Callable[..., Any])
FILTER_NAMES = ("task", "exception", "since", "status", "reason")
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Since(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """``2024-05-01``, ``2024-05-01T12:00`` (UTC unless an offset is given), or
    ``30m``/``2h``/``3d``/``1w`` back from now."""

    name = "WHEN"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        relative = _RELATIVE.match(text)
        if relative:
            amount, unit = int(relative[1]), _UNITS[relative[2].lower()]
            return datetime.now(UTC) - timedelta(**{unit: amount})
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            self.fail(
                f"{text!r} is neither an ISO date/datetime (2024-05-01, "
                "2024-05-01T12:00) nor a relative time (30m, 2h, 3d, 1w)",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def filter_options(status_default: str | None = None) -> Callable[[F], F]:
    """Add the shared filters to a command; :func:`take_filters` collects them again."""
    options = [
        click.option("--task", metavar="NAME", help="Only this task name."),
        click.option(
            "--exception",
            metavar="TYPE",
            help="Only this exception type (ValueError or a dotted name).",
        ),
        click.option("--since", type=Since(), help="Last failure at or after WHEN."),
        click.option(
            "--status",
            type=click.Choice(["pending", "replayed"]),
            default=status_default,
            show_default=status_default is not None,
            help="Only entries in this state.",
        ),
        click.option(
            "--reason",
            metavar="REASON",
            help="failure, invalid_payload, unknown_task, rejected, decode_error.",
        ),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def take_filters(params: dict[str, Any]) -> Filters:
    return Filters(**{name: params.pop(name) for name in FILTER_NAMES})


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue: tasks that failed for good."""


@dlq_group.command("list")
@filter_options()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def list_command(limit: int, as_json: bool, **params: Any) -> None:
    """Dead letters, the most recent failure first."""
    rows = deadletter.list_entries(take_filters(params), limit=limit)
    if as_json:
        output.echo_json([output.summary(row) for row in rows])
    elif not rows:
        click.echo("no dead letters match")
    else:
        output.entries_table(rows)
        if len(rows) == limit:
            click.echo(f"(the {limit} most recent; --limit shows more)", err=True)


@dlq_group.command("show")
@click.argument("entry_id", metavar="ID")
@click.option("--reveal", is_flag=True, help="Show secrets in args, kwargs and headers.")
@json_option
def show_command(entry_id: str, reveal: bool, as_json: bool) -> None:
    """Everything stored about one dead letter (ID: the numeric id or the task's id)."""
    data = output.detail(deadletter.get_entry(entry_id), reveal)
    if as_json:
        output.echo_json(data)
    else:
        output.entry_text(data)
        if not reveal:
            click.echo("(secrets redacted; --reveal shows them)", err=True)


@dlq_group.command("stats")
@filter_options()
@json_option
def stats_command(as_json: bool, **params: Any) -> None:
    """How many dead letters, by task name and exception type."""
    rows = deadletter.stats(take_filters(params))
    if as_json:
        output.echo_json([{"task_name": t, "exception_type": e, "count": n} for t, e, n in rows])
        return
    output.echo_table(["TASK", "EXCEPTION", "COUNT"], [list(row) for row in rows])
    click.echo(f"total: {sum(n for _, _, n in rows)}")


def celery_sender() -> Sender:
    """Publish with the pack's app, bounded and named like ``.delay()`` (BrokerUnavailable)."""
    from saas_tasks.app import app
    from saas_tasks.reliability.publishing import PublishGuard

    def send(name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None) -> str:
        options = {"queue": queue} if queue else {}
        with PublishGuard(name, app):
            return str(app.send_task(name, args=args, kwargs=kwargs, **options).id)

    return send


def _describe(row: DeadLetter) -> str:
    return f"{row.id} {row.task_name}[{row.task_id}] ({output.short_type(row.exception_type)})"


@dlq_group.command("replay")
@click.argument("entry_id", metavar="[ID]", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry matching the filters.")
@filter_options(status_default="pending")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="With --all: at most this many (the most recent failures).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
def replay_command(
    entry_id: str | None, replay_all: bool, limit: int, dry_run: bool, **params: Any
) -> None:
    """Re-enqueue a dead task under its original name and arguments; mark it replayed.

    Give one ID, or --all with filters (pending entries only unless --status replayed).
    """
    filters = take_filters(params)
    if (entry_id is None) == (not replay_all):
        raise click.UsageError("give either one ID or --all (with optional filters)")
    if entry_id is not None:
        if filters != Filters(status="pending"):
            raise click.UsageError("filters apply to --all only; one ID replays that entry")
        rows = [deadletter.get_entry(entry_id)]
    else:
        rows = deadletter.list_entries(filters, limit=limit)[::-1]
    if dry_run:
        for row in rows:
            click.echo(f"would replay {_describe(row)}")
        click.echo(f"{output.count(len(rows))} would be replayed (dry run: nothing changed)")
        return
    _replay_rows(rows, single=entry_id is not None)


def _replay_rows(rows: list[DeadLetter], single: bool) -> None:
    send, done = celery_sender(), 0
    for row in rows:
        if row.reason in deadletter.UNREPLAYABLE and not single:
            click.echo(
                f"skipped {_describe(row)}: a {row.reason} message cannot be re-run", err=True
            )
            continue
        new_id = deadletter.replay(row.id, send)
        click.echo(f"replayed {_describe(row)} as {new_id}")
        done += 1
    click.echo(f"{output.count(done)} replayed")


@dlq_group.command("purge")
@filter_options()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Say how many would be deleted; change nothing.")
def purge_command(yes: bool, dry_run: bool, **params: Any) -> None:
    """Delete the dead letters matching the filters (all of them without filters)."""
    filters = take_filters(params)
    matching = sum(n for _, _, n in deadletter.stats(filters))
    scope = "matching the filters" if filters != Filters() else "(ALL of them: no filters)"
    if dry_run or matching == 0:
        click.echo(
            f"{output.count(matching)} {scope} would be deleted (nothing changed)"
            if dry_run
            else "no dead letters match; nothing deleted"
        )
        return
    if not yes:
        click.confirm(f"Delete {output.count(matching)} {scope}?", abort=True, err=True)
    click.echo(f"deleted {output.count(deadletter.purge(filters))}")


@dlq_group.command("drain-spool")
def drain_spool_command() -> None:
    """Forward dead letters spooled to local disk (broker and database were down) to the queue."""
    from saas_tasks.app import app
    from saas_tasks.reliability.hooks import send_entry

    try:
        # Fail fast with one clear error when the broker is down; entries stay spooled.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        raise BrokerUnavailable(
            f"the broker did not answer ({type(exc).__name__}: {exc}); "
            f"the spool at {deadletter.spool_path()} is left as it is"
        ) from exc
    forwarded = deadletter.drain_spool(lambda entry: send_entry(app, entry))
    click.echo(
        f"forwarded {output.count(forwarded, 'spooled dead letter')} from {deadletter.spool_path()}"
    )
