"""Log lines an operator can grep and a collector can parse, and Sentry when it is configured.

* Every line written while a task runs carries ``task_name[task_id]``, whichever logger wrote
  it (Celery does that only for its task loggers; the pack's module loggers and the libraries'
  get it here). Lines that already name the task are left as they are.
* ``SAAS_TASKS_LOG_FORMAT=json`` turns every line into one JSON object (``time``, ``level``,
  ``logger``, ``process``, ``message``, and ``task_name``/``task_id`` inside a task,
  ``exc_info`` with the traceback).
* ``SENTRY_DSN`` set: Sentry is initialised in the worker and in beat, with its Celery
  integration. ``sentry-sdk`` is the optional ``sentry`` extra, imported only then.

Installed through Celery's ``after_setup_logger``/``after_setup_task_logger`` signals, so the
worker's and beat's own logging setup (level, file, colours) stays Celery's.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from celery import signals
from celery._state import get_current_task

from saas_tasks.settings import get_settings

log = logging.getLogger(__name__)


def current_task() -> tuple[str, str] | None:
    task = get_current_task()
    request = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    return (str(task.name), str(task_id)) if task is not None and task_id else None


class TaskLineFormatter(logging.Formatter):
    """The process's own format, with ``task_name[task_id]: `` before a task's messages."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        running = current_task()
        if running is not None:
            tag = f"{running[0]}[{running[1]}]"
            if tag not in record.getMessage():
                record = logging.makeLogRecord(record.__dict__)
                record.msg, record.args = f"{tag}: {record.getMessage()}", None
        return self.inner.format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        running = current_task()
        if running is not None:
            data["task_name"], data["task_id"] = running
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def formatter_for(existing: logging.Formatter | None) -> logging.Formatter:
    if get_settings().log_format == "json":
        return JsonFormatter()
    if isinstance(existing, TaskLineFormatter):
        return existing
    return TaskLineFormatter(existing or logging.Formatter())


def install(logger: Any = None, **_: Any) -> None:
    """Wrap the formatters of ``logger``'s handlers (Celery has just set them up)."""
    for handler in getattr(logger, "handlers", []):
        handler.setFormatter(formatter_for(handler.formatter))


def init_sentry(**_: Any) -> bool:
    """Initialise Sentry when ``SENTRY_DSN`` is set; True when it was."""
    dsn = get_settings().sentry_dsn
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
    except ImportError:
        log.warning(
            "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'saas-tasks[sentry]'"
        )
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=get_settings().env,
        integrations=[CeleryIntegration(monitor_beat_tasks=False)],
        send_default_pii=False,
    )
    return True


# Connected by calls: Celery's signal decorators are untyped (mypy strict).
signals.after_setup_logger.connect(install)
signals.after_setup_task_logger.connect(install)
signals.celeryd_init.connect(init_sentry)
signals.beat_init.connect(init_sentry)
