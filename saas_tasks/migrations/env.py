"""Alembic environment: migrates whichever database the settings (or ``db.configure``) name."""

from __future__ import annotations

from alembic import context

from saas_tasks.db import get_engine
from saas_tasks.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = get_engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def run_migrations_offline() -> None:
    from saas_tasks.db import database_url

    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
