"""Task results as the worker's log and Flower show them: redacted like the arguments.

Celery writes a task's return value into its "succeeded in 0.01s: ..." log line and into the
``task-succeeded`` event, which Flower and ``celery events`` show, as ``saferepr(retval)``
computed in ``celery.app.trace``. A task returning ``{"api_token": ...}`` put the token into
every log aggregator and every Flower page. The stored result (``AsyncResult.get()``) keeps the
real value; only that text goes through :func:`~saas_tasks.reliability.shown_args.shown` first
(secrets under secret-looking keys and in URLs redacted, bounded, one pass).

Celery has no setting or signal for that text, so the worker replaces the ``saferepr`` name
that ``celery.app.trace`` calls, at ``worker_init`` (pool children fork after it, and inherit
it). ``tests/unit/test_shown_results.py`` fails if Celery stops calling it for the return
value. A web process never imports the tracer, and is left as it is.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.utils.saferepr import saferepr

from saas_tasks.reliability.shown_args import shown


def shown_repr(value: Any, maxlen: int | None = None, *args: Any, **kwargs: Any) -> str:
    """``saferepr`` of the redacted, bounded copy of ``value`` that people may see."""
    return str(saferepr(shown(value), maxlen, *args, **kwargs))


def install() -> None:
    """Make Celery's tracer show results through :func:`shown_repr` (idempotent)."""
    from celery.app import trace

    trace.saferepr = shown_repr


def on_worker_init(**_: Any) -> None:
    install()


signals.worker_init.connect(on_worker_init, weak=False)
