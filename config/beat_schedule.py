"""Every cron job of the pack, in UTC, in one place.

Entries name a task by its declared, stable name (the string given to ``@task(name=...)``),
never by module path; ``tests/unit/test_deployment_config.py`` checks that each one is
registered. ``options.expires`` drops a run that could not start in time instead of piling
late runs up behind a stopped worker. ``SAAS_TASKS_DISABLE_SCHEDULES=true`` empties the
schedule: beat then starts and fires nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.schedules import crontab

from saas_tasks.settings import Settings, get_settings

log = logging.getLogger("saas_tasks.schedules")

HOUR = 3600


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule for these settings (empty, and said so, when schedules are disabled)."""
    if settings.disable_schedules:
        log.warning("SAAS_TASKS_DISABLE_SCHEDULES=true: beat schedule is empty, no job will fire")
        return {}
    return {
        # --- webhooks: due retries live in the deliveries table (saas_tasks/webhooks) --------
        "webhooks-dispatch-due": {
            "task": "saas_tasks.webhooks.dispatch_due",
            "schedule": crontab(),  # every minute
            "options": {"expires": 55},
        },
        # --- billing: reconcile yesterday for every tenant (saas_tasks/billing) ---------------
        "billing-reconcile": {
            "task": "saas_tasks.billing.reconcile",
            "schedule": crontab(minute="0", hour="2"),  # daily at 02:00 UTC, day = yesterday
            "options": {"expires": 2 * HOUR},
        },
        # --- subscriptions: reminders and expiry (saas_tasks/subscriptions) ------------------
        "subscriptions-send-renewal-reminders": {
            "task": "saas_tasks.subscriptions.send_renewal_reminders",
            "schedule": crontab(minute="0", hour="9"),  # daily at 09:00 UTC
            "options": {"expires": 6 * HOUR},
        },
        "subscriptions-expire-lapsed": {
            "task": "saas_tasks.subscriptions.expire_lapsed",
            "schedule": crontab(minute="0", hour="0"),  # daily at 00:00 UTC
            "options": {"expires": 6 * HOUR},
        },
        # --- cleanup: bounded-batch retention jobs (saas_tasks/cleanup) ----------------------
        "cleanup-expired-sessions": {
            "task": "saas_tasks.cleanup.purge_expired_sessions",
            "schedule": crontab(minute="15"),  # hourly at :15 UTC
            "options": {"expires": HOUR / 2},
        },
        "cleanup-audit-logs": {
            "task": "saas_tasks.cleanup.purge_audit_logs",
            "schedule": crontab(minute="0", hour="3"),  # daily at 03:00 UTC
            "options": {"expires": 2 * HOUR},
        },
        "cleanup-old-exports": {
            "task": "saas_tasks.cleanup.purge_old_exports",
            "schedule": crontab(minute="20", hour="3"),  # daily at 03:20 UTC
            "options": {"expires": 2 * HOUR},
        },
        "cleanup-idempotency-records": {
            "task": "saas_tasks.cleanup.purge_idempotency_records",
            "schedule": crontab(minute="40", hour="3"),  # daily at 03:40 UTC
            "options": {"expires": 2 * HOUR},
        },
        "purge-expired-dead-letters": {
            "task": "saas_tasks.cleanup.purge_dead_letters",
            "schedule": crontab(minute="30", hour="4"),  # daily at 04:30 UTC
            "options": {"expires": 2 * HOUR},
        },
        "cleanup-task-results": {
            "task": "saas_tasks.cleanup.purge_task_results",
            "schedule": crontab(minute="0", hour="5"),  # daily at 05:00 UTC (no-op on Redis)
            "options": {"expires": 2 * HOUR},
        },
    }


BEAT_SCHEDULE = build_schedule(get_settings())
