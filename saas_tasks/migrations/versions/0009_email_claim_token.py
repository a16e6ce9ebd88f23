"""email log: the claim token of the delivery run that holds a pending row

Revision ID: 0009
Revises: 0002
Create Date: 2026-11-23 17:00:00.000000

A ``pending`` row belongs to the delivery run whose token it carries, no longer to a task id:
two runs of one chunk message share the task id (see ``saas_tasks/email/lease.py``).
Nullable, no default: a row left ``pending`` by a run from before this revision has no token
and is taken over once its ``claimed_until`` has passed, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_log", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
