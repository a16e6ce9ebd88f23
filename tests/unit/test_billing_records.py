"""Provider records as plain functions: money parsing, file formats, and what enqueueing imports."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from saas_tasks.billing.errors import InvalidProviderData
from saas_tasks.billing.files import FileSource
from saas_tasks.billing.records import minor_units

DAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("10.00", "usd", 1000),
        ("-30.05", "usd", 3005),
        ("1,250.10", "eur", 125010),
        ("500", "jpy", 500),
        ("1.234", "kwd", 1234),
        ("0.10", "usd", 10),
    ],
)
def test_decimal_amounts_become_integer_minor_units_in_the_currencys_exponent(
    text: str, currency: str, minor: int
) -> None:
    assert minor_units(text, currency, "line 2: Amount") == minor


@pytest.mark.parametrize("text", ["10.001", "Infinity", "nan", "", "12 USD"])
def test_amounts_that_are_not_exact_in_the_currency_are_refused_naming_the_field(
    text: str,
) -> None:
    with pytest.raises(InvalidProviderData, match="line 2: Amount"):
        minor_units(text, "usd", "line 2: Amount")


def test_a_csv_export_without_a_required_column_is_refused_on_line_one(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "id,Type,Source,Amount,Created (UTC)\ntxn_1,charge,ch_1,1.00,2026-11-20 10:00\n"
    )
    with pytest.raises(
        InvalidProviderData, match=r"export.csv: line 1: missing column\(s\) Currency"
    ):
        list(FileSource(path).records(DAY))


def test_a_csv_row_with_a_bad_date_names_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "id,Type,Source,Amount,Currency,Created (UTC)\n"
        "txn_1,charge,ch_1,1.00,usd,2026-11-20 10:00\n"
        "txn_2,charge,ch_2,1.00,usd,yesterday\n"
    )
    with pytest.raises(InvalidProviderData, match=r"line 3: Created \(UTC\): expected"):
        list(FileSource(path).records(DAY))


def test_a_json_export_reads_stripe_objects_and_names_a_bad_items_field(tmp_path: Path) -> None:
    good = {
        "id": "ch_1",
        "object": "charge",
        "amount": 1234,
        "currency": "USD",
        "created": 1795168800,
        "status": "succeeded",
        "refunded": True,
        "metadata": {"invoice_id": "42"},
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"data": [good]}))
    [record] = FileSource(path).records(DAY)
    assert (record.amount, record.currency, record.status, record.invoice_id) == (
        1234,
        "usd",
        "refunded",
        42,
    )
    path.write_text(json.dumps([good, {**good, "id": "ch_2", "amount": 12.5}]))
    with pytest.raises(
        InvalidProviderData, match=r"export.json: item 2: amount: expected an integer"
    ):
        list(FileSource(path).records(DAY))


def test_enqueueing_reconcile_imports_neither_stripe_nor_the_adapters() -> None:
    code = (
        "import sys, saas_tasks.billing.tasks\n"
        "print(sorted(m for m in sys.modules if m == 'stripe' or m.startswith('stripe.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
