"""subscription reminders

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-23 11:50:07.955971
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_reminders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "subscription_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offset_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_reminders_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_reminders")),
        sa.UniqueConstraint(
            "subscription_id",
            "kind",
            "period_end",
            "offset_days",
            name=op.f("uq_subscription_reminders_subscription_id"),
        ),
    )
    with op.batch_alter_table("subscription_reminders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscription_reminders_status_enqueued_at", ["status", "enqueued_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subscription_reminders", schema=None) as batch_op:
        batch_op.drop_index("ix_subscription_reminders_status_enqueued_at")
    op.drop_table("subscription_reminders")
