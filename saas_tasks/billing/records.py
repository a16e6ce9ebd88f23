"""What a provider record is, the Protocol every provider adapter follows, and money parsing.

Adapters yield :class:`RecordIn`; :func:`saas_tasks.billing.service.import_records` upserts
them. Amounts are integer minor units from the first byte they are read: decimal strings go
through :class:`~decimal.Decimal` and the currency's exponent, never through a float.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from saas_tasks.billing.errors import InvalidProviderData

#: ISO 4217 currencies without minor units, as Stripe lists them; every other has two
#: (the three-decimal ones are charged by Stripe in multiples of ten of their minor unit).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
TYPES = frozenset({"charge", "refund", "dispute"})


@dataclass(frozen=True)
class RecordIn:
    """One provider record, normalised: ``charge_id`` is the charge it belongs to."""

    record_id: str
    type: str  # charge, refund, dispute
    charge_id: str | None
    amount: int  # minor units, positive
    currency: str
    status: str  # succeeded, failed, pending, refunded, disputed
    created_at: datetime
    invoice_id: int | None = None
    tenant_id: int | None = None


class ProviderSource(Protocol):
    """A payment provider's records for one UTC day (an API, an export file...)."""

    name: str

    def records(self, day: date) -> Iterator[RecordIn]:
        """Every record of ``day``; raise InvalidProviderData naming the place of bad data."""
        ...


def exponent(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 2


def minor_units(text: str, currency: str, where: str) -> int:
    """``"12.34"`` USD → 1234; refuses anything that is not an exact decimal amount."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except (InvalidOperation, AttributeError):
        raise InvalidProviderData(f"{where}: not a decimal amount: {text!r}") from None
    if not value.is_finite():
        raise InvalidProviderData(f"{where}: not a decimal amount: {text!r}")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidProviderData(
            f"{where}: {text!r} has more decimals than {currency.upper()} allows"
        )
    return abs(int(scaled))


def whole_number(value: Any, where: str, *, optional: bool = False) -> int | None:
    """An integer field (minor units, an id); strings of digits are accepted, floats are not."""
    if value is None or value == "":
        if optional:
            return None
        raise InvalidProviderData(f"{where}: missing")
    if isinstance(value, (bool, float)):
        raise InvalidProviderData(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise InvalidProviderData(f"{where}: expected an integer, got {value!r}")
    return int(text)


def currency_code(value: Any, where: str) -> str:
    text = str(value or "").strip().lower()
    if len(text) != 3 or not text.isalpha():
        raise InvalidProviderData(f"{where}: expected a three-letter currency, got {value!r}")
    return text
