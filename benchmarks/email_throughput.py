"""Email throughput, end to end: 10,000 templated emails through a real worker to a loopback
SMTP server, from the first enqueue to the last 250 reply recorded in the email log.

    .venv/bin/python benchmarks/email_throughput.py [--count 10000] [--concurrency 2]

Two patterns in the same run, each on a fresh email log:

* ``send_batch``: one task fans out into chunks of 100, each chunk over one SMTP connection;
* naive: one ``send_email`` task, and so one SMTP connection, per email.

The anchor is Postfix's ``smtp-sink`` (C; apt package ``postfix``), so that the sink is not what
is measured; the same batch run against aiosmtpd (Python, ~300 messages/s here at best) is
printed beside it. The script starts its own Redis on a free port, a SQLite database in a
temporary directory and a ``celery worker`` (prefork) subprocess, and stops all of them.
Goal (issue 3): at least 1,000 emails/s with send_batch, at least 10x the naive pattern.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _report import Goal, report, skip

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CELERY = str(Path(PYTHON).with_name("celery"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``argv`` in its own process group; SIGTERM (then SIGKILL) the group afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def smtp_sink_missing() -> bool:
    """No Postfix ``smtp-sink`` here: the anchor (and reminders' sink) cannot run."""
    return not Path(shutil.which("smtp-sink") or "/usr/sbin/smtp-sink").exists()


def sink_argv(kind: str, port: int) -> list[str]:
    if kind == "smtp-sink":
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not Path(binary).exists():
            raise SystemExit("smtp-sink not found: apt-get install postfix (it ships smtp-sink)")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [binary, *user, f"127.0.0.1:{port}", "256"]
    return [
        PYTHON,
        "-m",
        "aiosmtpd",
        "-n",
        "-c",
        "aiosmtpd.handlers.Sink",
        "-l",
        f"127.0.0.1:{port}",
    ]


def recipients(count: int, run: str) -> list[dict[str, object]]:
    return [
        {"to": f"user{i}.{run}@example.com", "context": {"name": f"User {i}"}} for i in range(count)
    ]


def sent_count() -> int:
    from sqlalchemy import func, select

    from saas_tasks.db import session_scope
    from saas_tasks.models import EmailLog

    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(EmailLog).where(EmailLog.status != "pending")
            )
            or 0
        )


def reset_log() -> None:
    from sqlalchemy import delete

    from saas_tasks.db import session_scope
    from saas_tasks.models import EmailLog

    with session_scope() as session:
        session.execute(delete(EmailLog))


def wait_done(count: int, started: float, timeout: float) -> float:
    deadline = started + timeout
    while time.monotonic() < deadline:
        if sent_count() >= count:
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"only {sent_count()} of {count} emails done after {timeout:.0f}s")


def run_batch(count: int, timeout: float) -> float:
    from saas_tasks.email import send_batch

    reset_log()
    batch = recipients(count, "batch")
    started = time.monotonic()
    send_batch.delay(template="welcome", recipients=batch, chunk_size=100)
    return count / wait_done(count, started, timeout)


def run_naive(count: int, timeout: float) -> float:
    from saas_tasks.email import send_email

    reset_log()
    started = time.monotonic()
    for recipient in recipients(count, "naive"):
        send_email.delay(template="welcome", **recipient)
    return count / wait_done(count, started, timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--aiosmtpd-count", type=int, default=None, help="default: --count")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    aio_count = args.aiosmtpd_count or args.count
    if smtp_sink_missing():
        why = "needs Postfix's smtp-sink (apt-get install postfix)"
        return skip("email_throughput", why, [">= 1000/s", ">= 10x naive"])

    work = Path(tempfile.mkdtemp(prefix="saas-tasks-bench-"))
    redis_port, smtp_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "SAAS_TASKS_CELERY_CONFIG": "benchmarks.no_deployment_config",  # the pack's defaults
        "SAAS_TASKS_EMAIL_FROM": "Bench <bench@example.com>",
        "SAAS_TASKS_EMAIL_RATE_LIMIT": "0",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    figures: dict[str, float] = {}
    try:
        redis_argv = [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]
        with process([*redis_argv, "--dir", str(work)], work / "redis.log"):
            wait_port(redis_port)
            from saas_tasks import migrate

            migrate.upgrade()
            worker_argv = [
                CELERY, "-A", "saas_tasks", "worker", "--pool", "prefork",
                "--concurrency", str(args.concurrency), "--queues", "email",
                "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
            ]  # fmt: skip
            with process(worker_argv, work / "worker.log", env):
                time.sleep(4)  # the worker's start-up, outside the measurement
                for sink in ("smtp-sink", "aiosmtpd"):
                    n = args.count if sink == "smtp-sink" else aio_count
                    with process(sink_argv(sink, smtp_port), work / f"{sink}.log"):
                        wait_port(smtp_port)
                        figures[f"{sink} send_batch"] = run_batch(n, args.timeout)
                        print(f"{sink:9} send_batch: {figures[f'{sink} send_batch']:8.0f} emails/s")
                        figures[f"{sink} naive"] = run_naive(n, args.timeout)
                        print(f"{sink:9} naive:      {figures[f'{sink} naive']:8.0f} emails/s")
                    time.sleep(0.5)  # the port is free again for the next sink
    finally:
        from saas_tasks import db

        db.dispose()
        shutil.rmtree(work, ignore_errors=True)
    ratio = figures["smtp-sink send_batch"] / figures["smtp-sink naive"]
    print()
    print(f"{args.count} emails, worker concurrency {args.concurrency}, cpus {os.cpu_count()}")
    print(
        f"smtp-sink (anchor): send_batch {figures['smtp-sink send_batch']:.0f} emails/s, "
        f"naive {figures['smtp-sink naive']:.0f} emails/s, ratio {ratio:.1f}x"
    )
    aio_ratio = figures["aiosmtpd send_batch"] / figures["aiosmtpd naive"]
    print(
        f"aiosmtpd (beside):  send_batch {figures['aiosmtpd send_batch']:.0f} emails/s, "
        f"naive {figures['aiosmtpd naive']:.0f} emails/s, ratio {aio_ratio:.1f}x"
    )
    batch = figures["smtp-sink send_batch"]
    report(
        "email_throughput",
        [
            Goal(f"send_batch {batch:,.0f} emails/s", "-", None, ">= 1000/s", batch >= 1000),
            Goal(
                f"send_batch {batch:,.0f} emails/s",
                f"naive {figures['smtp-sink naive']:,.0f} emails/s",
                ratio,
                ">= 10x",
                ratio >= 10,
            ),
        ],
    )


if __name__ == "__main__":
    main()
