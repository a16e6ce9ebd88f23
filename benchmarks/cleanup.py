"""Cleanup on a big table: the pack's bounded-batch purge against one unbounded DELETE.

    .venv/bin/python benchmarks/cleanup.py [--database-url postgresql://postgres@127.0.0.1:5432/cleanup_bench]
                                           [--rows 5000000] [--expired 1000000]

PostgreSQL only (the database is created if missing, and its ``audit_logs`` table is refilled).
``audit_logs`` gets ``--rows`` rows, one in five (``--expired``) older than the 90-day retention,
spread through the table as real logs are after a retention change; ``audit_logs_copy`` is an
identical copy (same rows, same indexes, vacuumed and analyzed alike). In one run:

* the pack's purge (``saas_tasks.cleanup.purges.purge_audit_logs``: 5,000-row batches, each its
  own transaction) on ``audit_logs``;
* the anchor: one ``DELETE FROM audit_logs_copy WHERE created_at < :cutoff`` on the copy.

During each, a second process inserts single rows into the table being purged (autocommit, one
every 5 ms) and records each insert's latency. Goals (issue 7): total time at most 2x the
single DELETE; no batch longer than 250 ms; concurrent insert p99 at most 50 ms during the purge.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _report import Goal, skip_without_postgres
from _report import report as report_goals  # `report` below is the purge's

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/cleanup_bench"


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def ensure_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(psycopg_url(admin), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')  # name from the operator's URL


#: ``created_at`` of row ``g``: the log as appended (the oldest rows first, so the expired ones
#: are the first ``expired`` rows), or with the expired rows spread through the table (one in
#: ``step``), which makes the purge's age-ordered batches visit scattered heap pages.
LAYOUTS = {
    "oldest-first": """CASE WHEN g <= %(expired)s
        THEN now() - interval '120 days' + g * (interval '20 days' / %(expired)s)
        ELSE now() - interval '89 days' + (g - %(expired)s) * (interval '89 days' / %(rows)s)
    END""",
    "interleaved": """CASE WHEN g %% %(step)s = 0 AND g / %(step)s <= %(expired)s
        THEN now() - interval '120 days' - (g %% 5000) * interval '1 minute'
        ELSE now() - (g %% 80) * interval '1 day' - (g %% 1440) * interval '1 minute'
    END""",
}


def fill(url: str, rows: int, expired: int, layout: str) -> None:
    """``audit_logs`` with ``rows`` rows, ``expired`` of them past the retention, and a copy."""
    import psycopg

    step = max(rows // expired, 1)
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS audit_logs_copy")
        conn.execute("TRUNCATE audit_logs RESTART IDENTITY")
        started = time.monotonic()
        conn.execute(
            """
            INSERT INTO audit_logs (actor_id, action, target, created_at)
            SELECT g, 'user.login', 'user:' || g, """
            + LAYOUTS[layout]
            + """
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"step": step, "expired": expired, "rows": rows},
        )
        conn.execute("CREATE TABLE audit_logs_copy (LIKE audit_logs INCLUDING ALL)")
        conn.execute("INSERT INTO audit_logs_copy SELECT * FROM audit_logs")
        conn.execute("VACUUM ANALYZE audit_logs")
        conn.execute("VACUUM ANALYZE audit_logs_copy")
        conn.execute("CHECKPOINT")
        print(f"filled audit_logs and audit_logs_copy in {time.monotonic() - started:.0f}s")


def insert_loop(url: str, table: str, measure: Any, stop: Any, results: Any) -> None:
    """Single-row inserts, one every 5 ms, timed while ``measure`` is set, until ``stop``.
    ``table`` is one of the benchmark's two fixed names."""
    import psycopg

    latencies = []
    statement = f"INSERT INTO {table} (action, target, created_at) VALUES ('bench', %s, now())"
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute(statement, ("warm-up",))
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute(statement, ("x",))
            if measure.is_set():
                latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)
    results.put(latencies)


def with_inserts(url: str, table: str, work: Any) -> tuple[float, Any, list[float]]:
    """Run ``work()`` while a second process inserts into ``table``; (seconds, result, ms)."""
    measure, stop = multiprocessing.Event(), multiprocessing.Event()
    results: Any = multiprocessing.Queue()
    inserter = multiprocessing.Process(
        target=insert_loop, args=(url, table, measure, stop, results)
    )
    inserter.start()
    time.sleep(1.0)  # the inserter is connected and running before the work starts
    measure.set()
    started = time.monotonic()
    outcome = work()
    seconds = time.monotonic() - started
    measure.clear()
    stop.set()
    latencies: list[float] = results.get(timeout=60)
    inserter.join(30)
    return seconds, outcome, latencies


def p99(values: list[float]) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[98]
        if len(values) >= 2
        else float("nan")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("CLEANUP_BENCH_DATABASE_URL", DEFAULT_URL)
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="oldest-first")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: SAAS_TASKS_CLEANUP_BATCH_SIZE"
    )
    parser.add_argument(
        "--skip-fill", action="store_true", help="reuse the tables of a previous run"
    )
    args = parser.parse_args()
    if not args.database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        parser.error("the benchmark runs on PostgreSQL: --database-url postgresql://...")
    skip_without_postgres(
        "cleanup",
        args.database_url,
        "CLEANUP_BENCH_DATABASE_URL / --database-url",
        ["<= 2x the single DELETE", "longest batch <= 250 ms", "insert p99 <= 50 ms"],
    )

    os.environ["DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(ROOT))
    ensure_database(args.database_url)
    from sqlalchemy import text

    from saas_tasks import migrate
    from saas_tasks.cleanup import purges
    from saas_tasks.cleanup.batches import Limits
    from saas_tasks.db import get_engine
    from saas_tasks.models import utcnow
    from saas_tasks.settings import get_settings

    migrate.upgrade()
    if not args.skip_fill:
        fill(args.database_url, args.rows, args.expired, args.layout)
    now = utcnow()
    cutoff = now - timedelta(days=get_settings().audit_log_retention_days)
    engine = get_engine()
    with engine.connect() as conn:
        count = "SELECT count(*) FROM {} WHERE created_at < :cutoff"
        due = [
            conn.execute(text(count.format(t)), {"cutoff": cutoff}).scalar()
            for t in ("audit_logs", "audit_logs_copy")
        ]
    print(f"expired rows: audit_logs {due[0]:,}, audit_logs_copy {due[1]:,} of {args.rows:,}")

    def single_delete() -> int:
        with engine.begin() as conn:
            result = conn.execute(
                text("DELETE FROM audit_logs_copy WHERE created_at < :cutoff"), {"cutoff": cutoff}
            )
            return int(result.rowcount)

    size = args.batch_size or get_settings().cleanup_batch_size
    limits = Limits(batch_size=size, time_budget=3600)
    checkpoint = text("CHECKPOINT")
    with engine.connect() as conn:
        conn.execute(checkpoint)
    delete_s, deleted, delete_lat = with_inserts(
        args.database_url, "audit_logs_copy", single_delete
    )
    with engine.connect() as conn:
        conn.execute(checkpoint)  # the DELETE's dirty pages are not left for the purge to flush
    purge_s, report, purge_lat = with_inserts(
        args.database_url, "audit_logs", lambda: purges.purge_audit_logs(limits, now=now)
    )

    ratio = purge_s / delete_s
    longest = report.longest_batch_ms
    insert_p99 = p99(purge_lat)
    print()
    print(
        f"single DELETE : {deleted:,} rows in {delete_s:.2f}s; concurrent insert "
        f"p99 {p99(delete_lat):.1f} ms, max {max(delete_lat):.1f} ms ({len(delete_lat)} inserts)"
    )
    print(
        f"pack's purge  : {report.deleted.get('audit_logs', 0):,} rows in {purge_s:.2f}s, "
        f"{report.batches} batches of {limits.batch_size:,}, longest {longest:.0f} ms; "
        f"concurrent insert p99 {insert_p99:.1f} ms, max {max(purge_lat):.1f} ms "
        f"({len(purge_lat)} inserts)"
    )
    print()
    goals = [
        ("total time at most 2x the single DELETE", f"{ratio:.2f}x", ratio <= 2.0),
        ("no batch longer than 250 ms", f"{longest:.0f} ms", longest <= 250),
        (
            "concurrent insert p99 at most 50 ms during the purge",
            f"{insert_p99:.1f} ms",
            insert_p99 <= 50,
        ),
    ]
    for goal, figure, met in goals:
        print(f"goal: {goal:<55} {figure:>10}  {'met' if met else 'NOT met'}")
    delete_p99 = p99(delete_lat)
    report_goals(
        "cleanup",
        [
            Goal(
                f"purge {purge_s:.2f} s",
                f"single DELETE {delete_s:.2f} s",
                ratio,
                "<= 2x",
                ratio <= 2.0,
            ),
            Goal(f"longest batch {longest:.0f} ms", "-", None, "<= 250 ms", longest <= 250),
            Goal(
                f"insert p99 {insert_p99:.1f} ms (purge)",
                f"insert p99 {delete_p99:.1f} ms (DELETE)",
                insert_p99 / delete_p99 if delete_p99 else None,
                "<= 50 ms",
                insert_p99 <= 50,
            ),
        ],
    )
    return 0 if all(met for *_, met in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
