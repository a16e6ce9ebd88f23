"""The billing family's Celery task: validate, call :mod:`saas_tasks.billing.service`, report.

    reconcile.delay(day="2026-11-22", tenant="acme")   # one tenant, one day
    reconcile.delay()                                  # every tenant, yesterday (beat)

Idempotent per tenant and day by replacement, not by a stored first result: a rerun (by
finance, or a redelivery) recomputes the run and replaces it in one transaction, so there is
never a doubled or half-written run. Bad input (a future day, an unknown tenant, a malformed
provider file) raises an InvalidPayload error: not retried, dead-lettered.
"""

from __future__ import annotations

import logging
from typing import Any

from saas_tasks.billing import service
from saas_tasks.billing.service import ReconcileRequest
from saas_tasks.reliability.retry import RetryPolicy, register_policy
from saas_tasks.reliability.task import ReliableTask, task
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.billing")

#: the provider's API recovers within minutes; a nightly run can wait an hour for it
register_policy(RetryPolicy("billing", max_attempts=6, base=10.0, cap=900.0))


@task(
    name="saas_tasks.billing.reconcile",
    payload=ReconcileRequest,
    retry="billing",
    bind=True,
)
def reconcile(current: ReliableTask, payload: ReconcileRequest) -> dict[str, Any]:
    """Reconcile a day (yesterday by default) for one tenant or all, then mail finance."""
    task_id = str(current.request.id or "local")
    result = service.reconcile(payload, task_id=task_id)
    to = get_settings().billing_finance_email
    if to:
        from saas_tasks.email.tasks import send_email

        send_email.delay(
            to=to,
            template="billing_reconciliation_report",
            context=service.report_context(result),
            idempotency_key=f"billing-report:{task_id}",
        )
    else:
        log.info("billing reconcile: no SAAS_TASKS_BILLING_FINANCE_EMAIL, report not sent")
    return {
        **result,
        "runs": [{k: v for k, v in r.items() if k != "first"} for r in result["runs"]],
    }
