"""Operational counters kept in Redis, exposed to Prometheus by the Flower process.

Workers are many processes on many hosts, Flower is one: a ``prometheus_client`` counter in a
worker child would never reach Flower's ``/metrics``. So each event adds one to a field of one
Redis hash (``saas_tasks:metrics``, field ``metric|task``), and :class:`RedisCounters`, a
Prometheus collector that ``config/flowerconfig.py`` registers, reads the hash at each scrape.
Counting is best effort: a Redis error is logged and never fails the task.

Counters (each ``saas_tasks_<name>_total{task="..."}``): dead letters recorded, retries
exhausted, scheduled runs skipped (the overlap lock was held) and missed (expired before a
worker could start them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis
from celery import signals

from saas_tasks.redis_client import get_redis

log = logging.getLogger(__name__)

KEY = "saas_tasks:metrics"
METRICS = {
    "dead_letters_recorded": "Dead letters stored (first failure of a task id).",
    "retries_exhausted": "Tasks that failed transiently on their last allowed attempt.",
    "scheduled_runs_skipped": "Runs skipped because the previous run held the overlap lock.",
    "scheduled_runs_missed": "Scheduled runs dropped because they expired before starting.",
}


def increment(metric: str, task: str, client: Any = None) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    try:
        (client or get_redis()).hincrby(KEY, f"{metric}|{task}", 1)
    except redis.RedisError as exc:
        log.warning("could not count %s for %s: %s", metric, task, exc)


def read(client: Any = None) -> dict[str, dict[str, int]]:
    """``{metric: {task: count}}`` for every metric, empty ones included."""
    counts: dict[str, dict[str, int]] = {metric: {} for metric in METRICS}
    for field, value in (client or get_redis()).hgetall(KEY).items():
        metric, _, task = (field.decode() if isinstance(field, bytes) else field).partition("|")
        if metric in counts:
            counts[metric][task] = int(value)
    return counts


class RedisCounters:
    """A Prometheus collector over the Redis hash (registered in the Flower process)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        try:
            counts = read()
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer: %s", exc)
            return
        for metric, doc in METRICS.items():
            family = CounterMetricFamily(f"saas_tasks_{metric}", doc, labels=["task"])
            for task, value in sorted(counts[metric].items()):
                family.add_metric([task], value)
            yield family

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration (Redis may not answer yet)


def register(registry: Any = None) -> RedisCounters | None:
    """Register the collector once on ``registry`` (Prometheus' default one)."""
    from prometheus_client import REGISTRY

    target = registry or REGISTRY
    if getattr(target, "_saas_tasks_counters", None) is not None:
        return None
    collector = RedisCounters()
    target.register(collector)
    setattr(target, "_saas_tasks_counters", collector)  # noqa: B010 - a foreign object
    return collector


def on_task_revoked(
    sender: Any = None, request: Any = None, expired: bool = False, **_: Any
) -> None:
    """A scheduled job's message that expired in the queue is a missed run."""
    from saas_tasks.reliability.runs import scheduled_task_names

    name = getattr(sender, "name", None) or getattr(request, "task", None)
    app = getattr(sender, "app", None)
    if expired and name and app is not None and name in scheduled_task_names(app):
        log.warning(
            "%s[%s] missed: it expired before a worker could start it",
            name,
            getattr(request, "id", "?"),
        )
        increment("scheduled_runs_missed", name)


# Connected by a call: Celery's signal decorators are untyped (mypy strict).
signals.task_revoked.connect(on_task_revoked)
