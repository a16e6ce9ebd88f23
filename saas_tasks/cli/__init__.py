"""The ``saas-tasks`` command: the operator's handle on the database and the dead letters.

    saas-tasks db upgrade|current
    saas-tasks dlq list|show|stats|replay|purge|drain-spool
    saas-tasks schedules [--json] | schedules run NAME
    saas-tasks queues [--json]

Each command is a thin layer over a plain function (``saas_tasks.migrate``,
``saas_tasks.reliability.deadletter``); errors an operator can fix end in one line on stderr
and a non-zero exit (see :mod:`saas_tasks.cli.errors` for the codes).
"""

from __future__ import annotations

from typing import Any

import click

from saas_tasks.cli.db import db_group
from saas_tasks.cli.dlq import dlq_group
from saas_tasks.cli.errors import friendly_errors
from saas_tasks.cli.queues import queues_command
from saas_tasks.cli.schedules import schedules_group


class FriendlyGroup(click.Group):
    """The root group: every subcommand runs inside the one error-handling wrapper."""

    def invoke(self, ctx: click.Context) -> Any:
        with friendly_errors():
            return super().invoke(ctx)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    metavar="URL",
    default=None,
    help="Use this database instead of DATABASE_URL (for one command).",
)
def cli(database_url: str | None) -> None:
    """Operate a saas-tasks deployment: migrations and the dead-letter queue."""
    if database_url:
        from saas_tasks import db

        db.configure(database_url)


cli.add_command(db_group)
cli.add_command(dlq_group)
cli.add_command(schedules_group)
cli.add_command(queues_command)


def main() -> None:
    """The console script's entry point (``saas-tasks = saas_tasks.cli:main``)."""
    cli(prog_name="saas-tasks")


__all__ = ["cli", "main"]
