"""``@task``: a Celery task with the reliability core composed in one visible order.

    payload validation → overlap lock → idempotency → the function → retry decision

Each layer is declared, never implied: ``payload=`` a pydantic model, ``singleton=``,
``idempotent=`` (or the ``@idempotent``/``@singleton``/``@retry`` decorators beneath
``@task``), ``retry=`` a named policy. An unknown option is an error with a hint.

This module declares; the run itself is :mod:`~saas_tasks.reliability.execution`, the argument
check :mod:`~saas_tasks.reliability.arguments`, and what a declaration builds
(:class:`ReliableTask`, :class:`TaskSpec`) :mod:`~saas_tasks.reliability.task_base`, re-exported
here so that task modules import the decorator and its types from one place.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from pydantic import BaseModel

from saas_tasks.exceptions import ConfigurationError
from saas_tasks.reliability.execution import execute
from saas_tasks.reliability.retry import RetryPolicy, get_policy
from saas_tasks.reliability.task_base import Idempotent, ReliableTask, Singleton, TaskSpec

__all__ = [
    "Idempotent",
    "ReliableTask",
    "Singleton",
    "TaskSpec",
    "idempotent",
    "retry",
    "singleton",
    "task",
]

F = TypeVar("F", bound=Callable[..., Any])

CELERY_OPTIONS = frozenset(
    {
        "queue",
        "time_limit",
        "soft_time_limit",
        "rate_limit",
        "ignore_result",
        "priority",
        "expires",
        "acks_late",
        "routing_key",
        "bind",
    }
)
PACK_OPTIONS = frozenset({"payload", "retry", "idempotent", "singleton", "track_runs"})
MARK = "__saas_tasks_options__"


def _declare(fn: Callable[..., Any], option: str, value: Any) -> None:
    options = fn.__dict__.setdefault(MARK, {})
    if option in options:
        raise ConfigurationError(f"{fn.__qualname__}: {option} is declared twice")
    options[option] = value


def retry(policy: str | RetryPolicy) -> Callable[[F], F]:
    """Declare the retry policy of a function that ``@task`` will wrap."""

    def decorate(fn: F) -> F:
        _declare(fn, "retry", policy)
        return fn

    return decorate


def idempotent(
    *key: str, transactional: bool = False, lease: float | None = None
) -> Callable[[F], F]:
    """Declare that the function's side effect happens once per key (see :class:`Idempotent`)."""

    def decorate(fn: F) -> F:
        _declare(fn, "idempotent", Idempotent(tuple(key), transactional, lease))
        return fn

    return decorate


def singleton(ttl: float | None = None, name: str | None = None) -> Callable[[F], F]:
    """Declare that runs of the task must not overlap (see :class:`Singleton`)."""

    def decorate(fn: F) -> F:
        _declare(fn, "singleton", Singleton(ttl, name))
        return fn

    return decorate


def task(name: str, **options: Any) -> Callable[[Callable[..., Any]], ReliableTask]:
    """Make ``fn`` a Celery task named ``name`` (a stable string, never a module path)."""
    if not isinstance(name, str) or "." not in name:
        raise ConfigurationError(
            f"task name {name!r}: give a stable dotted name such as 'myapp.billing.charge'"
        )
    _check_options(name, options)

    def decorate(fn: Callable[..., Any]) -> ReliableTask:
        declared = {**getattr(fn, MARK, {}), **options}
        spec = _spec(name, fn, declared)
        celery_options = {k: v for k, v in declared.items() if k in CELERY_OPTIONS - {"bind"}}

        @functools.wraps(fn)
        def run(self: ReliableTask, *args: Any, **kwargs: Any) -> Any:
            return execute(self, args, kwargs)

        # ``spec`` goes in as a class attribute of the task: ``shared_task`` returns a proxy
        # to whichever app is current, so setting it on the result afterwards would miss the
        # pack's app whenever another app is current at import (pytest-celery's, a host's).
        created = shared_task(
            bind=True,
            base=ReliableTask,
            name=name,
            max_retries=spec.policy.max_retries,
            spec=spec,
            **celery_options,
        )(run)
        return created  # type: ignore[no-any-return]

    return decorate


def _check_options(name: str, options: dict[str, Any]) -> None:
    known = CELERY_OPTIONS | PACK_OPTIONS
    for option in options:
        if option not in known:
            hint = difflib.get_close_matches(option, known, n=1)
            raise ConfigurationError(
                f"@task({name!r}): unknown option {option!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(sorted(known))})"
            )


def _spec(name: str, fn: Callable[..., Any], declared: dict[str, Any]) -> TaskSpec:
    idem = declared.get("idempotent")
    if idem is True:
        idem = Idempotent()
    single = declared.get("singleton")
    if single is True:
        single = Singleton()
    payload = declared.get("payload")
    if payload is not None and not (isinstance(payload, type) and issubclass(payload, BaseModel)):
        raise ConfigurationError(f"@task({name!r}): payload must be a pydantic model class")
    return TaskSpec(
        name=name,
        fn=fn,
        payload=payload,
        policy=get_policy(declared.get("retry", "default")),
        idempotent=idem or None,
        singleton=single or None,
        track_runs=bool(declared.get("track_runs", single is not None and single is not False)),
        bind=bool(declared.get("bind", False)),
    )
