"""The SQL that formats a CSV export on PostgreSQL (``rows.csv_select``) tests exactly what the
Python writer tests: the same formula-start characters, the same value formats; no database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, Text, select
from sqlalchemy.dialects import postgresql

from saas_tasks.exports import rows
from saas_tasks.exports.formats import FORMULA_START, csv_cell, neutralise
from saas_tasks.models import AuditLog, User


def sql(statement: Any, utf8: bool = True, neutralise_formulas: bool = True) -> str:
    return str(
        rows.csv_select(statement, neutralise_formulas, utf8).compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"render_postcompile": True, "literal_binds": True},
        )
    )


def test_the_sql_formula_codes_are_exactly_the_python_formula_start_characters() -> None:
    assert rows.FORMULA_CODES == (61, 43, 45, 64, 9, 13)
    assert tuple(chr(code) for code in rows.FORMULA_CODES) == FORMULA_START


def test_the_sql_code_test_flags_a_first_character_exactly_when_python_does() -> None:
    # ascii(cell) is the first character's code point (UTF8): the SQL test flags a cell iff
    # that code point is in FORMULA_CODES; Python's test is startswith(FORMULA_START)
    firsts = [chr(code) for code in range(0x3000)] + ["\uff1d", "\ufe62", "\uff20", "\uff0d", "😀"]
    for first in firsts:
        value = first + "rest"
        assert (ord(value[0]) in rows.FORMULA_CODES) == (neutralise(value) != value), first


def test_text_columns_are_tested_by_code_point_on_utf8_and_by_first_character_elsewhere() -> None:
    statement = select(User.name)
    assert "CASE WHEN (ascii(users.name) IN (61, 43, 45, 64, 9, 13)) THEN '''' || users.name" in (
        sql(statement)
    )
    assert "left(users.name, 1) IN ('=', '+', '-', '@'," in sql(statement, utf8=False)
    assert "ascii(" not in sql(statement, utf8=False)


def test_neutralisation_can_be_turned_off_and_then_text_passes_through() -> None:
    assert sql(select(User.name), neutralise_formulas=False).startswith(
        "SELECT users.name AS name \nFROM users"
    )


def test_json_is_not_cast_and_timestamps_and_booleans_are_formatted_like_python() -> None:
    rendered = sql(select(AuditLog.data, User.created_at, User.is_active))
    assert "audit_logs.data AS data" in rendered and "CAST" not in rendered
    assert (
        'to_char(users.created_at, \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\') AS created_at'
    ) in rendered
    assert "timezone(" not in rendered  # the COPY transaction sets TimeZone to UTC
    assert "WHEN (users.is_active IS true) THEN 'true' WHEN (users.is_active IS false)" in rendered


def test_columns_keep_their_names_and_order() -> None:
    table = Table("t", MetaData(), Column("b", Text), Column("a", Text))
    statement = rows.csv_select(select(table.c.b, table.c.a.label("renamed")))
    assert rows.column_names(statement) == ["b", "renamed"]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        (" =1", " =1"),
        ("'=1", "'=1"),
        ("\uff1d1", "\uff1d1"),
        ("", ""),
        (None, ""),
        (True, "true"),
        ({"n": "=1"}, '{"n": "=1"}'),
    ],
)
def test_the_python_writer_neutralises_the_same_cells(value: Any, written: Any) -> None:
    assert csv_cell(value, neutralise_formulas=True) == written
