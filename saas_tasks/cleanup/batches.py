"""The batch loop every purge shares: bounded batches, a time budget, one record per run.

Each batch is its own short transaction (``engine.begin()``), so locks are held for one batch
only and a kill loses at most the batch in flight, which rolls back: nothing that should stay
is ever touched, and the next run picks up where this one stopped. When the budget is spent
the run reports ``finished=False`` and its task hands over to a follow-up run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from saas_tasks.cleanup import queries
from saas_tasks.db import get_engine
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.cleanup")


@dataclass(frozen=True)
class Limits:
    """How a run works: rows a batch, seconds before handing over, seconds between batches."""

    batch_size: int
    time_budget: float
    batch_pause: float = 0.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> Limits:
        settings = get_settings()
        values: dict[str, Any] = {
            "batch_size": settings.cleanup_batch_size,
            "time_budget": settings.cleanup_time_budget,
            "batch_pause": settings.cleanup_batch_pause,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class PurgeReport:
    """What a run did; ``as_dict()`` is the task's JSON result."""

    purge: str
    limits: Limits
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_ms: float = 0.0
    seconds: float = 0.0
    finished: bool = True
    note: str | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.limits.time_budget

    def budget_spent(self) -> bool:
        return time.monotonic() >= self._deadline

    def count(self, label: str, rows: int, seconds: float) -> None:
        self.deleted[label] = self.deleted.get(label, 0) + rows
        self.batches += 1
        self.longest_batch_ms = max(self.longest_batch_ms, seconds * 1000)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "purge": self.purge,
            "deleted": dict(self.deleted),
            "total": self.total,
            "batches": self.batches,
            "longest_batch_ms": round(self.longest_batch_ms, 1),
            "seconds": round(self.seconds, 3),
            "finished": self.finished,
        }
        if self.note:
            result["note"] = self.note
        return result

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.deleted.items()) or "nothing"
        state = "finished" if self.finished else "time budget spent, a follow-up run continues"
        text = f"{self.purge}: deleted {counts} in {self.batches} batches, {self.seconds:.1f}s; "
        return text + state + (f" ({self.note})" if self.note else "")


def run_in_batches(
    report: PurgeReport,
    label: str,
    batch: Callable[[], tuple[int, int]],
) -> bool:
    """Call ``batch`` (one transaction choosing at most ``batch_size`` rows; it returns rows
    chosen and rows deleted) until it comes back short or the budget is spent; returns
    whether the table is done."""
    limits = report.limits
    while True:
        if report.budget_spent():
            report.finished = False
            return False
        started = time.monotonic()
        chosen, deleted = batch()
        report.count(label, deleted, time.monotonic() - started)
        if chosen < limits.batch_size:
            return True
        if limits.batch_pause:
            time.sleep(limits.batch_pause)


def purge_target(
    report: PurgeReport, target: queries.Target, cutoff: datetime, engine: Engine | None = None
) -> bool:
    """Delete ``target``'s rows past ``cutoff`` in bounded batches (see :func:`run_in_batches`)."""
    engine = engine or get_engine()
    size = report.limits.batch_size
    after: Any = None  # where the next batch starts in the target's order

    with engine.connect() as connection:  # one connection for the run, a transaction a batch

        def batch() -> tuple[int, int]:
            nonlocal after
            try:
                with connection.begin():
                    chosen, deleted, after = queries.delete_batch(
                        connection, target, cutoff, size, after
                    )
            except queries.RowsHeld:  # rolled back; again, leaving the held rows
                with connection.begin():
                    chosen, deleted, after = queries.delete_batch(
                        connection, target, cutoff, size, after, skip_locked=True
                    )
            return chosen, deleted

        return run_in_batches(report, target.label, batch)


@contextmanager
def recorded(purge: str, limits: Limits) -> Iterator[PurgeReport]:
    """A run: its report, timed, logged, and one line in ``system_logs`` (also on failure)."""
    report = PurgeReport(purge, limits)
    started = time.monotonic()
    try:
        yield report
    except BaseException as exc:
        report.seconds = time.monotonic() - started
        report.finished = False
        report.note = f"failed: {type(exc).__name__}: {exc}"[:500]
        _record(report, "ERROR")
        raise
    report.seconds = time.monotonic() - started
    _record(report, "INFO")


def _record(report: PurgeReport, level: str) -> None:
    line = report.summary()
    log.log(logging.ERROR if level == "ERROR" else logging.INFO, "cleanup %s", line)
    try:
        with get_engine().begin() as connection:
            queries.record_run(connection, level, line, report.as_dict())
    except Exception:  # bookkeeping never turns a good run into a failure
        log.exception("cleanup %s: could not write the run's line to system_logs", report.purge)
