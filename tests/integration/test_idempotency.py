"""Idempotency: a side effect happens once per key; every duplicate gets the first result."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from saas_tasks import DuplicateInProgress, enqueue_once
from saas_tasks.db import session_scope
from saas_tasks.models import AuditLog, IdempotencyRecord
from saas_tasks.reliability import deadletter, idempotency
from tests import sample_tasks
from tests.conftest import wait_for


def charges(redis_client: Any) -> list[bytes]:
    return list(redis_client.lrange("test:charges", 0, -1))


def test_idempotent_task_delivered_twice_charges_once_and_returns_the_same_result(
    worker: Any, redis_client: Any
) -> None:
    first = sample_tasks.charge.delay(invoice_id=41, amount=1200, currency="eur").get(timeout=20)
    second = sample_tasks.charge.delay(invoice_id=41, amount=1200, currency="eur").get(timeout=20)
    assert charges(redis_client) == [b"41"]
    assert second == first  # the stored first result, timestamp included


def test_same_message_redelivered_under_the_same_task_id_runs_the_effect_once(
    worker: Any, redis_client: Any
) -> None:
    kwargs = {"invoice_id": 7, "amount": 500, "currency": "usd"}
    first = sample_tasks.charge.apply_async(kwargs=kwargs, task_id="redelivered-1").get(timeout=20)
    again = sample_tasks.charge.apply_async(kwargs=kwargs, task_id="redelivered-1").get(timeout=20)
    assert charges(redis_client) == [b"7"]
    assert again == first


def test_concurrent_duplicates_never_run_the_body_twice_and_both_get_the_first_result(
    worker: Any, redis_client: Any
) -> None:
    one = sample_tasks.slow_once.delay("same-ref", seconds=1.0)
    two = sample_tasks.slow_once.delay("same-ref", seconds=1.0)
    results = [one.get(timeout=30), two.get(timeout=30)]
    assert redis_client.lrange("test:slow-once", 0, -1) == [b"same-ref"]
    assert results[0] == results[1]


def test_transactional_effect_and_its_key_commit_together_once(worker: Any) -> None:
    first = sample_tasks.audit.delay("order-9").get(timeout=20)
    second = sample_tasks.audit.delay("order-9").get(timeout=20)
    assert first == second
    with session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(AuditLog))
        record = session.get(IdempotencyRecord, 'tests.audit:ref="order-9"')
    assert rows == 1
    assert record is not None and record.status == "succeeded" and record.result == first


def test_transactional_failure_rolls_back_the_effect_and_frees_the_key(
    database_url: str, clean_state: None
) -> None:
    def effect_then_crash(session: Any) -> dict[str, Any]:
        session.add(AuditLog(action="half-done", target="x"))
        session.flush()
        raise RuntimeError("crash after the effect, before the commit")

    with pytest.raises(RuntimeError, match="before the commit"):
        idempotency.run_transactional("k:rollback", "tests.manual", "task-a", effect_then_crash)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 0
        assert session.get(IdempotencyRecord, "k:rollback") is None

    ran, result = idempotency.run_transactional(
        "k:rollback", "tests.manual", "task-b", lambda session: {"second": "run"}
    )
    assert ran and result == {"second": "run"}


def test_a_crashed_runs_claim_expires_after_its_ttl_so_no_key_stays_stuck(
    database_url: str, clean_state: None
) -> None:
    assert idempotency.claim("k:stuck", "tests.manual", "dead-task", ttl_seconds=0.5).acquired
    with pytest.raises(DuplicateInProgress, match="held by task dead-task"):
        idempotency.claim("k:stuck", "tests.manual", "other-task", ttl_seconds=10)
    time.sleep(0.6)
    assert idempotency.claim("k:stuck", "tests.manual", "other-task", ttl_seconds=10).acquired


def test_a_redelivery_of_the_same_task_id_takes_over_its_own_claim(
    database_url: str, clean_state: None
) -> None:
    assert idempotency.claim("k:mine", "tests.manual", "task-1", ttl_seconds=600).acquired
    # the first delivery's worker was killed; the broker hands the same message back
    assert idempotency.claim("k:mine", "tests.manual", "task-1", ttl_seconds=600).acquired
    idempotency.complete("k:mine", "task-1", {"done": 1})
    claim = idempotency.claim("k:mine", "tests.manual", "task-2", ttl_seconds=600)
    assert not claim.acquired and claim.result == {"done": 1}


def test_caller_given_key_dedupes_and_a_missing_key_is_an_invalid_payload(
    worker: Any, redis_client: Any
) -> None:
    sample_tasks.by_caller_key.delay("a", idempotency_key="req-1").get(timeout=20)
    sample_tasks.by_caller_key.delay("b", idempotency_key="req-1").get(timeout=20)
    assert redis_client.lrange("test:caller-key", 0, -1) == [b"a"]

    missing = sample_tasks.by_caller_key.delay("c")
    with pytest.raises(Exception, match="pass idempotency_key"):
        missing.get(timeout=20)
    entry = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task="tests.by_caller_key")),
        message="the dead letter for the missing key",
    )[0]
    assert entry.reason == "invalid_payload" and entry.retries == 0


def test_enqueue_once_sends_once_per_key_within_the_ttl(worker: Any) -> None:
    sent: list[str] = []

    def send() -> str:
        result = sample_tasks.echo.delay("hello")
        sent.append(result.id)
        return str(result.id)

    first = enqueue_once("signup:ana", ttl_seconds=30, send=send)
    second = enqueue_once("signup:ana", ttl_seconds=30, send=send)
    assert first == sent[0] and second is None and len(sent) == 1


def test_enqueue_once_frees_the_key_when_sending_fails(worker: Any) -> None:
    def failing() -> str:
        raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        enqueue_once("signup:bo", ttl_seconds=30, send=failing)
    assert enqueue_once("signup:bo", ttl_seconds=30, send=lambda: "sent") == "sent"
