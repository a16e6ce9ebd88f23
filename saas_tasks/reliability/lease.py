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
import time
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
        """Call ``renew()`` every third of the lease until the block ends.

        ``renew`` extends the claim and returns whether the run still holds anything; once it
        returns False (recorded, released or taken over) the heartbeat stops. A beat that fails
        is logged and tried again at the next one: a lease outlasts two missed beats. The beats
        of every run in the process share one daemon thread (:data:`HEARTBEATS`): starting and
        joining a thread per run would cost more than a no-op task's whole run.
        """
        beat = _Beat(renew, what, self.token, self.seconds / 3)
        HEARTBEATS.add(beat)
        try:
            yield
        finally:
            HEARTBEATS.discard(beat)


class _Beat:
    """One run's heartbeat: what to call, how often, and when next."""

    def __init__(self, renew: Callable[[], bool], what: str, token: str, every: float) -> None:
        self.renew, self.what, self.token, self.every = renew, what, token, every
        self.due = time.monotonic() + every

    def run(self) -> bool:
        """Renew once; False when the run holds nothing any more (no further beats)."""
        try:
            if not self.renew():
                return False
        except Exception as exc:
            log.warning(
                "%s lease %s not renewed: %s: %s", self.what, self.token, type(exc).__name__, exc
            )
        self.due = time.monotonic() + self.every
        return True


class Heartbeats:
    """The process's beating leases and the one daemon thread that renews them when due.

    The thread is started on first use in each process (a prefork child does not inherit its
    parent's threads) and sleeps until the earliest beat is due or a lease is added.
    """

    def __init__(self) -> None:
        self.forget_after_fork()

    def forget_after_fork(self) -> None:
        """No runs, a fresh lock and no thread yet: the start state, and a forked child's (the
        parent's runs are not its own, and the parent's thread may have held the lock)."""
        self._beats: set[_Beat] = set()
        self._changed = threading.Condition()
        self._pid: int | None = None

    def add(self, beat: _Beat) -> None:
        with self._changed:
            self._beats.add(beat)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="lease-heartbeats", daemon=True).start()
            self._changed.notify()

    def discard(self, beat: _Beat) -> None:
        with self._changed:
            self._beats.discard(beat)

    def _loop(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [beat for beat in self._beats if beat.due <= now]
                if not due:
                    wait = min((beat.due for beat in self._beats), default=now + 60) - now
                    self._changed.wait(max(wait, 0.01))
                    continue
            for beat in due:  # outside the lock: a renewal is a database round trip
                if not beat.run():
                    self.discard(beat)


#: The process's heartbeats (see :class:`Heartbeats`).
HEARTBEATS = Heartbeats()
os.register_at_fork(after_in_child=HEARTBEATS.forget_after_fork)
