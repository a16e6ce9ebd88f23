"""The reliability core's cost per task: a no-op under the pack's ``@task`` against a plain
``@app.task`` no-op, on the same worker.

    .venv/bin/python benchmarks/core_overhead.py [--count 3000] [--rounds 3] [--concurrency 2]

Both tasks are declared below and run on the same ``celery worker`` subprocess settings
(prefork, ``--concurrency``, the deployment's ``config/celeryconfig.py``: late acks, prefetch 1,
results and events on), with the pack's worker pieces in place whichever task runs (the
dead-lettering consumer, the failure hooks). The pack's no-op has a payload schema and a named
retry policy, so every run goes through validation, the retry decision and the dead-letter
path; it is not idempotent, as a task without a side effect would not be. A third no-op with an
idempotency key is measured beside them and reported in the note, not against the goal: its
claim and its recorded result are two durable database commits a run (on SQLite here, about
1 ms each), the price of the guarantee rather than overhead of the core.

Each round, for each task in turn: ``--count`` messages are enqueued with the worker stopped,
a worker is started, and the time from the first task's end to the last one's (``date_done``
of their results, written by the worker) is the drain time. Rounds alternate the two tasks;
the medians are compared. Goal (issue "Proof", item 4): at least 0.8x the plain throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Goal, report
from email_throughput import CELERY, ROOT, free_port, process, wait_port

#: The tasks' queue and names (declared in ``_core_tasks``, imported once the env is set).
QUEUE = "bench-core"
PACK, PLAIN = "bench.core.noop_pack", "bench.core.noop_plain"
KEYED = "bench.core.noop_keyed"
GOAL = 0.8


def drain(name: str, count: int, concurrency: int, work: Path, env: dict[str, str]) -> float:
    """Enqueue ``count`` messages with no worker, start one, return tasks/s first to last."""
    import redis
    from _core_tasks import noop_keyed, noop_pack, noop_plain

    from saas_tasks.reliability.bulk import enqueue_many

    client = redis.Redis.from_url(env["REDIS_URL"])
    for key in client.scan_iter("celery-task-meta-*", count=1000):
        client.delete(key)
    target = {PACK: noop_pack, PLAIN: noop_plain, KEYED: noop_keyed}[name]
    results = enqueue_many(target, [{"n": i} for i in range(count)])
    ids = [result.id for result in results]
    worker_argv = [
        CELERY, "-A", "saas_tasks", "worker", "-I", "_core_tasks", "--pool", "prefork",
        "--concurrency", str(concurrency), "--queues", QUEUE, "--loglevel", "WARNING",
        "--without-mingle", "--without-gossip", "--hostname", f"bench-{name}@%h",
    ]  # fmt: skip
    with process(worker_argv, work / f"worker-{name}.log", env):
        left, progress = count, time.monotonic()
        while left:
            time.sleep(0.2)
            now_left = int(client.llen(QUEUE)) + int(client.hlen("unacked"))
            if now_left < left:
                left, progress = now_left, time.monotonic()
            elif time.monotonic() - progress > 60:
                log = (work / f"worker-{name}.log").read_text()[-3000:]
                raise SystemExit(f"{name}: stuck at {left} messages for 60s; worker log:\n{log}")
        metas = wait_results(client, ids)
    done = sorted(datetime.fromisoformat(m["date_done"]) for m in metas)
    failed = [m for m in metas if m["status"] != "SUCCESS"]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} tasks did not succeed: {failed[0]}")
    client.close()
    return (count - 1) / (done[-1] - done[0]).total_seconds()


def call_cost(calls: int = 20_000) -> dict[str, float]:
    """Microseconds a direct call of each task's body costs in this process, request pushed as
    the worker pushes it: the reliability core's own share of a run, without the broker."""
    from _core_tasks import noop_pack, noop_plain

    costs = {}
    for target in (noop_pack, noop_plain):
        target.push_request(id="bench", hostname="bench@local", retries=0)
        try:
            for i in range(200):
                target(n=i)
            started = time.perf_counter()
            for i in range(calls):
                target(n=i)
            costs[target.name] = (time.perf_counter() - started) / calls * 1e6
        finally:
            target.pop_request()
    return costs


def wait_results(client: Any, ids: list[str], timeout: float = 30) -> list[dict[str, Any]]:
    """Every task's result as the worker stored it (``date_done`` is the worker's clock)."""
    deadline = time.monotonic() + timeout
    while True:
        raw = client.mget([f"celery-task-meta-{task_id}" for task_id in ids])
        if all(raw) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = sum(1 for value in raw if not value)
    if missing:
        raise SystemExit(f"{missing} of {len(ids)} results missing")
    return [json.loads(value) for value in raw]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="saas-tasks-bench-core-"))
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).resolve().parent)]),
    }
    os.environ.update(env)  # before anything imports saas_tasks, whose app reads them once
    rates: dict[str, list[float]] = {PACK: [], PLAIN: [], KEYED: []}
    redis_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    try:
        with process([*redis_argv, "--dir", str(work)], work / "redis.log"):
            wait_port(port)
            from saas_tasks import migrate

            migrate.upgrade()
            for round_ in range(args.rounds):
                order = (PLAIN, PACK, KEYED) if round_ % 2 == 0 else (KEYED, PACK, PLAIN)
                for name in order:
                    rates[name].append(drain(name, args.count, args.concurrency, work, env))
                    print(f"round {round_ + 1}: {name:22} {rates[name][-1]:7.0f} tasks/s")
            costs = call_cost()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pack, plain = statistics.median(rates[PACK]), statistics.median(rates[PLAIN])
    keyed = statistics.median(rates[KEYED])
    per_call = (
        f"in-process call: @task {costs[PACK]:.0f} us, @app.task {costs[PLAIN]:.0f} us; "
        f"a worker run of either takes {1e6 / plain:,.0f} us; with an idempotency key "
        f"{keyed:,.0f} tasks/s, {keyed / plain:.2f}x (its claim and result: two commits a run)"
    )
    print()
    print(f"{args.count} no-op tasks a run, prefork concurrency {args.concurrency}")
    print(f"@task {pack:.0f} tasks/s, @app.task {plain:.0f} tasks/s: {pack / plain:.2f}x")
    print(f"@task with an idempotency key {keyed:.0f} tasks/s: {keyed / plain:.2f}x")
    print(per_call)
    report(
        "core_overhead",
        [
            Goal(
                f"@task no-op {pack:,.0f} tasks/s",
                f"@app.task no-op {plain:,.0f} tasks/s",
                pack / plain,
                f">= {GOAL}x",
                pack / plain >= GOAL,
                note=per_call,
            )
        ],
    )


if __name__ == "__main__":
    main()
