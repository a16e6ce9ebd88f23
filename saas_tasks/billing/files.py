"""The file adapter: the provider's balance-transaction export, as CSV or JSON.

CSV uses the column names of Stripe's balance-transaction export (``id``, ``Type``,
``Source``, ``Amount``, ``Currency``, ``Created (UTC)``, and metadata columns such as
``invoice_id (metadata)``); amounts are decimal major units as exported. Refund and dispute
rows name the charge they reverse in ``Charge ID`` (or ``Source`` when it is the charge).
JSON is a list of Stripe API objects (charges, balance transactions), or ``{"data": [...]}``.

A charge row is keyed by its charge id (as the Stripe API adapter keys it), a reversal by its
balance-transaction id. Records are yielded as they are read; the importer runs in one
transaction, so a malformed line met half-way leaves nothing behind. Errors name the line
(or item) and the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from saas_tasks.billing.errors import InvalidProviderData
from saas_tasks.billing.records import RecordIn, currency_code, minor_units, whole_number
from saas_tasks.billing.stripe_source import day_bounds, from_stripe

REQUIRED = ("id", "Type", "Source", "Amount", "Currency", "Created (UTC)")
CSV_TYPES = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "adjustment": "dispute",
    "dispute": "dispute",
}
TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


class FileSource:
    """Records of one export file; only the rows of the day asked for are yielded."""

    name = "stripe"  # the export of Stripe's records: same ids, so imports from both agree

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def records(self, day: date) -> Iterator[RecordIn]:
        start, end = day_bounds(day)
        if self.path.suffix.lower() == ".json":
            rows = self._json()
        elif self.path.suffix.lower() == ".csv":
            rows = self._csv()
        else:
            raise InvalidProviderData(f"{self.path.name}: expected a .csv or .json export")
        for record in rows:
            if start <= record.created_at < end:
                yield record

    def _json(self) -> Iterator[RecordIn]:
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidProviderData(
                f"{self.path.name}: line {exc.lineno}: not JSON: {exc.msg}"
            ) from None
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InvalidProviderData(f"{self.path.name}: expected a list of Stripe objects")
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise InvalidProviderData(f"{self.path.name}: item {number}: not an object")
            record = from_stripe(item, f"{self.path.name}: item {number}")
            if record is not None:
                yield record

    def _csv(self) -> Iterator[RecordIn]:
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
            if missing:
                raise InvalidProviderData(
                    f"{self.path.name}: line 1: missing column(s) {', '.join(missing)}"
                )
            for row in reader:
                record = _row(row, f"{self.path.name}: line {reader.line_num}")
                if record is not None:
                    yield record


def _row(row: dict[str, str], where: str) -> RecordIn | None:
    kind = CSV_TYPES.get((row.get("Type") or "").strip().lower())
    if kind is None:
        return None  # fees, payouts, transfers: not charges or their reversals
    currency = currency_code(row.get("Currency"), f"{where}: Currency")
    source = (row.get("Source") or "").strip()
    charge_id = (row.get("Charge ID") or "").strip() or (source if kind == "charge" else "")
    if not charge_id and source.startswith(("ch_", "py_")):
        charge_id = source
    if not charge_id:
        raise InvalidProviderData(f"{where}: Charge ID: missing for a {kind} row")
    status = (row.get("Status") or "").strip().lower()
    if kind != "charge":
        status = "refunded" if kind == "refund" else "disputed"
    # a charge is keyed by its charge id, as the API adapter keys it, so both imports agree
    record_id = charge_id if kind == "charge" else (row.get("id") or "").strip()
    if not record_id:
        raise InvalidProviderData(f"{where}: id: missing")
    return RecordIn(
        record_id=record_id,
        type=kind,
        charge_id=charge_id,
        amount=minor_units(row.get("Amount") or "", currency, f"{where}: Amount"),
        currency=currency,
        status=status if status in {"refunded", "disputed", "failed"} else "succeeded",
        created_at=_timestamp(row.get("Created (UTC)") or "", f"{where}: Created (UTC)"),
        invoice_id=whole_number(
            row.get("invoice_id (metadata)"), f"{where}: invoice_id (metadata)", optional=True
        ),
        tenant_id=whole_number(
            row.get("tenant_id (metadata)"), f"{where}: tenant_id (metadata)", optional=True
        ),
    )


def _timestamp(text: str, where: str) -> datetime:
    value = text.strip()
    for layout in TIME_FORMATS:
        try:
            return datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidProviderData(f"{where}: expected YYYY-MM-DD HH:MM, got {text!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
