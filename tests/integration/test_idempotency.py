"""Idempotency: a side effect happens once per key; every duplicate gets the first result."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from saas_tasks import DuplicateInProgress, enqueue_once
from saas_tasks.db import session_scope
from saas_tasks.models import AuditLog, IdempotencyRecord, utcnow
from saas_tasks.reliability import deadletter, idempotency
from saas_tasks.reliability.lease import LEASE_SECONDS, Lease
from tests import sample_tasks
from tests.conftest import wait_for


def charges(redis_client: Any) -> list[bytes]:
    return list(redis_client.lrange("test:charges", 0, -1))


def record(key: str) -> IdempotencyRecord:
    found = idempotency.lookup(key)
    assert found is not None, f"no idempotency record for {key}"
    return found


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


def test_a_dead_runs_claim_lapses_one_lease_after_its_last_beat_so_no_key_stays_stuck(
    database_url: str, clean_state: None
) -> None:
    dead = Lease(600, seconds=1.0)  # claimed, then never renewed: its worker died
    assert idempotency.claim("k:stuck", "tests.manual", "dead-task", dead).acquired
    with pytest.raises(DuplicateInProgress, match="held by a run of task dead-task") as raised:
        idempotency.claim("k:stuck", "tests.manual", "other-task", Lease(600))
    assert raised.value.retry_after is not None and 0.5 < raised.value.retry_after <= 1.6
    time.sleep(1.1)
    taker = Lease(600)
    assert idempotency.claim("k:stuck", "tests.manual", "other-task", taker).acquired
    assert record("k:stuck").claim_token == taker.token


def test_a_redelivery_of_the_same_task_id_waits_while_the_first_run_is_live(
    database_url: str, clean_state: None
) -> None:
    # Replaces a test that let a redelivery under the same task id take a live claim over: Redis
    # redelivers an unacked message to a second worker while the first may still run it.
    first = Lease(600)
    held = idempotency.claim("k:mine", "tests.manual", "task-1", first)
    assert held.acquired
    with pytest.raises(DuplicateInProgress) as raised:
        idempotency.claim("k:mine", "tests.manual", "task-1", Lease(600))
    assert raised.value.retry_after is not None
    assert LEASE_SECONDS - 5 < raised.value.retry_after <= LEASE_SECONDS + 1
    assert idempotency.complete(held, {"done": 1})
    claim = idempotency.claim("k:mine", "tests.manual", "task-2", Lease(600))
    assert not claim.acquired and claim.result == {"done": 1}


def test_a_stale_claim_is_taken_over_by_exactly_one_of_many_contenders(
    database_url: str, clean_state: None
) -> None:
    assert idempotency.claim("k:stale", "tests.manual", "dead-task", Lease(600, 1.0)).acquired
    time.sleep(1.1)
    contenders = [Lease(600) for _ in range(8)]
    start = threading.Barrier(len(contenders))

    def contend(lease: Lease) -> str:
        start.wait()
        try:
            taken = idempotency.claim("k:stale", "tests.manual", "taker", lease).acquired
        except DuplicateInProgress:
            return "waits"
        return "won" if taken else "result"

    with ThreadPoolExecutor(len(contenders)) as pool:
        outcomes = list(pool.map(contend, contenders))
    assert sorted(outcomes) == ["waits"] * 7 + ["won"]
    winner = contenders[outcomes.index("won")]
    assert record("k:stale").claim_token == winner.token


def test_a_run_whose_claim_was_taken_over_records_nothing_and_logs_an_error(
    database_url: str, clean_state: None, caplog: pytest.LogCaptureFixture
) -> None:
    slow = Lease(600, seconds=1.0)
    late = idempotency.claim("k:late", "tests.manual", "slow-task", slow)
    time.sleep(1.1)  # its heartbeat did not reach the database for a whole lease
    taker = idempotency.claim("k:late", "tests.manual", "taker-task", Lease(600))
    assert taker.acquired

    with caplog.at_level(logging.ERROR, logger="saas_tasks"):
        assert not idempotency.renew(late, slow)
        assert not idempotency.complete(late, {"by": "the slow run"})
        assert not idempotency.release(late)
    assert record("k:late").status == "running"  # the late run neither recorded nor released
    assert idempotency.complete(taker, {"by": "the taker"})
    assert record("k:late").result == {"by": "the taker"}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(
        "tests.manual[slow-task] lost its claim on idempotency key k:late" in e for e in errors
    )
    assert "its result is not recorded" in errors[0]


def test_a_worker_run_whose_claim_was_taken_over_returns_but_records_nothing(
    worker: Any, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = 'tests.slow_once:ref="late"'
    with caplog.at_level(logging.ERROR, logger="saas_tasks"):
        running = sample_tasks.slow_once.delay("late", seconds=1.5)
        wait_for(lambda: redis_client.lrange("test:slow-once", 0, -1), message="the run to start")
        # What a takeover does to the row (another run's token and lease), as when the worker's
        # heartbeat could not reach the database for a whole lease.
        with session_scope() as session:
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key == key)
                .values(claim_token="the-taker", claimed_until=utcnow() + timedelta(seconds=60))
            )
        result = running.get(timeout=20)
    assert result["ref"] == "late"
    row = record(key)
    assert (row.status, row.claim_token, row.result) == ("running", "the-taker", None)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        f"tests.slow_once[{running.id}] lost its claim on idempotency key" in e for e in errors
    )


def test_a_heartbeat_keeps_a_live_runs_claim_and_a_dead_runs_claim_comes_free_a_lease_later(
    database_url: str, clean_state: None
) -> None:
    holder = Lease(600, seconds=1.0)  # renewed every third of a second
    held = idempotency.claim("k:beat", "tests.manual", "live-task", holder)
    with holder.heartbeat(lambda: idempotency.renew(held, holder), "tests.manual"):
        time.sleep(2.5)  # two and a half leases: only the heartbeat keeps the claim
        with pytest.raises(DuplicateInProgress):
            idempotency.claim("k:beat", "tests.manual", "other-task", Lease(600))
    time.sleep(1.2)  # no more beats: the claim lapses within one lease
    assert idempotency.claim("k:beat", "tests.manual", "other-task", Lease(600)).acquired


def test_a_slow_live_run_keeps_its_claim_past_its_lease_and_its_duplicate_returns_its_result(
    worker: Any, redis_client: Any
) -> None:
    key = 'tests.slow_leased:ref="long"'
    first = sample_tasks.slow_leased.delay("long", seconds=4.0)  # four one-second leases
    wait_for(lambda: redis_client.lrange("test:slow-leased", 0, -1), message="the run to start")
    token = record(key).claim_token
    duplicate = sample_tasks.slow_leased.delay("long", seconds=4.0)
    time.sleep(2.0)
    during = record(key)
    assert (during.status, during.claim_token) == ("running", token)
    assert during.claimed_until is not None and during.claimed_until > utcnow()
    results = [first.get(timeout=30), duplicate.get(timeout=30)]
    assert redis_client.lrange("test:slow-leased", 0, -1) == [b"long"]
    assert results[0] == results[1]


def test_a_failed_run_releases_its_key_so_the_next_delivery_claims_it_at_once(
    database_url: str, clean_state: None
) -> None:
    failed = idempotency.claim("k:again", "tests.manual", "task-1", Lease(600))
    assert idempotency.release(failed)
    row = record("k:again")
    assert (row.status, row.claimed_until) == ("released", None)
    retry = Lease(600)
    assert idempotency.claim("k:again", "tests.manual", "task-1", retry).acquired
    assert record("k:again").claim_token == retry.token


def test_a_task_retried_after_a_transient_failure_claims_its_released_key_and_runs_once(
    worker: Any, redis_client: Any
) -> None:
    result = sample_tasks.flaky_once.delay("r1").get(timeout=20)
    assert result == {"ref": "r1", "attempts": 2}
    assert redis_client.lrange("test:flaky-once", 0, -1) == [b"r1"]
    row = record('tests.flaky_once:ref="r1"')
    assert (row.status, row.result) == ("succeeded", result)


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
