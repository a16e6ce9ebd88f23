"""The Stripe adapter: the day's charges and balance transactions, auto-paginated.

The ``stripe`` SDK is imported inside :meth:`StripeSource.records`, never at module import, so
a web app enqueueing ``reconcile`` imports nothing heavy. ``api_base`` points the SDK at
another server (tests run a local one that speaks Stripe's list API).

Charges give the charge records (status ``disputed``/``refunded`` when Stripe flags them);
balance transactions give the reversals (refunds, dispute adjustments) with their source
expanded, so that each names the charge it reverses. :func:`from_stripe` converts one Stripe
object (a dict) and is shared with the JSON file adapter.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from saas_tasks.billing.errors import InvalidProviderData, ProviderUnavailable
from saas_tasks.billing.records import RecordIn, currency_code, whole_number

REVERSALS = {"refund": "refund", "payment_refund": "refund", "adjustment": "dispute"}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


class StripeSource:
    """Stripe records of a day, through the official SDK."""

    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None = None, page_size: int = 100) -> None:
        self.api_key = api_key
        self.api_base = api_base
        self.page_size = page_size

    def records(self, day: date) -> Iterator[RecordIn]:
        stripe: Any = importlib.import_module("stripe")
        client = stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=0,  # the task's retry policy owns retries
        )
        start, end = day_bounds(day)
        created = {"gte": int(start.timestamp()), "lt": int(end.timestamp())}
        try:
            charges = client.v1.charges.list(params={"created": created, "limit": self.page_size})
            for number, charge in enumerate(charges.auto_paging_iter()):
                record = from_stripe(charge.to_dict(), f"charge {number}")
                if record is not None:
                    yield record
            transactions = client.v1.balance_transactions.list(
                params={"created": created, "limit": self.page_size, "expand": ["data.source"]}
            )
            for number, txn in enumerate(transactions.auto_paging_iter()):
                record = from_stripe(txn.to_dict(), f"balance transaction {number}")
                if record is not None:
                    yield record
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable(f"Stripe did not answer: {exc}") from exc
        except stripe.APIError as exc:
            raise ProviderUnavailable(f"Stripe failed: {exc}") from exc


def _metadata_ids(metadata: Any, where: str) -> tuple[int | None, int | None]:
    meta = metadata if isinstance(metadata, Mapping) else {}
    invoice = whole_number(meta.get("invoice_id"), f"{where}: metadata.invoice_id", optional=True)
    tenant = whole_number(meta.get("tenant_id"), f"{where}: metadata.tenant_id", optional=True)
    return invoice, tenant


def _created(value: Any, where: str) -> datetime:
    return datetime.fromtimestamp(whole_number(value, f"{where}: created") or 0, UTC)


def from_stripe(obj: Mapping[str, Any], where: str) -> RecordIn | None:
    """A Stripe ``charge`` or ``balance_transaction`` object as a record (None: not ours)."""
    kind = obj.get("object")
    record_id = str(obj.get("id") or "")
    if not record_id:
        raise InvalidProviderData(f"{where}: id: missing")
    if kind == "charge":
        amount = whole_number(obj.get("amount"), f"{where}: amount")
        invoice, tenant = _metadata_ids(obj.get("metadata"), where)
        status = str(obj.get("status") or "")
        if obj.get("disputed"):
            status = "disputed"
        elif obj.get("refunded"):
            status = "refunded"
        return RecordIn(
            record_id=record_id,
            type="charge",
            charge_id=record_id,
            amount=abs(amount or 0),
            currency=currency_code(obj.get("currency"), f"{where}: currency"),
            status=status or "succeeded",
            created_at=_created(obj.get("created"), where),
            invoice_id=invoice,
            tenant_id=tenant,
        )
    if kind == "balance_transaction":
        reversal = REVERSALS.get(str(obj.get("type")))
        source = obj.get("source")
        if reversal is None or not isinstance(source, Mapping):
            return None  # charges come from the charge list; fees, payouts are not ours
        if reversal == "dispute" and source.get("object") != "dispute":
            return None
        charge = source.get("charge")
        charge_id = charge.get("id") if isinstance(charge, Mapping) else charge
        if not charge_id:
            raise InvalidProviderData(f"{where}: source.charge: missing")
        invoice, tenant = _metadata_ids(source.get("metadata"), where)
        return RecordIn(
            record_id=record_id,
            type=reversal,
            charge_id=str(charge_id),
            amount=abs(whole_number(obj.get("amount"), f"{where}: amount") or 0),
            currency=currency_code(obj.get("currency"), f"{where}: currency"),
            status="refunded" if reversal == "refund" else "disputed",
            created_at=_created(obj.get("created"), where),
            invoice_id=invoice,
            tenant_id=tenant,
        )
    raise InvalidProviderData(f"{where}: object: expected 'charge' or 'balance_transaction'")
