"""Rows out of the database in constant memory.

* :func:`stream`: a server-side cursor (``stream_results`` with ``yield_per``): the driver
  fetches ``chunk_rows`` at a time, so memory stays flat whatever the row count. Every format
  can use it, on every database.
* :func:`copy_csv`: on PostgreSQL, ``COPY (SELECT …) TO STDOUT WITH (FORMAT csv)`` through
  psycopg: the server writes the CSV itself, which is the fastest honest path. The select is
  the same one, its values formatted in SQL exactly as :mod:`~saas_tasks.exports.formats`
  formats them in Python (ISO timestamps in UTC, ``true``/``false``, formula cells prefixed
  with ``'``), and its filters travel as parameters that psycopg binds; PostgreSQL ends each
  row with LF, which becomes RFC 4180's CRLF (each COPY message is exactly one row, so a line
  break inside a quoted value is left alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    String,
    Text,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from saas_tasks.db import get_engine
from saas_tasks.exports.datasets import AnySelect
from saas_tasks.exports.formats import FORMULA_START

#: to_char pattern matching ``datetime.isoformat(timespec="microseconds")`` in UTC (the COPY
#: transaction sets its time zone to UTC).
PG_ISO = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
#: The code points of :data:`~saas_tasks.exports.formats.FORMULA_START`: ``ascii(cell)`` is the
#: first character's code point on a UTF-8 database (0 for an empty string), cheaper than
#: ``left(cell, 1)``.
FORMULA_CODES = tuple(ord(start) for start in FORMULA_START)


def column_names(statement: AnySelect) -> list[str]:
    return [str(column.key) for column in statement.selected_columns]


def count(statement: AnySelect) -> int:
    """How many rows the export will hold (the progress total)."""
    counted = select(func.count()).select_from(statement.order_by(None).subquery())
    with get_engine().connect() as connection:
        return int(connection.execute(counted).scalar_one())


def stream(statement: AnySelect, chunk_rows: int) -> Iterator[Sequence[Sequence[Any]]]:
    """The rows of ``statement``, ``chunk_rows`` at a time, through a server-side cursor."""
    with get_engine().connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
            statement
        )
        yield from result.partitions()


def is_postgresql() -> bool:
    return get_engine().dialect.name == "postgresql"


def _kind(type_: TypeEngine[Any]) -> str:
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, Boolean):
        return "bool"
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, JSON):
        return "json"
    if isinstance(type_, String | Text):
        return "text"
    return "plain"


def csv_select(
    statement: AnySelect, neutralise_formulas: bool = True, utf8: bool = True
) -> AnySelect:
    """``statement`` with each column formatted in SQL the way the Python writer formats it.

    ``utf8``: the database encoding is UTF8, where ``ascii(cell)`` reads the first character
    (elsewhere it may refuse a non-ASCII one, so ``left(cell, 1)`` does the test).
    """
    formatted = []
    for column in statement.selected_columns:
        kind = _kind(column.type)
        expression: Any = column
        if kind == "text" and neutralise_formulas:
            formula = (
                func.ascii(column).in_(FORMULA_CODES)
                if utf8
                else func.left(column, 1).in_(FORMULA_START)
            )
            expression = case((formula, literal("'") + column), else_=column)
        elif kind == "bool":
            expression = case((column.is_(True), "true"), (column.is_(False), "false"))
        elif kind == "datetime":
            expression = func.to_char(column, PG_ISO)
        # json/jsonb: COPY writes a JSON value as its text, as a cast to text would
        formatted.append(expression.label(str(column.key)))
    return statement.with_only_columns(*formatted, maintain_column_froms=True)


def copy_csv(
    statement: AnySelect,
    out: IO[bytes],
    on_rows: Callable[[int], None],
    chunk_rows: int,
    neutralise_formulas: bool = True,
) -> int:
    """Write ``statement`` as CSV with a header through PostgreSQL's COPY; returns the rows."""
    engine = get_engine()
    rows = pending = -1  # the header is the first message
    with engine.connect() as connection:
        dbapi = connection.connection.dbapi_connection
        utf8 = dbapi.info.parameter_status("server_encoding") == "UTF8"  # type: ignore[union-attr]
        compiled = csv_select(statement, neutralise_formulas, utf8).compile(
            dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER true)"
        # to_char writes timestamps in UTC (a naive one read as UTC, as formats.iso reads it);
        # SET LOCAL ends with this transaction, rolled back when the connection closes
        connection.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        with cursor.copy(sql, compiled.params) as copy:
            for data in copy:
                out.write(bytes(data[:-1]) + b"\r\n")
                rows += 1
                pending += 1
                if pending >= chunk_rows:
                    on_rows(pending)
                    pending = 0
        cursor.close()
    if pending > 0:
        on_rows(pending)
    return max(rows, 0)
