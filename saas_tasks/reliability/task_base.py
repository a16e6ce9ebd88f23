"""What ``@task`` builds: :class:`ReliableTask`, the base class of every pack task, and the
:class:`TaskSpec` it carries (with the :class:`Idempotent` and :class:`Singleton` options).

These sit apart from :mod:`~saas_tasks.reliability.task` because the declaration, the argument
check (:mod:`~saas_tasks.reliability.arguments`) and the run
(:mod:`~saas_tasks.reliability.execution`) all need them: here each of those can import them
without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from pydantic import BaseModel

from saas_tasks.reliability import stamped_delay
from saas_tasks.reliability.message_stamp import fast_uuid4
from saas_tasks.reliability.publishing import PublishGuard, one_round_trip
from saas_tasks.reliability.retry import RetryPolicy


@dataclass(frozen=True)
class Idempotent:
    """Once per key: ``key`` names payload fields; without them the caller passes
    ``idempotency_key=``. ``transactional`` hands the function a session whose commit also
    records the key. ``lease`` (seconds, default
    :data:`~saas_tasks.reliability.lease.LEASE_SECONDS`) is how long a claim outlives its run's
    last heartbeat: how soon a dead run's key comes free."""

    key: tuple[str, ...] = ()
    transactional: bool = False
    lease: float | None = None


@dataclass(frozen=True)
class Singleton:
    """At most one run at a time; ``ttl`` defaults to the task's hard time limit."""

    ttl: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable[..., Any]
    payload: type[BaseModel] | None
    policy: RetryPolicy
    idempotent: Idempotent | None
    singleton: Singleton | None
    track_runs: bool
    bind: bool


class ReliableTask(Task):  # type: ignore[misc]
    """The base class of every pack task: typed-at-the-boundary, bounded publishing."""

    typing = False  # the payload schema validates instead, in the worker, dead-lettering
    spec: TaskSpec

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        with PublishGuard(self.name, self.app):
            given = len(args) > 3 or kwargs.get("producer") is not None
            if given or self.app.conf.task_always_eager:
                return super().apply_async(*args, **kwargs)
            named = stamped_delay.plain_call(self, args, kwargs)
            if named is not None:  # a plain .delay(**kwargs): stamped, once learned
                stamped = stamped_delay.publish(self, named)
                if stamped is not None:
                    return stamped
                kwargs["task_id"] = fast_uuid4()
            # The message and its task-sent event in one round trip (publishing.one_round_trip).
            with self.app.producer_or_acquire() as producer:
                with one_round_trip(producer) as batched:
                    if batched:  # buffered: no I/O for the publish retry to wrap
                        kwargs.setdefault("retry", False)
                    result = super().apply_async(*args, producer=producer, **kwargs)
                if named is not None and batched:
                    stamped_delay.learn(self, named, kwargs["task_id"], producer)
                return result

    @property
    def hard_time_limit(self) -> float:
        return float(self.time_limit or self.app.conf.task_time_limit or 3600)
