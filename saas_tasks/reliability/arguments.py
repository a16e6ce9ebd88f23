"""A task call's arguments, checked at the task boundary: the declared payload schema (or the
function's signature), then the idempotency key.

The worker checks them before it runs anything (:mod:`~saas_tasks.reliability.execution`), and
a producer can check them before it publishes (:func:`check_call`, used by bulk enqueueing), so
both refuse the same calls with the same :class:`InvalidPayload` message. (How arguments are
*shown* in logs and Flower is :mod:`~saas_tasks.reliability.shown_args`.)
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from saas_tasks.exceptions import InvalidPayload
from saas_tasks.reliability import idempotency
from saas_tasks.reliability.task_base import ReliableTask, TaskSpec


def check_call(task: ReliableTask, kwargs: dict[str, Any]) -> None:
    """Refuse, with :class:`InvalidPayload`, a keyword call that the worker would refuse at the
    task boundary (the declared schema or signature, then the idempotency key), without
    running anything: how a producer checks payloads before it publishes them."""
    named = dict(kwargs)
    caller_key = named.pop("idempotency_key", None)
    bind_call(task, task.spec, (), named)
    if task.spec.idempotent is not None:
        key_for(task.spec, named, caller_key)


def key_for(spec: TaskSpec, kwargs: dict[str, Any], caller_key: str | None) -> str:
    """The call's idempotency key: the caller's, or one derived from the declared fields."""
    if caller_key is not None:
        return idempotency.normalise_key(spec.name, str(caller_key))
    if spec.idempotent is None or not spec.idempotent.key:
        raise InvalidPayload(
            f"{spec.name} is idempotent by a caller's key: pass idempotency_key=... to .delay()"
        )
    return idempotency.derive_key(spec.name, spec.idempotent.key, kwargs)


def bind_call(
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
    fields, accepted, ignores_extra = _shape(spec.payload)
    if len(args) > len(fields):
        raise InvalidPayload(f"{spec.name}: {len(args)} positional arguments, {len(fields)} fields")
    data = {**dict(zip(fields, args, strict=False)), **kwargs} if args else kwargs.copy()
    # pydantic ignores unknown fields by default: a caller's typo (``tenat=5``) would pass
    # as "no tenant" and widen what the task does. Refused in one message with whatever else
    # is wrong (a model that says extra="forbid" reports them itself; "allow" keeps them).
    problems: list[str] = []
    unknown = data.keys() - accepted
    if unknown and ignores_extra:
        for name in sorted(unknown):
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
def _shape(model: type[BaseModel]) -> tuple[tuple[str, ...], frozenset[str], bool]:
    """A payload model's field names, every name it accepts (aliases too), and whether it
    ignores unknown ones (pydantic's default): worked out once, not on every call."""
    fields = tuple(model.model_fields)
    names = set(fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return fields, frozenset(names), model.model_config.get("extra", "ignore") == "ignore"


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
