"""Task arguments as Flower and ``celery events`` show them: redacted like the logs.

Celery puts ``argsrepr``/``kwargsrepr`` in every message's headers and in the ``task-sent``
event; the worker repeats them in ``task-received``, and Flower shows nothing else. Building
them from a redacted copy, in the app's message factory, covers every way a message is
published (``.delay()``, ``send_task``, beat, dead-letter replay) and the sent event too, which
a ``before_task_publish`` handler cannot reach. The message body keeps the real arguments.

Positional arguments are redacted by their parameter's name where the task is known here
(``fixable("k", "hunter2")`` hides the second as ``password``).
"""

from __future__ import annotations

import functools
import inspect
import itertools
from typing import Any

from celery.app.amqp import AMQP

from saas_tasks.reliability.redaction import REDACTED, is_secret_key, redact_url


def parameter_names(app: Any, name: str) -> list[str]:
    """The task's positional parameter names, or [] when it is not registered here."""
    task = app.tasks.get(name)
    spec = getattr(task, "spec", None)
    if spec is not None and spec.payload is not None:
        return list(spec.payload.model_fields)
    fn = spec.fn if spec is not None else getattr(task, "run", None)
    if fn is None:
        return []
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []
    bound_task = spec is not None and spec.bind
    return params[1:] if bound_task else params


class _Cut:
    """Stands for what the repr leaves out, as ``saferepr`` shows it."""

    def __repr__(self) -> str:
        return "..."


CUT = _Cut()
#: Items of a list or mapping shown; the repr is cut at about 1 KiB anyway.
ITEMS = 100


def shown(value: Any, levels: int = 20, limit: int = 1024, _depth: int = 0) -> Any:
    """A copy of ``value`` to show: secrets redacted (as :func:`redact`), strings cut at
    ``limit``, at most :data:`ITEMS` items a container, containers nested deeper than
    ``levels`` cut. One pass, so a 5 MB payload is neither copied nor scanned whole on every
    publish, and the copy's plain ``repr`` stays small. (Runs for every message published:
    strings and scalars inside a container are handled in place, not by a call each.)"""
    kind = type(value)
    if kind is str:
        return redact_url(value if len(value) <= limit else value[:limit] + "...")
    if kind in _SCALARS:
        return value
    if isinstance(value, dict):
        if _depth >= levels:
            return CUT
        copy = {}
        for key, item in (
            itertools.islice(value.items(), ITEMS) if len(value) > ITEMS else value.items()
        ):
            if isinstance(key, str) and secret_key(key):
                copy[key] = REDACTED
            elif type(item) in _SCALARS or (
                type(item) is str and len(item) <= limit and "://" not in item
            ):
                copy[key] = item
            else:
                copy[key] = shown(item, levels, limit, _depth + 1)
        return copy
    if isinstance(value, str):  # a str subclass
        return redact_url(value if len(value) <= limit else value[:limit] + "...")
    if isinstance(value, list | tuple):
        if _depth >= levels:
            return CUT
        items = [shown(item, levels, limit, _depth + 1) for item in itertools.islice(value, ITEMS)]
        return tuple(items) if isinstance(value, tuple) else items
    return value


#: Types shown as they are (exact types: a subclass may have its own ``repr``).
_SCALARS = frozenset({int, float, bool, type(None)})


@functools.lru_cache(maxsize=4096)
def secret_key(key: str) -> bool:
    """:func:`is_secret_key`, remembered: payloads repeat the same few keys."""
    return is_secret_key(key)


def bounded_repr(value: Any, maxsize: int) -> str:
    """The ``repr`` of a :func:`shown` copy, cut at ``maxsize`` characters. The copy holds only
    builtin containers at most ``levels`` deep and short strings, so the plain (C) ``repr`` is
    safe here and several times faster than ``saferepr``'s streaming walk."""
    text = repr(value)
    return text if len(text) <= maxsize else text[: max(maxsize - 3, 0)] + "..."


def redacted_args(app: Any, name: str, args: Any, levels: int = 20) -> tuple[Any, ...]:
    names = parameter_names(app, name)
    return tuple(
        REDACTED
        if index < len(names) and is_secret_key(names[index])
        else shown(value, levels, _depth=1)
        for index, value in enumerate(list(args or ()))
    )


class RedactingAMQP(AMQP):  # type: ignore[misc]
    """The app's message factory, with redacted ``argsrepr``/``kwargsrepr`` by default."""

    def argsrepr_of(self, name: str, args: Any) -> str:
        levels = self.app.conf.task_repr_maxlevels
        return bounded_repr(redacted_args(self.app, name, args, levels), self.argsrepr_maxsize)

    def kwargsrepr_of(self, kwargs: Any) -> str:
        levels = self.app.conf.task_repr_maxlevels
        return bounded_repr(shown(dict(kwargs or {}), levels), self.kwargsrepr_maxsize)

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        *more: Any,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        **options: Any,
    ) -> Any:
        if argsrepr is None:
            argsrepr = self.argsrepr_of(name, args)
        if kwargsrepr is None:
            kwargsrepr = self.kwargsrepr_of(kwargs)
        return super().as_task_v2(
            task_id, name, args, kwargs, *more, argsrepr=argsrepr, kwargsrepr=kwargsrepr, **options
        )
