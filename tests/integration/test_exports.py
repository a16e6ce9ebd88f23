"""Exports on the real database (SQLite here, PostgreSQL when DATABASE_URL names one): every
format parses back to exactly the rows selected, awkward text survives, formulas are
neutralised, a second run makes no second file, bad input is refused by name; and through a
real worker: progress, the "export ready" email, failure to the dead-letter queue."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from saas_tasks.db import session_scope
from saas_tasks.exports import InvalidFilter, UnknownDataset, UnknownFormat, service
from saas_tasks.exports.datasets import get_dataset
from saas_tasks.exports.formats import _json_default, _xlsx_cell, csv_cell
from saas_tasks.exports.storage import LocalStorage, get_storage
from saas_tasks.models import AuditLog, Export, Invoice, Tenant, User, UserSession
from saas_tasks.reliability import deadletter
from saas_tasks.settings import get_settings
from tests.conftest import wait_for

AWKWARD = [
    "Zoë Ünïcødé 北京 😀",
    'Comma, "quoted" and ;semicolon',
    "line one\nline two\r\nline three",
    '=HYPERLINK("http://evil.example","click")',
    "+1+2",
    "-3",
    "@SUM(A1)",
    "",
    "plain",
]
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture()
def seeded(clean_state: None) -> int:
    """A tenant, one user per awkward name, two invoices each, sessions and audit entries."""
    with session_scope() as session:
        session.add(Tenant(id=1, slug="acme", name="Acme"))
        session.flush()
        session.execute(
            insert(User),
            [
                {
                    "id": i + 1,
                    "tenant_id": 1,
                    "email": f"u{i}@example.com",
                    "name": name,
                    "is_active": i % 2 == 0,
                    "created_at": WHEN,
                }
                for i, name in enumerate(AWKWARD)
            ],
        )
        session.execute(
            insert(Invoice),
            [
                {
                    "tenant_id": 1,
                    "user_id": i % len(AWKWARD) + 1,
                    "number": f"INV-{i:04d}",
                    "amount": 1999 * i,
                    "currency": "eur",
                    "status": "paid" if i % 3 else "open",
                    "issued_at": WHEN,
                    "paid_at": WHEN if i % 3 else None,
                }
                for i in range(2 * len(AWKWARD))
            ],
        )
        session.add(UserSession(user_id=1, token_hash="secret-hash", expires_at=WHEN))
        session.add(AuditLog(tenant_id=1, actor_id=1, action="login", data={"ip": "10.0.0.1"}))
    return 1


def expected(dataset: str, filters: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    statement = get_dataset(dataset).select(filters)
    with session_scope() as session:
        result = session.execute(statement)
        return list(result.keys()), [tuple(row) for row in result]


def produced(export_id: str) -> tuple[Export, Path]:
    with session_scope() as session:
        row = session.get(Export, export_id)
        assert row is not None
    storage = get_storage()
    assert isinstance(storage, LocalStorage) and row.location
    return row, storage.path(row.location)


def parse(fmt: str, data: bytes) -> tuple[list[str], list[list[Any]]]:
    if fmt == "csv":
        header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        return header, rows
    if fmt == "jsonl":
        items = [json.loads(line) for line in data.decode().splitlines()]
        return (list(items[0]) if items else []), [list(item.values()) for item in items]
    if fmt == "json":
        items = json.loads(data)
        return (list(items[0]) if items else []), [list(item.values()) for item in items]
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    header, *rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    return [str(h) for h in header], rows


def as_written(fmt: str, value: Any) -> Any:
    if fmt == "csv":
        return str(csv_cell(value, neutralise_formulas=True))
    if fmt in {"jsonl", "json"}:
        return json.loads(json.dumps(value, default=_json_default))
    cell = _xlsx_cell(value)
    return None if cell == "" else to_ms(cell)


class Millis:
    """A timestamp as XLSX keeps it: a float count of days, read back to the millisecond, so
    a value with microseconds (``…008500``) can come back one millisecond either way."""

    def __init__(self, moment: datetime) -> None:
        self.ms = moment.timestamp() * 1000

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Millis) and abs(self.ms - other.ms) <= 1

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Millis({self.ms:.3f})"


def to_ms(value: Any) -> Any:
    return Millis(value) if isinstance(value, datetime) else value


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("csv", {}),
        ("csv", {"bom": True, "gzip": True}),
        ("jsonl", {}),
        ("json", {"gzip": True}),
        ("xlsx", {}),
    ],
)
def test_each_format_parses_back_to_exactly_the_rows_selected(
    seeded: int, fmt: str, options: dict[str, bool]
) -> None:
    filters = {"tenant_id": 1, "status": {"in": ["paid", "open"]}}
    export_id = service.create_export("invoices", fmt, filters, **options)

    outcome = service.run_export(export_id, "task-1")

    row, path = produced(export_id)
    data = path.read_bytes()
    if options.get("gzip"):
        data = gzip.decompress(data)
    if options.get("bom"):
        assert data.startswith("\ufeff".encode())
    columns, rows = expected("invoices", filters)
    header, parsed = parse(fmt, data)
    assert header == columns
    if fmt == "xlsx":
        parsed = [[to_ms(value) for value in r] for r in parsed]
    assert parsed == [[as_written(fmt, value) for value in r] for r in rows]
    assert outcome["rows"] == row.rows_done == row.rows_total == len(rows) == 18
    assert row.status == "succeeded" and row.bytes == path.stat().st_size


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "xlsx"])
def test_unicode_commas_quotes_and_newlines_survive_and_formulas_are_neutralised(
    seeded: int, fmt: str
) -> None:
    export_id = service.create_export("users", fmt, {"tenant_id": 1})
    service.run_export(export_id, "task-1")

    _, path = produced(export_id)
    header, parsed = parse(fmt, path.read_bytes())
    names = [r[header.index("name")] for r in parsed]
    if fmt == "csv":  # a spreadsheet shows these as text, never runs them
        neutral = ["'" + n if n[:1] in {"=", "+", "-", "@"} else n for n in AWKWARD]
        assert names == neutral and "'=HYPERLINK" in path.read_text("utf-8")
        assert path.read_bytes().count(b"\r\n") >= len(AWKWARD) + 1  # RFC 4180 line ends
    elif fmt == "xlsx":  # stored as string cells: no formula in the sheet at all
        # XML reads a CR LF inside text back as LF (its own line-end normalisation)
        assert names == [n.replace("\r\n", "\n") or None for n in AWKWARD]
        with zipfile.ZipFile(path) as book:
            assert b"<f>" not in book.read("xl/worksheets/sheet1.xml")
    else:
        assert names == AWKWARD


def test_a_second_run_of_the_same_export_makes_no_second_file(seeded: int) -> None:
    export_id = service.create_export("invoices", "csv", {"status": "paid"})
    first = service.run_export(export_id, "task-1")
    _, path = produced(export_id)
    written_at = path.stat().st_mtime_ns

    again = service.run_export(export_id, "task-2")

    assert again == first
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_mtime_ns == written_at


def test_the_per_user_export_is_a_zip_of_one_file_per_table_holding_only_that_user(
    seeded: int,
) -> None:
    export_id = service.create_export("user_data", "jsonl", {"user_id": 1})
    service.run_export(export_id, "task-1")

    _, path = produced(export_id)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n).decode().splitlines() for n in archive.namelist()}
    assert sorted(members) == sorted(
        f"{t}.jsonl"
        for t in ("user", "sessions", "subscriptions", "invoices", "payments", "audit_logs")
    )
    assert [json.loads(line)["id"] for line in members["user.jsonl"]] == [1]
    assert {json.loads(line)["user_id"] for line in members["invoices.jsonl"]} == {1}
    assert len(members["invoices.jsonl"]) == 2 and members["subscriptions.jsonl"] == []
    assert "secret-hash" not in "".join(members["sessions.jsonl"])  # no token hashes leave


@pytest.mark.parametrize(
    ("dataset", "fmt", "filters", "error", "named"),
    [
        ("invoicez", "csv", {}, UnknownDataset, "'invoicez'; did you mean 'invoices'"),
        ("invoices", "pdf", {}, UnknownFormat, "'pdf'"),
        ("invoices", "csv", {"amount": 1}, InvalidFilter, "no filter 'amount'"),
        ("invoices", "csv", {"status": {"like": "p%"}}, InvalidFilter, "operator 'like'"),
        ("invoices", "csv", {"user_id": "x"}, InvalidFilter, "filter 'user_id': 'x'"),
        ("user_data", "csv", {}, InvalidFilter, "requires the filter(s) user_id"),
    ],
)
def test_bad_input_is_refused_before_any_work_naming_it(
    clean_state: None, dataset: str, fmt: str, filters: dict[str, Any], error: type, named: str
) -> None:
    with pytest.raises(error, match=named.replace("(", r"\(").replace(")", r"\)")):
        service.request_export(dataset, fmt, filters)
    with session_scope() as session:
        assert session.scalars(select(Export)).all() == []


def test_a_filter_value_is_a_bound_parameter_never_sql(seeded: int) -> None:
    export_id = service.create_export("invoices", "jsonl", {"status": "paid' OR '1'='1"})
    assert service.run_export(export_id, "task-1")["rows"] == 0


# --- through a real worker -----------------------------------------------------------------


def outbox_messages() -> list[Any]:
    outbox = Path(get_settings().email_url.removeprefix("file://"))
    files = sorted(outbox.glob("*.eml"))
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]


def test_a_requested_export_runs_on_the_worker_and_emails_a_signed_link(
    worker: Any, seeded: int
) -> None:
    before = len(outbox_messages())
    export_id = service.request_export("invoices", "csv", {"tenant_id": 1}, requested_by=1)

    done = wait_for(
        lambda: service.status(export_id)["status"] == "succeeded" and service.status(export_id),
        message="the export to succeed",
    )

    assert done["rows_done"] == done["rows_total"] == 18
    assert "signature=" in done["download_url"] and "expires=" in done["download_url"]
    mails = wait_for(lambda: outbox_messages()[before:], message="the export-ready email")
    assert mails[0]["To"] == "u0@example.com" and "is ready" in mails[0]["Subject"]
    text = mails[0].get_body(("plain",)).get_content()
    assert f"/{export_id}/invoices-" in text and "signature=" in text


def test_an_export_that_cannot_run_is_marked_failed_and_dead_lettered(
    worker: Any, clean_state: None
) -> None:
    with session_scope() as session:
        session.add(
            Export(
                id="ab" * 16,
                dataset="gone_dataset",
                format="csv",
                filters={},
                options={},
                status="queued",
                rows_done=0,
                attempts=0,
            )
        )
    from saas_tasks.exports.tasks import export

    export.delay(export_id="ab" * 16)

    letters = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task=service.TASK)),
        message="a dead letter for the export",
    )
    assert letters[0].exception_type.endswith("UnknownDataset")
    status = service.status("ab" * 16)
    assert status["status"] == "failed" and "unknown dataset 'gone_dataset'" in status["error"]
