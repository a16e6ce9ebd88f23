"""Benchmark: the pack's CSV export against PostgreSQL's COPY and pandas.

A PostgreSQL table of 1,000,000 rows and 8 columns of mixed types (bigint, int, text, text,
bigint, boolean, timestamptz, jsonb). In one run, each in its own subprocess (so each peak RSS
is its own): the pack's CSV export (the whole task path: request row, count, COPY, staging
file, atomic publish), ``COPY (SELECT …) TO STDOUT WITH CSV`` through psycopg (the limit), and
pandas ``read_sql`` + ``to_csv`` (what users reach for); the pack again at 100,000 rows; and
the pack's XLSX export speed. Pack and COPY alternate for ``BENCH_EXPORT_ROUNDS`` (3) rounds
and their medians are compared. Goals: time at most 1.5x COPY; peak RSS at most 150 MB; peak RSS
at 1M rows at most 1.2x that at 100k.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/exports_bench \\
        .venv/bin/python benchmarks/export_csv.py
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import Goal, report, skip_without_postgres

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/exports_bench")
TABLE = "bench_export_rows"
ROWS, SMALL, XLSX_ROWS = 1_000_000, 100_000, 100_000
ROUNDS = int(os.environ.get("BENCH_EXPORT_ROUNDS", "3"))


def setup() -> None:
    import psycopg

    admin, _, name = URL.rpartition("/")
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as connection:
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(URL, autocommit=True) as connection:
        count = connection.execute(
            "SELECT count(*) FROM pg_class WHERE relname = %s", (TABLE,)
        ).fetchone()
        if count and count[0]:
            if connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (ROWS,):
                return
            connection.execute(f"DROP TABLE {TABLE}")
        connection.execute(
            f"""CREATE TABLE {TABLE} AS SELECT
                  g::bigint AS id, (g % 97)::int AS tenant_id,
                  'user' || g || '@example.com' AS email,
                  CASE WHEN g % 50 = 0 THEN '=cmd|' || g ELSE 'Name, "' || g || '" Zoë' END AS name,
                  (g * 37 % 100000)::bigint AS amount, g % 3 = 0 AS is_active,
                  timestamptz '2024-01-01' + g * interval '1 second' AS created_at,
                  jsonb_build_object('n', g, 'tag', 'x' || (g % 10)) AS data
                FROM generate_series(1, {ROWS}) AS g"""
        )
        connection.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        connection.execute(f"ANALYZE {TABLE}")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median wall time of ``runs``, with the highest peak RSS any of them reached."""
    return {
        "seconds": statistics.median(run["seconds"] for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
    }


def measured(kind: str, rows: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its own wall time and peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--run", kind, str(rows)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": URL, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(kind: str, rows: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ["SAAS_TASKS_EXPORT_STORAGE_URL"] = f"file://{workdir}"
    query = f"SELECT * FROM {TABLE} WHERE id <= {rows} ORDER BY id"
    started = time.perf_counter()
    if kind in {"pack", "xlsx"}:
        from sqlalchemy import MetaData, Table, select

        from saas_tasks import migrate
        from saas_tasks.db import get_engine
        from saas_tasks.exports import Filter, register_dataset, service

        migrate.upgrade()
        table = Table(TABLE, MetaData(), autoload_with=get_engine())
        register_dataset(
            "bench", lambda: select(table).order_by(table.c.id), {"id": Filter(table.c.id, int)}
        )
        started = time.perf_counter()
        export_id = service.create_export(
            "bench", "csv" if kind == "pack" else "xlsx", {"id": {"lte": rows}}
        )
        result = service.run_export(export_id, "bench")
        assert result["rows"] == rows, result
    elif kind == "copy":
        import psycopg

        statement = f"COPY ({query}) TO STDOUT WITH CSV HEADER"
        with (
            psycopg.connect(URL) as connection,
            (workdir / "copy.csv").open("wb") as out,
            connection.cursor().copy(statement) as copy,
        ):
            for data in copy:
                out.write(data)
    elif kind == "pandas":
        import pandas as pd
        from sqlalchemy import create_engine

        engine = create_engine(URL.replace("postgresql://", "postgresql+psycopg://"))
        pd.read_sql(query, engine).to_csv(workdir / "pandas.csv", index=False)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
    shutil.rmtree(workdir, ignore_errors=True)  # a 1M-row run writes ~100 MB a format
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))


def main() -> None:
    skip_without_postgres(
        "export_csv",
        URL,
        "BENCH_DATABASE_URL",
        ["time <= 1.5x COPY", "peak RSS <= 150 MB", "RSS 1M / 100k <= 1.2x"],
    )
    setup()
    # Pack and anchor alternate for ROUNDS rounds and their medians are compared: on a small
    # machine a single run of either moves by a third from one run to the next.
    packs, copies = [], []
    for _ in range(ROUNDS):
        packs.append(measured("pack", ROWS))
        copies.append(measured("copy", ROWS))
    pack = median_run(packs)
    copy = median_run(copies)
    pairs = zip(packs, copies, strict=True)
    print(
        "1M-row rounds, pack/COPY s: "
        + ", ".join(f"{p['seconds']:.2f}/{c['seconds']:.2f}" for p, c in pairs)
    )
    pandas = measured("pandas", ROWS)
    small = measured("pack", SMALL)
    xlsx = measured("xlsx", XLSX_ROWS)
    for name, figure in [
        ("pack CSV, 1M rows", pack),
        ("COPY TO STDOUT (anchor), 1M", copy),
        ("pandas read_sql+to_csv, 1M", pandas),
        ("pack CSV, 100k rows", small),
    ]:
        print(f"{name:32} {figure['seconds']:7.2f} s   peak RSS {figure['peak_rss_mb']:7.1f} MB")
    rate = XLSX_ROWS / xlsx["seconds"]
    print(
        f"{'pack XLSX, 100k rows':32} {xlsx['seconds']:7.2f} s   {rate:,.0f} rows/s   "
        f"peak RSS {xlsx['peak_rss_mb']:.1f} MB"
    )
    time_ratio = pack["seconds"] / copy["seconds"]
    rss_ratio = pack["peak_rss_mb"] / small["peak_rss_mb"]
    print(
        f"pack / COPY time:       {time_ratio:.2f}x  (goal <= 1.5x)  "
        f"{'met' if time_ratio <= 1.5 else 'NOT met'}"
    )
    print(
        f"pack / pandas time:     {pack['seconds'] / pandas['seconds']:.2f}x; "
        f"RSS {pack['peak_rss_mb'] / pandas['peak_rss_mb']:.2f}x"
    )
    print(
        f"pack peak RSS at 1M:    {pack['peak_rss_mb']:.1f} MB  (goal <= 150 MB)  "
        f"{'met' if pack['peak_rss_mb'] <= 150 else 'NOT met'}"
    )
    print(
        f"pack RSS 1M / 100k:     {rss_ratio:.2f}x  (goal <= 1.2x)  "
        f"{'met' if rss_ratio <= 1.2 else 'NOT met'}"
    )
    pack_s, pack_mb = pack["seconds"], pack["peak_rss_mb"]
    report(
        "export_csv",
        [
            Goal(
                f"pack CSV 1M {pack_s:.2f} s",
                f"COPY {copy['seconds']:.2f} s",
                time_ratio,
                "<= 1.5x",
                time_ratio <= 1.5,
            ),
            Goal(f"pack peak RSS {pack_mb:.0f} MB", "-", None, "<= 150 MB", pack_mb <= 150),
            Goal(
                f"pack RSS 1M {pack_mb:.0f} MB",
                f"100k {small['peak_rss_mb']:.0f} MB",
                rss_ratio,
                "<= 1.2x",
                rss_ratio <= 1.2,
            ),
        ],
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run":
        run(sys.argv[2], int(sys.argv[3]))
    else:
        main()
