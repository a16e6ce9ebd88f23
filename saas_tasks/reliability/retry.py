"""Named retry policies: which errors are worth another attempt, when, and how many times.

Only transient errors retry (the :class:`~saas_tasks.exceptions.TransientError` family plus the
types a policy names, such as connection errors and timeouts); everything else fails at once and
goes to the dead-letter queue. Attempts are always bounded. The delay is handed to Celery's own
``Task.retry`` so the retry is an ordinary Celery retry: visible in Flower, counted in
``request.retries``, published with the pack's publish policy.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import redis.exceptions
import sqlalchemy.exc

from saas_tasks.exceptions import ConfigurationError, TransientError

#: Errors that are transient wherever they come from: the network and the services.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.DisconnectionError,
)

DelayFunction = Callable[[int, BaseException], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How a task retries.

    ``max_attempts`` counts every run, the first included: ``max_attempts=5`` is one run and
    up to four retries. ``kind`` is ``exponential`` (full jitter: a uniform draw between 0 and
    ``min(cap, base * 2**retries)``, which spreads a thundering herd), ``fixed`` (``base``
    seconds every time) or ``custom`` (``delay(retries, exc)`` returns the seconds).
    """

    name: str
    max_attempts: int = 5
    kind: Literal["exponential", "fixed", "custom"] = "exponential"
    base: float = 2.0
    cap: float = 300.0
    delay: DelayFunction | None = None
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
    never_retry: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(
                f"retry policy {self.name!r}: max_attempts must be a whole number >= 1 "
                f"(got {self.max_attempts!r}); infinite retries are not offered"
            )
        if self.kind == "custom" and self.delay is None:
            raise ConfigurationError(f"retry policy {self.name!r}: kind='custom' needs delay=")
        if self.base < 0 or self.cap < 0:
            raise ConfigurationError(f"retry policy {self.name!r}: base and cap must be >= 0")

    @property
    def max_retries(self) -> int:
        """Celery's ``max_retries``: the retries after the first run."""
        return self.max_attempts - 1

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, self.never_retry):
            return False
        return isinstance(exc, self.retry_on)

    def countdown(self, retries: int, exc: BaseException) -> float:
        """Seconds to wait before retry number ``retries + 1``; at least the error's own
        ``retry_after`` when it says when to come back (within ``cap``)."""
        wait = self._delay(retries, exc)
        after = getattr(exc, "retry_after", None)
        if isinstance(after, int | float) and after > wait:
            return min(self.cap, float(after))
        return wait

    def _delay(self, retries: int, exc: BaseException) -> float:
        if self.kind == "fixed":
            return self.base
        if self.kind == "custom" and self.delay is not None:
            return max(0.0, min(self.cap, float(self.delay(retries, exc))))
        ceiling = min(self.cap, self.base * (2**retries))
        return random.uniform(0, ceiling) if self.jitter else ceiling


_POLICIES: dict[str, RetryPolicy] = {}


def register_policy(policy: RetryPolicy) -> RetryPolicy:
    """Make ``policy`` available by name to ``@task(retry="name")``."""
    _POLICIES[policy.name] = policy
    return policy


def get_policy(policy: str | RetryPolicy) -> RetryPolicy:
    if isinstance(policy, RetryPolicy):
        return policy
    try:
        return _POLICIES[policy]
    except KeyError:
        hint = difflib.get_close_matches(policy, _POLICIES, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigurationError(
            f"unknown retry policy {policy!r}{did_you_mean} "
            f"(known: {', '.join(sorted(_POLICIES))}; add one with register_policy())"
        ) from None


register_policy(RetryPolicy("default", max_attempts=5, base=2.0, cap=300.0))
register_policy(RetryPolicy("none", max_attempts=1))
register_policy(RetryPolicy("network", max_attempts=8, base=1.0, cap=600.0))
# Storing a dead letter must outlast a database outage of a few hours, yet still end.
register_policy(RetryPolicy("dead_letter_store", max_attempts=60, base=1.0, cap=300.0))
