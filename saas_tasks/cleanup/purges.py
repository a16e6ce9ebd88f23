"""One plain function a purge; each computes its cutoff from a retention setting.

Tests and host apps call these without Celery. ``now`` is a parameter so a test can place the
cutoff exactly; production passes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from saas_tasks.cleanup import queries
from saas_tasks.cleanup.batches import Limits, PurgeReport, purge_target, recorded
from saas_tasks.models import utcnow
from saas_tasks.settings import get_settings


def _limits(limits: Limits | None) -> Limits:
    return limits or Limits.from_settings()


def purge_expired_sessions(
    limits: Limits | None = None, now: datetime | None = None
) -> PurgeReport:
    """Sessions that expired more than SAAS_TASKS_SESSION_RETENTION_HOURS ago."""
    cutoff = (now or utcnow()) - timedelta(hours=get_settings().session_retention_hours)
    with recorded("purge_expired_sessions", _limits(limits)) as report:
        purge_target(report, queries.EXPIRED_SESSIONS, cutoff)
    return report


def purge_audit_logs(limits: Limits | None = None, now: datetime | None = None) -> PurgeReport:
    """Audit logs and system logs past their retention (90 days by default, each its own)."""
    settings = get_settings()
    now = now or utcnow()
    with recorded("purge_audit_logs", _limits(limits)) as report:
        audit_cutoff = now - timedelta(days=settings.audit_log_retention_days)
        if purge_target(report, queries.OLD_AUDIT_LOGS, audit_cutoff):
            system_cutoff = now - timedelta(days=settings.system_log_retention_days)
            purge_target(report, queries.OLD_SYSTEM_LOGS, system_cutoff)
    return report


def purge_idempotency_records(
    limits: Limits | None = None, now: datetime | None = None
) -> PurgeReport:
    """Records older than SAAS_TASKS_IDEMPOTENCY_RETENTION_DAYS whose claim has lapsed: a
    duplicate arriving after that runs again, so keep this above any redelivery window."""
    cutoff = (now or utcnow()) - timedelta(days=get_settings().idempotency_retention_days)
    with recorded("purge_idempotency_records", _limits(limits)) as report:
        purge_target(report, queries.OLD_IDEMPOTENCY_RECORDS, cutoff)
    return report


def purge_dead_letters(limits: Limits | None = None, now: datetime | None = None) -> PurgeReport:
    """Dead letters whose last failure is older than SAAS_TASKS_DEAD_LETTER_RETENTION_DAYS."""
    cutoff = (now or utcnow()) - timedelta(days=get_settings().dead_letter_retention_days)
    with recorded("purge_dead_letters", _limits(limits)) as report:
        purge_target(report, queries.OLD_DEAD_LETTERS, cutoff)
    return report
