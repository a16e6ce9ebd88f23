"""billing reconciliation

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-23 11:58:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "provider_records",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", BIG_ID, nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("charge_id", sa.String(length=255), nullable=True),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_provider_records_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_records")),
        sa.UniqueConstraint("provider", "record_id", name=op.f("uq_provider_records_provider")),
    )
    with op.batch_alter_table("provider_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_records_charge_id"), ["charge_id"], unique=False
        )
        batch_op.create_index("ix_provider_records_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_provider_records_tenant_id_created_at", ["tenant_id", "created_at"], unique=False
        )
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("tenant_id", BIG_ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("discrepancies", sa.Integer(), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("totals", JSON, nullable=False),
        sa.Column("task_id", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reconciliation_runs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("tenant_id", "day", name=op.f("uq_reconciliation_runs_tenant_id")),
    )
    op.create_table(
        "reconciliation_discrepancies",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("provider_record_id", sa.String(length=255), nullable=True),
        sa.Column("our_value", sa.String(length=64), nullable=True),
        sa.Column("their_value", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_discrepancies_run_id_reconciliation_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_discrepancies")),
    )
    with op.batch_alter_table("reconciliation_discrepancies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reconciliation_discrepancies_run_id_kind", ["run_id", "kind"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_discrepancies", schema=None) as batch_op:
        batch_op.drop_index("ix_reconciliation_discrepancies_run_id_kind")
    op.drop_table("reconciliation_discrepancies")
    op.drop_table("reconciliation_runs")
    with op.batch_alter_table("provider_records", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_records_tenant_id_created_at")
        batch_op.drop_index("ix_provider_records_created_at")
        batch_op.drop_index(batch_op.f("ix_provider_records_charge_id"))
    op.drop_table("provider_records")
