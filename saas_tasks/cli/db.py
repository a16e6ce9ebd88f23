"""``saas-tasks db …``: the schema migrations, run without an alembic.ini on disk."""

from __future__ import annotations

import click

from saas_tasks import migrate
from saas_tasks.cli.errors import DatabaseProblem
from saas_tasks.reliability.redaction import redact_url


def _where() -> str:
    from saas_tasks.db import database_url

    return f"DATABASE_URL={redact_url(database_url())}"


@click.group("db")
def db_group() -> None:
    """The pack's database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="heads")
def upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: the newest). Safe to run twice."""
    migrate.upgrade(revision)
    click.echo(f"{_where()} is at revision {migrate.current()}")


@db_group.command("current")
def current() -> None:
    """Print the revision the database is at."""
    revision = migrate.current()
    if revision is None:
        raise DatabaseProblem(f"{_where()} is not migrated; run `saas-tasks db upgrade`")
    click.echo(f"{_where()} is at revision {revision}")
