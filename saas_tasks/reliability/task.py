"""``@task``: a Celery task with the reliability core composed in one visible order.

    payload validation → overlap lock → idempotency → the function → retry decision

Each layer is declared, never implied: ``payload=`` a pydantic model, ``singleton=``,
``idempotent=`` (or the ``@idempotent``/``@singleton``/``@retry`` decorators beneath
``@task``), ``retry=`` a named policy. An unknown option is an error with a hint. Failures that
are not retried reach the ``task_failure`` signal and so the dead-letter queue.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import Retry
from pydantic import BaseModel, ValidationError

from saas_tasks.exceptions import ConfigurationError, InvalidPayload
from saas_tasks.reliability import idempotency, metrics
from saas_tasks.reliability.publishing import PublishGuard, one_round_trip
from saas_tasks.reliability.redaction import redact
from saas_tasks.reliability.retry import RetryPolicy, get_policy
from saas_tasks.reliability.runs import RunTracker, scheduled_task_names
from saas_tasks.reliability.singleton import OverlapLock

log = logging.getLogger("saas_tasks.task")
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


@dataclass(frozen=True)
class Idempotent:
    """Once per key: ``key`` names payload fields; without them the caller passes
    ``idempotency_key=``. ``transactional`` hands the function a session whose commit also
    records the key."""

    key: tuple[str, ...] = ()
    transactional: bool = False


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
            # The message and its task-sent event in one round trip (publishing.one_round_trip).
            with self.app.producer_or_acquire() as producer, one_round_trip(producer) as batched:
                if batched:  # buffered: no I/O for the publish retry to wrap
                    kwargs.setdefault("retry", False)
                return super().apply_async(*args, producer=producer, **kwargs)

    @property
    def hard_time_limit(self) -> float:
        return float(self.time_limit or self.app.conf.task_time_limit or 3600)


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


def idempotent(*key: str, transactional: bool = False) -> Callable[[F], F]:
    """Declare that the function's side effect happens once per key (see :class:`Idempotent`)."""

    def decorate(fn: F) -> F:
        _declare(fn, "idempotent", Idempotent(tuple(key), transactional))
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


# --- the run ---------------------------------------------------------------------------


def execute(task: ReliableTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    spec = task.spec
    kwargs = dict(kwargs)
    caller_key = kwargs.pop("idempotency_key", None)
    call = _bind_call(task, spec, args, kwargs)
    tracked = spec.track_runs or spec.name in scheduled_task_names(task.app)
    tracker = RunTracker(spec.name, task.request.id, task.request.hostname) if tracked else None
    if spec.singleton is None:
        return _guarded(task, spec, call, args, kwargs, caller_key, tracker)
    lock = OverlapLock(
        spec.singleton.name or spec.name,
        ttl=max(spec.singleton.ttl or 0.0, task.hard_time_limit),
    )
    if not lock.acquire():
        held = lock.held_for() or 0.0
        log.warning(
            "%s[%s] skipped: the previous run still holds the lock (%.0fs left)",
            spec.name,
            task.request.id,
            held,
        )
        if tracker:
            tracker.skipped(f"overlap: previous run holds the lock for {held:.0f}s more")
        metrics.increment("scheduled_runs_skipped", spec.name)
        return {"skipped": True, "reason": "overlap"}
    try:
        return _guarded(task, spec, call, args, kwargs, caller_key, tracker)
    finally:
        lock.release()


def _guarded(
    task: ReliableTask,
    spec: TaskSpec,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    caller_key: str | None,
    tracker: RunTracker | None,
) -> Any:
    started = time.monotonic()
    if tracker:
        tracker.start()
    try:
        result = _idempotent_call(task, spec, call, kwargs, caller_key)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        try:
            _retry_or_raise(task, spec, exc)
        except Retry:
            if tracker:
                tracker.finish("retrying", started, error=error)
            raise
        if tracker:
            tracker.finish("failed", started, error=error)
        raise
    if tracker:
        tracker.finish("succeeded", started)
    return result


def _idempotent_call(
    task: ReliableTask,
    spec: TaskSpec,
    call: Callable[..., Any],
    kwargs: dict[str, Any],
    caller_key: str | None,
) -> Any:
    idem = spec.idempotent
    if idem is None:
        return _jsonable(call())
    key = _key(spec, kwargs, caller_key)
    task_id = task.request.id or "local"
    if idem.transactional:
        ran, result = idempotency.run_transactional(
            key, spec.name, task_id, lambda session: _jsonable(call(session=session))
        )
        if not ran:
            log.info("%s[%s] duplicate of %s: returning the first result", spec.name, task_id, key)
        return result
    claim = idempotency.claim(key, spec.name, task_id, ttl_seconds=task.hard_time_limit)
    if not claim.acquired:
        log.info("%s[%s] duplicate of %s: returning the first result", spec.name, task_id, key)
        return claim.result
    try:
        result = _jsonable(call())
    except BaseException:
        idempotency.release(key, task_id)
        raise
    idempotency.complete(key, task_id, result)
    return result


def check_call(task: ReliableTask, kwargs: dict[str, Any]) -> None:
    """Refuse, with :class:`InvalidPayload`, a keyword call that the worker would refuse at the
    task boundary (the declared schema or signature, then the idempotency key), without
    running anything: how a producer checks payloads before it publishes them."""
    named = dict(kwargs)
    caller_key = named.pop("idempotency_key", None)
    _bind_call(task, task.spec, (), named)
    if task.spec.idempotent is not None:
        _key(task.spec, named, caller_key)


def _key(spec: TaskSpec, kwargs: dict[str, Any], caller_key: str | None) -> str:
    if caller_key is not None:
        return idempotency.normalise_key(spec.name, str(caller_key))
    if spec.idempotent is None or not spec.idempotent.key:
        raise InvalidPayload(
            f"{spec.name} is idempotent by a caller's key: pass idempotency_key=... to .delay()"
        )
    return idempotency.derive_key(spec.name, spec.idempotent.key, kwargs)


def _bind_call(
    task: ReliableTask, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[..., Any]:
    """Validate the arguments and return the call; ``kwargs`` becomes every named value,
    positional ones included, so idempotency keys derive from names whatever the call style."""
    leading = (task,) if spec.bind else ()
    if spec.payload is None:
        try:
            bound = _signature(spec.fn).bind_partial(*leading, *args, **kwargs)
            _signature(spec.fn).bind(*bound.args, **bound.kwargs, **_injected(spec))
        except TypeError as exc:
            raise InvalidPayload(f"invalid arguments for {spec.name}: {exc}") from None
        named = {k: v for k, v in bound.arguments.items() if k not in ("task", "self")}
        call = functools.partial(spec.fn, *leading, *args, **kwargs)
        kwargs.clear()
        kwargs.update(named)
        return call
    fields = list(spec.payload.model_fields)
    if len(args) > len(fields):
        raise InvalidPayload(f"{spec.name}: {len(args)} positional arguments, {len(fields)} fields")
    data = {**dict(zip(fields, args, strict=False)), **kwargs}
    # pydantic ignores unknown fields by default: a caller's typo (``tenat=5``) would pass
    # as "no tenant" and widen what the task does. Refused in one message with whatever else
    # is wrong (a model that says extra="forbid" reports them itself; "allow" keeps them).
    problems: list[str] = []
    unknown = sorted(set(data) - _accepted_names(spec.payload))
    if unknown and spec.payload.model_config.get("extra", "ignore") == "ignore":
        for name in unknown:
            hint = difflib.get_close_matches(name, fields, n=1)
            problems.append(
                f"{name}: unknown argument" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    try:
        payload = spec.payload.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc))
    if problems:
        raise InvalidPayload(f"invalid payload for {spec.name}: " + "; ".join(problems))
    kwargs.clear()
    kwargs.update(data)
    return functools.partial(spec.fn, *leading, payload)


@functools.cache
def _accepted_names(model: type[BaseModel]) -> frozenset[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return frozenset(names)


@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def _injected(spec: TaskSpec) -> dict[str, Any]:
    """Arguments the pack itself passes (a transactional task's session)."""
    transactional = spec.idempotent is not None and spec.idempotent.transactional
    return {"session": None} if transactional else {}


def _problems(error: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in item['loc']) or 'payload'}: {item['msg']}"
        for item in error.errors()
    ]


def _retry_or_raise(task: ReliableTask, spec: TaskSpec, exc: BaseException) -> None:
    policy = spec.policy
    if not policy.is_transient(exc):
        return
    retries = task.request.retries or 0
    if retries >= policy.max_retries:
        log.error(
            "%s[%s] gave up after %d attempts: %s: %s",
            spec.name,
            task.request.id,
            retries + 1,
            type(exc).__name__,
            exc,
        )
        metrics.increment("retries_exhausted", spec.name)
        return
    countdown = policy.countdown(retries, exc)
    log.warning(
        "%s[%s] retry %d/%d in %.1fs: %s: %s",
        spec.name,
        task.request.id,
        retries + 1,
        policy.max_retries,
        countdown,
        type(exc).__name__,
        exc,
    )
    raise task.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def describe_call(args: Any, kwargs: Any) -> str:
    """Arguments as a log line shows them: secrets redacted."""
    return f"args={redact(list(args or []))!r} kwargs={redact(dict(kwargs or {}))!r}"
