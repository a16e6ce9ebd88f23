"""Checks that stop a worker from starting on a configuration that would lose or corrupt work."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from saas_tasks.exceptions import ConfigurationError

SAFE_CONTENT = {"json", "application/json"}
log = logging.getLogger(__name__)


def longest_hard_time_limit(app: Any) -> tuple[float, str]:
    default = float(app.conf.task_time_limit or 0)
    longest, name = default, "task_time_limit (SAAS_TASKS_TASK_TIME_LIMIT)"
    for task_name, task in app.tasks.items():
        limit = float(getattr(task, "time_limit", None) or 0)
        if limit > longest:
            longest, name = limit, task_name
    return longest, name


def check_worker_configuration(app: Any) -> None:
    conf = app.conf
    if conf.task_serializer != "json" or not set(conf.accept_content or []) <= SAFE_CONTENT:
        raise ConfigurationError(
            f"task_serializer={conf.task_serializer!r}, accept_content={conf.accept_content!r}: "
            "only JSON is accepted (pickle lets anyone who can write to the broker run code); "
            "remove the override from config/celeryconfig.py"
        )
    scheme = urlsplit(str(conf.broker_url or "")).scheme
    if scheme not in {"redis", "rediss", "redis+socket"}:
        return
    visibility = float((conf.broker_transport_options or {}).get("visibility_timeout", 3600))
    longest, holder = longest_hard_time_limit(app)
    if longest <= 0:
        raise ConfigurationError(
            "no hard time limit is set: set SAAS_TASKS_TASK_TIME_LIMIT so that a stuck task "
            "cannot hold its message past the Redis visibility timeout"
        )
    if visibility <= longest:
        raise ConfigurationError(
            f"the Redis visibility timeout ({visibility:.0f}s, SAAS_TASKS_VISIBILITY_TIMEOUT) "
            f"must be above the longest hard time limit ({longest:.0f}s, {holder}); otherwise "
            "Redis hands a running task to a second worker. Raise SAAS_TASKS_VISIBILITY_TIMEOUT "
            f"above {longest:.0f} or lower the time limit"
        )
    _check_retry_delays(app, visibility)


def _check_retry_delays(app: Any, visibility: float) -> None:
    """A retry countdown longer than the visibility timeout makes Redis redeliver the waiting
    message again and again; long waits belong in a table polled by beat instead."""
    for task_name, task in app.tasks.items():
        spec = getattr(task, "spec", None)
        if spec is None:
            continue
        policy = spec.policy
        longest = policy.base if policy.kind == "fixed" else policy.cap
        if longest >= visibility:
            log.warning(
                "%s: retry policy %r may wait %.0fs, not below the Redis visibility timeout "
                "(%.0fs, SAAS_TASKS_VISIBILITY_TIMEOUT): a waiting retry may be delivered twice "
                "(idempotent tasks absorb it); lower the policy's cap or raise the timeout",
                task_name,
                policy.name,
                longest,
                visibility,
            )
