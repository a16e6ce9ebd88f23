"""Declaring a task: stable names, declared options, clear errors for mistakes."""

from __future__ import annotations

import pytest

from saas_tasks import ConfigurationError, InvalidPayload, idempotent, retry, task
from saas_tasks.reliability.idempotency import derive_key, normalise_key


def test_an_unknown_option_is_an_error_with_a_hint() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option .idempotnet.*did you mean"):
        task("myapp.x", idempotnet=True)


def test_a_task_needs_a_stable_dotted_name() -> None:
    with pytest.raises(ConfigurationError, match="stable dotted name"):
        task("send")


def test_declaring_an_option_twice_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="declared twice"):

        @retry("default")
        @retry("network")
        def f() -> None: ...


def test_the_declared_policy_sets_celerys_max_retries() -> None:
    @task("tests.unit.declared")
    @retry("network")
    @idempotent("x")
    def declared(x: int) -> int:
        return x

    assert declared.name == "tests.unit.declared"
    assert declared.max_retries == 7  # "network": 8 attempts
    assert declared.spec.idempotent is not None and declared.spec.idempotent.key == ("x",)


def test_keys_derive_from_named_fields_stably() -> None:
    a = derive_key("t.send", ["to", "template"], {"template": "welcome", "to": "a@x.io"})
    b = derive_key("t.send", ["to", "template"], {"to": "a@x.io", "template": "welcome", "z": 1})
    assert a == b == 't.send:to="a@x.io"|template="welcome"'
    with pytest.raises(InvalidPayload, match="'template' is missing"):
        derive_key("t.send", ["to", "template"], {"to": "a@x.io"})


def test_long_keys_are_hashed_to_fit() -> None:
    key = normalise_key("t.x", "k" * 1000)
    assert len(key) <= 255 and key.startswith("t.x:")
    assert key == normalise_key("t.x", "k" * 1000)
