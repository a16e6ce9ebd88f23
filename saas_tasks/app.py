"""Builds the Celery app: the pack's defaults, then ``config/celeryconfig.py``, then the env.

No logic lives here; the reliability hooks and the task families are imported by name.
"""

from __future__ import annotations

import importlib
import os

from celery import Celery

from saas_tasks.celery_config import build_configuration
from saas_tasks.reliability import redis_results
from saas_tasks.settings import get_settings

#: Task families discovered at start; each holds a ``tasks`` module.
FAMILIES = [
    "saas_tasks.reliability",
    "saas_tasks.email",
    "saas_tasks.exports",
    "saas_tasks.cleanup",
    "saas_tasks.subscriptions",
    "saas_tasks.webhooks",
    "saas_tasks.billing",
]

# Arguments shown in events and Flower are redacted like the logs (the body keeps them), and a
# Redis queue entry that is not a kombu message is dead-lettered instead of stopping the worker.
app = Celery("saas_tasks", amqp="saas_tasks.reliability.messaging:PackAMQP")
# The pack's tasks are shared_task proxies, resolved to the *current* app, which Celery keeps
# per thread: in a web server's worker thread it would be Celery's fallback app (broker
# amqp://localhost), and .delay() would publish there. Make ours the process-wide default.
app.set_default()
# redis:// result backends subscribe when a result is awaited, not at every .delay()
# (saas_tasks.reliability.redis_results).
app.loader.override_backends = {**app.loader.override_backends, **redis_results.overrides()}
app.config_from_object(
    build_configuration(
        get_settings(), os.environ.get("SAAS_TASKS_CELERY_CONFIG", "config.celeryconfig")
    )
)
app.autodiscover_tasks(lambda: FAMILIES, related_name="tasks")
importlib.import_module("saas_tasks.reliability.hooks")  # dead-letter and start-up checks
importlib.import_module("saas_tasks.schedules.beat")  # beat says what it fires, or that it won't
importlib.import_module("saas_tasks.logs")  # task_name[task_id] on every line, JSON, Sentry
importlib.import_module("saas_tasks.reliability.shown_results")  # results shown redacted
