"""Billing reconciliation on the real database: the pack's functions, the real worker, a local
Stripe API, and a run killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from saas_tasks.billing import service
from saas_tasks.billing.errors import InvalidProviderData
from saas_tasks.billing.files import FileSource
from saas_tasks.billing.stripe_source import StripeSource
from saas_tasks.db import get_engine, session_scope
from saas_tasks.models import (
    Invoice,
    Payment,
    ProviderRecord,
    ReconciliationDiscrepancy,
    ReconciliationRun,
    Tenant,
)
from saas_tasks.reliability import deadletter
from tests.conftest import RUN_DIR, wait_for
from tests.smtp_server import email_settings
from tests.stripe_server import API_KEY, charge, fake_stripe, refund_txn

DAY = date(2026, 11, 20)
FINANCE = "finance@acme.example"
ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,Type,Source,Amount,Fee,Net,Currency,Created (UTC),Charge ID,invoice_id (metadata)"


def at(hour: int, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture()
def books(clean_state: None) -> dict[str, int]:
    """Our side of DAY for tenant acme (and a neighbour whose data must not leak in)."""
    with session_scope() as session:
        acme, other = Tenant(slug="acme", name="Acme"), Tenant(slug="other", name="Other")
        session.add_all([acme, other])
        session.flush()
        ids: dict[str, int] = {"acme": acme.id, "other": other.id}
        for name, amount, currency, status, paid in [
            ("inv1", 1000, "usd", "paid", at(10)),
            ("inv2", 2000, "usd", "paid", at(11)),  # never charged
            ("inv4", 1500, "usd", "paid", at(12)),
            ("inv5", 1000, "usd", "paid", at(13)),
            ("inv6", 3000, "usd", "paid", at(14)),
            ("inv7", 700, "usd", "paid", at(9)),
            ("inv8", 900, "usd", "paid", at(10, DAY - timedelta(days=1))),  # another day
            ("open", 500, "usd", "open", None),
        ]:
            invoice = Invoice(
                tenant_id=acme.id,
                number=name,
                amount=amount,
                currency=currency,
                status=status,
                paid_at=paid,
            )
            session.add(invoice)
            session.flush()
            ids[name] = invoice.id
        for invoice, charge_id in [("inv1", "ch_1"), ("inv4", "ch_4"), ("inv6", "ch_6")]:
            session.add(
                Payment(
                    tenant_id=acme.id,
                    invoice_id=ids[invoice],
                    amount=0,
                    currency="usd",
                    status="succeeded",
                    provider_charge_id=charge_id,
                )
            )
    return ids


def export_csv(path: Path, ids: dict[str, int]) -> Path:
    """Stripe's balance-transaction export for DAY: one discrepancy of each kind for acme."""
    acme = ids["acme"]
    rows = [
        "txn_1,charge,ch_1,10.00,0.59,9.41,usd,2026-11-20 10:00,,",
        "txn_3,charge,ch_3,5.00,0.45,4.55,usd,2026-11-20 10:05,,",  # no invoice here
        "txn_4,charge,ch_4,14.00,0.71,13.29,usd,2026-11-20 12:00,,",  # 1400 vs 1500
        f"txn_5,charge,ch_5,10.00,0.59,9.41,eur,2026-11-20 13:00,,{ids['inv5']}",
        "txn_6,charge,ch_6,30.00,1.17,28.83,usd,2026-11-20 14:00,,",
        "txn_6r,refund,re_6,-30.00,0.00,-30.00,usd,2026-11-20 18:00,ch_6,",
        f"txn_7a,charge,ch_7a,7.00,0.50,6.50,usd,2026-11-20 09:00,,{ids['inv7']}",
        f"txn_7b,charge,ch_7b,7.00,0.50,6.50,usd,2026-11-20 09:30,,{ids['inv7']}",
        "txn_fee,stripe_fee,,-1.00,0.00,-1.00,usd,2026-11-20 23:00,,",
        "txn_next,charge,ch_next,1.00,0.33,0.67,usd,2026-11-21 00:00,,",  # the next day
    ]
    header = HEADER + ",tenant_id (metadata)"
    body = [row + (f",{acme}" if row.startswith(("txn_3", "txn_next")) else ",") for row in rows]
    path.write_text("\n".join([header, *body]) + "\n", encoding="utf-8")
    return path


EXPECTED = {
    ("missing_at_provider", "inv2", None, "paid", None),
    ("missing_here", None, "ch_3", None, "succeeded"),
    ("amount_mismatch", "inv4", "ch_4", "1500", "1400"),
    ("currency_mismatch", "inv5", "ch_5", "usd", "eur"),
    ("status_mismatch", "inv6", "ch_6", "paid", "refunded"),
    ("duplicate_charge", "inv7", "ch_7b", None, "700"),
}


def found(ids: dict[str, int], run_id: int) -> list[tuple[Any, ...]]:
    names = {v: k for k, v in ids.items() if k.startswith("inv")}
    with session_scope() as session:
        rows = session.scalars(
            select(ReconciliationDiscrepancy).where(ReconciliationDiscrepancy.run_id == run_id)
        ).all()
        return sorted(
            (
                (
                    r.kind,
                    names.get(r.invoice_id or 0),
                    r.provider_record_id,
                    r.our_value,
                    r.their_value,
                )
                for r in rows
            ),
            key=str,
        )


def import_and_reconcile(path: Path, ids: dict[str, int]) -> int:
    with session_scope() as session:
        service.import_records(session, FileSource(path), DAY)
    with session_scope() as session:
        return service.reconcile_day(session, ids["acme"], DAY)


def test_a_day_with_one_discrepancy_of_each_kind_is_found_exactly(
    books: dict[str, int], tmp_path: Path
) -> None:
    run_id = import_and_reconcile(export_csv(tmp_path / "day.csv", books), books)

    assert found(books, run_id) == sorted(EXPECTED, key=str)
    with session_scope() as session:
        run = session.get(ReconciliationRun, run_id)
        assert run is not None
        assert (run.tenant_id, run.day, run.status) == (books["acme"], DAY, "discrepancies")
        assert run.matched == 2  # inv1, and inv7 by its first charge
        assert run.discrepancies == 6
        assert set(run.counts.values()) == {1}
        assert run.totals == {
            "usd": {"ours": 9200, "theirs": 7300},
            "eur": {"ours": 0, "theirs": 1000},
        }


def test_a_rerun_and_a_reimport_give_identical_results_and_no_duplicates(
    books: dict[str, int], tmp_path: Path
) -> None:
    path = export_csv(tmp_path / "day.csv", books)
    first_id = import_and_reconcile(path, books)
    first = found(books, first_id)
    second_id = import_and_reconcile(path, books)

    assert second_id == first_id
    assert found(books, second_id) == first
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ReconciliationRun)) == 1
        assert session.scalar(select(func.count()).select_from(ReconciliationDiscrepancy)) == 6
        assert session.scalar(select(func.count()).select_from(ProviderRecord)) == 8


def test_a_malformed_provider_file_names_the_line_and_field_and_imports_nothing(
    books: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "\n"
        "txn_1,charge,ch_1,10.00,0,10.00,usd,2026-11-20 10:00,,\n"
        "txn_2,charge,ch_2,ten dollars,0,0,usd,2026-11-20 10:00,,\n",
        encoding="utf-8",
    )
    with (
        pytest.raises(InvalidProviderData, match=r"bad.csv: line 3: Amount: not a decimal"),
        session_scope() as session,
    ):
        service.import_records(session, FileSource(path), DAY)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ProviderRecord)) == 0


def test_the_stripe_adapter_pages_through_a_local_server_that_speaks_the_list_api(
    books: dict[str, int],
) -> None:
    noon = int(at(12).timestamp())
    charges = [charge(f"ch_p{n}", 100 + n, noon + n, tenant_id=books["acme"]) for n in range(5)]
    charges.append(charge("ch_old", 1, noon - 86_400, tenant_id=books["acme"]))
    txns = [refund_txn("txn_r1", "ch_p1", 101, noon + 60)]
    with fake_stripe({"charges": charges, "balance_transactions": txns}) as server:
        source = StripeSource(API_KEY, api_base=server.url, page_size=2)
        with session_scope() as session:
            assert service.import_records(session, source, DAY) == 6
        pages = [r for r in server.requests if r["path"] == "/v1/charges"]

    assert len(pages) == 3
    assert [p["query"].get("starting_after") for p in pages] == [None, ["ch_p1"], ["ch_p3"]]
    assert pages[0]["query"]["created[gte]"] == [str(int(at(0).timestamp()))]
    with session_scope() as session:
        stored = {r.record_id: r for r in session.scalars(select(ProviderRecord))}
    assert sorted(stored) == ["ch_p0", "ch_p1", "ch_p2", "ch_p3", "ch_p4", "txn_r1"]
    assert (stored["txn_r1"].type, stored["txn_r1"].charge_id) == ("refund", "ch_p1")
    assert (stored["ch_p4"].amount, stored["ch_p4"].tenant_id) == (104, books["acme"])


@pytest.fixture()
def import_dir(tmp_path: Path) -> Iterator[Path]:
    with email_settings(
        SAAS_TASKS_BILLING_IMPORT_DIR=str(tmp_path),
        SAAS_TASKS_BILLING_FINANCE_EMAIL=FINANCE,
    ):
        yield tmp_path


def test_the_task_reconciles_a_tenant_day_and_mails_the_report_to_finance(
    worker: Any, books: dict[str, int], import_dir: Path
) -> None:
    from saas_tasks.billing.tasks import reconcile

    export_csv(import_dir / "day.csv", books)
    result = reconcile.delay(day=DAY.isoformat(), tenant="acme", file="day.csv").get(timeout=30)

    assert result["imported"] == 8
    assert [(r["tenant"], r["matched"], r["discrepancies"]) for r in result["runs"]] == [
        ("acme", 2, 6)
    ]
    outbox = RUN_DIR / "outbox"
    report = wait_for(
        lambda: [m for m in map(read_mail, outbox.glob("*.eml")) if m["To"] == FINANCE],
        message="the report in the outbox",
    )[0]
    assert report["Subject"] == "Billing reconciliation for 2026-11-20: 6 mismatches"
    body = report.get_body(("plain",)).get_content()
    assert "acme: discrepancies, 2 matched, 6 discrepancies" in body
    assert "  USD total: ours 9200, theirs 7300 (minor units)" in body.splitlines()
    assert f"- {books['inv4']} (acme): amount mismatch (ours 1500, theirs 1400) [ch_4]" in body


def read_mail(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"day": "2999-01-01"}, "day: Value error, 2999-01-01 is in the future"),
        ({"day": DAY.isoformat(), "tenant": "nobody"}, "tenant: no tenant with slug 'nobody'"),
        ({"day": DAY.isoformat(), "file": "bad.csv"}, "bad.csv: line 1: missing column(s) Amount"),
        (
            {"day": DAY.isoformat(), "file": "../../etc/passwd"},
            "file: '../../etc/passwd' is outside",
        ),
    ],
    ids=["future-day", "unknown-tenant", "malformed-file", "path-escape"],
)
def test_bad_input_fails_at_once_naming_the_field_and_is_dead_lettered(
    worker: Any, books: dict[str, int], import_dir: Path, kwargs: dict[str, Any], says: str
) -> None:
    from saas_tasks.billing.tasks import reconcile

    (import_dir / "bad.csv").write_text("id,Type,Source,Currency,Created (UTC)\n")
    result = reconcile.delay(**kwargs)
    with pytest.raises(Exception, match=r".") as raised:
        result.get(timeout=30)
    assert says in str(raised.value)
    letters = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task="saas_tasks.billing.reconcile")),
        message="a dead letter",
    )
    assert says in letters[0].exception_message
    assert letters[0].retries == 0
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ProviderRecord)) == 0


KILLED_RUN = """
import sys
from datetime import date
from saas_tasks.billing import service
request = service.ReconcileRequest(day=date.fromisoformat(sys.argv[1]), tenant=sys.argv[2])
service.reconcile(request)
"""


def run_and_kill(env: dict[str, str], ready: Any) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, DAY.isoformat(), "acme"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        wait_for(lambda: ready() or process.poll() is not None, timeout=30, message="mid-run")
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()


def test_a_run_killed_mid_import_leaves_the_previous_results_intact(
    books: dict[str, int], tmp_path: Path
) -> None:
    before = found(books, import_and_reconcile(export_csv(tmp_path / "day.csv", books), books))
    noon = int(at(12).timestamp())
    charges = [charge(f"ch_k{n}", 5, noon + n, tenant_id=books["acme"]) for n in range(4)]
    with fake_stripe({"charges": charges}) as server:
        server.stall_after = 1  # page 1 is imported, page 2 never comes
        run_and_kill(
            {
                "SAAS_TASKS_BILLING_PROVIDER": "stripe",
                "SAAS_TASKS_STRIPE_API_KEY": API_KEY,
                "SAAS_TASKS_STRIPE_API_BASE": server.url,
            },
            server.stalled.is_set,
        )

    run_id = found_run(books)
    assert found(books, run_id) == before
    with session_scope() as session:
        ids = session.scalars(select(ProviderRecord.record_id)).all()
    assert not [i for i in ids if i.startswith("ch_k")]


def found_run(ids: dict[str, int]) -> int:
    with session_scope() as session:
        return session.scalars(select(ReconciliationRun.id)).one()


def test_a_run_killed_after_clearing_its_old_results_rolls_back_to_them(
    books: dict[str, int], tmp_path: Path
) -> None:
    if get_engine().dialect.name != "postgresql":
        pytest.skip("holding a table lock while another process writes needs PostgreSQL")
    before = found(books, import_and_reconcile(export_csv(tmp_path / "day.csv", books), books))
    with get_engine().connect() as blocker:
        blocker.execute(text("LOCK TABLE provider_records IN ACCESS EXCLUSIVE MODE"))

        def comparing() -> bool:  # the run has cleared its old rows, waits for provider_records
            with get_engine().connect() as probe:
                return bool(
                    probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND datname = current_database()"
                            " AND query LIKE '%provider_records%'"
                        )
                    ).scalar()
                )

        run_and_kill({}, comparing)
        blocker.rollback()
    time.sleep(0.2)
    assert found(books, found_run(books)) == before
