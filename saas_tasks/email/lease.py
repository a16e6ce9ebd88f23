"""A delivery run's hold on its email log rows, on the shared lease of
:mod:`saas_tasks.reliability.lease` (a token per run, a short lease a heartbeat renews: why,
and what remains, is told there).

Email specifics: one chunk message can run twice at the same time (a redelivered ``send_batch``
republishes its chunk ids, and Redis hands an unacked message to a second worker once the
visibility timeout passes), both runs with the same task id. So a ``pending`` row belongs to
the run whose token it carries, and every renewal or release names that token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Update, update

from saas_tasks.db import session_scope
from saas_tasks.models import EmailLog, utcnow
from saas_tasks.reliability import lease
from saas_tasks.reliability.lease import LEASE_SECONDS

__all__ = ["LEASE_SECONDS", "Lease"]


class Lease(lease.Lease):
    """One delivery run's claim on its email log rows."""

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
        held = list(keys)
        with self.heartbeat(lambda: bool(self.renew(held)), "email"):
            yield
