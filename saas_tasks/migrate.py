"""Run the schema migrations (``saas-tasks db upgrade``) without an alembic.ini on disk."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "saas_tasks:migrations")
    return config


def upgrade(revision: str = "heads") -> None:
    """Migrate to ``revision``; by default every head (task families migrate side by side)."""
    command.upgrade(alembic_config(), revision)


def downgrade(revision: str) -> None:
    command.downgrade(alembic_config(), revision)


def current() -> str | None:
    """The database's revision(s), heads joined by ``+``; None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    from saas_tasks.db import get_engine

    with get_engine().connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return "+".join(sorted(heads)) if heads else None


def heads() -> str:
    """The newest revision(s) the code knows, in the form :func:`current` prints."""
    from alembic.script import ScriptDirectory

    return "+".join(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def revision(message: str, rev_id: str | None = None, branch_from: str | None = None) -> None:
    """For pack developers: autogenerate a migration from the models.

    ``branch_from="0002"`` starts a new branch there: task families migrate side by side, each
    on its own branch from the shared schema, and ``upgrade()`` applies every head.
    """
    command.revision(
        alembic_config(),
        message=message,
        autogenerate=True,
        rev_id=rev_id,
        head=branch_from or "head",
        splice=branch_from is not None,
    )
