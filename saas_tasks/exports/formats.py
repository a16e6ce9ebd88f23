"""The file formats: CSV, JSON Lines, JSON and XLSX, each written from a stream of row chunks.

* **CSV**: RFC 4180 (CRLF line ends, fields quoted when they hold a comma, a quote or a line
  break), UTF-8, with an optional BOM so Excel reads the encoding. Text cells starting with
  ``=``, ``+``, ``-``, ``@`` (or tab/CR) are prefixed with ``'`` (OWASP's CSV-injection
  advice) so a spreadsheet shows them as text instead of running them as formulas.
* **JSON Lines** (``jsonl``): one object a line; **JSON**: one array, still written row by row.
* **XLSX**: openpyxl in write-only mode (rows go to disk as they come), imported only when an
  XLSX is written. Text starting with ``=`` is stored as a string cell, never a formula; a new
  sheet starts every 1,048,575 rows (Excel's limit). Excel keeps timestamps to the millisecond,
  XML reads CR LF inside text back as LF, and control characters XML cannot hold are dropped.

Values read the same in every format: timestamps are ISO 8601 in UTC with microseconds,
booleans ``true``/``false``, JSON columns their JSON text (nested values in JSON formats).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

FORMATS = {
    "csv": ("csv", "text/csv; charset=utf-8"),
    "jsonl": ("jsonl", "application/x-ndjson"),
    "json": ("json", "application/json"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAX_ROWS = 1_048_575
BOM = "\ufeff".encode()

Chunks = Iterable[Sequence[Sequence[Any]]]
OnChunk = Callable[[int], None]


def neutralise(value: str) -> str:
    """``'`` before a cell a spreadsheet would read as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot export a value of type {type(value).__name__}")


def csv_cell(value: Any, neutralise_formulas: bool) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value) if neutralise_formulas else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_csv(
    out: IO[bytes],
    columns: Sequence[str],
    chunks: Chunks,
    on_chunk: OnChunk,
    bom: bool = False,
    neutralise_formulas: bool = True,
) -> int:
    if bom:
        out.write(BOM)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    count = 0
    for chunk in chunks:
        writer.writerows([csv_cell(v, neutralise_formulas) for v in row] for row in chunk)
        count += len(chunk)
        on_chunk(len(chunk))
    text.flush()
    text.detach()
    return count


def write_jsonl(out: IO[bytes], columns: Sequence[str], chunks: Chunks, on_chunk: OnChunk) -> int:
    count = 0
    for chunk in chunks:
        lines = [
            json.dumps(
                dict(zip(columns, row, strict=True)), ensure_ascii=False, default=_json_default
            )
            for row in chunk
        ]
        if lines:
            out.write(("\n".join(lines) + "\n").encode())
        count += len(chunk)
        on_chunk(len(chunk))
    return count


def write_json(out: IO[bytes], columns: Sequence[str], chunks: Chunks, on_chunk: OnChunk) -> int:
    out.write(b"[")
    count = 0
    for chunk in chunks:
        for row in chunk:
            item = json.dumps(
                dict(zip(columns, row, strict=True)), ensure_ascii=False, default=_json_default
            )
            out.write(("," if count else "").encode() + b"\n" + item.encode())
            count += 1
        on_chunk(len(chunk))
    out.write(b"\n]\n")
    return count


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).replace(tzinfo=None)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return str(value)
    return value


def write_xlsx(out: IO[bytes], columns: Sequence[str], chunks: Chunks, on_chunk: OnChunk) -> int:
    # imported here: never at import time of the task modules
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    sheet: Any = None
    count = 0

    def text_cell(value: str) -> Any:
        value = ILLEGAL_CHARACTERS_RE.sub("", value)  # XML cannot hold control characters
        if not value.startswith("="):
            return value
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"  # a string, never a formula
        return cell

    for chunk in chunks:
        for row in chunk:
            if sheet is None or (count % XLSX_MAX_ROWS == 0 and count):
                sheet = book.create_sheet(f"Sheet{count // XLSX_MAX_ROWS + 1}")
                sheet.append(list(columns))
            sheet.append([text_cell(v) if isinstance(v, str) else _xlsx_cell(v) for v in row])
            count += 1
        on_chunk(len(chunk))
    if sheet is None:
        book.create_sheet("Sheet1").append(list(columns))
    book.save(out)
    return count


def write(
    fmt: str,
    out: IO[bytes],
    columns: Sequence[str],
    chunks: Chunks,
    on_chunk: OnChunk,
    bom: bool = False,
) -> int:
    """Write ``chunks`` of rows to ``out`` in ``fmt``; returns the number of rows."""
    if fmt == "csv":
        return write_csv(out, columns, chunks, on_chunk, bom=bom)
    if fmt == "jsonl":
        return write_jsonl(out, columns, chunks, on_chunk)
    if fmt == "json":
        return write_json(out, columns, chunks, on_chunk)
    return write_xlsx(out, columns, chunks, on_chunk)
