"""subscription reminders: why a notice was not sent

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-30 10:00:00.000000

A notice re-checked when its chunk runs can be withheld (``obsolete``); ``reason`` records why,
and why a ``skipped`` or ``failed`` one was not sent. Nullable, no default: existing rows keep
their status and simply have no recorded reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_reminders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_reminders", schema=None) as batch_op:
        batch_op.drop_column("reason")
