"""CSV exports on the real database (SQLite here, PostgreSQL when DATABASE_URL names one): every
dangerous leading character is neutralised exactly as the Python writer does it, and the same
data gives the same bytes on both databases (PostgreSQL writes through COPY, SQLite through the
cursor and the Python writer); on PostgreSQL both paths are also compared with each other."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, null, select

from saas_tasks.db import session_scope
from saas_tasks.exports import formats, rows, service
from saas_tasks.exports.datasets import _registry, register_dataset
from saas_tasks.exports.storage import LocalStorage, get_storage
from saas_tasks.models import AuditLog, Export, Tenant, User

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
WHOLE = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)  # no microseconds: still six digits
DANGEROUS = ["=", "+", "-", "@", "\t", "\r"]
HARMLESS = [" =1", "'=1", "\uff1d1", "\ufe621", "\uff0d1", "\uff20x", "\n=1", "x=1", "é", "😀=1"]
NAMES = [
    "Zoë Ünïcødé 北京 😀",
    'Comma, "quoted" and ;semicolon',
    "line one\nline two\r\nline three",
    '=HYPERLINK("http://evil.example","click")',
    "-3",
]
DATA = [{"ip": "10.0.0.1", "tags": ["a", "é"]}, None, {"f": "=1", "n": {"x": 1.5}}, [1, 2], {}]

EXPECTED_USERS = (
    "id,name,is_active,timezone,created_at,email_verified_at\r\n"
    "1,Zoë Ünïcødé 北京 😀,true,Europe/Paris,2024-05-06T07:08:09.123456+00:00,"
    "2024-05-06T07:08:09.000000+00:00\r\n"
    '2,"Comma, ""quoted"" and ;semicolon",false,,2024-05-06T07:08:09.123456+00:00,\r\n'
    '3,"line one\nline two\r\nline three",true,,2024-05-06T07:08:09.123456+00:00,\r\n'
    '4,"\'=HYPERLINK(""http://evil.example"",""click"")",false,,'
    "2024-05-06T07:08:09.123456+00:00,\r\n"
    "5,'-3,true,,2024-05-06T07:08:09.123456+00:00,\r\n"
).encode()
EXPECTED_AUDIT = (
    "id,action,target,data\r\n"
    '1,login,\'@import,"{""ip"": ""10.0.0.1"", ""tags"": [""a"", ""é""]}"\r\n'
    "2,'+sum,,\r\n"
    '3,edit,\'-1,"{""f"": ""=1"", ""n"": {""x"": 1.5}}"\r\n'
    '4,edit,\'\t=1,"[1, 2]"\r\n'
    "5,edit,ok,{}\r\n"
).encode()


@pytest.fixture()
def datasets(clean_state: None) -> Iterator[None]:
    register_dataset(
        "test_csv_users",
        lambda: select(
            User.id,
            User.name,
            User.is_active,
            User.timezone,
            User.created_at,
            User.email_verified_at,
        ).order_by(User.id),
    )
    register_dataset(
        "test_csv_audit",
        lambda: select(AuditLog.id, AuditLog.action, AuditLog.target, AuditLog.data).order_by(
            AuditLog.id
        ),
    )
    with session_scope() as session:
        session.add(Tenant(id=1, slug="acme", name="Acme"))
    yield
    _registry.pop("test_csv_users", None)
    _registry.pop("test_csv_audit", None)


def add_users(names: list[str]) -> None:
    with session_scope() as session:
        session.execute(
            insert(User),
            [
                {
                    "id": i + 1,
                    "tenant_id": 1,
                    "email": f"u{i}@example.com",
                    "name": name,
                    "is_active": i % 2 == 0,
                    "timezone": "Europe/Paris" if i == 0 else None,
                    "created_at": WHEN,
                    "email_verified_at": WHOLE if i == 0 else None,
                }
                for i, name in enumerate(names)
            ],
        )


def add_audit() -> None:
    actions = ["login", "+sum", "edit", "edit", "edit"]
    targets = ["@import", None, "-1", "\t=1", "ok"]
    with session_scope() as session:
        session.execute(
            insert(AuditLog),
            [
                {
                    "id": i + 1,
                    "tenant_id": 1,
                    "action": action,
                    "target": target,
                    "data": null() if data is None else data,  # SQL NULL, not JSON null
                    "created_at": WHEN,
                }
                for i, (action, target, data) in enumerate(zip(actions, targets, DATA, strict=True))
            ],
        )


def exported(dataset: str) -> bytes:
    export_id = service.create_export(dataset, "csv")
    service.run_export(export_id, "task-1")
    with session_scope() as session:
        row = session.get(Export, export_id)
        assert row is not None and row.location
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    return Path(storage.path(row.location)).read_bytes()


def cells(data: bytes, column: str) -> list[str]:
    header, *parsed = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return [r[header.index(column)] for r in parsed]


@pytest.mark.parametrize("start", DANGEROUS, ids=["eq", "plus", "minus", "at", "tab", "cr"])
def test_a_cell_starting_with_each_dangerous_character_is_prefixed_with_a_quote(
    datasets: None, start: str
) -> None:
    names = [start, start + "cmd|' /C calc'!A0", start + "1+1", start + start + "x"]
    add_users(names)

    assert cells(exported("test_csv_users"), "name") == ["'" + name for name in names]


def test_cells_that_only_look_dangerous_are_left_exactly_as_python_leaves_them(
    datasets: None,
) -> None:
    add_users(HARMLESS)

    written = cells(exported("test_csv_users"), "name")

    assert written == [formats.neutralise(name) for name in HARMLESS] == HARMLESS


def test_unicode_nulls_newlines_and_booleans_give_the_same_bytes_on_every_database(
    datasets: None,
) -> None:
    add_users(NAMES)

    assert exported("test_csv_users") == EXPECTED_USERS


def test_json_columns_and_sql_nulls_give_the_same_bytes_on_every_database(
    datasets: None,
) -> None:
    add_audit()

    assert exported("test_csv_audit") == EXPECTED_AUDIT


@pytest.mark.parametrize("chunk_rows", [1, 2, 5000])
def test_on_postgresql_copy_writes_the_bytes_of_the_cursor_path_whatever_the_chunk(
    datasets: None, chunk_rows: int
) -> None:
    if not rows.is_postgresql():
        pytest.skip("COPY is PostgreSQL's; SQLite has the cursor path only")
    add_users(NAMES + DANGEROUS + HARMLESS)
    add_audit()
    for statement in (
        _registry["test_csv_users"].select({}),
        _registry["test_csv_audit"].select({}),
    ):
        copied, streamed = io.BytesIO(), io.BytesIO()
        progress: list[int] = []

        copied_rows = rows.copy_csv(statement, copied, progress.append, chunk_rows)
        formats.write_csv(
            streamed,
            rows.column_names(statement),
            rows.stream(statement, chunk_rows),
            lambda n: None,
        )

        assert copied.getvalue() == streamed.getvalue()
        assert copied_rows == sum(progress) == rows.count(statement)
        assert all(step <= chunk_rows for step in progress)


@pytest.mark.xfail(
    reason='known, not fixed here: COPY writes an empty string as "", a JSON null as null '
    "and a JSON string with its quotes; the cursor path writes nothing, nothing and the bare "
    "string",
    raises=AssertionError,
    strict=True,
)
def test_on_postgresql_empty_strings_and_json_scalars_are_written_alike_by_both_paths(
    datasets: None,
) -> None:
    if not rows.is_postgresql():
        pytest.skip("COPY is PostgreSQL's; SQLite has the cursor path only")
    with session_scope() as session:
        session.execute(
            insert(AuditLog),
            [
                {"id": 1, "tenant_id": 1, "action": "", "data": None, "created_at": WHEN},
                {"id": 2, "tenant_id": 1, "action": "x", "data": "text", "created_at": WHEN},
            ],
        )
    statement = _registry["test_csv_audit"].select({})
    copied, streamed = io.BytesIO(), io.BytesIO()

    rows.copy_csv(statement, copied, lambda n: None, 5000)
    formats.write_csv(
        streamed, rows.column_names(statement), rows.stream(statement, 5000), lambda n: None
    )

    assert copied.getvalue() == streamed.getvalue()
