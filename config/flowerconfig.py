"""Flower's configuration file: ``celery -A saas_tasks flower --conf=config/flowerconfig.py``.

Flower runs this file and takes every top-level name that matches one of its options, so
helpers start with ``_`` (and nothing else is imported under a plain name). Flower reads its
own ``FLOWER_*`` variables first (``FLOWER_PORT``, ``FLOWER_ADDRESS``, ...); the names set here
win over them.

Flower is never open without credentials: ``FLOWER_BASIC_AUTH=user:password[,user:password]``
is required, except with ``SAAS_TASKS_ENV=development``, where a random password is generated
and printed when none is given.
"""

import logging as _logging
import secrets as _secrets

from saas_tasks.settings import PLACEHOLDER_SECRETS as _PLACEHOLDERS
from saas_tasks.settings import get_settings as _get_settings

_log = _logging.getLogger("saas_tasks.flower")


def _credentials(value: str | None, env: str) -> list[str]:
    """The ``basic_auth`` list for FLOWER_BASIC_AUTH, or SystemExit with the fix."""
    if not value:
        if env != "development":
            raise SystemExit(
                "saas-tasks: refusing to start Flower without credentials: set "
                f"FLOWER_BASIC_AUTH=user:password (SAAS_TASKS_ENV={env}; only development "
                "generates a password)"
            )
        generated = "admin:" + _secrets.token_urlsafe(12)
        print(f"saas-tasks: FLOWER_BASIC_AUTH is unset; Flower login: {generated}", flush=True)
        return [generated]
    pairs = [item.strip() for item in value.split(",") if item.strip()]
    for pair in pairs:
        user, _, password = pair.partition(":")
        if not user or not password:
            missing = "a user" if not user else "a password"
            raise SystemExit(
                "saas-tasks: FLOWER_BASIC_AUTH must be user:password[,user:password], "
                f"got an entry without {missing}"
            )
        if env != "development" and password.strip().lower() in _PLACEHOLDERS:
            raise SystemExit(
                f"saas-tasks: FLOWER_BASIC_AUTH has a placeholder password for user {user!r}; "
                "set a long random one (outside development)"
            )
    return pairs


_settings = _get_settings()

basic_auth = _credentials(_settings.flower_basic_auth, _settings.env)
# Flower keeps this many tasks in memory, oldest dropped first: bounded, whatever the traffic.
max_tasks = 10000
# Workers that went away are dropped from the dashboard rather than kept forever.
purge_offline_workers = 600


def _close_metrics() -> None:
    """Flower 2.2 serves ``/metrics`` to anyone; put it behind the same login as the rest."""
    from flower.views import monitor as _monitor
    from tornado import web as _web

    if not getattr(_monitor.Metrics.get, "_saas_tasks_authenticated", False):
        _monitor.Metrics.get = _web.authenticated(_monitor.Metrics.get)
        _monitor.Metrics.get._saas_tasks_authenticated = True


_close_metrics()


def _register_counters() -> None:
    """The workers' counters (dead letters, exhausted retries, skipped and missed scheduled
    runs) are kept in Redis; this collector serves them on the same authenticated /metrics."""
    from saas_tasks.reliability.metrics import register as _register

    _register()


_register_counters()
