"""Renewal reminders end to end: 100,000 subscriptions, 10,000 of them due, from triggering the
beat job to the 10,000th email received by a loopback SMTP sink.

    .venv/bin/python benchmarks/reminders.py [--subscriptions 100000] [--due 10000]
        [--database-url postgresql://postgres@127.0.0.1:5432/reminders_bench] [--concurrency 2]

The script creates (and drops afterwards) its own PostgreSQL database, starts its own Redis on a
free port, Postfix's ``smtp-sink`` dumping every message to a file, and ``celery worker``
subprocesses (prefork) on the ``maintenance`` queue; seeding is outside the measurement. It then
triggers ``saas_tasks.subscriptions.send_renewal_reminders`` as beat would and times until the
sink holds ``--due`` messages, checks that each reminder arrived exactly once (distinct
Message-IDs, which derive from the reminder keys), then triggers the job again and checks that
nothing more arrives. Goal (issue 6): at most 30 s end to end on a 2-core machine.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Goal, report, skip, skip_without_postgres
from email_throughput import CELERY, ROOT, free_port, process, smtp_sink_missing, wait_port

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def admin_url(url: str) -> tuple[str, str]:
    base, name = url.rsplit("/", 1)
    return base + "/postgres", name


def recreate_database(url: str, drop_only: bool = False) -> None:
    import psycopg

    admin, name = admin_url(url)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in {"test", "postgres"}:
        raise SystemExit(f"refusing to use database {name!r}: give a dedicated benchmark database")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(url: str, total: int, due: int, now: datetime) -> None:
    """``total`` subscriptions (one user each, 100 tenants); ``due`` of them renew, lapse or
    leave their trial 4 to 7 days from now (the 7-day window), the rest 20 to 300 days out."""
    import psycopg

    tenants = io.StringIO()
    for t in range(100):
        tenants.write(f"{t + 1}\tt{t}\tTenant {t}\t{now.isoformat()}\n")
    users = io.StringIO()
    subs = io.StringIO()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for i in range(total):
        tenant = i % 100 + 1
        users.write(f"{i + 1}\t{tenant}\tuser{i}@example.com\tUser {i}\ten\tt\t{now.isoformat()}\n")
        if i < due:
            end = today + timedelta(days=4 + i % 4, hours=i % 24, minutes=i % 60)
        else:
            end = today + timedelta(days=20 + i % 280, hours=i % 24)
        trial = i % 10 == 0
        status = "trialing" if trial else "active"
        auto = "f" if i % 10 == 1 else "t"
        trial_end = end.isoformat() if trial else r"\N"
        start = (end - timedelta(days=30)).isoformat()
        subs.write(
            f"{i + 1}\t{tenant}\t{i + 1}\tpro\t{status}\t{auto}\t2900\tusd\t{trial_end}\t"
            f"{start}\t{end.isoformat()}\t{now.isoformat()}\n"
        )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, columns, data in (
            ("tenants", "id, slug, name, created_at", tenants),
            ("users", "id, tenant_id, email, name, locale, is_active, created_at", users),
            (
                "subscriptions",
                "id, tenant_id, user_id, plan, status, auto_renew, amount, currency, "
                "trial_ends_at, current_period_start, current_period_end, created_at",
                subs,
            ),
        ):
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                copy.write(data.getvalue())
        cur.execute("ANALYZE")


def dumped(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def message_ids(directory: Path) -> list[bytes]:
    ids = []
    for path in dumped(directory):
        found = MESSAGE_ID.search(path.read_bytes())
        ids.append(found.group(1) if found else b"?")
    return ids


def wait_count(directory: Path, count: int, started: float, timeout: float) -> float:
    deadline = started + timeout
    while time.monotonic() < deadline:
        if len(dumped(directory)) >= count:
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"only {len(dumped(directory))} of {count} emails after {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/reminders_bench"
    )
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    skip_without_postgres("reminders", args.database_url, "--database-url", ["<= 30 s end to end"])
    if smtp_sink_missing():
        why = "needs Postfix's smtp-sink (apt-get install postfix)"
        return skip("reminders", why, ["<= 30 s end to end"])

    work = Path(tempfile.mkdtemp(prefix="saas-tasks-reminders-"))
    sink_dir = work / "sink"
    work.chmod(0o755)  # smtp-sink writes as nobody
    sink_dir.mkdir()
    sink_dir.chmod(0o777)
    redis_port, smtp_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "DATABASE_URL": args.database_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "SAAS_TASKS_EMAIL_FROM": "Bench <bench@example.com>",
        "SAAS_TASKS_EMAIL_RATE_LIMIT": "0",
        "SAAS_TASKS_ENV": "development",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    now = datetime.now(UTC)
    recreate_database(args.database_url)
    try:
        from saas_tasks import migrate

        migrate.upgrade()
        t0 = time.monotonic()
        seed(args.database_url, args.subscriptions, args.due, now)
        print(f"seeded {args.subscriptions:,} subscriptions in {time.monotonic() - t0:.1f}s")
        sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        sink_argv = [sink, *user, "-d", f"{sink_dir}/", f"127.0.0.1:{smtp_port}", "256"]
        redis_argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--dir", str(work)]  # fmt: skip
        worker_argv = [
            CELERY, "-A", "saas_tasks", "worker", "--pool", "prefork",
            "--concurrency", str(args.concurrency), "--queues", "maintenance",
            "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        with (
            process(redis_argv, work / "redis.log"),
            process(sink_argv, work / "sink.log"),
        ):
            wait_port(redis_port)
            wait_port(smtp_port)
            with process(worker_argv, work / "worker.log", env):
                time.sleep(5)  # the worker's start-up, outside the measurement
                try:
                    run(args, sink_dir)
                except BaseException:
                    print((work / "worker.log").read_text()[-3000:], file=sys.stderr)
                    raise
    finally:
        from saas_tasks import db

        db.dispose()
        recreate_database(args.database_url, drop_only=True)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, sink_dir: Path) -> None:
    from saas_tasks.subscriptions import send_renewal_reminders

    started = time.monotonic()
    first = send_renewal_reminders.delay()
    elapsed = wait_count(sink_dir, args.due, started, args.timeout)
    result = first.get(timeout=60)
    time.sleep(2)  # anything extra would arrive now
    ids = message_ids(sink_dir)
    print(f"first trigger: {result}")
    print(
        f"{args.due:,} reminders received in {elapsed:.1f}s "
        f"({args.due / elapsed:,.0f}/s); goal <= 30 s: {'met' if elapsed <= 30 else 'MISSED'}"
    )
    print(f"received {len(ids):,} messages, {len(set(ids)):,} distinct keys (Message-IDs)")
    if len(ids) != args.due or len(set(ids)) != args.due:
        raise SystemExit("FAILED: not exactly once per reminder")

    again = send_renewal_reminders.delay().get(timeout=60)
    time.sleep(3)
    extra = len(dumped(sink_dir)) - len(ids)
    print(f"second trigger: {again}; new messages: {extra}")
    if extra or again["enqueued"]:
        raise SystemExit("FAILED: the second trigger sent something")
    rate = f"{args.due:,} reminders in {elapsed:.1f} s"
    report("reminders", [Goal(rate, "-", None, "<= 30 s end to end", elapsed <= 30)])


if __name__ == "__main__":
    main()
