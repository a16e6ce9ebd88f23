"""Proof, item 2, in process: hypothesis draws at least 1,000 bad payloads for every public
task of the pack, and the pack's own argument validation (the step the worker runs first, no
mocks) refuses each with InvalidPayload naming what is wrong. The tasks are enumerated from the
app, never listed here; the payloads are built from each task's schema (tests/payload_fuzz.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saas_tasks import app
from tests import payload_fuzz

TASKS = payload_fuzz.public_tasks(app)


def test_the_enumerated_public_tasks_cover_every_family() -> None:
    assert TASKS, "no saas_tasks.* task is registered"
    families = {name.split(".")[1] for name in TASKS}
    assert set(payload_fuzz.FAMILIES) <= families, sorted(families)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_thousand_bad_payloads_are_each_refused_naming_the_bad_field(name: str) -> None:
    run = payload_fuzz.fuzz(TASKS[name])
    assert run.refused >= payload_fuzz.EXAMPLES


WITH_MODEL = sorted(name for name, task in TASKS.items() if task.spec.payload is not None)


@pytest.mark.parametrize("name", WITH_MODEL)
def test_every_bad_payload_starts_from_a_valid_one(name: str) -> None:
    model = TASKS[name].spec.payload
    model.model_validate(payload_fuzz.valid_base(payload_fuzz.schema_of(model)))


@pytest.mark.parametrize("name", WITH_MODEL)
def test_a_valid_payload_with_an_unknown_field_is_refused_naming_it(name: str) -> None:
    task = TASKS[name]
    schema = payload_fuzz.schema_of(task.spec.payload)
    fields = set(schema.properties) | payload_fuzz.RESERVED_KWARGS
    unknown = st.dictionaries(
        payload_fuzz.KEYS.filter(lambda k: k not in fields), payload_fuzz.NOISE, min_size=1
    )

    @settings(payload_fuzz.FUZZ_SETTINGS, max_examples=100)
    @given(unknown)
    def check(extra: dict[str, Any]) -> None:
        bad = payload_fuzz.Bad([], {**payload_fuzz.valid_base(schema), **extra})
        message = str(payload_fuzz.refusal(task, bad))
        assert any(payload_fuzz.names(message, key) for key in extra), message

    check()
