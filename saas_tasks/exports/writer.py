"""Produce one export file from a dataset: choose the fastest honest path and the wrapping.

CSV on PostgreSQL goes through COPY (:func:`~saas_tasks.exports.rows.copy_csv`); everything
else streams through a server-side cursor into :mod:`~saas_tasks.exports.formats`. gzip wraps
the output when asked; a bundle becomes a zip with one member a part, each written as a stream.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from saas_tasks.exports import formats, rows
from saas_tasks.exports.datasets import AnySelect, Dataset

BUFFER = 1024 * 1024


def extension(dataset: Dataset, fmt: str, compress: bool) -> str:
    if dataset.is_bundle:
        return "zip"
    return formats.FORMATS[fmt][0] + (".gz" if compress else "")


def content_type(dataset: Dataset, fmt: str, compress: bool) -> str:
    if dataset.is_bundle:
        return "application/zip"
    return "application/gzip" if compress else formats.FORMATS[fmt][1]


def total_rows(dataset: Dataset, filters: Mapping[str, Any]) -> int:
    if dataset.is_bundle:
        return sum(rows.count(part.select(filters)) for part in dataset.parts.values())
    return rows.count(dataset.select(filters))


def produce(
    dataset: Dataset,
    fmt: str,
    filters: Mapping[str, Any],
    path: Path,
    on_rows: Callable[[int], None],
    chunk_rows: int,
    compress: bool = False,
    bom: bool = False,
) -> int:
    """Write the export to ``path``; returns the number of data rows."""
    if dataset.is_bundle:
        written = 0
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for name, part in dataset.parts.items():
                member_name = f"{name}.{formats.FORMATS[fmt][0]}"
                with archive.open(member_name, "w", force_zip64=True) as member:
                    written += _write_one(
                        part.select(filters), fmt, member, on_rows, chunk_rows, bom
                    )
        return written
    with path.open("wb", buffering=BUFFER) as raw:
        if not compress:
            return _write_one(dataset.select(filters), fmt, raw, on_rows, chunk_rows, bom)
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as packed:
            out: IO[bytes] = packed  # type: ignore[assignment]
            return _write_one(dataset.select(filters), fmt, out, on_rows, chunk_rows, bom)


def _write_one(
    statement: AnySelect,
    fmt: str,
    out: IO[bytes],
    on_rows: Callable[[int], None],
    chunk_rows: int,
    bom: bool,
) -> int:
    if fmt == "csv" and rows.is_postgresql():
        if bom:
            out.write(formats.BOM)
        return rows.copy_csv(statement, out, on_rows, chunk_rows)
    chunks = rows.stream(statement, chunk_rows)
    return formats.write(fmt, out, rows.column_names(statement), chunks, on_rows, bom=bom)
