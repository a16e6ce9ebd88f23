"""Subscription reminders and expiry: each reminder once per period, fanned out in chunks,
caught up after downtime, and re-checked against the subscription when its chunk runs.

    from saas_tasks.subscriptions import send_renewal_reminders, expire_lapsed
    send_renewal_reminders.delay()                    # what beat runs daily at 09:00 UTC
    send_renewal_reminders.delay(today="2026-03-01")  # run as of another day

Modules: ``windows`` (which offset is due when, in UTC days; dates as the customer reads them),
``queries`` (every SQL statement), ``notices`` (keys, emails, webhook events), ``service``
(the plain functions), ``tasks`` (Celery).
"""

from saas_tasks.subscriptions.tasks import expire_lapsed, send_notices, send_renewal_reminders

__all__ = ["expire_lapsed", "send_notices", "send_renewal_reminders"]
