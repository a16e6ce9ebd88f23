"""Every SQL statement of the billing family, in one place.

A host app whose tables differ from the reference schema changes this module only. The
comparison is one ``INSERT ... SELECT`` over a FULL OUTER JOIN: our invoices paid that day
against the provider's charges of that day, linked by ``payments.provider_charge_id`` or, when
there is no payment row, by the invoice id the charge carries in its metadata. Values are
bound parameters; money stays integer minor units.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from saas_tasks.models import ProviderRecord, ReconciliationRun, UtcDateTime

KINDS = (
    "missing_at_provider",
    "missing_here",
    "amount_mismatch",
    "currency_mismatch",
    "status_mismatch",
    "duplicate_charge",
)

_WINDOW = (bindparam("start", type_=UtcDateTime()), bindparam("end", type_=UtcDateTime()))

#: ours: invoices paid that day; theirs: the tenant's charges of that day with their effective
#: status (a dispute, else a refund record of the charge, of any day, wins) and the invoice
#: they pay. Records without a tenant were attributed by ATTRIBUTE first.
PAIRS = """
INSERT INTO reconciliation_discrepancies
    (run_id, kind, invoice_id, provider_record_id, our_value, their_value)
WITH ours AS (
    SELECT i.id AS invoice_id, i.amount, i.currency, i.status,
           CASE i.status WHEN 'paid' THEN 'succeeded' ELSE i.status END AS norm
    FROM invoices i
    WHERE i.tenant_id = :tenant AND i.paid_at >= :start AND i.paid_at < :end
      AND i.status IN ('paid', 'refunded')
),
theirs AS (
    SELECT c.record_id, c.amount, c.currency, c.created_at,
           COALESCE(p.invoice_id, c.invoice_id) AS invoice_id,
           CASE v.reversal WHEN 2 THEN 'disputed' WHEN 1 THEN 'refunded' ELSE c.status END
               AS status
    FROM provider_records c
    LEFT JOIN payments p ON p.provider_charge_id = c.charge_id
    LEFT JOIN (SELECT charge_id, MAX(CASE type WHEN 'dispute' THEN 2 ELSE 1 END) AS reversal
               FROM provider_records WHERE type IN ('refund', 'dispute')
               GROUP BY charge_id) v ON v.charge_id = c.charge_id
    WHERE c.tenant_id = :tenant AND c.type = 'charge' AND c.status NOT IN ('failed', 'pending')
      AND c.created_at >= :start AND c.created_at < :end
),
ranked AS (
    SELECT t.*, CASE WHEN t.invoice_id IS NULL THEN 1 ELSE ROW_NUMBER() OVER (
               PARTITION BY t.invoice_id ORDER BY t.created_at, t.record_id) END AS n
    FROM theirs t
),
pairs AS (
    SELECT o.invoice_id AS o_invoice, o.amount AS o_amount, o.currency AS o_currency,
           o.status AS o_status, o.norm AS o_norm, r.record_id, r.invoice_id AS t_invoice,
           r.amount AS t_amount, r.currency AS t_currency, r.status AS t_status, r.n
    FROM ours o
    FULL OUTER JOIN ranked r ON r.invoice_id = o.invoice_id
)
"""

FIND = text(
    PAIRS  # noqa: S608 - constant text; every value is a bound parameter
    + """
    SELECT :run_id, 'missing_at_provider', o_invoice, NULL, o_status, NULL
      FROM pairs WHERE record_id IS NULL
    UNION ALL
    SELECT :run_id, 'missing_here', t_invoice, record_id, NULL, t_status
      FROM pairs WHERE o_invoice IS NULL AND n = 1
    UNION ALL
    SELECT :run_id, 'currency_mismatch', o_invoice, record_id, o_currency, t_currency
      FROM pairs WHERE o_invoice IS NOT NULL AND n = 1 AND o_currency <> t_currency
    UNION ALL
    SELECT :run_id, 'amount_mismatch', o_invoice, record_id,
           CAST(o_amount AS VARCHAR(64)), CAST(t_amount AS VARCHAR(64))
      FROM pairs WHERE o_invoice IS NOT NULL AND n = 1
       AND o_currency = t_currency AND o_amount <> t_amount
    UNION ALL
    SELECT :run_id, 'status_mismatch', o_invoice, record_id, o_status, t_status
      FROM pairs WHERE o_invoice IS NOT NULL AND n = 1 AND o_norm <> t_status
    UNION ALL
    SELECT :run_id, 'duplicate_charge', t_invoice, record_id, NULL,
           CAST(t_amount AS VARCHAR(64))
      FROM pairs WHERE n > 1
    """
).bindparams(*_WINDOW)

COUNTS = text(
    "SELECT kind, COUNT(*), COUNT(DISTINCT invoice_id) FROM reconciliation_discrepancies"
    " WHERE run_id = :run_id GROUP BY kind"
)

#: invoices of the day that met their charge and disagree in nothing
MISMATCHED_PAIRS = text(
    "SELECT COUNT(DISTINCT invoice_id) FROM reconciliation_discrepancies WHERE run_id = :run_id"
    " AND kind IN ('amount_mismatch', 'currency_mismatch', 'status_mismatch')"
)

OUR_TOTALS = text(
    "SELECT currency, COUNT(*), COALESCE(SUM(amount), 0) FROM invoices"
    " WHERE tenant_id = :tenant AND paid_at >= :start AND paid_at < :end"
    " AND status IN ('paid', 'refunded') GROUP BY currency"
).bindparams(*_WINDOW)

THEIR_TOTALS = text(
    "SELECT currency, COUNT(*), COALESCE(SUM(amount), 0) FROM provider_records"
    " WHERE tenant_id = :tenant AND type = 'charge' AND status NOT IN ('failed', 'pending')"
    " AND created_at >= :start AND created_at < :end GROUP BY currency"
).bindparams(*_WINDOW)

#: records the provider did not say the tenant of take it from the payment or invoice they
#: link to, once, so the comparison filters on an indexed column
ATTRIBUTE = text(
    "UPDATE provider_records SET tenant_id = COALESCE("
    " (SELECT p.tenant_id FROM payments p WHERE p.provider_charge_id = provider_records.charge_id),"
    " (SELECT i.tenant_id FROM invoices i WHERE i.id = provider_records.invoice_id))"
    " WHERE tenant_id IS NULL AND created_at >= :start AND created_at < :end"
).bindparams(*_WINDOW)

CLEAR_RUN = text("DELETE FROM reconciliation_discrepancies WHERE run_id = :run_id")

FIRST_OF_KIND = text(
    "SELECT kind, invoice_id, provider_record_id, our_value, their_value FROM ("
    " SELECT d.*, ROW_NUMBER() OVER (PARTITION BY kind ORDER BY id) AS n"
    " FROM reconciliation_discrepancies d WHERE run_id = :run_id) k"
    " WHERE n <= :limit ORDER BY kind, n"
)

TENANT_BY_ID = text("SELECT id, slug FROM tenants WHERE id = :value")
TENANT_BY_SLUG = text("SELECT id, slug FROM tenants WHERE slug = :value")
ALL_TENANTS = text("SELECT id, slug FROM tenants ORDER BY id")


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def upsert_records(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or refresh provider records by ``(provider, record_id)``: importing twice is
    importing once."""
    if not rows:
        return
    statement = _insert(session, ProviderRecord.__table__)
    columns = ("tenant_id", "type", "charge_id", "invoice_id", "amount", "currency", "status")
    statement = statement.on_conflict_do_update(
        index_elements=["provider", "record_id"],
        set_={
            **{name: statement.excluded[name] for name in columns},
            "created_at": statement.excluded.created_at,
            "imported_at": statement.excluded.imported_at,
        },
    )
    session.execute(statement, rows)


def claim_run(session: Session, tenant: int, day: date, task_id: str | None, now: datetime) -> int:
    """The run row of (tenant, day), created or taken over; on PostgreSQL the upsert locks it,
    so two reruns of one day queue instead of interleaving."""
    statement = _insert(session, ReconciliationRun.__table__).values(
        tenant_id=tenant,
        day=day,
        status="running",
        matched=0,
        discrepancies=0,
        counts={},
        totals={},
        task_id=task_id,
        started_at=now,
        finished_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "day"],
        set_={"status": "running", "task_id": task_id, "started_at": now},
    ).returning(ReconciliationRun.__table__.c.id)
    return int(session.execute(statement).scalar_one())
