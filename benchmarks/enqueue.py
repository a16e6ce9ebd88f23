"""Enqueue cost in a web app's process: ``.delay()`` latency, and bulk enqueueing against a loop.

    .venv/bin/python benchmarks/enqueue.py [--count 5000] [--rounds 3]

This process plays the web app: it imports ``saas_tasks`` with the pack's defaults only (a web
app that installs the package has no ``config/``) and publishes to its own Redis, started on a
free port (no worker consumes: the publisher's cost is measured, not the queue's). The task is
the pack's ``saas_tasks.email.send`` with a welcome email's payload, as a sign-up view sends it.

* Latency: ``--rounds`` loops of ``--count`` back-to-back ``.delay()`` calls, each timed; p50
  and p99 over all of them. Anchor: a bare redis-py ``LPUSH`` of a message of the same size
  over one open connection, the broker round trip no enqueue can beat.
* Bulk: ``saas_tasks.reliability.bulk.enqueue_many`` of ``--count`` payloads (validation
  included) against the loop's throughput, the median of ``--rounds`` each.

Goals (issue "Proof", item 3): ``.delay()`` p99 at most 1.5 ms; bulk at least 10x the loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Goal, report
from email_throughput import ROOT, free_port, process, wait_port

#: No such module: the app then runs on the pack's defaults alone, as in a web app's process.
NO_DEPLOYMENT_CONFIG = "benchmarks.no_deployment_config"
P99_GOAL_MS, BULK_GOAL = 1.5, 10.0


def payloads(count: int, run: str) -> list[dict[str, Any]]:
    return [
        {
            "template": "welcome",
            "to": f"user{i}.{run}@example.com",
            "context": {"name": f"User {i}", "plan": "pro", "trial_days": 14},
        }
        for i in range(count)
    ]


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def delay_loop(task: Any, batch: list[dict[str, Any]]) -> tuple[list[float], float]:
    """Each call's latency (s), and the loop's throughput (messages/s)."""
    latencies = []
    started = time.perf_counter()
    for kwargs in batch:
        before = time.perf_counter()
        task.delay(**kwargs)
        latencies.append(time.perf_counter() - before)
    return latencies, len(batch) / (time.perf_counter() - started)


def bare_lpush(url: str, size: int, count: int) -> list[float]:
    """The anchor: ``LPUSH`` of ``size`` bytes over one open connection, each timed."""
    import redis

    client = redis.Redis.from_url(url)
    blob = b"x" * size
    latencies = []
    for _ in range(count):
        before = time.perf_counter()
        client.lpush("bench:anchor", blob)
        latencies.append(time.perf_counter() - before)
    client.delete("bench:anchor")
    client.close()
    return latencies


def plain_celery_delay(url: str, count: int) -> list[float]:
    """A second anchor: Celery's own ``.delay()`` of the same payload, from a bare app on the
    same Redis (no result backend, no task-sent event, no validation): what any Celery
    producer pays. Each call timed."""
    from celery import Celery

    plain = Celery("bench_plain", broker=url, set_as_current=False)
    plain.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)

    @plain.task(name="bench.plain", ignore_result=True)  # type: ignore[untyped-decorator]
    def noop(**_: Any) -> None: ...

    batch = payloads(count, "plain")
    for kwargs in batch[:200]:
        noop.delay(**kwargs)
    latencies = []
    for kwargs in batch:
        before = time.perf_counter()
        noop.delay(**kwargs)
        latencies.append(time.perf_counter() - before)
    return latencies


def measure(
    args: argparse.Namespace, work: Path, port: int
) -> tuple[list[float], list[float], list[float], list[float], int, list[float]]:
    """Latencies (sorted), loop and bulk rates, anchor latencies (sorted), message size,
    plain Celery's latencies (sorted)."""
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    redis_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with process([*redis_argv, "--dir", str(work)], work / "redis.log"):
        wait_port(port)
        from saas_tasks.email import send_email
        from saas_tasks.reliability.bulk import enqueue_many

        client = redis.Redis.from_url(url)
        queue = "email"
        delay_loop(send_email, payloads(200, "warm-up"))  # connections, routes, imports
        enqueue_many(send_email, payloads(200, "warm-up"))
        client.delete(queue)
        send_email.delay(**payloads(1, "size")[0])
        size = len(client.lpop(queue) or b"")  # one message as the broker holds it

        latencies: list[float] = []
        loop_rates, bulk_rates = [], []
        for round_ in range(args.rounds):
            batch = payloads(args.count, f"loop{round_}")
            spent, rate = delay_loop(send_email, batch)
            latencies += spent
            loop_rates.append(rate)
            bulk = payloads(args.count, f"bulk{round_}")
            started = time.perf_counter()
            enqueue_many(send_email, bulk)
            bulk_rates.append(args.count / (time.perf_counter() - started))
            enqueued = int(client.llen(queue))
            if enqueued != 2 * args.count:
                raise SystemExit(f"expected {2 * args.count} messages in {queue}, found {enqueued}")
            client.delete(queue)
            print(
                f"round {round_ + 1}: .delay() loop {rate:7.0f}/s, "
                f"enqueue_many {bulk_rates[-1]:7.0f}/s"
            )
        anchor = sorted(bare_lpush(url, size, args.count))
        plain = sorted(plain_celery_delay(url, args.count))
        client.close()
    latencies.sort()
    return latencies, loop_rates, bulk_rates, anchor, size, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="saas-tasks-bench-enqueue-"))
    port = free_port()
    os.environ.update(
        {
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
            "SAAS_TASKS_CELERY_CONFIG": NO_DEPLOYMENT_CONFIG,
            "PYTHONPATH": str(ROOT),
        }
    )
    try:
        latencies, loop_rates, bulk_rates, anchor, size, plain = measure(args, work, port)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p50, p99 = percentile(latencies, 0.50) * 1e3, percentile(latencies, 0.99) * 1e3
    a50, a99 = percentile(anchor, 0.50) * 1e3, percentile(anchor, 0.99) * 1e3
    loop, bulk_rate = statistics.median(loop_rates), statistics.median(bulk_rates)
    print()
    print(f"{len(latencies)} .delay() calls of a {size}-byte message, cpus {os.cpu_count()}")
    print(f".delay():    p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    print(f"bare LPUSH:  p50 {a50:.3f} ms, p99 {a99:.3f} ms (anchor)")
    c50, c99 = percentile(plain, 0.50) * 1e3, percentile(plain, 0.99) * 1e3
    print(f"plain Celery .delay(): p50 {c50:.3f} ms, p99 {c99:.3f} ms (for comparison)")
    print(f"loop {loop:.0f}/s, enqueue_many {bulk_rate:.0f}/s: {bulk_rate / loop:.1f}x")
    report(
        "enqueue",
        [
            Goal(
                f".delay() p99 {p99:.2f} ms (p50 {p50:.2f} ms)",
                f"bare LPUSH p99 {a99:.2f} ms (plain Celery .delay() p99 {c99:.2f} ms)",
                p99 / a99,
                f"p99 <= {P99_GOAL_MS} ms",
                p99 <= P99_GOAL_MS,
            ),
            Goal(
                f"enqueue_many {bulk_rate:,.0f} msg/s",
                f".delay() loop {loop:,.0f} msg/s",
                bulk_rate / loop,
                f">= {BULK_GOAL:g}x",
                bulk_rate / loop >= BULK_GOAL,
            ),
        ],
    )


if __name__ == "__main__":
    main()
