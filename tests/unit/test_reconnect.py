"""Broker reconnects: the app's connections retry every 2 s at most, not kombu's up to 30 s.

Each test connects, for real, to a loopback port nothing listens on, and records the waits
kombu reports to the error callback before each new attempt.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu.exceptions import OperationalError

from saas_tasks.app import app
from saas_tasks.celery_config import celery_defaults
from saas_tasks.exceptions import ConfigurationError
from saas_tasks.reliability.messaging import PackConnection, PackPooledConnection
from saas_tasks.settings import get_settings, load_settings
from tests.services import free_port


@pytest.fixture()
def quick_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Intervals small enough for a unit test, read afresh by the connection."""
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_START", "0.05")
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_STEP", "0.1")
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_MAX", "0.2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def waits_before_giving_up(connection: object, retries: int, **intervals: float) -> list[float]:
    waits: list[float] = []
    with pytest.raises(OperationalError):
        connection.ensure_connection(  # type: ignore[attr-defined]
            lambda exc, interval: waits.append(interval), retries, **intervals
        )
    return waits


def dead_broker() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_the_defaults_wait_half_a_second_more_each_time_up_to_two() -> None:
    settings = load_settings()
    assert (
        settings.broker_reconnect_interval_start,
        settings.broker_reconnect_interval_step,
        settings.broker_reconnect_interval_max,
    ) == (0.5, 0.5, 2.0)
    # Celery's consumer and beat give up after this many attempts; the pack never does.
    assert celery_defaults(settings)["broker_connection_max_retries"] is None


def test_a_worker_connection_waits_as_the_settings_say(quick_settings: None) -> None:
    with app.connection_for_read(dead_broker()) as connection:
        assert isinstance(connection, PackConnection)
        # kombu's own defaults would report 2, 4, 6, 8 s here.
        waits = waits_before_giving_up(connection, 4)
    assert waits == pytest.approx([0.05, 0.15, 0.2, 0.2])


def test_a_caller_that_names_its_intervals_gets_them(quick_settings: None) -> None:
    with app.connection_for_read(dead_broker()) as connection:
        waits = waits_before_giving_up(
            connection, 2, interval_start=0.01, interval_step=0, interval_max=0.01
        )
    assert waits == pytest.approx([0.01, 0.01])


def test_pooled_connections_reconnect_as_quickly(quick_settings: None) -> None:
    with app.connection_for_write(dead_broker()) as connection:
        pool = connection.Pool(limit=1)
        pooled = pool.acquire()
        try:
            assert isinstance(pooled, PackPooledConnection)
            assert waits_before_giving_up(pooled, 2) == pytest.approx([0.05, 0.15])
        finally:
            pooled.release()
            pool.force_close_all()


def test_a_first_wait_longer_than_the_longest_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_START", "5")
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_MAX", "2")
    with pytest.raises(ConfigurationError, match="SAAS_TASKS_BROKER_RECONNECT_INTERVAL_START"):
        load_settings()


def test_a_negative_wait_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAAS_TASKS_BROKER_RECONNECT_INTERVAL_STEP", "-1")
    with pytest.raises(ConfigurationError, match="SAAS_TASKS_BROKER_RECONNECT_INTERVAL_STEP"):
        load_settings()
