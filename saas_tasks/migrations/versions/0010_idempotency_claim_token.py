"""idempotency records: the claim token of the run that holds a key

Revision ID: 0010
Revises: 0002
Create Date: 2026-12-02 22:00:00.000000

A ``running`` record belongs to the run whose token it carries (see
``saas_tasks/reliability/lease.py``): a stale claim is taken over by replacing its token,
compare-and-set, and a run records or releases its key only while its token is still there.
The reliability core's own branch from the shared schema, beside the task families' branches
(``saas_tasks.migrate.upgrade()`` applies every head). Nullable, no default: a record left
``running`` by a run from before this revision has no token and is taken over once its
``claimed_until`` has passed, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
