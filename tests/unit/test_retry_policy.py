"""Retry policies: bounded, transient-only, with the delays they promise."""

from __future__ import annotations

import pytest

from saas_tasks import ConfigurationError, RetryPolicy, TransientError
from saas_tasks.exceptions import DuplicateInProgress, InvalidPayload
from saas_tasks.reliability.retry import get_policy


def test_exponential_full_jitter_stays_under_a_growing_ceiling_and_the_cap() -> None:
    policy = RetryPolicy("t", max_attempts=10, base=1.0, cap=8.0)
    for retries, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        draws = [policy.countdown(retries, TransientError()) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # the whole range is used: real jitter
    assert len({policy.countdown(2, TransientError()) for _ in range(20)}) > 1


def test_without_jitter_exponential_delays_double() -> None:
    policy = RetryPolicy("t", base=0.5, cap=100, jitter=False)
    assert [policy.countdown(n, TransientError()) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_fixed_and_custom_policies() -> None:
    assert RetryPolicy("f", kind="fixed", base=3).countdown(5, TransientError()) == 3
    custom = RetryPolicy("c", kind="custom", cap=10, delay=lambda n, exc: n * 7)
    assert custom.countdown(1, TransientError()) == 7
    assert custom.countdown(5, TransientError()) == 10  # capped


def test_a_retry_waits_at_least_as_long_as_the_error_asks_but_never_past_the_cap() -> None:
    policy = RetryPolicy("t", base=1.0, cap=20.0, jitter=False)
    assert policy.countdown(0, DuplicateInProgress("held", retry_after=12.5)) == 12.5
    assert policy.countdown(0, DuplicateInProgress("held", retry_after=100.0)) == 20.0
    assert policy.countdown(3, DuplicateInProgress("held", retry_after=0.2)) == 8.0
    assert policy.countdown(0, DuplicateInProgress("held")) == 1.0


def test_only_transient_errors_retry() -> None:
    policy = get_policy("default")
    assert policy.is_transient(TransientError("blip"))
    assert policy.is_transient(ConnectionRefusedError())
    assert policy.is_transient(TimeoutError())
    assert policy.is_transient(DuplicateInProgress("busy"))
    assert not policy.is_transient(ValueError("bug"))
    assert not policy.is_transient(KeyError("bug"))
    assert not policy.is_transient(InvalidPayload("bad"))


def test_infinite_or_zero_attempts_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="infinite retries are not offered"):
        RetryPolicy("bad", max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy("bad", max_attempts=None)  # type: ignore[arg-type]


def test_max_attempts_counts_the_first_run() -> None:
    assert RetryPolicy("t", max_attempts=5).max_retries == 4


def test_an_unknown_policy_name_gets_a_hint() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'network'"):
        get_policy("netwrok")
