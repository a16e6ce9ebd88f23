"""A run's hold on a claim: a token of its own, and a short lease a heartbeat keeps alive.

Shared by the claims that guard side effects outside the database: the idempotency records of
:mod:`~saas_tasks.reliability.idempotency` and the email log rows of ``saas_tasks.email``.

Why a token per run, not the task id: one message can run twice at the same time (Redis hands
an unacked message to a second worker once the visibility timeout passes, even while the first
still runs it), and both runs carry the same task id. A run owns a claim only while the claim
carries its token; taking a claim over replaces the token, and every later write of the old run
(renew, record, release) is conditional on its token, so it changes nothing.

Why a short lease kept alive by a heartbeat, not a claim until the hard time limit: a run that
dies (a SIGKILLed worker or pool child, the OOM killer) cannot release its claim, and its
message comes back under the same task id; that delivery must not wait out the whole hard time
limit. The database cannot tell a dead run from a live one, but a lease can: while the process
lives, a daemon thread renews the claim every third of the lease, whatever the run waits on;
once it dies, its claim lapses at most one lease after its last beat.

The token names its holder (``host:pid:random``) for people reading the tables; the pid says
nothing across hosts or pid namespaces, so nothing decides by it.

What remains: a live run whose heartbeat cannot reach the database for a whole lease (or whose
process is frozen that long) may lose its claim to a duplicate, which then runs too. The loser
learns it when it tries to record its outcome, and records nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

#: How long a claim lasts past its last heartbeat, seconds (or the hard time limit, when that
#: is shorter). A heartbeat renews it every third of this.
LEASE_SECONDS = 30.0


def new_token() -> str:
    """A claim token unique to one run: ``host:pid:random``."""
    return f"{socket.gethostname()[:180]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


class Lease:
    """One run's claim: its token, and how long the claim lasts without renewal."""

    def __init__(self, hard_time_limit: float, seconds: float | None = None) -> None:
        wanted = LEASE_SECONDS if seconds is None else seconds
        self.seconds = max(1.0, min(wanted, hard_time_limit))
        self.token = new_token()

    def until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)

    @contextmanager
    def heartbeat(self, renew: Callable[[], bool], what: str) -> Iterator[None]:
        """Call ``renew()`` every third of the lease until the block ends, in a daemon thread.

        ``renew`` extends the claim and returns whether the run still holds anything; once it
        returns False (recorded, released or taken over) the heartbeat stops. A beat that fails
        is logged and tried again at the next one: a lease outlasts two missed beats.
        """
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(renew, what, stop), name=f"lease-{self.token}", daemon=True
        )
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(self.seconds)

    def _beat(self, renew: Callable[[], bool], what: str, stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 3):
            try:
                if not renew():
                    return
            except Exception as exc:
                log.warning(
                    "%s lease %s not renewed: %s: %s", what, self.token, type(exc).__name__, exc
                )
