"""Reconciliation as plain functions: import provider records, compare, record the run.

Tests and host apps call these without Celery; :mod:`saas_tasks.billing.tasks` wraps them.
Each run is one transaction: the run row is taken over, its old discrepancies deleted, the
new ones inserted by one set-based statement and the counts written, then commit. A crash
anywhere in between rolls back to the previous results, never a half-written run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from saas_tasks.billing import queries
from saas_tasks.billing.errors import InvalidProviderData, UnknownTenant
from saas_tasks.billing.records import ProviderSource, RecordIn
from saas_tasks.billing.stripe_source import day_bounds
from saas_tasks.db import session_scope
from saas_tasks.exceptions import ConfigurationError, InvalidPayload
from saas_tasks.models import ReconciliationRun
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.billing")
BATCH = 1000
REPORT_FIRST = 10  # discrepancies of each kind the report lists


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


class ReconcileRequest(BaseModel):
    """The task's payload. ``day`` defaults to yesterday (UTC): what beat sends."""

    day: date | None = None
    tenant: int | str | None = Field(None, description="Tenant id or slug; all when absent.")
    file: str | None = Field(
        None, description="An export under SAAS_TASKS_BILLING_IMPORT_DIR to import first."
    )

    @field_validator("day")
    @classmethod
    def _not_future(cls, value: date | None) -> date | None:
        if value is not None and value > datetime.now(UTC).date():
            raise ValueError(f"{value} is in the future; reconcile a day that has happened")
        return value


def import_records(session: Session, source: ProviderSource, day: date) -> int:
    """Upsert the source's records of ``day`` in batches, inside the caller's transaction
    (so a malformed record half-way leaves nothing behind). Returns how many were read."""
    count = 0
    for batch in _batches(source.records(day), BATCH):
        now = datetime.now(UTC)
        queries.upsert_records(
            session, [{**asdict(r), "provider": source.name, "imported_at": now} for r in batch]
        )
        count += len(batch)
    log.info("billing import: %d %s records for %s", count, source.name, day)
    return count


def _batches(records: Iterable[RecordIn], size: int) -> Iterator[list[RecordIn]]:
    batch: list[RecordIn] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def resolve_tenants(session: Session, tenant: int | str | None) -> list[tuple[int, str]]:
    """``[(id, slug)]`` of the tenant named by id or slug, or of every tenant."""
    if tenant is None:
        return [(int(i), str(s)) for i, s in session.execute(queries.ALL_TENANTS)]
    query = queries.TENANT_BY_ID if isinstance(tenant, int) else queries.TENANT_BY_SLUG
    row = session.execute(query, {"value": tenant}).first()
    if row is None:
        raise UnknownTenant(
            f"tenant: no tenant with {'id' if isinstance(tenant, int) else 'slug'} {tenant!r}"
        )
    return [(int(row[0]), str(row[1]))]


def reconcile_day(session: Session, tenant: int, day: date, task_id: str | None = None) -> int:
    """Compare one tenant's day and replace its run; returns the run id. The caller commits."""
    start, end = day_bounds(day)
    window = {"tenant": tenant, "start": start, "end": end}
    run_id = queries.claim_run(session, tenant, day, task_id, datetime.now(UTC))
    session.execute(queries.CLEAR_RUN, {"run_id": run_id})
    session.execute(queries.ATTRIBUTE, {"start": start, "end": end})
    session.execute(queries.FIND, {**window, "run_id": run_id})
    counts = {kind: 0 for kind in queries.KINDS}
    for kind, number, _ in session.execute(queries.COUNTS, {"run_id": run_id}):
        counts[str(kind)] = int(number)
    totals: dict[str, dict[str, int]] = {}
    ours = 0
    for label, statement in (("ours", queries.OUR_TOTALS), ("theirs", queries.THEIR_TOTALS)):
        for currency, number, amount in session.execute(statement, window):
            entry = totals.setdefault(str(currency), {"ours": 0, "theirs": 0})
            entry[label] = int(amount)
            ours += int(number) if label == "ours" else 0
    mismatched = int(session.execute(queries.MISMATCHED_PAIRS, {"run_id": run_id}).scalar_one())
    matched = ours - counts["missing_at_provider"] - mismatched
    found = sum(counts.values())
    run = session.get(ReconciliationRun, run_id)
    if run is None:  # pragma: no cover - claimed above, in this transaction
        raise RuntimeError(f"reconciliation run {run_id} vanished")
    run.status = "discrepancies" if found else "clean"
    run.matched, run.discrepancies, run.counts, run.totals = matched, found, counts, totals
    run.finished_at = datetime.now(UTC)
    session.flush()
    log.info("billing reconcile: tenant %d %s: %d matched, %s", tenant, day, matched, counts)
    return run_id


def import_source(request: ReconcileRequest, day: date) -> ProviderSource | None:
    """The source the settings (or the request's file) name; None: records are imported."""
    settings = get_settings()
    if request.file is not None:
        from saas_tasks.billing.files import FileSource

        return FileSource(safe_import_path(request.file, settings.billing_import_dir))
    if settings.billing_provider == "stripe":
        if not settings.stripe_api_key:
            raise ConfigurationError(
                "SAAS_TASKS_BILLING_PROVIDER=stripe needs SAAS_TASKS_STRIPE_API_KEY"
            )
        from saas_tasks.billing.stripe_source import StripeSource

        return StripeSource(settings.stripe_api_key, settings.stripe_api_base)
    return None


def safe_import_path(name: str, root: Path | None) -> Path:
    """A provider file named by a payload must sit under the import directory: no payload can
    make a worker read /etc/passwd."""
    if root is None:
        raise InvalidPayload("file: imports are off; set SAAS_TASKS_BILLING_IMPORT_DIR")
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise InvalidPayload(f"file: {name!r} is outside SAAS_TASKS_BILLING_IMPORT_DIR")
    if not path.is_file():
        raise InvalidProviderData(f"file: {name!r} does not exist under the import directory")
    return path


def reconcile(request: ReconcileRequest, task_id: str | None = None) -> dict[str, Any]:
    """Import (when a source is configured) in one transaction, then reconcile each tenant in
    its own; returns the runs' summaries and the report context."""
    day = request.day or yesterday()
    with session_scope() as session:
        tenants = resolve_tenants(session, request.tenant)
    source = import_source(request, day)
    imported = 0
    if source is not None:
        with session_scope() as session:
            imported = import_records(session, source, day)
    runs = []
    for tenant_id, slug in tenants:
        with session_scope() as session:
            run_id = reconcile_day(session, tenant_id, day, task_id)
            runs.append(summary(session, run_id, slug))
    return {"day": day.isoformat(), "imported": imported, "runs": runs}


def summary(session: Session, run_id: int, slug: str) -> dict[str, Any]:
    """A run as the task result and the report show it, with the first few of each kind."""
    run = session.get(ReconciliationRun, run_id)
    if run is None:  # pragma: no cover
        raise RuntimeError(f"reconciliation run {run_id} vanished")
    first = session.execute(queries.FIRST_OF_KIND, {"run_id": run_id, "limit": REPORT_FIRST})
    return {
        "run_id": run.id,
        "tenant": slug,
        "day": run.day.isoformat(),
        "status": run.status,
        "matched": run.matched,
        "discrepancies": run.discrepancies,
        "counts": run.counts,
        "totals": run.totals,
        "first": [
            {"kind": k, "invoice": i, "provider_record": r, "ours": o, "theirs": t}
            for k, i, r, o, t in first
        ],
    }


def report_context(result: dict[str, Any]) -> dict[str, Any]:
    """The ``billing_reconciliation_report`` template's context."""
    runs = result["runs"]
    mismatches = [
        {
            "invoice": item["invoice"] if item["invoice"] is not None else "-",
            "tenant": run["tenant"],
            "problem": _problem(item),
        }
        for run in runs
        for item in run["first"]
    ]
    return {
        "period": result["day"],
        "matched": sum(run["matched"] for run in runs),
        "mismatches": mismatches,
        "runs": [
            {
                k: run[k]
                for k in ("tenant", "status", "matched", "discrepancies", "counts", "totals")
            }
            for run in runs
        ],
    }


def _problem(item: dict[str, Any]) -> str:
    words = item["kind"].replace("_", " ")
    ours, theirs = item["ours"] or "-", item["theirs"] or "-"
    detail = f" (ours {ours}, theirs {theirs})" if item["ours"] or item["theirs"] else ""
    record = f" [{item['provider_record']}]" if item["provider_record"] else ""
    return f"{words}{detail}{record}"
