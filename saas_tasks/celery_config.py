"""The pack's Celery defaults, built from :class:`~saas_tasks.settings.Settings`.

These are the contract every process shares, the web app's included: JSON only, late acks,
bounded publishing, routes by stable task name. Process tuning for the deployed worker and
beat sits in ``config/celeryconfig.py``, loaded on top of these.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from kombu import Queue

from saas_tasks.settings import Settings

#: Queues by task family; ``dead_letter`` receives the failure records to store.
QUEUES = ("default", "email", "exports", "billing", "maintenance", "webhooks", "dead_letter")

#: Stable task-name prefixes and the queue each family runs on.
ROUTES_BY_PREFIX = {
    "saas_tasks.email.": "email",
    "saas_tasks.exports.": "exports",
    "saas_tasks.billing.": "billing",
    "saas_tasks.subscriptions.": "maintenance",
    "saas_tasks.cleanup.": "maintenance",
    "saas_tasks.webhooks.": "webhooks",
    "saas_tasks.deadletter.": "dead_letter",
}


def route_by_name(
    name: str, args: Any, kwargs: Any, options: Any, **_: Any
) -> dict[str, str] | None:
    """Route a task by its declared name, never by module path (names are the contract)."""
    for prefix, queue in ROUTES_BY_PREFIX.items():
        if name.startswith(prefix):
            return {"queue": queue}
    return None


def celery_defaults(settings: Settings) -> dict[str, Any]:
    """Production-safe defaults; each line is a decision documented in README.md."""
    publish_wait = settings.publish_timeout
    redis_options: dict[str, Any] = {
        # A message not acked within this many seconds is handed to another worker; it must
        # exceed the longest hard time limit or a running task is delivered twice.
        "visibility_timeout": settings.visibility_timeout,
        "socket_connect_timeout": publish_wait / 2,
        "socket_timeout": max(publish_wait * 2, 5.0),
        # A publish that finds the connection gone reconnects once, at once, and gives up
        # within the connect timeout (kombu's default waits 2 s before that one retry).
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": publish_wait / 4,
        "interval_max": publish_wait / 4,
    }
    return {
        "broker_url": settings.broker,
        "result_backend": settings.backend,
        # JSON only: pickle would let anyone who can write to the broker run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        # At-least-once: ack after the task ran; a killed child's task goes back to the queue.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "broker_transport_options": redis_options if settings.broker_is_redis else {},
        "result_backend_transport_options": {
            "socket_connect_timeout": publish_wait / 2,
            "socket_timeout": max(publish_wait * 2, 5.0),
            "retry_policy": {"timeout": publish_wait / 2},
        },
        "redis_socket_connect_timeout": publish_wait / 2,
        "redis_socket_timeout": max(publish_wait * 2, 5.0),
        "result_expires": settings.result_expires,
        "result_extended": True,
        "broker_connection_retry_on_startup": True,
        # A worker or beat that lost the broker retries until it is back (every 2 s at most, see
        # reliability/reconnect.py) instead of exiting after Celery's 100 attempts: an outage
        # outlasting them would otherwise need someone to restart every worker.
        "broker_connection_max_retries": None,
        "broker_connection_timeout": publish_wait / 2,
        # Bounded publish retry: .delay() against a dead broker fails in about publish_timeout.
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": publish_wait / 4,
            "interval_max": publish_wait / 4,
        },
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child,
        "task_default_queue": settings.default_queue,
        "task_queues": [Queue(name, routing_key=name) for name in _queue_names(settings)],
        "task_routes": (route_by_name,),
        "task_create_missing_queues": True,
        "worker_consumer": "saas_tasks.reliability.consumer:DeadLetteringConsumer",
        "enable_utc": True,
        "timezone": "UTC",
        "beat_schedule": {},
    }


def _queue_names(settings: Settings) -> list[str]:
    names = list(QUEUES)
    if settings.default_queue not in names:
        names.insert(0, settings.default_queue)
    return names


def deployment_overrides(module_name: str) -> dict[str, Any]:
    """The operator's layer (``config/celeryconfig.py``), or nothing where it is absent.

    A web app that installs the package has no ``config/``; it runs on the defaults above,
    which hold everything producers need. A host app with its own ``config`` package that has
    no ``celeryconfig`` module is left alone.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return {}
        raise
    return {key: value for key, value in vars(module).items() if _is_setting(key, value)}


def _is_setting(key: str, value: Any) -> bool:
    return key.islower() and not key.startswith("_") and not isinstance(value, ModuleType)


def build_configuration(settings: Settings, module_name: str) -> dict[str, Any]:
    """Defaults, then the operator's module; the environment is already in ``settings``."""
    return {**celery_defaults(settings), **deployment_overrides(module_name)}
