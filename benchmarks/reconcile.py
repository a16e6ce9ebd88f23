"""Billing reconciliation at scale, on PostgreSQL: 1,000,000 invoices against ~1,000,000
provider records, 1% of invoices seeded with a discrepancy spread over every kind.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/billing_bench \
        .venv/bin/python benchmarks/reconcile.py [--invoices 1000000] [--loop-rows 20000]

Three ways in one run, on the same data:

* the pack: ``service.reconcile_day`` (run upsert, old results cleared, one INSERT ... SELECT
  over a FULL OUTER JOIN, counts and totals, commit);
* the limit: one hand-written FULL OUTER JOIN computing the same classes into a temp table;
* a per-row ORM loop (a few queries an invoice, then one a charge for the unmatched side),
  timed on ``--loop-rows`` invoices and scaled linearly to the whole day: stated as such. It is
  given an index on provider_records.invoice_id, which the pack does not need.

The script checks that the pack found every seeded discrepancy and nothing else, and that the
hand-written join agrees. Goals (issue 5): at most 2x the single join, at least 50x the loop.
The database named by DATABASE_URL is emptied (the tables this benchmark uses are recreated).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _report import Goal, report, skip, skip_without_postgres

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DAY = date(2026, 11, 20)
START = datetime(2026, 11, 20, tzinfo=UTC)
SLOTS = ("missing", "amount_mismatch", "currency_mismatch", "status_mismatch", "duplicate_charge")


def slot(i: int) -> str | None:
    """Which discrepancy invoice ``i`` is seeded with (1% of them), or None."""
    return SLOTS[(i // 100) % len(SLOTS)] if i % 100 == 0 else None


def expected(n: int) -> set[tuple[str, int | None, str | None]]:
    out: set[tuple[str, int | None, str | None]] = set()
    for i in range(100, n + 1, 100):
        kind = slot(i)
        if kind == "missing":
            out.add(("missing_at_provider", i, None))
            out.add(("missing_here", None, f"ch_x{i}"))
        elif kind == "duplicate_charge":
            out.add(("duplicate_charge", i, f"ch_d{i}"))
        else:
            out.add((str(kind), i, f"ch_{i}"))
    return out


SEED = [
    "INSERT INTO tenants (id, slug, name, created_at) VALUES (1, 'bench', 'Bench', now())",
    # invoices, paid through the day; 1 in 100 seeded (see slot())
    """INSERT INTO invoices (id, tenant_id, number, amount, currency, status, issued_at, paid_at,
           created_at)
       SELECT i, 1, 'INV-' || i, 1000 + i % 500, 'usd', 'paid', :start,
              :start + (i % 86400) * interval '1 second', :start
       FROM generate_series(1, :n) i""",
    # half of the invoices have a payment row naming the charge; the rest link by metadata
    """INSERT INTO payments (tenant_id, invoice_id, amount, currency, status, provider,
           provider_charge_id, created_at)
       SELECT 1, i, 1000 + i % 500, 'usd', 'succeeded', 'stripe', 'ch_' || i, :start
       FROM generate_series(2, :n, 2) i""",
    # one charge an invoice, but the seeded ones differ: slot (i/100)%5 = 0 missing (the
    # charge has no invoice), 1 amount, 2 currency, 3 status (disputed), 4 duplicate
    """INSERT INTO provider_records (provider, record_id, tenant_id, type, charge_id,
           invoice_id, amount, currency, status, created_at, imported_at)
       SELECT 'stripe', c, 1, 'charge', c,
              CASE WHEN i % 100 = 0 AND (i / 100) % 5 = 0 THEN NULL ELSE i END,
              1000 + i % 500 + CASE WHEN i % 100 = 0 AND (i / 100) % 5 = 1 THEN 7 ELSE 0 END,
              CASE WHEN i % 100 = 0 AND (i / 100) % 5 = 2 THEN 'eur' ELSE 'usd' END,
              CASE WHEN i % 100 = 0 AND (i / 100) % 5 = 3 AND i % 200 = 0 THEN 'disputed'
                   ELSE 'succeeded' END,
              :start + (i % 86400) * interval '1 second', now()
       FROM (SELECT i, CASE WHEN i % 100 = 0 AND (i / 100) % 5 = 0 THEN 'ch_x' || i
                            ELSE 'ch_' || i END AS c
             FROM generate_series(1, :n) i) s""",
    # the other status mismatches arrive as a refund record of the charge
    """INSERT INTO provider_records (provider, record_id, tenant_id, type, charge_id, amount,
           currency, status, created_at, imported_at)
       SELECT 'stripe', 'txn_r' || i, 1, 'refund', 'ch_' || i, 1000 + i % 500, 'usd',
              'refunded', :start + interval '23 hours', now()
       FROM generate_series(100, :n, 100) i WHERE (i / 100) % 5 = 3 AND i % 200 <> 0""",
    # duplicates: a second charge for the invoice, a second later
    """INSERT INTO provider_records (provider, record_id, tenant_id, type, charge_id,
           invoice_id, amount, currency, status, created_at, imported_at)
       SELECT 'stripe', 'ch_d' || i, 1, 'charge', 'ch_d' || i, i, 1000 + i % 500, 'usd',
              'succeeded', :start + (i % 86400 + 1) * interval '1 second', now()
       FROM generate_series(100, :n, 100) i WHERE (i / 100) % 5 = 4""",
]

#: the limit: one FULL OUTER JOIN computing the same classes, written for this data by hand
HAND = """
CREATE TEMP TABLE hand_classes AS
SELECT kind, invoice_id, record_id FROM (
  SELECT CASE
           WHEN c.record_id IS NULL THEN 'missing_at_provider'
           WHEN o.id IS NULL THEN 'missing_here'
           WHEN c.n > 1 THEN 'duplicate_charge'
           WHEN o.currency <> c.currency THEN 'currency_mismatch'
           WHEN o.amount <> c.amount THEN 'amount_mismatch'
           WHEN c.status <> 'succeeded' OR EXISTS (SELECT 1 FROM provider_records r
                WHERE r.charge_id = c.charge_id AND r.type = 'refund') THEN 'status_mismatch'
         END AS kind,
         COALESCE(o.id, c.invoice_id) AS invoice_id, c.record_id
  FROM (SELECT * FROM invoices WHERE tenant_id = 1 AND status = 'paid'
          AND paid_at >= :start AND paid_at < :end) o
  FULL OUTER JOIN (
    SELECT pr.*, ROW_NUMBER() OVER (PARTITION BY pr.invoice_id ORDER BY pr.created_at) AS n
    FROM provider_records pr
    WHERE pr.tenant_id = 1 AND pr.type = 'charge' AND pr.created_at >= :start
      AND pr.created_at < :end) c
  ON c.invoice_id = o.id
) k WHERE kind IS NOT NULL
"""


def seconds(fn: object) -> float:
    began = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--loop-rows", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    goals = ["<= 2x the single join", ">= 50x the per-row loop"]
    if not url.startswith("postgresql"):
        print("set DATABASE_URL to a PostgreSQL database of your own (it is emptied)")
        skip(
            "reconcile", "needs PostgreSQL (set DATABASE_URL=postgresql://.../billing_bench)", goals
        )
        return 0
    skip_without_postgres("reconcile", url, "DATABASE_URL", goals)
    from sqlalchemy import select, text

    from saas_tasks.billing import service
    from saas_tasks.db import get_engine, session_scope
    from saas_tasks.models import Base, Invoice, Payment, ProviderRecord

    engine = get_engine()
    names = [
        "reconciliation_discrepancies",
        "reconciliation_runs",
        "provider_records",
        "payments",
        "invoices",
        "subscriptions",
        "users",
        "tenants",
    ]
    tables = [Base.metadata.tables[name] for name in names]
    Base.metadata.drop_all(engine, tables=tables)
    Base.metadata.create_all(engine, tables=tables)
    n = args.invoices
    window = {"start": START, "end": START + timedelta(days=1), "n": n}
    began = time.perf_counter()
    with engine.begin() as connection:
        for statement in SEED:
            connection.execute(text(statement), window)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    with engine.connect() as connection:
        invoices = connection.execute(text("SELECT count(*) FROM invoices")).scalar_one()
        records = connection.execute(text("SELECT count(*) FROM provider_records")).scalar_one()
    print(
        f"seeded {invoices:,} invoices, {records:,} provider records "
        f"in {time.perf_counter() - began:.1f}s"
    )

    # --- the pack --------------------------------------------------------------------------
    def pack() -> None:
        with session_scope() as session:
            service.reconcile_day(session, 1, DAY)

    pack()  # warm the cache once, as a nightly job on a live database would find it
    pack_s = seconds(pack)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT kind, invoice_id, provider_record_id FROM reconciliation_discrepancies")
        ).all()
    found = {(k, i, r if k != "missing_at_provider" else None) for k, i, r in rows}
    found = {(k, None if k == "missing_here" else i, r) for k, i, r in found}
    want = expected(n)
    pack_ok = found == want and len(rows) == len(want)

    # --- the single hand-written join ------------------------------------------------------
    def hand() -> None:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS hand_classes"))
            connection.execute(text(HAND), window)
            got = connection.execute(text("SELECT kind, invoice_id, record_id FROM hand_classes"))
            hand_rows.clear()
            hand_rows.extend(got.all())

    hand_rows: list[tuple[str, int | None, str | None]] = []
    hand()
    hand_s = seconds(hand)
    hand_found = {
        (k, None if k == "missing_here" else i, None if k == "missing_at_provider" else r)
        for k, i, r in hand_rows
    }
    hand_ok = hand_found == want

    # --- the per-row ORM loop, on loop_rows invoices, scaled ---------------------------------
    with engine.begin() as connection:
        connection.execute(
            text("CREATE INDEX IF NOT EXISTS bench_pr_invoice ON provider_records (invoice_id)")
        )
        connection.execute(text("ANALYZE provider_records"))
    sample = args.loop_rows

    def loop() -> int:
        problems = 0
        with session_scope() as session:
            for invoice in session.scalars(select(Invoice).where(Invoice.id <= sample)):
                payment = session.scalars(
                    select(Payment).where(Payment.invoice_id == invoice.id)
                ).first()
                query = select(ProviderRecord).where(ProviderRecord.type == "charge")
                if payment is not None and payment.provider_charge_id:
                    query = query.where(ProviderRecord.charge_id == payment.provider_charge_id)
                else:
                    query = query.where(ProviderRecord.invoice_id == invoice.id)
                charges = session.scalars(query).all()
                if not charges:
                    problems += 1
                    continue
                problems += len(charges) - 1
                first = charges[0]
                refunds = session.scalars(
                    select(ProviderRecord).where(
                        ProviderRecord.charge_id == first.charge_id, ProviderRecord.type == "refund"
                    )
                ).all()
                if (
                    first.currency != invoice.currency
                    or first.amount != invoice.amount
                    or first.status != "succeeded"
                    or refunds
                ):
                    problems += 1
            orphans = select(ProviderRecord).where(
                ProviderRecord.type == "charge",
                ProviderRecord.invoice_id.is_(None),
                ProviderRecord.record_id.in_([f"ch_x{i}" for i in range(100, sample + 1, 100)]),
            )
            for record in session.scalars(orphans):
                if (
                    session.scalars(
                        select(Payment).where(Payment.provider_charge_id == record.charge_id)
                    ).first()
                    is None
                ):
                    problems += 1
        return problems

    loop_sample_s = seconds(loop)
    loop_s = loop_sample_s * n / sample

    print(
        f"pack reconcile_day:          {pack_s:8.2f} s  "
        f"({len(rows):,} discrepancies; every seeded one found, nothing else: {pack_ok})"
    )
    print(f"hand-written FULL OUTER JOIN: {hand_s:8.2f} s  (agrees with the seeds: {hand_ok})")
    print(
        f"per-row ORM loop:            {loop_s:8.2f} s  "
        f"(measured {loop_sample_s:.2f} s on {sample:,} invoices, scaled linearly x{n / sample:g})"
    )
    vs_join, vs_loop = pack_s / hand_s, loop_s / pack_s
    print(f"pack / join = {vs_join:.2f}x (goal <= 2x: {'met' if vs_join <= 2 else 'NOT met'})")
    print(f"loop / pack = {vs_loop:.0f}x (goal >= 50x: {'met' if vs_loop >= 50 else 'NOT met'})")
    if pack_ok and hand_ok:  # a wrong answer is a failure, not a figure
        report(
            "reconcile",
            [
                Goal(
                    f"pack {pack_s:.2f} s",
                    f"FULL OUTER JOIN {hand_s:.2f} s",
                    vs_join,
                    "<= 2x",
                    vs_join <= 2,
                ),
                Goal(
                    f"pack {pack_s:.2f} s",
                    f"per-row loop {loop_s:.2f} s (scaled)",
                    vs_loop,
                    ">= 50x",
                    vs_loop >= 50,
                ),
            ],
        )
    return 0 if pack_ok and hand_ok else 1


if __name__ == "__main__":
    sys.exit(main())
