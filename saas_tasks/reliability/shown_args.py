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

import inspect
from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from saas_tasks.reliability.redaction import REDACTED, is_secret_key, redact


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


def shortened(value: Any, limit: int = 1024, _depth: int = 0) -> Any:
    """``value`` with long strings cut: the repr is cut at about 1 KiB anyway, and a 5 MB
    payload must not be copied and scanned on every publish."""
    if _depth > 20:
        return "..."
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    if isinstance(value, dict):
        return {k: shortened(v, limit, _depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        return [shortened(v, limit, _depth + 1) for v in list(value)[:100]]
    return value


def redacted_args(app: Any, name: str, args: Any) -> tuple[Any, ...]:
    names = parameter_names(app, name)
    shown = []
    for index, value in enumerate(list(args or ())):
        secret = index < len(names) and is_secret_key(names[index])
        shown.append(REDACTED if secret else redact(shortened(value)))
    return tuple(shown)


class RedactingAMQP(AMQP):  # type: ignore[misc]
    """The app's message factory, with redacted ``argsrepr``/``kwargsrepr`` by default."""

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
        levels = self.app.conf.task_repr_maxlevels
        if argsrepr is None:
            shown = redacted_args(self.app, name, args)
            argsrepr = saferepr(shown, self.argsrepr_maxsize, maxlevels=levels)
        if kwargsrepr is None:
            shown_kwargs = redact(shortened(dict(kwargs or {})))
            kwargsrepr = saferepr(shown_kwargs, self.kwargsrepr_maxsize, maxlevels=levels)
        return super().as_task_v2(
            task_id, name, args, kwargs, *more, argsrepr=argsrepr, kwargsrepr=kwargsrepr, **options
        )
