"""email log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:18:39.451914
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("batch_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("task_id", sa.String(length=255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_log")),
        sa.UniqueConstraint("key", name=op.f("uq_email_log_key")),
    )
    with op.batch_alter_table("email_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_log_batch_key"), ["batch_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_log_recipient"), ["recipient"], unique=False)
        batch_op.create_index(
            "ix_email_log_status_updated_at", ["status", "updated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("email_log", schema=None) as batch_op:
        batch_op.drop_index("ix_email_log_status_updated_at")
        batch_op.drop_index(batch_op.f("ix_email_log_recipient"))
        batch_op.drop_index(batch_op.f("ix_email_log_batch_key"))
    op.drop_table("email_log")
