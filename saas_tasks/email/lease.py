"""A delivery run's hold on its email log rows: a token of its own, and a lease kept alive.

Why a token per run, not the task id: one chunk message can run twice at the same time. A
redelivered ``send_batch`` republishes its chunk ids; Redis hands an unacked message to a
second worker once the visibility timeout passes, even while the first still runs it. Both
runs carry the same task id, so a claim held "by the task id" let both send every recipient.
A run now owns a ``pending`` row only while the row carries its own token.

Why a short lease kept alive by a heartbeat, not a claim until the hard time limit: a run that
dies (a SIGKILLed worker or pool child, the OOM killer) leaves its rows ``pending`` and cannot
release them, and its message comes back under the same task id: at once for a lost pool
child, after the visibility timeout for a lost worker. That run must not wait out a dead
run's claim for the whole hard time limit (ten minutes by default). The database cannot tell
a dead run from a live one, but a lease can: while the process lives, a daemon thread renews
``claimed_until`` every third of :data:`LEASE_SECONDS`, whatever the run is waiting on (a
slow server, the rate limit); once it dies, its rows come free at most one lease after its
last beat. A lease is never longer than the task's hard time limit.

Why not ask whether the holder's process is alive: the token names it (``host:pid:random``)
for people reading the email log, but a pid says nothing across hosts or containers with
their own pid namespaces, and pids are reused.

What remains: a live run whose heartbeat cannot reach the database for a whole lease may lose
its rows to a concurrent duplicate, which then sends them too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, update

from saas_tasks.db import session_scope
from saas_tasks.models import EmailLog, utcnow

log = logging.getLogger("saas_tasks.email")

#: How long a run's claim lasts past its last heartbeat, seconds (or the hard time limit,
#: when that is shorter). A heartbeat renews it every third of this.
LEASE_SECONDS = 30.0


class Lease:
    """One delivery run's claim: its token, and how long a claim lasts without renewal."""

    def __init__(self, hard_time_limit: float) -> None:
        self.seconds = max(1.0, min(LEASE_SECONDS, hard_time_limit))
        host = socket.gethostname()[:180]
        self.token = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:16]}"

    def until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)

    def renew(self, keys: Sequence[str]) -> int:
        """Extend the claim on those of ``keys`` this run still holds; returns how many."""
        with session_scope() as session:
            result = session.execute(self._held(keys).values(claimed_until=self.until(utcnow())))
        return cast(CursorResult[Any], result).rowcount

    def release(self, keys: Sequence[str]) -> None:
        """Give back the rows of ``keys`` this run holds and did not finish: the retry, or any
        other delivery, takes them at once instead of waiting for the lease to lapse."""
        if not keys:
            return
        with session_scope() as session:
            session.execute(
                self._held(keys).values(claim_token=None, claimed_until=None, updated_at=utcnow())
            )

    def _held(self, keys: Sequence[str]) -> Update:
        """An UPDATE of the rows of ``keys`` that this run holds and has not finished."""
        return (
            update(EmailLog)
            .where(
                EmailLog.key.in_(keys),
                EmailLog.claim_token == self.token,
                EmailLog.status == "pending",
            )
            .execution_options(synchronize_session=False)
        )

    @contextmanager
    def kept(self, keys: Sequence[str]) -> Iterator[None]:
        """Renew the claim on ``keys`` in the background until the block ends."""
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(list(keys), stop), name=f"email-lease-{self.token}"
        )
        beat.daemon = True
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(self.seconds)

    def _beat(self, keys: list[str], stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 3):
            try:
                if not self.renew(keys):
                    return  # every row recorded or released: nothing left to hold
            except Exception as exc:  # the next beat tries again; a lease outlasts two missed beats
                log.warning(
                    "email lease %s not renewed: %s: %s", self.token, type(exc).__name__, exc
                )
